"""Hostile frames fed straight into a link's parser: rejected, counted, and never poisoning a book or model."""
import json

import pytest

from bfxsync.specs import BookSpec, CandlesSpec, StatusSpec, TickerSpec, TradesSpec

from test_link import INFO, Harness, ack

BULK = 131072 | 536870912


def start(flags=131072):
    session = Harness()
    session.link.on_open()
    session.on_frame(INFO)
    session.on_frame(json.dumps({"event": "conf", "status": "OK", "flags": flags}))
    return session


@pytest.fixture
def session():
    s = start()
    yield s
    assert s.stats().get("internal", 0) == 0, "hostile input reached code that did not expect it"


def synced_book(session, chan_id=5, spec=None, rows="[[100,1,1.5],[99,2,0.5],[101,1,-2]]"):
    book = session.subscribe(spec or BookSpec("tBTCUSD"))
    ack(session, session.connection.sent[-1]["subId"], chan_id, channel="book")
    session.on_frame(f"[{chan_id},{rows}]")
    assert book.synced
    return book


def levels(book):
    snap = book.snapshot()
    return [(lvl.price, lvl.amount) for lvl in snap.bids], [(lvl.price, lvl.amount) for lvl in snap.asks]


@pytest.mark.parametrize("row", [
    '["NaN",1,1]', "[NaN,1,1]", '["Infinity",1,1]', "[-Infinity,1,-1]", "[-1e999,1,1]", "[1e999,1,-1]",
    '[100,1,"NaN"]', "[100,1,Infinity]", "[true,1,1]", "[100,true,1]", "[100,1,false]", "[null,1,1]",
    "[100,null,1]", f"[{10 ** 400},1,1]", f"[100,1,{10 ** 400}]", "[[100],1,1]", '[{"a":1},1,1]', "[100,1]",
    "[100,1.5,1]", "[100,-1,1]", "[100,1,0]",
])
def test_bad_book_row_is_rejected_and_the_book_resynced(session, row):
    """Each hostile update row is refused before touching the book, counted, and starts a resync."""
    book = synced_book(session)
    before = levels(book)
    session.on_frame(f"[5,{row}]")
    assert session.stats()["bad_payload"] == 1 and book.resyncs == 1
    assert session.connection.sent[-1] == {"event": "unsubscribe", "chanId": 5}
    assert not book.synced  # dropped until the fresh snapshot, never a poisoned copy
    session.on_frame('{"event":"unsubscribed","status":"OK","chanId":5}')
    ack(session, session.connection.sent[-1]["subId"], 6, channel="book")
    session.on_frame("[6,[[100,1,1.5],[99,2,0.5],[101,1,-2]]]")
    assert book.synced and levels(book) == before


def test_reported_nan_sequence_keeps_the_book_readable(session):
    """The issue's sequence: a "NaN" bid, then a legal new worst bid and its delete; reads never spin."""
    book = synced_book(session)
    session.on_frame('[5,["NaN",1,1]]')
    session.on_frame('{"event":"unsubscribed","status":"OK","chanId":5}')
    ack(session, session.connection.sent[-1]["subId"], 6, channel="book")
    session.on_frame("[6,[[100,1,1.5],[99,2,0.5],[101,1,-2]]]")
    session.on_frame("[6,[50,1,1]]")
    session.on_frame("[6,[50,0,1]]")
    assert levels(book) == ([(100.0, 1.5), (99.0, 0.5)], [(101.0, -2.0)])
    session.on_frame(f'[6,"cs",{book.checksum()}]')
    assert book.checks_passed == 1


@pytest.mark.parametrize("frame", ['[5,"te",[100,1,1]]', '[5,"tu",[100,1,1]]', '[5,"zz",[100,1,1]]',
                                   '[5,"te",[[100,1,1]]]', '[5,"fte",7]'])
def test_tagged_frames_on_a_book_channel_are_not_levels(session, frame):
    """Book data is never tagged: a trades tag or an unknown one is counted and ignored, no resync needed."""
    book = synced_book(session)
    before = levels(book)
    session.on_frame(frame)
    assert levels(book) == before and book.synced and book.resyncs == 0
    assert session.stats()["unknown_tag"] == 1


def test_second_snapshot_without_bulk_updates_is_rejected(session):
    """Without BULK_UPDATES an array of arrays after the snapshot breaks the protocol: resync, not a merge."""
    book = synced_book(session)
    session.on_frame("[5,[[100,1,9],[50,1,1]]]")
    assert book.resyncs == 1 and not book.synced and len(book.book) == 0
    assert session.stats()["bad_payload"] == 1


def test_bulk_updates_apply_all_or_nothing():
    """With BULK_UPDATES a batch is applied; a batch holding one bad row changes nothing and resyncs."""
    session = start(BULK)
    book = synced_book(session)
    session.on_frame("[5,[[100,0,1],[98,1,3]]]")
    assert levels(book) == ([(99.0, 0.5), (98.0, 3.0)], [(101.0, -2.0)])
    session.on_frame('[5,[[98,0,1],[97,1,1],["NaN",1,1]]]')
    assert book.resyncs == 1 and not book.synced
    assert session.stats().get("internal", 0) == 0


@pytest.mark.parametrize("value", ["true", "1.5", '"12"', str(2 ** 40), str(-2 ** 40)])
def test_checksum_must_be_a_32_bit_integer(session, value):
    """A cs value that is no signed or unsigned 32-bit integer is malformed: counted, the book untouched."""
    book = synced_book(session)
    session.on_frame(f'[5,"cs",{value}]')
    assert session.stats()["malformed"] == 1 and book.synced and book.checks_failed == 0


@pytest.mark.parametrize("spec, chan_frames", [
    (TickerSpec("tBTCUSD"), ["[7,[NaN,1,2,3,4,5,6,7,8,9]]", '[7,["Infinity",1,2,3,4,5,6,7,8,9]]',
                             "[7,[true,1,2,3,4,5,6,7,8,9]]", f"[7,[{10 ** 400},1,2,3,4,5,6,7,8,9]]"]),
    (TradesSpec("tBTCUSD"), ['[7,"te",[1,2,NaN,3]]', '[7,"te",[1,2,0.5,-1e999]]', '[7,"te",[true,2,0.5,3]]',
                             '[7,"te",7]', "[7,[[1,2,0.5,Infinity]]]"]),
    (CandlesSpec("trade:1m:tBTCUSD"), ["[7,[1,2,3,NaN,4,5]]", "[7,[1.5,2,3,4,1,5]]", "[7,[[1,2,3,4,1,Infinity]]]"]),
    (StatusSpec("liq:global"), ['[7,[["pos",1,2,null,"tBTCUSD",NaN,3,null,0,1,null,4]]]',
                                '[7,[["pos",1,2,null,7,1,3,null,0,1,null,4]]]',
                                '[7,[["pos",1,2,null,"tBTCUSD",1,3,null,"yes",1,null,4]]]']),
])
def test_other_channels_reject_non_finite_and_mistyped_fields(session, spec, chan_frames):
    """Ticker, trades, candles and status frames with hostile numbers are counted, never delivered."""
    got = []
    sub = session.subscribe(spec)
    sub.on_data(got.append)
    ack(session, session.connection.sent[-1]["subId"], 7, channel=spec.channel)
    for frame in chan_frames:
        session.on_frame(frame)
    assert session.stats()["bad_payload"] == len(chan_frames) and got == []


@pytest.mark.parametrize("spec", [TickerSpec("tBTCUSD"), CandlesSpec("trade:1m:tBTCUSD"), StatusSpec("liq:global")])
def test_tags_on_untagged_channels_are_ignored(session, spec):
    """Only trades carry tags; a tagged frame elsewhere is counted and not read as data."""
    got = []
    sub = session.subscribe(spec)
    sub.on_data(got.append)
    ack(session, session.connection.sent[-1]["subId"], 7, channel=spec.channel)
    session.on_frame('[7,"te",[1,2,3,4,5,6,7,8,9,10]]')
    assert session.stats()["unknown_tag"] == 1 and got == []


class TestAcks:
    """Acks are matched by our subId; echoed fields alone never let a stranger's ack take a request."""

    def test_foreign_sub_id_is_not_ours_even_with_matching_fields(self, session):
        book = session.subscribe(BookSpec("tBTCUSD"))
        sub_id = session.connection.sent[-1]["subId"]
        ack(session, "someone-else", 5, channel="book", symbol="tBTCUSD", prec="P0", freq="F0", len="25")
        assert session.stats()["unexpected_ack"] == 1 and not book.active
        ack(session, sub_id, 6, channel="book", symbol="tBTCUSD", prec="P0", freq="F0", len="25")
        session.on_frame("[6,[[100,1,1.5]]]")
        assert book.chan_id == 6 and book.synced

    def test_ack_without_sub_id_or_symbol_does_not_take_a_pending_book(self, session):
        book = session.subscribe(BookSpec("tBTCUSD"))
        sub_id = session.connection.sent[-1]["subId"]
        session.on_frame('{"event":"subscribed","channel":"book","chanId":5}')
        assert session.stats()["unexpected_ack"] == 1 and not book.active
        ack(session, sub_id, 6, channel="book", symbol="tBTCUSD")
        assert session.stats()["unexpected_ack"] == 1  # the real ack is not "unexpected"
        session.on_frame("[6,[[100,1,1.5]]]")
        assert book.synced

    def test_ambiguous_ack_without_sub_id_matches_nothing(self, session):
        """book tBTCUSD without prec could answer P0 or R0: neither is taken."""
        p0 = session.subscribe(BookSpec("tBTCUSD"))
        r0 = session.subscribe(BookSpec("tBTCUSD", prec="R0"))
        session.on_frame('{"event":"subscribed","channel":"book","chanId":5,"symbol":"tBTCUSD"}')
        assert session.stats()["unexpected_ack"] == 1 and not p0.active and not r0.active
        session.on_frame('{"event":"subscribed","channel":"book","chanId":6,"symbol":"tBTCUSD","prec":"R0"}')
        assert r0.active and not p0.active

    @pytest.mark.parametrize("sub_id", ["true", "null", "[1]", '{"a":1}', "1.0"])
    def test_odd_sub_ids_match_nothing(self, session, sub_id):
        book = session.subscribe(BookSpec("tBTCUSD"))
        session.on_frame(f'{{"event":"subscribed","channel":"book","chanId":5,"subId":{sub_id}}}')
        assert not book.active


@pytest.mark.parametrize("mts", ["1.5", "true", "NaN", '"1700000000000"', "null"])
def test_timestamp_must_be_an_integer(mts):
    """With TIMESTAMP on, a trailing MTS that is not an integer makes the frame malformed; the book is untouched."""
    session = start(131072 | 32768)
    book = synced_book(session, rows="[[100,1,1.5],[101,1,-2]]")
    before = levels(book)
    session.on_frame(f"[5,[99,1,1],{mts}]")
    assert session.stats()["malformed"] == 1 and levels(book) == before and book.synced
    session.on_frame("[5,[99,1,1],1700000000000]")
    assert levels(book)[0] == [(100.0, 1.5), (99.0, 1.0)]


def test_a_second_hello_on_one_connection_replays_nothing(session):
    """A mid-stream info with a version is counted and ignored: no conf, no subscribe sent again."""
    sub = session.subscribe(BookSpec("tBTCUSD"))
    ack(session, session.connection.sent[-1]["subId"], 5, channel="book")
    sent = len(session.connection.sent)
    session.on_frame(INFO)
    assert session.connection.sent[sent:] == [] and sub.active and sub.chan_id == 5
    assert session.stats()["repeated_info"] == 1 and session.stats()["reconnects"] == 0
