"""Readers of one process share one CPU once two or more run (bfxsync._engine.cpu_sharing)."""
import logging
import os
import queue
import sys
import threading
import time

import attrs
import pytest

import bfxsync
from bfxsync._engine import cpu_sharing

from conftest import FAST, wait_until

ALLOWED = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()

# The CI machines are Linux with two CPUs or more: there this file must run, never skip.
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or len(ALLOWED) < 2,
                                reason="CPU affinity is Linux's, and needs two CPUs to mean anything")


def readers(client):
    return [t for t in client.threads() if t.name.startswith("bfxsync-reader")]


def affinities(client):
    return [os.sched_getaffinity(t.native_id) for t in readers(client)]


def on_own_connections(client, symbols):
    """One ticker per connection (max_subscriptions=1), each subscribed."""
    for symbol in symbols:
        client.subscribe_ticker(symbol).wait_subscribed(10)
    assert len(readers(client)) == len(symbols)


def test_two_readers_share_the_highest_cpu_and_a_lone_one_gets_its_own_back(emulator, make_client):
    client = make_client(emulator.url, attrs.evolve(FAST, max_subscriptions=1, idle_connection_grace=0.0))
    on_own_connections(client, ["tBTCUSD"])
    assert affinities(client) == [ALLOWED], "a lone reader is left where the kernel runs it"
    second = client.subscribe_ticker("tETHUSD").wait_subscribed(10)
    assert wait_until(lambda: affinities(client) == [{max(ALLOWED)}] * 2, timeout=10), affinities(client)
    second.unsubscribe()  # its connection closes (no grace), and the reader left alone is unpinned
    assert wait_until(lambda: len(readers(client)) == 1 and affinities(client) == [ALLOWED], timeout=10), \
        affinities(client)


def test_readers_of_two_clients_share_one_cpu(emulator, make_client):
    first = make_client(emulator.url)
    first.subscribe_ticker("tBTCUSD").wait_subscribed(10)
    second = make_client(emulator.url)
    second.subscribe_ticker("tETHUSD").wait_subscribed(10)
    assert wait_until(lambda: affinities(first) + affinities(second) == [{max(ALLOWED)}] * 2, timeout=10)


def test_a_chosen_cpu(emulator, make_client):
    cpu = min(ALLOWED)
    client = make_client(emulator.url, attrs.evolve(FAST, max_subscriptions=1, reader_cpu=cpu))
    on_own_connections(client, ["tBTCUSD", "tETHUSD", "tLTCBTC"])
    assert wait_until(lambda: affinities(client) == [{cpu}] * 3, timeout=10), affinities(client)


def test_none_never_pins(emulator, make_client):
    client = make_client(emulator.url, attrs.evolve(FAST, max_subscriptions=1, reader_cpu=None))
    on_own_connections(client, ["tBTCUSD", "tETHUSD", "tLTCBTC"])
    assert affinities(client) == [ALLOWED] * 3


def test_a_cpu_the_process_may_not_use_is_warned_about_once_and_pins_nothing(emulator, make_client, caplog):
    outside = max(ALLOWED) + 1000
    client = make_client(emulator.url, attrs.evolve(FAST, max_subscriptions=1, reader_cpu=outside))
    with caplog.at_level(logging.WARNING, logger="bfxsync"):
        on_own_connections(client, ["tBTCUSD", "tETHUSD"])
    assert affinities(client) == [ALLOWED] * 2
    warnings = [r.getMessage() for r in caplog.records if "reader_cpu" in r.getMessage()]
    assert len(warnings) == 1 and f"reader_cpu is {outside}" in warnings[0], warnings


@pytest.mark.parametrize("value", ["fast", -1, True, 1.5, "1"])
def test_reader_cpu_is_validated(value):
    with pytest.raises(ValueError, match="reader_cpu"):
        bfxsync.Config(reader_cpu=value)


def test_without_a_gil_nothing_is_pinned(monkeypatch):
    """A free-threaded build runs readers in parallel: sharing one CPU would only slow them."""
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert cpu_sharing.shared_cpu("auto", ALLOWED) is None and cpu_sharing.shared_cpu(min(ALLOWED), ALLOWED) is None
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    assert cpu_sharing.shared_cpu("auto", ALLOWED) == max(ALLOWED)


def test_a_reader_started_from_a_pinned_one_shares_too(emulator, make_client):
    """A new connection's reader is started by whichever thread subscribes; started from a
    callback (a pinned reader) it inherits the pin, and still takes part: the process's
    affinity, not the inherited CPU, is what it may share and go back to."""
    client = make_client(emulator.url, attrs.evolve(FAST, max_subscriptions=1, idle_connection_grace=0.0))
    client.subscribe_ticker("tBTCUSD").wait_subscribed(10)  # the first connection: open as long as the client
    second = client.subscribe_ticker("tETHUSD").wait_subscribed(10)
    assert wait_until(lambda: affinities(client) == [{max(ALLOWED)}] * 2, timeout=10)
    started = []

    def from_a_callback(message):
        if not started:
            started.append(client.subscribe_ticker("tLTCBTC"))
    second.on_data(from_a_callback)
    assert wait_until(lambda: started, timeout=10)
    third = started[0].wait_subscribed(10)
    second.unsubscribe()  # its connection closes: the first and third readers still share
    assert wait_until(lambda: len(readers(client)) == 2, timeout=10)
    assert affinities(client) == [{max(ALLOWED)}] * 2
    third.unsubscribe()  # and now the first is alone
    assert wait_until(lambda: len(readers(client)) == 1 and affinities(client) == [ALLOWED], timeout=10), \
        affinities(client)


def test_a_sandbox_that_forbids_affinity_calls_leaves_readers_unpinned_and_reading(emulator, make_client,
                                                                                   monkeypatch):
    def forbidden(*args):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "sched_getaffinity", forbidden)
    monkeypatch.setattr(os, "sched_setaffinity", forbidden)
    client = make_client(emulator.url, attrs.evolve(FAST, max_subscriptions=1))
    books = [client.subscribe_book(symbol).wait_synced(10) for symbol in ("tBTCUSD", "tETHUSD")]
    assert all(book.active for book in books) and len(readers(client)) == 2


def test_a_reader_knows_whether_it_is_pinned_now():
    """What a reader asks before it gives a turn (a CPU yield when pinned, a sleep when not)."""
    sharing = cpu_sharing.CPUSharing()
    joined, seen, leave = [threading.Event() for _ in range(2)], {}, threading.Event()
    second_left = threading.Event()

    def reader(i):
        token = sharing.join(cpu_sharing.AUTO)
        seen[i, "alone" if i == 0 else "joined"] = sharing.pinned()
        joined[i].set()
        if i == 0:
            assert joined[1].wait(10)
            seen[0, "two"] = sharing.pinned()
            assert second_left.wait(10)
            seen[0, "left alone"] = sharing.pinned()
        else:
            assert leave.wait(10)
        sharing.leave(token)
        if i == 1:
            second_left.set()

    first = threading.Thread(target=reader, args=(0,))
    first.start()
    assert joined[0].wait(10)
    second = threading.Thread(target=reader, args=(1,))
    second.start()
    assert wait_until(lambda: (0, "two") in seen, timeout=10)
    leave.set()
    first.join(10)
    second.join(10)
    assert seen == {(0, "alone"): False, (1, "joined"): True, (0, "two"): True, (0, "left alone"): False}
    assert not sharing.pinned(), "a thread that never joined is not pinned"


def test_a_yield_releases_the_gil_where_readers_on_one_cpu_give_turns_by_yielding():
    """The premise of a turn on a shared CPU: while one thread yields, a thread on the same CPU
    that wants the GIL gets it, long before the interpreter's switch interval would force it."""
    from bfxsync._engine import turns
    if not turns.YIELD_RELEASES_GIL:
        assert sys.version_info < (3, 10)  # there a turn is a sleep, which always releases it
        return
    cpu, pinned, go, ran = max(ALLOWED), threading.Event(), threading.Event(), []

    def waiter():  # wakes on go, then needs the GIL for one append
        os.sched_setaffinity(0, {cpu})
        pinned.set()
        go.wait(10)
        ran.append(time.monotonic())

    interval, own = sys.getswitchinterval(), os.sched_getaffinity(0)
    thread = threading.Thread(target=waiter)
    thread.start()
    assert pinned.wait(10)
    sys.setswitchinterval(5.0)  # within the deadline, only a release hands the GIL over
    os.sched_setaffinity(0, {cpu})
    try:
        go.set()
        deadline = time.monotonic() + 2.0
        while not ran and time.monotonic() < deadline:
            os.sched_yield()
    finally:
        os.sched_setaffinity(0, own)
        sys.setswitchinterval(interval)
        thread.join(10)
    assert ran and ran[0] < deadline, "the other thread could not take the GIL while this one yielded"


class _Worker:
    """A thread that runs the calls it is given, one at a time, and hands back their results."""

    def __init__(self):
        self._calls, self._results = queue.Queue(), queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for call in iter(self._calls.get, None):
            self._results.put(call())

    def do(self, call):
        self._calls.put(call)
        return self._results.get(timeout=10)

    def stop(self):
        self._calls.put(None)
        self.thread.join(10)

    @property
    def policy(self):
        return os.sched_getscheduler(self.thread.native_id)


def test_a_reader_runs_as_a_batch_thread_while_it_has_a_backlog_on_the_shared_cpu(monkeypatch):
    """SCHED_BATCH while a pinned reader has a backlog, the default policy once it keeps up or
    while it is not pinned; a reader started on a batch one (whose policy it inherited) starts
    as a normal thread; a reader of another policy (here SCHED_IDLE) keeps it."""
    pinned = [False]
    monkeypatch.setattr(cpu_sharing.CPU_SHARING, "pinned", lambda: pinned[0])
    reader = _Worker()
    workers = [reader]
    try:
        policy = reader.do(cpu_sharing.ReaderPolicy)
        reader.do(policy.backlog)
        assert reader.policy == os.SCHED_OTHER, "not pinned: a normal thread"
        pinned[0] = True
        reader.do(policy.backlog)
        assert reader.policy == os.SCHED_BATCH
        started = reader.do(_Worker)  # started on a batch reader: its CPU and its policy
        workers.append(started)
        assert started.policy == os.SCHED_BATCH
        started.do(cpu_sharing.ReaderPolicy)
        assert started.policy == os.SCHED_OTHER, "a reader starts as a normal thread"
        reader.do(policy.keeping_up)
        assert reader.policy == os.SCHED_OTHER
    finally:
        for worker in workers:
            worker.stop()
    changes = []
    monkeypatch.setattr(os, "sched_getscheduler", lambda pid: os.SCHED_IDLE)  # (an idle thread runs late)
    monkeypatch.setattr(os, "sched_setscheduler", lambda *args: changes.append(args))
    idle = cpu_sharing.ReaderPolicy()
    idle.backlog()
    idle.keeping_up()
    assert changes == [], "a policy other than the default is left alone"
