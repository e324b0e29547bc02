"""Shared fixtures: a local emulator per test (port 0) and clients bound to it, closed in finally."""
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


def book_matches(emu, sub):
    """True when the client's book equals the emulator's current view, level by level."""
    bids, asks = emu.book_view(sub.spec.symbol, sub.spec.prec, sub.spec.len)
    snap = sub.snapshot()
    return snap.synced and snap.checksum == emu.book_checksum(sub.spec.symbol, sub.spec.prec, sub.spec.len) \
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
    prefixes = ("bfxsync-reader-", "bfxsync-scheduler-", "bfxsync-dispatch-", "bfxsync-recorder-")
    return [t for t in threading.enumerate() if t.name.startswith(prefixes)]


def pytest_configure(config):
    config.addinivalue_line("markers", "callback_errors_expected: the test makes a callback raise on purpose")
