"""What a new user sees: failures that carry their reason, clear refusals, visible callback errors."""
import logging
import subprocess
import sys
import textwrap

import pytest

import bfxsync
from bfxsync import errors

from conftest import FAST, wait_until


def test_wait_timeouts_name_the_last_connection_failure():
    client = bfxsync.Client("ws://127.0.0.1:9", FAST).start()  # nothing listens there
    try:
        book = client.subscribe_book("tBTCUSD")
        assert wait_until(lambda: client.stats()["dials"] >= 1)
        with pytest.raises(errors.BfxTimeoutError, match="last connection failure: connect to 127.0.0.1:9 failed"):
            book.wait_synced(0.3)
        with pytest.raises(errors.BfxTimeoutError, match="last connection failure"):
            book.wait_subscribed(0.1)
    finally:
        client.close()


def test_waiting_on_an_unsubscribed_handle_says_so(emulator, make_client):
    client = make_client(emulator.url)
    ticker = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
    ticker.unsubscribe()
    with pytest.raises(errors.SubscriptionClosedError) as caught:
        ticker.wait_subscribed(1)
    assert "server error" not in str(caught.value) and "unsubscribed" in str(caught.value)


def test_trades_options_conflict_is_refused(emulator, make_client):
    client = make_client(emulator.url)
    plain = client.subscribe_trades("tBTCUSD")
    assert client.subscribe_trades("tBTCUSD") is plain
    with pytest.raises(ValueError, match="execution_updates=False"):
        client.subscribe_trades("tBTCUSD", execution_updates=True)


@pytest.mark.parametrize("length", [25.5, 25.0, True, "25.5"])
def test_book_length_must_be_a_whole_number(length):
    with pytest.raises(ValueError, match="invalid length"):
        bfxsync.BookSpec("tBTCUSD", "P0", "F0", length)


def test_callbacks_can_be_removed(emulator, make_client):
    client = make_client(emulator.url)
    seen, per_sub = [], []
    client.on_ticker(seen.append)
    ticker = client.subscribe_ticker("tBTCUSD", on_data=per_sub.append).wait_subscribed(5)
    assert wait_until(lambda: seen and per_sub)
    assert client.remove_callback(seen.append) is False  # a new bound method: not the registered object
    handler = seen.append
    client.on_ticker(handler)
    assert client.remove_callback(handler) and ticker.remove_callback(per_sub.append) is False


def test_a_maintenance_cycle_logs_no_warning(emulator, make_client, caplog):
    """Books go unsynced in maintenance; the cs frames meanwhile are expected, not warned about."""
    client = make_client(emulator.url)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    caplog.set_level(logging.INFO, logger="bfxsync")
    emulator.start_maintenance()
    assert wait_until(lambda: client.maintenance and not book.synced)
    assert wait_until(lambda: book.checks_skipped > 0, 5)
    emulator.end_maintenance()
    book.wait_synced(10)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    assert client.stats()["checksum_unsynced"] == 0


_RAISING_CALLBACK = textwrap.dedent("""
    import bfxsync, threading
    from bfxsync.emulator import Emulator
    with Emulator(rate=100.0) as emu, bfxsync.Client(emu.url) as client:
        calls = []
        twenty = threading.Event()
        def broken(message):
            calls.append(1)
            if len(calls) >= 20:
                twenty.set()
            raise ValueError("boom")
        client.subscribe_ticker("tBTCUSD", on_data=broken).wait_subscribed(10)
        twenty.wait(10)
        print("raised", len(calls), "times; counted", client.stats()["callback_errors"])
""")


def test_a_raising_callback_is_visible_once_without_any_logging_set_up():
    """With no logging configured the first traceback still reaches stderr; later raises are only counted."""
    done = subprocess.run([sys.executable, "-c", _RAISING_CALLBACK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Traceback") == 1 and "ValueError: boom" in done.stderr, done.stderr
    assert "callback" in done.stderr and "raised" in done.stdout


@pytest.mark.callback_errors_expected
def test_raising_callback_logs_one_traceback_then_counts(emulator, make_client, caplog):
    client = make_client(emulator.url)

    def broken(message):
        raise ValueError("boom")

    caplog.set_level(logging.DEBUG, logger="bfxsync")
    client.subscribe_ticker("tBTCUSD", on_data=broken)
    assert wait_until(lambda: client.stats()["callback_errors"] >= 10)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1


def test_close_from_a_callback_then_run_forever_returns_after_the_threads(emulator):
    client = bfxsync.Client(emulator.url, FAST).start()
    client.subscribe_ticker("tBTCUSD", on_data=lambda message: client.close())
    client.run_forever(timeout=10)
    assert client.closed and not any(t.is_alive() for t in client.threads())


def test_on_data_given_to_subscribe_sees_the_snapshot(emulator, make_client):
    """The handler is attached before the request goes out, so the first message it gets is the snapshot."""
    client = make_client(emulator.url)
    client.wait_connected(5)
    firsts = []
    for symbol in ("tBTCUSD", "tETHUSD", "fUSD"):
        seen = []
        client.subscribe_book(symbol, on_data=seen.append)
        firsts.append(seen)
    assert wait_until(lambda: all(firsts), 10)
    assert all(seen[0].snapshot for seen in firsts)
