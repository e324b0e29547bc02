"""Dispatch modes: inline and queued callbacks, the overflow policies, and a slow consumer among fast ones."""
import statistics
import threading
import time

import attrs
import pytest

import bfxsync
from bfxsync._engine.queues import Delivery, Workers
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator
from bfxsync.errors import CallbackThreadError

from conftest import FAST, settle_books, wait_until

EXTRA = tuple(f"tS{i:02d}USD" for i in range(10))


def _gated_lane(workers, overflow, maxsize=3):
    """A lane whose callback waits on a gate, and what it ran: the first message holds the worker."""
    gate, ran, entered = threading.Event(), [], threading.Event()

    def run(item, conflated):
        entered.set()
        assert gate.wait(10)
        ran.append((item, conflated))

    return workers.lane("test", Delivery("queued", overflow, maxsize), run), gate, ran, entered


class TestLane:
    def test_drop_oldest_discards_the_oldest_waiting_and_counts_it(self):
        """With the worker busy, a full drop_oldest queue keeps the newest maxsize messages."""
        workers = Workers(1)
        lane, gate, ran, entered = _gated_lane(workers, "drop_oldest")
        try:
            lane.put(0)
            assert entered.wait(5)
            for i in range(1, 8):
                lane.put(i)
            figures = lane.stats()
            assert (figures.depth, figures.dropped, figures.enqueued) == (3, 4, 8)
            gate.set()
            assert wait_until(lambda: len(ran) == 4, 5)
            assert [item for item, _ in ran] == [0, 5, 6, 7]
            figures = lane.stats()
            assert figures.enqueued == figures.delivered + figures.dropped + figures.depth
        finally:
            gate.set()
            workers.stop()
            workers.join(5)

    def test_latest_conflates_updates_but_never_a_snapshot(self):
        """Under latest a waiting update is replaced by the newer message; a waiting snapshot stays."""
        workers = Workers(1)
        lane, gate, ran, entered = _gated_lane(workers, "latest")
        try:
            lane.put("first")
            assert entered.wait(5)
            lane.put("snap", snapshot=True)
            for i in range(5):
                lane.put(i)
            assert lane.stats().depth == 2 and lane.stats().conflated == 4
            gate.set()
            assert wait_until(lambda: len(ran) == 3, 5)
            assert ran == [("first", 0), ("snap", 0), (4, 4)]
            figures = lane.stats()
            assert figures.enqueued == 7 == figures.delivered + figures.conflated and figures.dropped == 0
        finally:
            gate.set()
            workers.stop()
            workers.join(5)

    def test_block_makes_the_producer_wait_and_close_releases_it(self):
        """A full block queue holds the producer until a message is taken; stopping the client frees it too."""
        workers = Workers(1)
        lane, gate, ran, entered = _gated_lane(workers, "block", maxsize=1)
        producer = None
        try:
            lane.put(0)
            assert entered.wait(5)
            lane.put(1)  # fills the queue
            producer = threading.Thread(target=lambda: [lane.put(2), lane.put(3)])
            producer.start()
            assert wait_until(lambda: lane.stats().blocked == 1, 5)
            assert producer.is_alive()
            gate.set()  # the worker takes 1, the producer puts 2, then waits again or goes on
            producer.join(5)
            assert not producer.is_alive()
            assert wait_until(lambda: len(ran) == 4, 5) and [i for i, _ in ran] == [0, 1, 2, 3]
            assert lane.stats().dropped == 0

            gate.clear()
            entered.clear()
            lane.put(4)
            assert entered.wait(5)
            lane.put(5)
            producer = threading.Thread(target=lane.put, args=(6,))
            producer.start()
            assert wait_until(lambda: lane.stats().blocked >= 2, 5)
            workers.stop()  # the client ends: the waiting producer gives up at once
            producer.join(5)
            assert not producer.is_alive()
            figures = lane.stats()
            assert figures.enqueued == figures.delivered + figures.discarded + figures.depth
        finally:
            gate.set()
            workers.stop()
            workers.join(5)

    def test_slow_lane_holds_one_worker_while_another_serves_the_rest(self):
        """Workers start on demand; a busy lane does not keep another lane's messages waiting."""
        workers = Workers(2)
        slow, gate, _, entered = _gated_lane(workers, "block")
        fast_ran = []
        fast = workers.lane("fast", Delivery("queued"), lambda item, conflated: fast_ran.append(item))
        try:
            assert workers.threads() == []  # lanes alone start nothing
            slow.put(0)
            assert entered.wait(5)
            for i in range(50):
                fast.put(i)
            assert wait_until(lambda: len(fast_ran) == 50, 5) and fast_ran == list(range(50))
            assert len(workers.threads()) == 2
        finally:
            gate.set()
            workers.stop()
            workers.join(5)
        assert not any(t.is_alive() for t in workers.threads())


def test_dispatch_options_are_checked(emulator, make_client):
    """Unknown modes and policies, options that mean nothing inline, and a conflicting re-subscribe raise."""
    client = make_client(emulator.url)
    with pytest.raises(ValueError, match="dispatch must be"):
        client.subscribe_ticker("tBTCUSD", dispatch="threaded")
    with pytest.raises(ValueError, match="overflow must be"):
        client.subscribe_ticker("tBTCUSD", dispatch="queued", overflow="newest")
    with pytest.raises(ValueError, match="apply to dispatch"):
        client.subscribe_ticker("tBTCUSD", overflow="latest")
    with pytest.raises(ValueError):
        client.subscribe_ticker("tBTCUSD", dispatch="queued", queue_size=0)
    ticker = client.subscribe_ticker("tBTCUSD", dispatch="queued", overflow="latest", queue_size=10)
    assert client.subscribe_ticker("tBTCUSD") is ticker  # no preference given: the same handle
    with pytest.raises(ValueError, match="unsubscribe it first"):
        client.subscribe_ticker("tBTCUSD", dispatch="inline")
    assert ticker.dispatch == "queued" and ticker.queue.overflow == "latest" and ticker.queue.maxsize == 10
    assert client.subscribe_trades("tBTCUSD").queue is None


def test_queued_callbacks_run_in_order_on_a_callback_thread(emulator, make_client):
    """Queued: subscription then client handlers, serially and in frame order, on a marked bfxsync thread."""
    client = make_client(emulator.url, attrs.evolve(FAST, sequence=True))
    inline = client.subscribe_trades("tETHUSD").wait_subscribed(5)
    assert len(client.threads()) == len(client.connections()) + 1  # inline only: no callback thread
    seen, refused, order = [], [], []

    def handler(message):
        seen.append((threading.current_thread().name, message.seq))
        order.append("sub")
        if len(refused) < 1:
            try:
                message.subscription.wait_subscribed(0.1)
            except CallbackThreadError as err:
                refused.append(err)

    client.on_ticker(lambda message: order.append("client"))
    ticker = client.subscribe_ticker("tBTCUSD", on_data=handler, dispatch="queued")
    assert wait_until(lambda: len(seen) >= 20, 10)
    assert refused and inline.dispatch == "inline"
    assert {name for name, _ in seen} <= {t.name for t in client.threads()}
    assert all(name.startswith("bfxsync-callbacks-") for name, _ in seen)
    seqs = [seq for _, seq in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert order[:6] == ["sub", "client"] * 3
    stats = client.stats()
    assert stats["dispatch_threads"] >= 1 and repr(ticker.spec) in stats["queues"]
    workers = [t for t in client.threads() if t.name.startswith("bfxsync-callbacks-")]
    client.close()
    assert workers and not any(t.is_alive() for t in workers)


def test_account_streams_follow_the_client_default(make_client):
    """Config.dispatch="queued" also queues the account streams; the state still updates on the reader."""
    with Emulator(seed=7, rate=10.0, heartbeat_interval=1.0) as emu:
        wallets = []
        client = bfxsync.Client(emu.url, FAST, api_key=DEMO_KEY, api_secret=DEMO_SECRET, dispatch="queued")
        try:
            client.account.on_wallets(lambda m: wallets.append(threading.current_thread().name))
            client.account.set_dispatch("orders", "inline")
            client.start().wait_authenticated(10)
            assert wait_until(lambda: wallets, 5)
            assert all(name.startswith("bfxsync-callbacks-") for name in wallets)
            assert client.account.queue("wallets").delivered >= 1 and client.account.queue("orders") is None
            assert client.account.snapshot().wallets
            with pytest.raises(ValueError, match="unknown account stream"):
                client.account.queue("wallet")
        finally:
            client.close()


def _latency_ms(message):
    return time.time() * 1000 - message.mts


def _run(emu, make_client, slow_dispatch, calls):
    """21 subscriptions on one connection, one of them slow; returns the figures while it runs ``calls`` times."""
    client = make_client(emu.url, attrs.evolve(FAST, timestamps=True))
    errors = []
    client.on_error(errors.append)
    latencies = {}
    slow_seen = []

    def fast(message):
        latencies.setdefault(message.subscription, []).append(_latency_ms(message))

    def slow(message):
        slow_seen.append(message)
        time.sleep(0.1)  # the scenario: a database write, a GUI update...

    options = {"dispatch": "queued", "overflow": "latest"} if slow_dispatch == "queued" else {}
    slow_book = client.subscribe_book("tBTCUSD", on_data=slow, **options)
    subs = []
    for i, symbol in enumerate(EXTRA):  # 10 tickers and 8 books: half inline, half queued
        queued = {"dispatch": "queued"} if i % 2 else {}
        subs.append(client.subscribe_ticker(symbol, on_data=fast, **queued))
        if i < 8:
            subs.append(client.subscribe_book(symbol, on_data=fast, **queued))
    subs.append(client.subscribe_trades("tETHUSD", on_data=fast))
    status = client.subscribe_status("deriv:tBTCF0:USTF0", on_data=fast)  # quiet: heartbeats between its updates
    subs.append(status)
    assert len(subs) == 20 and len(client.connections()) == 1
    for sub in subs + [slow_book]:
        sub.wait_subscribed(10)
    latencies.clear()
    heartbeats = status.heartbeats
    started = len(slow_seen)
    assert wait_until(lambda: len(slow_seen) >= started + calls, 15)  # the window: about calls x 100 ms
    figures = {
        "client": client, "slow": slow_book, "slow_seen": slow_seen, "subs": subs, "errors": errors,
        "status_heartbeats": status.heartbeats - heartbeats, "status_last_hb": status.last_heartbeat,
        "latencies": {sub: list(values) for sub, values in latencies.items()},
    }
    return figures


def _small_fraction(queued, inline):
    """The queued run's delays are a small fraction of the inline run's (a fifth of its median)."""
    return queued["median_ms"] < inline["median_ms"] / 5 and queued["p99_ms"] < inline["median_ms"]


def _pace(figures):
    values = sorted(v for values in figures["latencies"].values() for v in values)
    return {"messages": len(values), "median_ms": statistics.median(values),
            "p99_ms": values[int(len(values) * 0.99) - 1], "max_ms": values[-1]}


def test_a_slow_queued_consumer_does_not_hold_back_twenty_others(make_client):
    """One book callback sleeps 100 ms per message while 20 others stream at full rate on the same connection."""
    symbols = bfxsync.emulator.DEFAULT_SYMBOLS + EXTRA
    with Emulator(seed=7, rate=40.0, heartbeat_interval=0.3, symbols=symbols) as emu:
        # The claim is relative: queuing the slow consumer takes the others' delay from seconds
        # (inline, every message waits behind 100 ms callbacks) to a small fraction of that. It is
        # measured against an inline run made just before, never in absolute milliseconds, and
        # three times at most, each pair afresh, so a stall of the machine does not decide it (CI on
        # Python 3.9 once saw two queued runs in a row at a 1.1 s median, against an inline run
        # measured before them, while the machine's clock jumped; normally the queued median is
        # about 20 ms against the inline run's 1.5 s).
        for attempt in range(3):
            baseline = _run(emu, make_client, "inline", calls=20)
            inline_pace = _pace(baseline)
            baseline["client"].close()
            run = _run(emu, make_client, "queued", calls=25)
            pace = _pace(run)
            if _small_fraction(pace, inline_pace):
                break
            print(f"\nattempt {attempt + 1}: fast callbacks, slow one queued: {pace} vs inline {inline_pace}")
            run["client"].close()
        client, slow = run["client"], run["slow"]
        stats = client.stats()
        print(f"\nfast callbacks, slow one inline: {inline_pace}\nfast callbacks, slow one queued: {pace}\n"
              f"slow queue: {slow.queue}\ndispatch threads: {stats['dispatch_threads']}")

        # The others keep their pace: every one of them got data, with a small part of the inline delay.
        assert len(run["latencies"]) == 20 and all(run["latencies"].values())
        assert _small_fraction(pace, inline_pace), (pace, inline_pace)
        # No heartbeat missed, no false reconnect, no stalled channel.
        assert run["status_heartbeats"] >= 3 and time.monotonic() - run["status_last_hb"] < 2.0
        assert stats["dials"] == 1 and stats["reconnects"] == 0 and stats["channel_stalls"] == 0
        assert not [e for e in run["errors"] if not isinstance(e.error, bfxsync.errors.CallbackError)]
        # The slow book is still verified on the reader thread, and its queue conflated instead of growing.
        assert slow.checks_passed > 0 and slow.checks_failed == 0 and slow.resyncs == 0
        books = [s for s in run["subs"] if isinstance(s, bfxsync.BookSubscription)]
        assert settle_books(emu, [slow] + books, timeout=10)
        emu.pause()
        try:
            assert wait_until(lambda: slow.queue.depth == 0 and len(run["slow_seen"]) == slow.queue.delivered, 5)
            figures = slow.queue
            seen = run["slow_seen"]
            # The counts add up: every message the reader queued was delivered or folded into a later one.
            assert figures.enqueued == figures.delivered + figures.conflated and figures.dropped == 0
            assert sum(1 + m.conflated for m in seen) == figures.enqueued
            assert figures.conflated > 0 and client.stats()["queue_conflated"] == figures.conflated
            conflated = [m for m in seen if m.conflated]
            assert conflated and all(m.snapshot and 0 < len(m.items) <= 50 for m in conflated)
        finally:
            emu.resume()


@pytest.mark.callback_errors_expected
def test_a_queued_callback_that_raises_is_reported_and_systemexit_ends_the_client(emulator, make_client):
    """Queued callbacks get the same isolation: a raise goes to on_error, SystemExit ends the client visibly."""
    client = make_client(emulator.url)
    errors, calls = [], []
    client.on_error(errors.append)

    def handler(message):
        calls.append(message)
        if len(calls) == 1:
            raise ValueError("boom")
        if len(calls) == 3:
            raise SystemExit(3)

    client.subscribe_ticker("tBTCUSD", on_data=handler, dispatch="queued")
    assert wait_until(lambda: client.closed, 10)
    assert isinstance(errors[0].error, bfxsync.errors.CallbackError) and client.fatal_error is not None
    workers = [t for t in client.threads() if t.name.startswith("bfxsync-callbacks-")]
    client.close()
    assert workers and not any(t.is_alive() for t in workers)


def test_a_drop_wakes_a_reader_blocked_on_a_full_block_queue(make_client):
    """A callback stalled past heartbeat_timeout under ``block``: the watchdog's drop frees the reader, which redials."""
    config = attrs.evolve(FAST, heartbeat_timeout=1.0, keepalive_interval=0.3)
    gate, entered = threading.Event(), threading.Event()
    disconnected, connected = [], []

    def stalled(message):
        entered.set()
        gate.wait(20)  # stalls far longer than heartbeat_timeout, until the test ends

    with Emulator(seed=3, rate=400.0, heartbeat_interval=0.3) as emu:
        client = make_client(emu.url, config)
        client.on_disconnected(disconnected.append)
        client.on_connected(connected.append)
        try:
            queued = client.subscribe_trades("tBTCUSD", on_data=stalled, dispatch="queued", overflow="block", queue_size=1)
            assert entered.wait(10)
            started = time.monotonic()
            assert wait_until(lambda: disconnected, 10), "the reader stayed parked in the full queue"
            assert time.monotonic() - started < 6  # heartbeat_timeout plus the scheduler's and the queue's steps
            assert wait_until(lambda: any(c.reconnect for c in connected), 10)
            assert not gate.is_set() and queued.queue.discarded >= 1 and client.stats()["reconnects"] >= 1
        finally:
            gate.set()


def test_no_data_callback_runs_after_unsubscribing_a_queued_subscription(emulator, make_client):
    """unsubscribe() drops the queued backlog: after it returns (and after Unsubscribed) no data callback starts."""
    client = make_client(emulator.url)
    gate, entered, returned = threading.Event(), threading.Event(), threading.Event()
    calls, unsubscribed = [], threading.Event()
    state = {"unsubscribed": False}

    def slow(message):
        calls.append(state["unsubscribed"])
        entered.set()
        gate.wait(10)
        returned.set()

    client.on_unsubscribed(lambda event: unsubscribed.set())
    sub = client.subscribe_book("tBTCUSD", on_data=slow, dispatch="queued")
    assert entered.wait(10)
    assert wait_until(lambda: sub.queue.depth >= 3, 10)  # a backlog behind the stalled callback
    sub.unsubscribe()
    state["unsubscribed"] = True
    assert unsubscribed.wait(5)
    backlog = sub.queue.discarded
    gate.set()
    assert returned.wait(5)
    client.ping(5)  # a round trip: time for a worker that would take the next message to have taken it
    assert not wait_until(lambda: any(calls), 0.3), "a data callback ran after unsubscribe()"
    assert calls == [False] and backlog >= 3 and sub.queue.depth == 0
