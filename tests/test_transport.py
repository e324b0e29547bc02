"""The transport against a real 127.0.0.1 server that writes hand-made frames.

The server does the HTTP upgrade itself, then runs a per-test script that writes raw
frame bytes (split, fragmented, masked, oversized, ...) and reads what the client sends
back (pongs, close frames).

Every test runs twice (the ``framing`` fixture): through the batch framer, and through the
fallback that reads with websocket-client's stock reader, as when a websocket-client
release lacks an internal the batch framer needs.
"""
import base64
import hashlib
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc

import attrs
import pytest
import websocket
from test_framing import STREAM, frame

import bfxsync
from bfxsync._engine import cpu_sharing, transport, turns
from bfxsync._engine.transport import WebSocketAppTransport

from conftest import FAST, settle_books, wait_until

INFO = frame(b'{"event":"info","version":2,"platform":{"status":1}}')


@pytest.fixture(params=["batch", "stock"], autouse=True)
def framing(request, monkeypatch):
    """Which reader the transport uses: the batch framer, or websocket-client's stock reader (the fallback).

    "batch" requires the internals the batch framer needs: with a websocket-client release
    that lacks one, these tests fail and say which (the fallback still runs under "stock").
    """
    if request.param == "batch":
        missing = transport.missing_internals()
        assert missing is None, f"websocket-client {websocket.__version__}: {missing}"
        monkeypatch.setattr(transport, "FALLBACK_REASON", None)
    else:
        monkeypatch.setattr(transport, "FALLBACK_REASON", "forced by the test")
    return request.param


class RawServer:
    """A WebSocket server on port 0 that hands each accepted, upgraded socket to ``script(conn, n)``."""

    def __init__(self, script):
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/ws/2"
        self.connections = 0
        self.errors = []
        self._conns = []
        self._stop = threading.Event()
        self._threads = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self._accepter.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._accepter.join(5)  # no new connection after this
        for conn in self._conns:  # wakes scripts still reading from a client that is gone
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        self.listener.close()

    def _accept(self):
        self.listener.settimeout(0.05)  # closing a listener does not wake accept(): poll the stop event
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn, number):
        with conn:
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.settimeout(10)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key")][0]
                accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                self.script(conn, number)
            except (OSError, EOFError) as err:  # the client may hang up at any point of a script
                self.errors.append(err)


def read_client_frame(conn, buf=None):
    """One (masked) client frame: (opcode, payload); (None, b'') at EOF."""
    buf = bytearray() if buf is None else buf

    def need(count):
        while len(buf) < count:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError
            buf.extend(chunk)
    try:
        need(2)
        size, offset = buf[1] & 0x7F, 2
        if size == 126:
            need(4)
            size, offset = struct.unpack("!H", bytes(buf[2:4]))[0], 4
        elif size == 127:
            need(10)
            size, offset = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
        need(offset + 4 + size)
    except EOFError:
        return None, b""
    mask = bytes(buf[offset:offset + 4])
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[offset + 4:offset + 4 + size]))
    opcode = buf[0] & 0x0F
    del buf[:offset + 4 + size]
    return opcode, payload


def read_until(conn, opcode):
    """Client frames until one with ``opcode``; returns its payload (None at EOF)."""
    buf = bytearray()
    while True:
        got, payload = read_client_frame(conn, buf)
        if got is None:
            return None
        if got == opcode:
            return payload


class Listener:
    """A TransportListener that records everything, with an event for the end."""

    def __init__(self):
        self.messages, self.errors, self.controls = [], [], 0
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.close_args = None

    def on_open(self):
        self.opened.set()

    def on_message(self, data):
        self.messages.append(data)

    def on_control(self):
        self.controls += 1

    def on_error(self, error):
        self.errors.append(error)

    def on_close(self, code, reason):
        self.close_args = (code, reason)
        self.closed.set()


class _FirstReadSocket(socket.socket):
    """A socket whose first ``recv_into`` returns exactly ``first`` bytes: a frame stream split
    at a chosen offset, whatever TCP does (the handshake is read with ``recv``, untouched)."""

    first = 0
    rooms = None  # a list: the room every recv_into offered

    def recv_into(self, buffer, nbytes=0, flags=0):
        if self.rooms is not None:
            self.rooms.append(nbytes or len(buffer))
        if self.first:
            count = min(self.first, nbytes or len(buffer))  # the cut may be past a small buffer's end
            self.first -= count
            return super().recv_into(buffer, count, socket.MSG_WAITALL)
        return super().recv_into(buffer, nbytes, flags)


def run_transport(server, first=0, rooms=None, listener=None, **options):
    """Run a transport to ``server`` on this thread until the socket ends; returns its listener.
    ``rooms``: a list to append the room each ``recv_into`` offered."""
    sock = _FirstReadSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the connection does
    sock.first = first
    sock.rooms = rooms
    listener = listener or Listener()
    try:
        WebSocketAppTransport(server.url, **options).run(sock, listener)
    finally:
        sock.close()
    return listener


WHOLE = b"".join(data for data, _ in STREAM)
MESSAGES = [payload for _, events in STREAM for kind, payload in events if kind == "message"]


class TestTransport:
    def test_split_at_every_byte_offset(self, framing):
        """The same frame stream, its first read cut at every offset, gives the same messages and close.
        (The stock reader reads with recv, which the cut does not touch: a few cuts are enough there.)"""
        pongs = []

        def script(conn, number):
            conn.sendall(WHOLE)
            pongs.append(read_until(conn, 0x8))  # the client's answer to our close frame

        small = WHOLE.replace(frame(b"y" * 70_000), frame(b"y" * 300))
        expected = [m if m != b"y" * 70_000 else b"y" * 300 for m in MESSAGES]
        with RawServer(lambda conn, n: (conn.sendall(small), read_until(conn, 0x8))) as server:
            for cut in range(1, len(small)) if framing == "batch" else (1, 9):
                listener = run_transport(server, first=cut, read_size=64)
                assert listener.messages == expected, cut
                assert listener.close_args == (4001, "bye")
                assert listener.controls == 3  # two pings and a pong
        with RawServer(script) as server:
            for cut in (1, 2, 9, 300, 70_000, len(WHOLE) - 1):
                listener = run_transport(server, first=cut)
                assert listener.messages == MESSAGES and listener.close_args == (4001, "bye")
        # The batch framer echoes the code; websocket-client's reader answers every close with 1000.
        echoed = 4001 if framing == "batch" else 1000
        assert pongs and all(p == struct.pack("!H", echoed) for p in pongs)

    def test_ping_inside_fragmented_message_is_answered(self):
        """A ping between fragments is answered with a pong carrying its payload; the message arrives whole."""
        got = {}

        def script(conn, number):
            conn.sendall(frame(b'[1,', fin=False) + frame(b"are you there", opcode=0x9))
            got["pong"] = read_until(conn, 0xA)
            conn.sendall(frame(b'"hb"]', opcode=0x0) + frame(struct.pack("!H", 1000), opcode=0x8))
            read_until(conn, 0x8)

        with RawServer(script) as server:
            listener = run_transport(server)
        assert got["pong"] == b"are you there"
        assert listener.messages == [b'[1,"hb"]'] and listener.close_args == (1000, "")

    def test_frame_larger_than_a_read_and_many_small_ones(self):
        """A 1 MiB frame (many reads' worth) between thousands of small ones arrives intact."""
        big = b"[" + b"7," * 524_287 + b"7]"
        small = [b"[%d]" % i for i in range(5000)]
        stream = b"".join(frame(m) for m in small) + frame(big) + b"".join(frame(m) for m in small)

        with RawServer(lambda conn, n: (conn.sendall(stream + frame(b"", opcode=0x8)), read_until(conn, 0x8))) \
                as server:
            listener = run_transport(server)
        assert listener.messages == small + [big] + small
        assert listener.close_args == (None, "")

    def test_backlog_gives_turns_only_to_a_reader_that_keeps_up(self, framing, monkeypatch):
        """A reader with a backlog pauses now and then while another reader of the process keeps up
        (blocked in recv here), never when it is alone; alone it reads wide, beside a reader that
        keeps up never more than ``read_size``; every message arrives, in order."""
        given, alone_rooms, beside_rooms = [], [], []
        monkeypatch.setattr(transport, "READERS", turns.Readers())  # this test's readers only
        monkeypatch.setattr(transport, "give_turn", lambda one_cpu: (given.append(1), turns.give_turn(one_cpu)))
        messages = [b"[%d,[30000.5,2,-0.25]]" % i for i in range(100_000)]  # 2.5 MB: far more than a read
        stream = b"".join(frame(m) for m in messages) + frame(b"", opcode=0x8)
        with RawServer(lambda conn, n: (conn.sendall(stream), read_until(conn, 0x8))) as server:
            listener = run_transport(server, rooms=alone_rooms)
        assert listener.messages == messages and not given
        if framing == "batch":
            assert max(alone_rooms) > 4096  # nobody to give a turn to: wide reads (16 KiB less a partial frame)

        idle_started, release = threading.Event(), threading.Event()

        def idle_script(conn, number):
            idle_started.set()
            release.wait(30)
            conn.sendall(frame(b"", opcode=0x8))
            read_until(conn, 0x8)

        with RawServer(idle_script) as idle, \
                RawServer(lambda conn, n: (conn.sendall(stream), read_until(conn, 0x8))) as busy:
            beside = threading.Thread(target=run_transport, args=(idle,), daemon=True)
            beside.start()
            try:
                assert idle_started.wait(10)
                assert wait_until(lambda: transport.READERS.others_keep_up() or framing == "stock", 10)
                listener = run_transport(busy, rooms=beside_rooms)
            finally:
                release.set()
                beside.join(10)
        assert listener.messages == messages
        if framing == "batch":
            assert given  # the server wrote far faster than one reader parses: a backlog, and turns
            assert max(beside_rooms) <= 4096  # a reader keeps up: every batch narrow
        else:
            assert not given  # websocket-client's stock reader reads frame by frame and gives none

    @pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="scheduling policies are Linux's")
    def test_a_pinned_reader_runs_as_a_batch_thread_while_it_has_a_backlog(self, framing, monkeypatch):
        """On the shared CPU a reader with a backlog is a SCHED_BATCH thread (woken, it does not
        preempt the reader running), and a normal one again once it keeps up."""
        monkeypatch.setattr(cpu_sharing.CPU_SHARING, "pinned", lambda: True)
        messages = [b"[%d,[30000.5,2,-0.25]]" % i for i in range(100_000)]  # 2.5 MB: a backlog
        stream = b"".join(frame(m) for m in messages)
        read_all, seen, ran = threading.Event(), [], []

        class Sampling(Listener):
            def on_message(self, data):
                super().on_message(data)
                count = len(self.messages)
                if count % 10_000 == 0 or count > len(messages):
                    seen.append(os.sched_getscheduler(0))
                if count == len(messages):
                    read_all.set()

        def script(conn, number):
            conn.sendall(stream)
            assert read_all.wait(30)
            conn.sendall(frame(b'[0,"last"]') + frame(b"", opcode=0x8))  # alone in its read
            read_until(conn, 0x8)

        with RawServer(script) as server:  # on a thread of its own: the policy is that thread's
            reader = threading.Thread(target=lambda: ran.append(run_transport(server, listener=Sampling())))
            reader.start()
            reader.join(60)
        assert ran and ran[0].messages == messages + [b'[0,"last"]']
        if framing == "batch":
            assert os.SCHED_BATCH in seen[:-1], seen
            assert seen[-1] == os.SCHED_OTHER, "keeping up again: a normal thread"
        else:
            assert set(seen) == {os.SCHED_OTHER}  # the stock reader leaves the policy alone

    def test_masked_server_frame_fails_with_1002(self):
        """A masked frame from the server is a protocol error: on_error, close frame 1002, socket ends."""
        got = {}

        def script(conn, number):
            conn.sendall(frame(b"fine") + frame(b"masked", mask=b"abcd") + frame(b"never"))
            got["close"] = read_until(conn, 0x8)

        with RawServer(script) as server:
            listener = run_transport(server)
        assert listener.messages == [b"fine"]
        assert [type(e).__name__ for e in listener.errors] == ["FrameError"]
        assert got["close"][:2] == struct.pack("!H", 1002)

    def test_oversized_header_drops_without_buffering(self, framing):
        """A header claiming 1 GiB ends the session at once: close 1009, and far less than 1 GiB allocated.
        The stock reader sees a frame only once it is whole: there a complete 2 MiB frame is refused."""
        got = {}
        oversized = frame(b"", length=1 << 30) + b"x" * 65536 if framing == "batch" else frame(b"z" * (2 << 20))

        def script(conn, number):
            conn.sendall(frame(b"ok") + oversized)
            got["close"] = read_until(conn, 0x8)

        tracemalloc.start()
        try:
            with RawServer(script) as server:
                listener = run_transport(server, max_frame_size=1 << 20)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert listener.messages == [b"ok"]
        assert listener.errors and listener.errors[0].kind == "oversized_frame"
        assert got["close"][:2] == struct.pack("!H", 1009)
        assert peak < 8 * 1024 * 1024, peak  # the announced 1 GiB was never read nor allocated

    def test_eof_without_close_frame(self):
        """The server vanishing mid-frame is reported as a lost connection, with no close code."""
        with RawServer(lambda conn, n: conn.sendall(frame(b"one") + frame(b"two")[:3])) as server:
            listener = run_transport(server)
        assert listener.messages == [b"one"]
        assert listener.close_args == (None, None)
        assert "lost" in str(listener.errors[0])


class TestThroughTheClient:
    """The same rule breaks seen from a Client: counted in stats(), and the connection redials."""

    @staticmethod
    def scripted(bad):
        """Each connection: info, then ``bad`` on the first connection only; then idle until closed."""

        def script(conn, number):
            conn.sendall(INFO)
            if number == 1:
                conn.sendall(bad)
            read_until(conn, 0x8)

        return script

    def test_masked_frame_counts_and_redials(self, make_client):
        """A masked server frame: counted as protocol_error, connection dropped, redialled and connected."""
        with RawServer(self.scripted(frame(b'{"event":"pong"}', mask=b"\x00\x01\x02\x03"))) as server:
            client = make_client(server.url, FAST)
            assert wait_until(lambda: client.stats()["dials"] >= 2 and client.connected)
            assert client.stats()["protocol_error"] == 1

    def test_invalid_utf8_is_malformed_and_the_stream_goes_on(self, make_client):
        """A text frame that is not UTF-8 is counted as malformed by the link; the connection stays."""
        with RawServer(self.scripted(frame(b'[1,"\xff\xfe"]') + frame(b'{"event":"pong","cid":1}'))) as server:
            client = make_client(server.url, FAST)
            assert wait_until(lambda: client.stats().get("malformed") == 1)
            assert client.connected and client.stats()["dials"] == 1

    def test_oversized_header_counts_and_redials(self, make_client, framing):
        """A 1 GiB header (the stock reader: a whole 70 KB frame) with max_frame_size 64 KiB:
        counted as oversized_frame, redialled."""
        bad = frame(b"", length=1 << 30) + b"x" * 1000 if framing == "batch" else frame(b"z" * 70_000)
        with RawServer(self.scripted(bad)) as server:
            client = make_client(server.url, FAST, max_frame_size=65536)
            assert wait_until(lambda: client.stats()["dials"] >= 2 and client.connected)
            assert client.stats()["oversized_frame"] == 1

    def test_server_close_code_reaches_disconnected(self, make_client):
        """A close frame with a code and reason is reported in the Disconnected event."""
        seen = []
        with RawServer(self.scripted(frame(struct.pack("!H", 4001) + b"going away", opcode=0x8))) as server:
            client = make_client(server.url, FAST)
            client.on_disconnected(seen.append)
            assert wait_until(lambda: seen)
            assert seen[0].code == 4001 and "4001 going away" in seen[0].reason


class TestAServerThatStopsReading:
    """The first connection's server sends ``info`` and then never reads again (its buffers fill).

    Sockets are blocking while a connection reads, so every send bounds its own wait: room
    within ``connect_timeout``, or the connection is dropped and redialled; a single frame
    larger than the room is caught by the scheduler. close() never waits on such a server.
    """

    LIMIT = 1.0  # connect_timeout

    @pytest.fixture
    def server(self):
        release = threading.Event()

        def script(conn, number):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn.sendall(INFO)
            if number == 1:
                release.wait(30)  # reads nothing: what the client sends piles up in the buffers
            else:
                read_until(conn, 0x8)

        with RawServer(script) as server:
            try:
                yield server
            finally:
                release.set()

    def first_link(self, client):
        assert wait_until(lambda: client.connected, 10)
        return client._pool.links()[0]

    def test_small_frames_wait_for_room_then_the_connection_is_redialled(self, make_client, server):
        """64 KiB frames until the socket has no room: that send gives up after connect_timeout, with the reason."""
        client = make_client(server.url, attrs.evolve(FAST, connect_timeout=self.LIMIT))
        connection = self.first_link(client).connection
        frame_text = "x" * 65536
        took = None
        deadline = time.monotonic() + 20
        while took is None and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                connection.send(frame_text)
            except bfxsync.errors.NotConnectedError as err:
                took = time.monotonic() - started
                assert "the server took no data for 1 s" in str(err)
        assert took is not None, "the buffers never filled"
        assert self.LIMIT * 0.9 <= took < self.LIMIT + 2.0
        assert wait_until(lambda: client.stats()["dials"] >= 2 and client.connected, 10)

    def test_one_frame_larger_than_the_room_is_ended_by_the_scheduler(self, make_client, server):
        """A 32 MiB frame passes the wait for room and then blocks: the scheduler drops the socket, which ends it."""
        # No keepalive ping and no silence verdict in the window: only the stalled-send check can end it.
        quiet = attrs.evolve(FAST, connect_timeout=self.LIMIT, keepalive_interval=20.0, heartbeat_timeout=60.0)
        client = make_client(server.url, quiet)
        connection = self.first_link(client).connection
        started = time.monotonic()
        with pytest.raises(bfxsync.errors.NotConnectedError, match="send failed"):
            connection.send("y" * (32 << 20))
        assert time.monotonic() - started < self.LIMIT + 3.0  # connect_timeout, then the next sweep (<= 1 s)
        assert wait_until(lambda: client.stats()["dials"] >= 2 and client.connected, 10)

    def test_close_is_prompt_while_the_server_does_not_read(self, make_client, server):
        """Buffers full and a sender blocked in a large frame: close() neither waits for room nor for the sender."""
        client = make_client(server.url, attrs.evolve(FAST, connect_timeout=30.0))
        connection = self.first_link(client).connection
        sender = threading.Thread(target=lambda: pytest.raises(bfxsync.errors.NotConnectedError, connection.send,
                                                               "z" * (32 << 20)), daemon=True)
        sender.start()
        assert wait_until(lambda: connection.send_stalled(time.monotonic() + 30.0) is not None, 10)
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 3.0  # CLOSE_GRACE and a shutdown, not connect_timeout
        sender.join(5)
        assert not sender.is_alive()


@pytest.mark.parametrize("value", [0, 1023])
def test_max_frame_size_is_validated(value):
    """max_frame_size below 1 KiB is refused when the config is built."""
    import bfxsync
    with pytest.raises(ValueError):
        bfxsync.Config(max_frame_size=value)


class TestFallback:
    """The check of websocket-client's internals, made once at import, and the fallback it chooses."""

    @pytest.fixture(autouse=True)
    def framing(self):
        """Overrides the module's two-way fixture: each test here sets up what it checks."""

    def test_a_missing_internal_is_detected(self, monkeypatch):
        """Each internal the batch framer leans on, taken away, is named by missing_internals()."""
        assert transport.missing_internals() is None  # the installed release has them all
        monkeypatch.setattr(transport, "_socket_send", None)
        assert "websocket._socket.send" in transport.missing_internals()
        monkeypatch.undo()

        def create_dispatcher(self, ping_timeout, dispatcher=None, is_ssl=False, handleDisconnect=None, loop=None):
            raise AssertionError("never called")

        monkeypatch.setattr(websocket.WebSocketApp, "create_dispatcher", create_dispatcher)
        assert "new parameters ['loop']" in transport.missing_internals()
        monkeypatch.delattr(websocket.WebSocketApp, "create_dispatcher")
        assert "create_dispatcher is gone" in transport.missing_internals()

    def test_checked_at_import_and_logged_once(self, emulator):
        """A websocket-client without ``_socket.send``: importing bfxsync picks the fallback, a client
        connects and subscribes through it, and the fallback is logged once for two connections."""
        script = f"""
import logging, sys
import websocket._socket
del websocket._socket.send
records = []
logging.getLogger("bfxsync").addHandler(logging.Handler())
logging.getLogger("bfxsync").handlers[-1].emit = records.append
import bfxsync
from bfxsync._engine import transport
assert transport.FALLBACK_REASON == "websocket._socket.send is gone", transport.FALLBACK_REASON
for _ in range(2):
    with bfxsync.Client({emulator.url!r}) as client:
        client.subscribe_ticker("tBTCUSD").wait_subscribed(10)
print(sum("own reader" in r.getMessage() for r in records))
"""
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "BFXSYNC_STOCK_FRAMING": ""})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "1"

    def test_environment_switch_forces_the_fallback(self):
        """BFXSYNC_STOCK_FRAMING=1 (to run the whole suite through the fallback) is read at import."""
        done = subprocess.run([sys.executable, "-c", "from bfxsync._engine import transport; print(transport.FALLBACK_REASON)"],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "BFXSYNC_STOCK_FRAMING": "1"})
        assert done.stdout.strip() == "BFXSYNC_STOCK_FRAMING is set", done.stderr

    def test_glue_failing_at_run_time_falls_back(self, emulator, make_client, monkeypatch, caplog):
        """An internal that changed in a way the import check cannot see (here the batch reader failing
        with an AttributeError): that dial fails, later ones use the stock reader, the client works."""
        monkeypatch.setattr(transport, "FALLBACK_REASON", None)
        monkeypatch.setattr(transport, "_fallback_logged", False)

        def broken(self, app):
            raise AttributeError("'WebSocket' object has no attribute 'sock'")

        monkeypatch.setattr(WebSocketAppTransport, "_read", broken)
        client = make_client(emulator.url)
        client.subscribe_ticker("tBTCUSD").wait_subscribed(10)
        assert transport.FALLBACK_REASON.startswith("the batch framer failed: AttributeError")
        assert client.stats()["dials"] == 2
        assert [r for r in caplog.records if "own reader" in r.getMessage() and r.levelno == logging.WARNING]

    def test_the_fallback_carries_a_client_end_to_end(self, emulator, make_client, monkeypatch):
        """Through the stock reader a client subscribes, keeps books exact, survives a drop and closes cleanly."""
        monkeypatch.setattr(transport, "FALLBACK_REASON", "forced by the test")
        client = make_client(emulator.url)
        book = client.subscribe_book("tBTCUSD").wait_synced(5)
        emulator.drop_connections()
        assert wait_until(lambda: client.stats()["reconnects"] == 1 and book.synced)
        assert settle_books(emulator, [book])
        assert book.checks_failed == 0
