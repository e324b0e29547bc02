"""Several connections behind one client: placement, sharding, pacing, listing, idle close, threads."""
import attrs

import bfxsync
from bfxsync.emulator import Emulator

from conftest import FAST, bfxsync_threads, settle_books, wait_until

SYMBOLS = tuple(f"tS{i:02d}USD" for i in range(40))


def test_120_subscriptions_shard_over_connections_and_survive_a_mass_drop(make_client):
    """40 symbols x (ticker, trades, book) on one client against the emulator's 25-per-connection limit."""
    config = attrs.evolve(FAST, max_connects_per_minute=15)  # the default pacing, not the test's lenient one
    with Emulator(seed=3, rate=20.0, heartbeat_interval=1.0, symbols=SYMBOLS) as emu:
        client = make_client(emu.url, config)
        errors = []
        client.on_error(errors.append)
        handles = []
        for symbol in SYMBOLS:
            handles += [client.subscribe_ticker(symbol), client.subscribe_trades(symbol), client.subscribe_book(symbol)]
        books = [h for h in handles if isinstance(h, bfxsync.BookSubscription)]
        for handle in handles:
            handle.wait_subscribed(20)
        for book in books:
            book.wait_synced(20)
        connections = client.connections()
        assert len(connections) >= 5 and all(c.state == "connected" for c in connections)
        assert sum(c.subscriptions for c in connections) == 120 and max(c.subscriptions for c in connections) <= 25
        assert emu.connection_count() == len(connections)
        assert not [e for e in errors if getattr(e.error, "code", None) == 10305]
        readers = [t for t in client.threads() if t.name.startswith("bfxsync-reader-")]
        assert len(readers) == len(connections) and len(client.threads()) == len(connections) + 1
        assert settle_books(emu, books, timeout=20)

        emu.drop_connections()
        assert wait_until(lambda: client.stats()["reconnects"] >= len(connections), 30)
        for handle in handles:
            handle.wait_subscribed(20)
        for book in books:
            book.wait_synced(20)
        assert settle_books(emu, books, timeout=20)
        stats = client.stats()
        assert stats["connections"] == len(connections) and stats["subscriptions"]["active"] == 120
        assert not [e for e in errors if getattr(e.error, "code", None) == 10305]
        print(f"\n120 subscriptions: {len(connections)} connections, {stats['dials']} dials, "
              f"{stats['reconnects']} reconnects, subscriptions per connection "
              f"{[c.subscriptions for c in connections]}")
    client.close()
    assert not any(t.is_alive() for t in client.threads()) and not bfxsync_threads()


def test_chan_ids_are_per_connection(emulator, make_client):
    """A frame is routed by the chanIds of the connection it arrived on, never by another link's."""
    client = make_client(emulator.url, max_subscriptions=1)
    a = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
    b = client.subscribe_ticker("tETHUSD").wait_subscribed(5)
    assert len(client.connections()) == 2
    seen = []
    b.on_data(seen.append)
    row = "[1,2,3,4,5,6,7,8,9,10]"
    emulator.inject(f"[{b.chan_id},{row}]", chan_id=a.chan_id)  # b's chanId, on a's connection only
    first = client.connections()[0]
    assert wait_until(lambda: client.connections()[0].stats.get("unknown_channel", 0) == 1, 5), first
    assert not [m for m in seen if m.item.bid == 1.0]


def test_empty_extra_connection_closes_after_grace(emulator, make_client):
    """Unsubscribing everything from an extra connection closes it after idle_connection_grace; the first stays."""
    client = make_client(emulator.url, max_subscriptions=1, idle_connection_grace=0.3)
    first = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
    extra = client.subscribe_ticker("tETHUSD").wait_subscribed(5)
    assert len(client.connections()) == 2
    extra.unsubscribe()
    assert wait_until(lambda: len(client.connections()) == 1, 10)
    assert wait_until(lambda: emulator.connection_count() == 1, 10)
    assert wait_until(lambda: len([t for t in client.threads() if t.is_alive()]) == 2, 10)  # one reader + scheduler
    assert first.active
    again = client.subscribe_ticker("tETHUSD").wait_subscribed(5)
    assert again.active and len(client.connections()) == 2


def test_stats_aggregate_and_per_connection(emulator, make_client):
    """client.stats() adds up every connection; connections() gives each one's figures."""
    client = make_client(emulator.url, max_subscriptions=2)
    for symbol in ("tBTCUSD", "tETHUSD", "tLTCBTC"):
        client.subscribe_book(symbol).wait_synced(5)
    infos = client.connections()
    assert [i.subscriptions for i in infos] == [2, 1]
    assert all(i.url == emulator.url and i.last_frame_age < 5 for i in infos)
    emulator.drop_connections()
    assert wait_until(lambda: client.stats()["reconnects"] == 2, 10)
    assert sum(i.stats["reconnects"] for i in client.connections()) == 2


def test_subscribe_requests_are_paced(emulator, make_client):
    """With a rate of 20/s after a burst of 5, 25 requests take about a second to leave."""
    client = make_client(emulator.url, subscribe_rate=20.0, subscribe_burst=5, max_subscriptions=25)
    client.wait_connected(5)
    symbols = ("tBTCUSD", "tETHUSD", "tLTCBTC", "fUSD", "fBTC")
    handles = [client.subscribe_candles(f"trade:{tf}:tBTCUSD") for tf in ("1m", "5m", "15m", "30m", "1h", "3h")]
    handles += [client.subscribe_ticker(s) for s in symbols] + [client.subscribe_trades(s) for s in symbols]
    assert len(emulator.subscriptions()) <= 6  # the burst and perhaps one more, not all of them
    for handle in handles:
        handle.wait_subscribed(10)
    assert len(emulator.subscriptions()) == len(handles)
