"""Lifecycle faults found by trying bfxsync as a new user would; each was a bug once."""
import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
import websocket

import bfxsync
from bfxsync import errors
from bfxsync.emulator import Emulator

from conftest import FAST, wait_until


class SilentServer:
    """A TCP server that accepts and then misbehaves: never answers (``mode="mute"``), or completes
    the WebSocket upgrade, sends ``info`` and then ignores everything, close frames included."""

    def __init__(self, mode):
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            if self.mode == "upgrade":
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key")][0]
                accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                info = b'{"event":"info","version":2,"platform":{"status":1}}'
                conn.sendall(bytes([0x81, len(info)]) + info)

    def close(self):
        # shutdown() wakes the accept() of the serving thread (close() alone does not on Linux).
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()


@pytest.mark.parametrize("mode,scheme", [("mute", "ws"), ("mute", "wss"), ("upgrade", "ws")])
def test_close_is_prompt_whatever_the_server_does(mode, scheme):
    """close() ends and joins the reader promptly when the dial hangs in the upgrade or the TLS
    handshake, or when the server ignores the close frame."""
    server = SilentServer(mode)
    try:
        client = bfxsync.Client(f"{scheme}://127.0.0.1:{server.port}/ws/2", FAST).start()
        assert wait_until(lambda: server.accepted, 5)
        if mode == "upgrade":
            client.wait_connected(5)
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 2.0
        assert not any(t.is_alive() for t in client.threads())
    finally:
        server.close()


def test_two_threads_closing_both_return_after_the_join():
    server = SilentServer("upgrade")
    try:
        client = bfxsync.Client(f"ws://127.0.0.1:{server.port}/ws/2", FAST).start()
        client.wait_connected(5)
        alive_after = []

        def close():
            client.close()
            alive_after.append(any(t.is_alive() for t in client.threads()))

        closers = [threading.Thread(target=close) for _ in range(2)]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(5)
        assert alive_after == [False, False]
    finally:
        server.close()


def test_fatal_handshake_ends_the_client():
    """A server speaking API version 3: wait_connected raises, the client is closed, run_forever returns."""
    with Emulator(version=3) as emu:
        client = bfxsync.Client(emu.url, FAST).start()
        with pytest.raises(errors.VersionMismatchError):
            client.wait_connected(5)
        assert client.closed and isinstance(client.fatal_error, errors.VersionMismatchError)
        with pytest.raises(errors.VersionMismatchError):
            client.run_forever(timeout=5)
        assert not any(t.is_alive() for t in client.threads())


def test_thread_names_are_unique_across_clients(emulator, make_client):
    """Two clients in one process never share a thread name (readers, schedulers: numbered per process)."""
    first = make_client(emulator.url)
    second = make_client(emulator.url)
    first.wait_connected(5)
    second.wait_connected(5)
    names = [t.name for t in first.threads() + second.threads()]
    assert len(names) == len(set(names)) == 4, names
    assert sum(name.startswith("bfxsync-reader-") for name in names) == 2


def test_a_free_threaded_build_is_warned_about(monkeypatch):
    """bfxsync relies on the GIL: with it disabled (a free-threaded build) the import warns clearly."""
    from bfxsync._engine import runtime

    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    with pytest.warns(RuntimeWarning, match="GIL"):
        runtime.warn_without_gil()
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime.warn_without_gil()  # with the GIL: silent


def test_global_set_reconnect_does_not_hide_drops(emulator, make_client):
    """websocket.setReconnect() is process-wide; the client still sees every drop and replays."""
    set_reconnect = getattr(websocket, "set_reconnect", None) or websocket._app.setReconnect  # 1.6 spells it so
    set_reconnect(1)
    try:
        client = make_client(emulator.url)
        dropped = []
        client.on_disconnected(dropped.append)
        ticker = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
        emulator.drop_connections()
        assert wait_until(lambda: dropped and client.stats()["reconnects"] == 1)
        assert ticker.wait_subscribed(5).active
    finally:
        set_reconnect(0)


@pytest.mark.callback_errors_expected
def test_system_exit_in_a_callback_ends_the_client_visibly(emulator, make_client):
    client = make_client(emulator.url)

    def bail(message):
        raise SystemExit(3)

    client.subscribe_ticker("tBTCUSD", on_data=bail)
    assert wait_until(lambda: client.closed, 10)
    assert "SystemExit" in str(client.fatal_error)
    assert wait_until(lambda: not any(t.is_alive() for t in client.threads()), 5)
    with pytest.raises(errors.BfxError):
        client.run_forever(timeout=1)


def test_reconnect_off_ends_the_client_when_the_connection_drops(emulator):
    with bfxsync.Client(emulator.url, FAST, reconnect=False) as client:
        client.wait_connected(5)
        emulator.drop_connections()
        assert wait_until(lambda: client.closed, 5)
        with pytest.raises(errors.NotConnectedError, match="reconnect is off"):
            client.wait_connected(1)


@pytest.mark.callback_errors_expected
def test_blocking_calls_refused_in_callbacks(emulator, make_client):
    """run_forever, wait_* and ping from any bfxsync thread raise CallbackThreadError, and the stream goes on."""
    client = make_client(emulator.url)
    refused = []

    def misuse(message):
        for call in (client.run_forever, client.wait_connected, client.ping, message.subscription.wait_subscribed):
            try:
                call()
            except errors.CallbackThreadError as err:
                refused.append(err)
        message.subscription.remove_callback(misuse)

    client.subscribe_ticker("tBTCUSD", on_data=misuse)
    assert wait_until(lambda: len(refused) == 4)
    assert isinstance(refused[0], RuntimeError) and not client.closed and client.ping(5) >= 0


def test_internal_errors_are_not_counted_as_bad_input(emulator, make_client, monkeypatch):
    """Decode failures are bad input ('malformed'); a bug of ours is 'internal', logged once with its traceback."""
    client = make_client(emulator.url)
    ticker = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)

    def broken(*args):
        raise KeyError("our bug")

    monkeypatch.setattr(ticker, "_on_payload", broken)
    assert wait_until(lambda: client.stats().get("internal", 0) >= 1)
    link = client._pool.links()[0]
    link.on_frame("[" * 100_000)  # deeper than json can nest: bad input, not a bug
    stats = client.stats()
    assert stats.get("malformed") == 1 and stats.get("internal", 0) >= 1


_DOUBLE_CTRL_C = textwrap.dedent("""
    import signal
    # First: the test run's parent may ignore SIGINT (nohup, a background job), and children inherit that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import threading
    import time
    import bfxsync
    from bfxsync.emulator import Emulator
    returned = False
    try:
        with Emulator(rate=50.0) as emu:
            client = bfxsync.Client(emu.url).start()
            client.subscribe_ticker("tBTCUSD").wait_subscribed(10)

            def announce():  # "ready" once run_forever has taken over Ctrl-C (no event says so: polled, bounded)
                deadline = time.monotonic() + 10
                while signal.getsignal(signal.SIGINT) is signal.default_int_handler and time.monotonic() < deadline:
                    time.sleep(0.001)
                print("ready", flush=True)

            threading.Thread(target=announce, daemon=True).start()
            client.run_forever()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late second interrupt is not run_forever's
            returned = True
            print("closed" if client.closed and not any(t.is_alive() for t in client.threads()) else "LEAK")
    except KeyboardInterrupt:  # the second interrupt may land after run_forever, in this script's own code
        print("late interrupt" if returned else "ESCAPED run_forever")
""")


def test_double_ctrl_c_closes_quietly():
    """Two SIGINTs in a row (an impatient Ctrl-C; `timeout -s INT` sends two) close the client
    quietly: no hang, no traceback."""
    runs = []
    try:
        for gap in (0.0, 0.001, 0.005, 0.02, 0.05, 0.1):
            runs.append((gap, subprocess.Popen([sys.executable, "-c", _DOUBLE_CTRL_C], stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True,
                                               env={**os.environ, "PYTHONUNBUFFERED": "1"})))
        for _, proc in runs:
            assert proc.stdout.readline().strip() == "ready"
        for gap, proc in runs:
            proc.send_signal(signal.SIGINT)
            time.sleep(gap)  # the gap between the two interrupts is what varies
            proc.send_signal(signal.SIGINT)
        for gap, proc in runs:
            out, err = proc.communicate(timeout=15)
            assert "Traceback" not in err and "ESCAPED" not in out and "LEAK" not in out, (gap, out, err)
            # -2: a second interrupt that arrived after the script ended, during interpreter shutdown.
            assert proc.returncode in (0, -signal.SIGINT), (gap, proc.returncode, out, err)
            assert "closed" in out or "late interrupt" in out, (gap, out, err)
    finally:  # pass or fail, no child is left running
        for _, proc in runs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
