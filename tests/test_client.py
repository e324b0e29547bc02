"""End-to-end: the client against the emulator over ws:// — channels, books, handles, callbacks, lifecycle."""
import sys
import threading

import pytest

import bfxsync
from bfxsync import errors, models

from conftest import FAST, bfxsync_threads, settle_books, wait_until


class Collector:
    """A thread-safe list of callback payloads with an Event per arrival."""

    def __init__(self):
        self.items = []
        self.lock = threading.Lock()

    def __call__(self, item):
        with self.lock:
            self.items.append(item)

    def wait_for(self, predicate=lambda items: bool(items), timeout=10.0):
        return wait_until(lambda: predicate(list(self.items)), timeout)


class TestLifecycle:
    def test_connects_and_reports(self, emulator, make_client):
        """wait_connected returns and the Connected event names the server."""
        seen = Collector()
        client = bfxsync.Client(emulator.url, FAST)
        client.on_connected(seen)
        with client:
            client.wait_connected(5)
            assert seen.wait_for()
        assert seen.items[0].server_id and seen.items[0].reconnect is False
        assert client.threads() and not any(t.is_alive() for t in client.threads())

    def test_twenty_open_close_cycles_leave_no_thread(self, emulator):
        """close() joins everything it started: after 20 cycles the thread count is back to baseline."""
        baseline = threading.active_count()
        for _ in range(20):
            with bfxsync.Client(emulator.url, FAST) as client:
                client.wait_connected(5)
                client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
        assert bfxsync_threads() == []
        # The emulator's per-connection threads end as it notices each close; ours are already gone.
        assert wait_until(lambda: threading.active_count() == baseline, timeout=5)

    def test_subscribe_before_start_fails_fast(self, emulator):
        """Subscribing on a client that was never started raises NotConnectedError."""
        with pytest.raises(errors.NotConnectedError):
            bfxsync.Client(emulator.url).subscribe_ticker("tBTCUSD")

    def test_bad_arguments_raise_before_sending(self, emulator, make_client):
        """Invalid symbol/prec/len/key raise ValueError at call time."""
        client = make_client(emulator.url)
        for call in (lambda: client.subscribe_ticker("btcusd"), lambda: client.subscribe_book("tBTCUSD", prec="P7"),
                     lambda: client.subscribe_book("tBTCUSD", length=30), lambda: client.subscribe_candles("trade:2m:tBTCUSD"),
                     lambda: client.subscribe_status("deriv:nope")):
            with pytest.raises(ValueError):
                call()
        assert client.subscriptions == []

    def test_run_forever_timeout_closes(self, emulator):
        """run_forever(timeout) returns after the timeout with the client closed and its threads joined."""
        client = bfxsync.Client(emulator.url, FAST).start()
        client.run_forever(0.3)
        assert client.closed and not any(t.is_alive() for t in client.threads())

    def test_close_from_a_callback(self, emulator):
        """close() called inside a callback ends run_forever() and leaves no thread behind."""
        client = bfxsync.Client(emulator.url, FAST).start()
        client.subscribe_ticker("tBTCUSD", on_data=lambda message: client.close())
        client.run_forever(10)
        assert client.closed
        assert wait_until(lambda: not any(t.is_alive() for t in client.threads()), timeout=5)

    def test_ping(self, emulator, make_client):
        """ping() returns the round trip of an application ping."""
        client = make_client(emulator.url)
        client.wait_connected(5)
        assert 0 <= client.ping(5) < 5


class TestChannels:
    def test_trading_ticker(self, emulator, make_client):
        """Ticker messages carry TradingTicker models; the first one is flagged as the snapshot."""
        got = Collector()
        client = make_client(emulator.url)
        sub = client.subscribe_ticker("tBTCUSD", on_data=got)
        assert sub.wait_subscribed(5) is sub and sub.chan_id is not None
        assert got.wait_for(lambda i: len(i) >= 2)
        assert got.items[0].snapshot and not got.items[1].snapshot
        assert isinstance(got.items[0].item, models.TradingTicker) and got.items[0].item.bid > 0
        assert sub.last is not None

    def test_funding_ticker(self, emulator, make_client):
        """Funding tickers parse into FundingTicker."""
        got = Collector()
        make_client(emulator.url).subscribe_ticker("fUSD", on_data=got)
        assert got.wait_for()
        assert isinstance(got.items[0].item, models.FundingTicker)

    @pytest.mark.parametrize("symbol, model", [("tBTCUSD", models.Trade), ("fUSD", models.FundingTrade)])
    def test_trades(self, emulator, make_client, symbol, model):
        """A snapshot in time order, then te trades only (the tu duplicates are not delivered by default)."""
        got = Collector()
        make_client(emulator.url).subscribe_trades(symbol, on_data=got)
        assert got.wait_for(lambda i: len(i) >= 3)
        snapshot, updates = got.items[0], got.items[1:]
        assert snapshot.snapshot and all(isinstance(t, model) for t in snapshot.items)
        assert [t.id for t in snapshot.items] == sorted(t.id for t in snapshot.items)
        assert all(u.tag in ("te", "fte") for u in updates)
        ids = [u.item.id for u in updates]
        assert len(ids) == len(set(ids))

    def test_trades_with_execution_updates(self, emulator, make_client):
        """execution_updates=True delivers tu frames as well, tagged."""
        got = Collector()
        make_client(emulator.url).subscribe_trades("tETHUSD", on_data=got, execution_updates=True)
        assert got.wait_for(lambda i: any(m.tag == "tu" for m in i))

    @pytest.mark.parametrize("key", ["trade:1m:tBTCUSD", "trade:1h:fUSD:p30"])
    def test_candles(self, emulator, make_client, key):
        """Candle snapshots arrive oldest first, updates one candle at a time."""
        got = Collector()
        make_client(emulator.url).subscribe_candles(key, on_data=got)
        assert got.wait_for(lambda i: len(i) >= 2)
        snapshot = got.items[0]
        assert snapshot.snapshot and [c.mts for c in snapshot.items] == sorted(c.mts for c in snapshot.items)
        assert not got.items[1].snapshot and isinstance(got.items[1].item, models.Candle)

    def test_candle_series_is_kept(self, emulator, make_client):
        """The handle keeps the series: snapshot merged with updates, one candle per MTS, oldest first."""
        got = Collector()
        sub = make_client(emulator.url).subscribe_candles("tBTCUSD", "1m", on_data=got)
        assert got.wait_for(lambda i: len(i) >= 3)
        series = sub.candles()
        mts = [c.mts for c in series]
        assert mts == sorted(set(mts)) and len(series) >= len(got.items[0].items)
        last_update = got.items[-1].item
        assert sub.candles(1)[0].mts >= last_update.mts and sub.last == sub.candles(1)[0]
        assert sub.candles(0) == ()

    def test_derivatives_status(self, emulator, make_client):
        """deriv: keys deliver DerivativesStatus."""
        got = Collector()
        make_client(emulator.url).subscribe_status("deriv:tBTCF0:USTF0", on_data=got)
        assert got.wait_for()
        assert isinstance(got.items[0].item, models.DerivativesStatus) and got.items[0].item.mark_price

    def test_liquidations_subscribe(self, emulator, make_client):
        """liq:global is acknowledged and its items, when they come, are Liquidation models."""
        got = Collector()
        sub = make_client(emulator.url).subscribe_status("liq:global", on_data=got)
        sub.wait_subscribed(5)
        got.wait_for(timeout=3)
        assert all(isinstance(item, models.Liquidation) for m in got.items for item in m.items)

    def test_client_level_decorators(self, emulator, make_client):
        """@client.on_ticker sees every ticker subscription."""
        client = make_client(emulator.url)
        symbols = set()

        @client.on_ticker
        def on_ticker(message):
            symbols.add(message.subscription.spec.symbol)

        client.subscribe_ticker("tBTCUSD")
        client.subscribe_ticker("tETHUSD")
        assert wait_until(lambda: symbols == {"tBTCUSD", "tETHUSD"})


class TestBooks:
    @pytest.mark.parametrize("symbol, prec", [
        ("tBTCUSD", "P0"), ("tBTCUSD", "P1"), ("tBTCUSD", "P2"), ("tBTCUSD", "P3"), ("tBTCUSD", "P4"),
        ("tBTCUSD", "R0"), ("fUSD", "P0"), ("fUSD", "R0"),
    ])
    def test_book_equals_emulator_and_checksums_pass(self, emulator, make_client, symbol, prec):
        """Every book kind stays equal to the emulator's and passes its cs checks."""
        client = make_client(emulator.url)
        sub = client.subscribe_book(symbol, prec=prec).wait_synced(5)
        assert wait_until(lambda: sub.checks_passed >= 3)
        assert settle_books(emulator, [sub])
        assert sub.checks_failed == 0 and sub.resyncs == 0

    def test_book_read_api(self, emulator, make_client):
        """Best bid/ask, spread, mid, top(n) and a consistent snapshot."""
        sub = make_client(emulator.url).subscribe_book("tETHUSD").wait_synced(5)
        bid, ask = sub.best_bid(), sub.best_ask()
        assert bid.price < ask.price and bid.amount > 0 > ask.amount
        assert sub.spread() > 0 and bid.price < sub.mid() < ask.price
        bids, asks = sub.top(5)
        assert len(bids) == 5 and [b.price for b in bids] == sorted((b.price for b in bids), reverse=True)
        snap = sub.snapshot()
        assert snap.synced and snap.checksum == sub.book.checksum() or snap.version != sub.book.version

    @pytest.mark.parametrize("length", [1, 100])
    def test_book_lengths(self, emulator, make_client, length):
        """Book length 1 and 100 windows are kept exactly."""
        sub = make_client(emulator.url).subscribe_book("tBTCUSD", length=length).wait_synced(5)
        assert settle_books(emulator, [sub])
        assert len(sub.book.bids()) <= length

    def test_options_sequence_timestamps_bulk(self, emulator, make_client):
        """With SEQ_ALL, TIMESTAMP and BULK_UPDATES on, books still verify and messages carry seq and mts."""
        got = Collector()
        client = make_client(emulator.url, sequence=True, timestamps=True, bulk_updates=True)
        sub = client.subscribe_book("tBTCUSD", on_data=got).wait_synced(5)
        ticker = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
        assert got.wait_for(lambda i: len(i) >= 5)
        updates = [m for m in got.items if not m.snapshot]
        assert updates and all(m.seq is not None and m.mts is not None for m in updates)
        assert any(len(m.items) > 1 for m in updates), "bulk updates carry several levels per message"
        assert settle_books(emulator, [sub])
        assert sub.checks_failed == 0 and client.stats().get("sequence_gaps", 0) == 0 and ticker.active

    def test_checksums_off(self, emulator, make_client):
        """With checksums disabled no cs frames are checked, and the book still follows the stream."""
        sub = make_client(emulator.url, checksums=False).subscribe_book("tBTCUSD").wait_synced(5)
        assert settle_books(emulator, [sub])
        assert sub.checks_passed == 0


class TestHandles:
    def test_same_subscription_same_handle(self, emulator, make_client):
        """Subscribing twice to the same thing returns the same object and sends one request."""
        client = make_client(emulator.url)
        a = client.subscribe_book("tBTCUSD", length="25")
        b = client.subscribe_book("tBTCUSD", length=25)
        assert a is b
        a.wait_subscribed(5)
        assert len(emulator.subscriptions()) == 1

    def test_rejection_carries_server_code(self, emulator, make_client):
        """A symbol the server does not know fails wait_subscribed with its code and message."""
        sub = make_client(emulator.url).subscribe_ticker("tNOPEUSD")
        with pytest.raises(errors.SubscriptionError) as caught:
            sub.wait_subscribed(5)
        assert caught.value.code == 10300 and "symbol" in caught.value.msg
        assert sub.state is bfxsync.State.FAILED

    def test_book_rejection_wakes_wait_synced(self, emulator, make_client):
        """wait_synced on a rejected book raises the rejection instead of timing out."""
        sub = make_client(emulator.url).subscribe_book("fNOPE")
        with pytest.raises(errors.SubscriptionError):
            sub.wait_synced(5)

    def test_wait_timeout(self, emulator, make_client):
        """A wait that cannot finish raises a TimeoutError subclass."""
        client = make_client(emulator.url)
        emulator.set_silent(True)
        sub = client.subscribe_ticker("tBTCUSD")
        with pytest.raises(TimeoutError):
            sub.wait_subscribed(0.3)
        emulator.set_silent(False)

    def test_unsubscribe(self, emulator, make_client):
        """unsubscribe() ends the channel on the server and fires Unsubscribed; data stops."""
        client = make_client(emulator.url)
        gone = Collector()
        client.on_unsubscribed(gone)
        got = Collector()
        sub = client.subscribe_ticker("tBTCUSD", on_data=got).wait_subscribed(5)
        sub.unsubscribe()
        assert gone.wait_for()
        assert sub.state is bfxsync.State.CLOSED and client.subscriptions == []
        assert wait_until(lambda: emulator.subscriptions() == [])
        count = len(got.items)
        client.ping(5)  # frames are ordered: anything still in flight arrives before the pong
        assert len(got.items) == count
        sub.unsubscribe()  # idempotent


class TestCallbacks:
    @pytest.mark.callback_errors_expected
    def test_raising_callback_is_isolated(self, emulator, make_client):
        """A callback that raises is reported to on_error and the stream goes on."""
        client = make_client(emulator.url)
        errors_seen = Collector()
        client.on_error(errors_seen)
        calls = Collector()

        def bad(message):
            calls(message)
            raise RuntimeError("boom")

        client.subscribe_ticker("tBTCUSD", on_data=bad)
        assert calls.wait_for(lambda i: len(i) >= 3)
        callback_errors = [e for e in errors_seen.items if "boom" in str(e.error)]
        assert callback_errors and callback_errors[0].subscription is not None
        assert client.stats()["callback_errors"] >= 3

    def test_no_lock_held_during_callbacks(self, emulator, make_client):
        """Callbacks may subscribe, unsubscribe and read books: nothing of ours is locked while they run."""
        client = make_client(emulator.url)
        book = client.subscribe_book("tBTCUSD").wait_synced(5)
        done = threading.Event()

        def on_ticker(message):
            if done.is_set():
                return
            book.snapshot()
            extra = client.subscribe_ticker("tETHUSD")
            extra.unsubscribe()
            done.set()

        client.subscribe_ticker("tBTCUSD", on_data=on_ticker)
        assert done.wait(5)

    def test_blocking_helpers_refuse_reader_thread(self, emulator, make_client):
        """wait_* called from a callback raise RuntimeError instead of deadlocking."""
        client = make_client(emulator.url)
        outcome = []

        def on_ticker(message):
            if not outcome:
                try:
                    message.subscription.wait_subscribed(1)
                except RuntimeError as err:
                    outcome.append(err)

        client.subscribe_ticker("tBTCUSD", on_data=on_ticker)
        assert wait_until(lambda: outcome)
        assert "callback" in str(outcome[0])

    def test_callbacks_run_on_reader_thread(self, emulator, make_client):
        """Every callback runs on the bfxsync-reader thread."""
        names = Collector()
        make_client(emulator.url).subscribe_ticker("tBTCUSD", on_data=lambda m: names(threading.current_thread().name))
        assert names.wait_for()
        assert names.items[0].startswith("bfxsync-reader-")


def test_heartbeats_are_consumed(emulator, make_client):
    """Heartbeats are counted per subscription, never delivered as data."""
    got = Collector()
    client = make_client(emulator.url)
    sub = client.subscribe_status("liq:global", on_data=got).wait_subscribed(5)
    assert wait_until(lambda: sub.heartbeats >= 1, timeout=5)
    assert sub.last_heartbeat is not None
    assert all(isinstance(item, models.Liquidation) for m in got.items for item in m.items)


def test_waiters_released_by_close(emulator):
    """A thread waiting for an answer is released by close() with NotConnectedError, not left to time out."""
    client = bfxsync.Client(emulator.url, FAST).start()
    client.wait_connected(5)
    emulator.set_silent(True)
    book = client.subscribe_book("tBTCUSD")
    outcome = []

    def wait():
        try:
            book.wait_synced(30)
        except Exception as err:  # noqa: BLE001 - recorded for the assertion
            outcome.append(err)

    waiter = threading.Thread(target=wait)
    waiter.start()
    client.close()
    waiter.join(5)
    emulator.set_silent(False)
    assert not waiter.is_alive() and isinstance(outcome[0], errors.NotConnectedError)


def test_unsubscribe_releases_an_unanswered_wait(emulator, make_client):
    """The server never answers some requests (deriv: keys of non-perpetuals): unsubscribing releases the waiter."""
    client = make_client(emulator.url)
    sub = client.subscribe_status("deriv:tBTCUSD")
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(pytest.raises(errors.SubscriptionError, sub.wait_subscribed, 30)))
    waiter.start()
    assert wait_until(lambda: len(emulator.subscriptions()) == 0 and client.connected)
    sub.unsubscribe()
    waiter.join(5)
    assert not waiter.is_alive() and outcome and sub.state is bfxsync.State.CLOSED


def test_wait_connected_released_by_close():
    """A thread in wait_connected() is released by close() with NotConnectedError."""
    client = bfxsync.Client("ws://127.0.0.1:9", FAST).start()  # never connects
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(pytest.raises(errors.NotConnectedError, client.wait_connected, 30)))
    waiter.start()
    # The release is what is tested: close only once the waiter is inside wait_connected().
    assert wait_until(lambda: "wait_connected" in _frames_of(waiter), 5)
    client.close()
    waiter.join(5)
    assert not waiter.is_alive() and outcome


def _frames_of(thread):
    """The function names on ``thread``'s stack right now."""
    frame = sys._current_frames().get(thread.ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names

