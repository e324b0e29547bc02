"""Shared fixtures: a local emulator per test (port 0) and clients bound to it, closed in finally."""
import gc
import os
import threading
import time

# Debug mode: every write of a link's state checks that the writer holds the link's lock
# (bfxsync/_engine/ownership.py); read when bfxsync is imported, so set before the import.
os.environ.setdefault("BFXSYNC_CHECK_OWNERSHIP", "1")

import pytest

import bfxsync
from bfxsync.emulator import Emulator

#: Fast reconnects and a short silence limit, so fault tests finish in seconds.
FAST = bfxsync.Config(
    backoff=bfxsync.Backoff(initial=0.05, factor=2.0, maximum=0.5, jitter=0.2),
    heartbeat_timeout=5.0,
    keepalive_interval=2.0,
    max_connects_per_minute=1000,
    connect_timeout=5.0,
)


@pytest.fixture
def emulator():
    """A running emulator with a quick market and heartbeats every second."""
    with Emulator(seed=7, rate=40.0, heartbeat_interval=1.0) as emu:
        yield emu


@pytest.fixture
def make_client(request):
    """Build started clients for a URL; every one is closed after the test and must not have raised in a callback."""
    clients = []

    def make(url, config=FAST, **options):
        client = bfxsync.Client(url, config, **options)
        clients.append(client)
        return client.start()

    yield make
    for client in clients:
        client.close()
    if "callback_errors_expected" not in request.keywords:
        for client in clients:
            assert client.stats()["callback_errors"] == 0, "a user callback raised during the test"


@pytest.fixture(autouse=True)
def no_ownership_violation():
    """Fail a test during which any thread wrote a link's state without holding the link's lock."""
    from bfxsync._engine import ownership

    before = len(ownership.violations)
    yield
    assert ownership.violations[before:] == [], "a thread wrote a link's state without its lock"


def wait_until(predicate, timeout=10.0, interval=0.02):
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def cpu_seconds(action, tries=3):
    """The least CPU time (this thread's) ``action()`` took in ``tries`` runs, with the garbage collector off.

    For "refused at once" checks: CPU time does not stretch on a busy machine, the collector
    off keeps a full collection of the whole suite's objects (0.1 s seen) out of it, and the
    least of a few runs leaves out what is left (page faults, a signal). An action that does
    the expensive work it should refuse costs 1 s or more every time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        costs = []
        for _ in range(tries):
            started = time.thread_time()
            action()
            costs.append(time.thread_time() - started)
        return min(costs)
    finally:
        if enabled:
            gc.enable()


def book_matches(emu, sub):
    """True when the client's book equals the emulator's current view, level by level."""
    bids, asks = emu.book_view(sub.spec.symbol, sub.spec.prec, sub.spec.length)
    snap = sub.snapshot()
    return snap.synced and snap.checksum == emu.book_checksum(sub.spec.symbol, sub.spec.prec, sub.spec.length) \
        and len(snap.bids) == len(bids) and len(snap.asks) == len(asks)


def settle_books(emu, subs, timeout=10.0):
    """Pause the market and wait until every book equals the emulator's; resumes the market after."""
    emu.pause()
    try:
        return wait_until(lambda: all(book_matches(emu, s) for s in subs), timeout)
    finally:
        emu.resume()


def bfxsync_threads():
    """Threads started by bfxsync clients."""
    prefixes = ("bfxsync-reader-", "bfxsync-scheduler-", "bfxsync-callbacks-", "bfxsync-recorder-")
    return [t for t in threading.enumerate() if t.name.startswith(prefixes)]


def pytest_configure(config):
    config.addinivalue_line("markers", "callback_errors_expected: the test makes a callback raise on purpose")


def _child_processes():
    """(pid, command, state) of this process's children, zombies included (read from /proc; Linux)."""
    children = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if fields[1] == me:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
                children.append((int(entry), command[:120], fields[0]))
        except (OSError, IndexError):
            continue  # ended while we looked
    return children


#: How long a test's threads and processes get to end after it returns (closing is asynchronous).
LEFTOVER_GRACE = 5.0


def _uses_shared_fixtures(request):
    """True when the test uses a module- or class-scoped fixture of this suite (a shared emulator
    whose clients are processes started by the fixture)."""
    definitions = request.node._fixtureinfo.name2fixturedefs.values()
    return any(d[-1].scope != "function" and d[-1].baseid for d in definitions)


def _serves_a_connection(thread):
    """The emulator's threads for one client connection (websockets' handler and receiver, which the
    emulator names, and its own writer). By name: before Python 3.10 a name does not say the function."""
    return thread.name.startswith(("bfxsync-emulator-connection-", "bfxsync-emulator-receiver-",
                                   "bfxsync-emulator-writer-"))


@pytest.fixture(autouse=True)
def leaves_nothing_running(request):
    """Every test ends every thread and child process it started, pass or fail.

    Work left behind competes for the CPU with later tests (a timing test failed in CI
    for that reason), so a leftover fails the test that left it. What broader fixtures
    (module or class scope) started is theirs to end, including the server side of
    connections their processes open during the test.
    """
    threads_before = set(threading.enumerate())
    processes_before = {pid for pid, _, _ in _child_processes()}
    yield
    if not os.path.isdir("/proc"):
        return

    shared = _uses_shared_fixtures(request)

    def leftovers():
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()
                   and not (shared and _serves_a_connection(t))]
        processes = [p for p in _child_processes() if p[0] not in processes_before]
        return threads, processes

    wait_until(lambda: leftovers() == ([], []), LEFTOVER_GRACE, interval=0.05)
    threads, processes = leftovers()
    assert not threads and not processes, (
        f"the test left work running: threads {[t.name for t in threads]}, processes {processes}")
