"""Faults the client must heal by itself: drops, silent stalls, restart notices, checksum mismatches."""
import threading

import pytest

import bfxsync
from bfxsync.protocol.checksum import js_number_str

from conftest import FAST, settle_books, wait_until
from test_client import Collector


def subscribe_all(client):
    """One subscription of each kind, books synced."""
    books = [client.subscribe_book("tBTCUSD"), client.subscribe_book("tETHUSD", prec="R0"),
             client.subscribe_book("fUSD", prec="P0")]
    others = [client.subscribe_ticker("tBTCUSD"), client.subscribe_trades("tBTCUSD"),
              client.subscribe_candles("trade:1m:tBTCUSD")]
    for book in books:
        book.wait_synced(5)
    for other in others:
        other.wait_subscribed(5)
    return books, others


def test_drop_midstream_recovers_everything(emulator, make_client):
    """An abrupt drop: the client reconnects, resubscribes, rebuilds books equal to the emulator's, same handles."""
    client = make_client(emulator.url)
    connected, disconnected = Collector(), Collector()
    client.on_connected(connected)
    client.on_disconnected(disconnected)
    books, others = subscribe_all(client)
    handles = list(client.subscriptions)
    old_ids = {s: s.chan_id for s in handles}
    emulator.drop_connections()
    assert connected.wait_for(lambda i: any(c.reconnect for c in i))
    assert disconnected.items and disconnected.items[0].will_reconnect
    for book in books:
        book.wait_synced(5)
    for other in others:
        other.wait_subscribed(5)
    assert client.subscriptions == handles
    assert settle_books(emulator, books)
    assert emulator.connection_count() == 1 and len(emulator.subscriptions()) == len(handles)
    assert client.stats()["reconnects"] == 1
    assert all(s.chan_id is not None for s in handles) and old_ids  # new ids were assigned


def test_silent_server_is_treated_as_dead(emulator, make_client):
    """A stalled socket (nothing, not even heartbeats) is abandoned after heartbeat_timeout and redialled."""
    client = make_client(emulator.url, bfxsync.Config(
        backoff=FAST.backoff, heartbeat_timeout=1.0, keepalive_interval=0.5, max_connects_per_minute=1000))
    disconnected = Collector()
    client.on_disconnected(disconnected)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    emulator.set_silent(True)
    assert disconnected.wait_for(timeout=5)
    assert "no frame" in disconnected.items[0].reason
    emulator.set_silent(False)
    book.wait_synced(10)
    assert settle_books(emulator, [book])


def test_info_20051_triggers_reconnect(emulator, make_client):
    """The server's 'restart' info makes the client reconnect and resubscribe."""
    client = make_client(emulator.url)
    infos, connected = Collector(), Collector()
    client.on_info(infos)
    client.on_connected(connected)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    emulator.broadcast_info(20051, "Stopping. Please try to reconnect")
    assert connected.wait_for(lambda i: len(i) >= 2)
    assert infos.items[0].code == 20051
    book.wait_synced(5)
    assert settle_books(emulator, [book])


def test_a_second_info_mid_connection_is_counted_and_changes_nothing(emulator, make_client):
    """A hello in the middle of a connection replays nothing: same channels on the server, books still equal."""
    client = make_client(emulator.url)
    connected, errors = Collector(), Collector()
    client.on_connected(connected)
    client.on_error(errors)
    books, others = subscribe_all(client)
    assert connected.wait_for(lambda i: len(i) == 1)
    before = sorted(emulator.subscriptions())
    emulator.inject('{"event":"info","version":2,"serverId":"again","platform":{"status":1}}')
    assert wait_until(lambda: client.stats().get("repeated_info") == 1, 5)
    client.ping(5)  # the server answered a request sent after the hello: any replay would have gone out
    assert sorted(emulator.subscriptions()) == before and len(connected.items) == 1
    assert client.stats()["reconnects"] == 0 and not [e for e in errors.items if "10301" in str(e.error)]
    assert settle_books(emulator, books)


def test_checksum_mismatch_resyncs_one_book(emulator, make_client):
    """A corrupted level makes the next cs fail; that one book is rebuilt and an event says so."""
    client = make_client(emulator.url)
    mismatches, synced = Collector(), Collector()
    client.on_checksum_mismatch(mismatches)
    client.on_book_synced(synced)
    broken = client.subscribe_book("tBTCUSD").wait_synced(5)
    healthy = client.subscribe_book("tETHUSD").wait_synced(5)
    wait_until(lambda: broken.checks_passed >= 1)
    best = broken.best_bid()
    # The best bid with an amount the server never had: the next cs must disagree.
    emulator.inject(f'[{broken.chan_id},[{js_number_str(best.price)},{best.count},123.456]]', chan_id=broken.chan_id)
    assert mismatches.wait_for()
    event = mismatches.items[0]
    assert event.subscription is broken and event.resyncing and event.server != event.local
    assert wait_until(lambda: broken.resyncs == 1 and broken.synced)
    assert synced.wait_for(lambda i: any(e.resync and e.subscription is broken for e in i))
    assert settle_books(emulator, [broken, healthy])
    assert healthy.resyncs == 0 and broken.checks_failed >= 1


def test_conf_flags_replayed_after_reconnect(emulator, make_client):
    """Flags are per connection: after a drop the client sends them again (sequence numbers keep coming)."""
    got = Collector()
    client = make_client(emulator.url, sequence=True)
    client.subscribe_ticker("tBTCUSD", on_data=got).wait_subscribed(5)
    emulator.drop_connections()
    assert wait_until(lambda: client.stats().get("reconnects") == 1)
    mark = len(got.items)
    assert got.wait_for(lambda i: len(i) > mark + 2)
    assert all(m.seq is not None for m in got.items[mark:])
    assert client.stats().get("sequence_gaps", 0) == 0


def test_sequence_gap_forces_rebuild(emulator, make_client):
    """A lost frame (sequence jump) is never ignored: the client reconnects and rebuilds."""
    client = make_client(emulator.url, sequence=True)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    emulator.skip_sequence()
    assert wait_until(lambda: client.stats().get("sequence_gaps", 0) >= 1)
    assert wait_until(lambda: client.stats().get("reconnects", 0) >= 1)
    book.wait_synced(5)
    assert settle_books(emulator, [book])


def test_close_interrupts_backoff(emulator):
    """close() during a long back-off pause returns at once and leaves no thread."""
    config = bfxsync.Config(backoff=bfxsync.Backoff(initial=60, jitter=0), max_connects_per_minute=1000)
    client = bfxsync.Client(emulator.url, config).start()
    waiting = threading.Event()
    client.on_reconnecting(lambda e: waiting.set())
    client.wait_connected(5)
    emulator.drop_connections()
    assert waiting.wait(5)
    client.close(timeout=2)
    assert not any(t.is_alive() for t in client.threads())


def test_unreachable_server_keeps_trying_and_reports(make_client):
    """A refused connection is reported with its reason; wait_connected times out, never hangs."""
    client = make_client("ws://127.0.0.1:9")  # nothing listens on the discard port here
    disconnected = Collector()
    client.on_disconnected(disconnected)
    assert disconnected.wait_for(timeout=5)
    assert "failed" in disconnected.items[0].reason and disconnected.items[0].will_reconnect
    with pytest.raises(TimeoutError, match="last connection failure: connect to 127.0.0.1:9 failed"):
        client.wait_connected(0.2)
    stats = client.stats()
    assert stats["reconnects"] == 0 and stats["dials"] >= 1 and stats["checks_failed"] == 0


def test_maintenance_marks_books_stale_then_resyncs(emulator, make_client):
    """20060 marks every book unsynced; 20061 resubscribes them all and they match the emulator again."""
    client = make_client(emulator.url)
    synced = Collector()
    client.on_book_synced(synced)
    books = [client.subscribe_book("tBTCUSD").wait_synced(5), client.subscribe_book("fUSD", prec="R0").wait_synced(5)]
    ticker = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
    emulator.start_maintenance()
    assert wait_until(lambda: client.maintenance and not any(b.synced for b in books))
    emulator.end_maintenance()
    assert wait_until(lambda: not client.maintenance and all(b.synced for b in books))
    assert synced.wait_for(lambda i: sum(e.resync for e in i) >= 2)
    assert settle_books(emulator, books)
    assert ticker.wait_subscribed(5).active


def test_429_handshake_waits_a_minute(emulator):
    """A handshake refused with 429 (connection-rate ban) holds redialling off for at least 60 s."""
    client = bfxsync.Client(emulator.url, FAST)
    pauses, disconnected = Collector(), Collector()
    client.on_reconnecting(pauses)
    client.on_disconnected(disconnected)
    with client:
        client.wait_connected(5)
        emulator.refuse_connections(429)
        emulator.drop_connections()
        assert pauses.wait_for(lambda i: any(p.delay >= 60 for p in i))
        assert any("429" in d.reason for d in disconnected.items)
        emulator.refuse_connections(None)
    assert not any(t.is_alive() for t in client.threads())
