"""Property test against the emulator: random hostile frames between real updates never poison a book.

Two clients (one with BULK_UPDATES) hold books of every kind plus a ticker and trades. The
emulator's market is paused and stepped by hand, so each example interleaves its hostile
frames with real updates in one fixed order. After every example each book must be synced
again (after any resyncs the garbage caused) and equal the emulator's own view, level by level.
"""
import json

import attrs
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bfxsync._engine import supervision

from conftest import FAST, wait_until

#: Numbers no book or model may hold: JSON literals Python accepts, strings, huge ints, booleans, garbage.
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "-1e999", "1e999", '"NaN"', '"Infinity"', '"-inf"', '"-1e999"',
               str(10 ** 400), str(-(10 ** 400)), "true", "false", "null", '"abc"', '""', "[]", "{}", "[[[1]]]",
               '{"a":[1]}']
GOOD_NUMBERS = ["1", "0", "-1", "2.5", "-0.25", "30000", "0.0002", "30", "7"]

good = st.sampled_from(GOOD_NUMBERS)
bad = st.sampled_from(BAD_NUMBERS)


@st.composite
def bad_row(draw):
    """A row that is wrong somewhere: a bad number in some position, or the wrong length."""
    if draw(st.booleans()):
        width = draw(st.sampled_from([3, 4]))
        row = draw(st.lists(good, min_size=width, max_size=width))
        for index in draw(st.sets(st.integers(0, width - 1), min_size=1)):
            row[index] = draw(bad)
        return "[" + ",".join(row) + "]"
    return "[" + ",".join(draw(st.lists(good, max_size=2))) + "]"  # too short for any channel


@st.composite
def hostile_body(draw):
    """What follows ``[CHAN_ID,`` in a hostile frame (always at least one invalid part)."""
    kind = draw(st.sampled_from(["row", "batch", "tagged", "garbage"]))
    if kind == "row":
        return draw(bad_row())
    if kind == "batch":  # snapshot-shaped: refused without BULK_UPDATES, all-or-nothing with it
        rows = draw(st.lists(st.one_of(bad_row(), st.builds(lambda r: "[" + ",".join(r) + "]",
                                                            st.lists(good, min_size=3, max_size=4))),
                             min_size=1, max_size=4))
        return "[" + ",".join(rows + [draw(bad_row())]) + "]"
    if kind == "tagged":
        tag = draw(st.sampled_from(['"te"', '"tu"', '"fte"', '"zz"', '""', '"cs"', '"hb"']))
        body = draw(st.one_of(bad_row(), st.builds(lambda r: "[" + ",".join(r) + "]",
                                                   st.lists(good, min_size=3, max_size=4)), bad))
        return f"{tag},{body}"
    return draw(st.sampled_from(["null", "true", "7", '{"a":1}', "[[[[1]]]]", '"cs","x"', '"cs",true',
                                 f'"cs",{2 ** 40}', "[[]]", '[1,"2",[3]]', "-1e999"]))


def frames():
    """(target index, market ticks before it, hostile body) triples."""
    return st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2), hostile_body()), min_size=1, max_size=12)


def book_equals_emulator(emu, sub):
    """Synced and level by level the emulator's view (checksum included)."""
    spec = sub.spec
    bids, asks = emu.book_view(spec.symbol, spec.prec, spec.length)
    snap = sub.snapshot()
    def same(entries, levels):
        return [list(map(float, e)) for e in entries] == [list(map(float, attrs.astuple(lvl))) for lvl in levels]
    return (snap.synced and same(bids, snap.bids) and same(asks, snap.asks)
            and snap.checksum == emu.book_checksum(spec.symbol, spec.prec, spec.length))


def test_books_end_equal_to_the_server_whatever_garbage_comes_between(emulator, make_client, monkeypatch):
    """Hostile frames are rejected or ignored; every book resyncs if needed and ends equal to the emulator's."""
    # Many resyncs in a row would otherwise pause for seconds each (back-off is tested elsewhere).
    monkeypatch.setattr(supervision, "RESYNC_PAUSE_FIRST", 0.01)
    monkeypatch.setattr(supervision, "RESYNC_PAUSE_MAX", 0.05)
    plain = make_client(emulator.url)
    bulk = make_client(emulator.url, attrs.evolve(FAST, bulk_updates=True))
    books = [plain.subscribe_book("tBTCUSD"), plain.subscribe_book("tBTCUSD", prec="R0"),
             plain.subscribe_book("fUSD"), bulk.subscribe_book("tETHUSD"), bulk.subscribe_book("fUSD", prec="R0")]
    others = [plain.subscribe_ticker("tBTCUSD"), plain.subscribe_trades("tBTCUSD")]
    for book in books:
        book.wait_synced(10)
    for other in others:
        other.wait_subscribed(10)
    targets = books + others
    last_chan = {sub: sub.chan_id for sub in targets}

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(frames())
    def check(hostile):
        emulator.pause()
        try:
            for target, ticks, body in hostile:
                sub = targets[target]
                chan_id = sub.chan_id or last_chan[sub]  # mid-resync: the old chanId (dropped as leaving)
                last_chan[sub] = chan_id
                if ticks:
                    emulator.step(ticks)
                emulator.inject(f"[{chan_id},{body}]", chan_id=chan_id)
            emulator.step(2)
            assert wait_until(lambda: all(book_equals_emulator(emulator, b) for b in books), 20), \
                [(b.spec, b.synced, b.resyncs) for b in books]
        finally:
            emulator.resume()

    check()
    for client in (plain, bulk):
        stats = client.stats()
        assert stats.get("internal", 0) == 0, stats
    assert sum(plain.stats().get(kind, 0) for kind in ("bad_payload", "malformed", "unknown_tag")) > 0
    # The flat hostile frames never turned into a valid level: every book still verifies its checksums.
    passed = {b: b.checks_passed for b in books if not b.book.is_funding}
    assert wait_until(lambda: all(b.checks_passed > n for b, n in passed.items()), 10)


@pytest.mark.parametrize("body", BAD_NUMBERS)
def test_each_bad_number_as_a_bid_price_is_refused_live(emulator, make_client, body):
    """Every hostile number, sent as a bid price through a real socket, is refused and the book rebuilt."""
    client = make_client(emulator.url)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    emulator.inject(json.dumps([book.chan_id, ["X", 1, 1]]).replace('"X"', body), chan_id=book.chan_id)
    assert wait_until(lambda: client.stats().get("bad_payload", 0) + client.stats().get("malformed", 0) >= 1)
    assert wait_until(lambda: book.resyncs + client.stats().get("malformed", 0) >= 1 and book.synced)
    emulator.pause()
    try:
        assert wait_until(lambda: book_equals_emulator(emulator, book), 10)
    finally:
        emulator.resume()
    assert client.stats().get("internal", 0) == 0
