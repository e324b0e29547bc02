"""A client belongs to its process: after a real os.fork(), the child's calls fail at once and its
close() leaves the parent's connections alone (the parent sees no drop, and data keeps flowing)."""
import json
import os
import select
import signal
import time
import warnings
from decimal import Decimal

import bfxsync
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET

from conftest import FAST, wait_until

#: Every call in the child must fail faster than this: far below the 30 s the waits in the child are
#: given (a wait that blocked would also outlive ``in_child``'s 20 s and fail the test on its exit status),
#: and loose enough for a loaded 2-core machine.
PROMPT = 2.0


def in_child(work, timeout=20.0):
    """Fork; the child runs ``work()`` and reports its JSON result through a pipe, then ``os._exit``s.

    Returns ``(result, exit status)``. The child is always reaped (killed if it overstays).
    """
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking a process that has threads
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_fd)
            payload = json.dumps(work())
            code = 0
        except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the test
            payload = json.dumps({"crash": repr(err)})
        finally:
            try:
                os.write(write_fd, payload.encode())
            finally:
                os._exit(code)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        status = reap(pid, deadline)
    data = b"".join(chunks)
    assert data, "the child reported nothing"
    return json.loads(data), status


def reap(pid, deadline):
    """Wait for the child until ``deadline``; kill it if it is still there. Returns its exit code."""
    while time.monotonic() < deadline + 1.0:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the child did not exit in time (killed)")


def attempt(calls):
    """In the child: run each call; how it ended and how long it took."""
    outcome = {}
    for name, call in calls.items():
        started = time.monotonic()
        try:
            call()
            ended = "returned"
        except bfxsync.ForkedClientError as err:
            ended = "ForkedClientError: " + str(err)
        except Exception as err:  # noqa: BLE001 - reported as it is
            ended = repr(err)
        outcome[name] = [ended, time.monotonic() - started]
    return outcome


def test_a_forked_child_cannot_use_the_parents_client(emulator, make_client):
    """In the child every call raises ForkedClientError in under 0.5 s, close() is prompt and sends nothing;
    the parent's connection sees no drop (dials and reconnects unchanged) and its data keeps flowing."""
    client = make_client(emulator.url)
    received = []
    ticker = client.subscribe_ticker("tBTCUSD", on_data=received.append).wait_subscribed(5)
    book = client.subscribe_book("tETHUSD").wait_synced(5)
    dropped = []
    client.on_disconnected(dropped.append)
    assert wait_until(lambda: len(received) >= 2)
    before = client.stats()

    def child():
        outcome = attempt({
            "subscribe_trades": lambda: client.subscribe_trades("tBTCUSD"),
            "wait_subscribed": lambda: ticker.wait_subscribed(30),
            "wait_synced": lambda: book.wait_synced(30),
            "handle.unsubscribe": ticker.unsubscribe,
            "wait_connected": lambda: client.wait_connected(30),
            "ping": lambda: client.ping(30),
            "run_forever": lambda: client.run_forever(timeout=30),
            "stats": client.stats,
            "connected": lambda: client.connected,
            "start": client.start,
        })
        started = time.monotonic()
        client.close()
        client.close()  # idempotent there too
        outcome["close"] = time.monotonic() - started
        outcome["repr"] = repr(client)
        return outcome

    outcome, status = in_child(child)
    assert status == 0, outcome
    closing = outcome.pop("close")
    text = outcome.pop("repr")
    for name, (ended, took) in outcome.items():
        assert ended.startswith("ForkedClientError"), (name, ended)
        assert took < PROMPT, (name, took)
    assert f"created in process {os.getpid()}" in outcome["stats"][0] and "Create a new Client" in outcome["stats"][0]
    assert closing < PROMPT and "unusable in this fork" in text

    # The parent: the same connection, no drop, data still flowing, the subscription intact.
    seen = len(received)
    assert wait_until(lambda: len(received) >= seen + 3, 10)
    assert client.ping(5) >= 0
    after = client.stats()
    assert (after["dials"], after["reconnects"], after["disconnects"]) == \
        (before["dials"], before["reconnects"], before["disconnects"])
    assert not dropped and ticker.active and book.synced


def test_a_forked_child_cannot_trade_on_the_parents_account(emulator, make_client):
    """An authenticated client with the dead-man switch on: the child's order calls fail at once and its
    close() does not drop the account connection, so the parent's open order stays open."""
    client = make_client(emulator.url, FAST, api_key=DEMO_KEY, api_secret=DEMO_SECRET, dms=True)
    client.wait_authenticated(10)
    order = client.account.submit_order("tBTCUSD", Decimal("0.01"), Decimal("1000")).result(10)
    before = client.stats()

    def child():
        outcome = attempt({
            "submit_order": lambda: client.account.submit_order("tBTCUSD", Decimal("0.01"), Decimal("1001")),
            "cancel_order": lambda: client.account.cancel_order(order.id),
            "wait_authenticated": lambda: client.wait_authenticated(30),
        })
        client.close()
        return outcome

    outcome, status = in_child(child)
    assert status == 0, outcome
    for name, (ended, took) in outcome.items():
        assert ended.startswith("ForkedClientError") and took < PROMPT, (name, ended, took)
    assert order.id in client.account.snapshot().orders
    # Still open at the exchange (a dropped account connection with dms on would have cancelled it),
    # and the parent's account connection still carries inputs.
    client.account.cancel_order(order.id).result(10)
    after = client.stats()
    assert (after["dials"], after["reconnects"]) == (before["dials"], before["reconnects"])
