"""The transport seam: how one already-connected socket becomes WebSocket frames.

A :class:`~bfxsync._engine.connection.Connection` dials TCP (and TLS) itself, then hands
the socket to a transport that does the HTTP upgrade and reads frames until the socket
ends, reporting to a :class:`TransportListener`. The default is websocket-client's
``WebSocketApp``, whose ``on_open``/``on_message``/``on_ping``/``on_error``/``on_close``
callbacks stay the entry points. Recording, replay and faster framers plug in here by
passing another :data:`TransportFactory`.

The batch framer leans on websocket-client internals that its public API does not
promise: the private ``websocket._socket.send``, an override of the undocumented
``WebSocketApp.create_dispatcher`` (its signature changed in 1.9.0), ``ws.connected``,
and ``run_forever(reconnect=0)``'s teardown. They are checked once, at import
(:func:`missing_internals`); when one is gone, every connection reads frames through
websocket-client's public ``WebSocket.recv_data_frame`` instead (slower, still correct),
and that is logged once. The same happens for good if the glue fails at run time with a
``TypeError`` or ``AttributeError`` (a change the import check cannot see): that dial is
lost, later ones use the stock reader. ``BFXSYNC_STOCK_FRAMING=1`` in the environment
forces that path (CI runs the transport tests both ways).

websocket-client logs every ordinary drop at ERROR (``... - goodbye``) under its
``websocket`` logger. bfxsync reports its own drops itself, so records emitted on
bfxsync's threads are demoted to DEBUG there (:class:`OwnThreadsAtDebug`); the
application's other websocket-client use logs as before.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, Optional, Protocol, Tuple

import websocket

from ..errors import NotConnectedError
from .cpu_sharing import CPU_SHARING, ReaderPolicy
from .framing import CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, MAX_FRAME_SIZE, FrameError, Framer, parse_close
from .threads import on_bfxsync_thread
from .turns import READERS, TURN, Readers, give_turn

logger = logging.getLogger("bfxsync")

_socket_send: Optional[Callable[[Any, Any], int]]
try:  # private: checked by missing_internals(); websocket-client >= 1.9 sends every frame through it
    from websocket._socket import send as _socket_send
except ImportError:  # pragma: no cover - depends on the installed release
    _socket_send = None

def writable(sock: Any, timeout: float) -> bool:
    """True once ``sock`` can take more data, waiting at most ``timeout`` seconds (any thread).

    Sockets are blocking while a connection reads (see :meth:`WebSocketAppTransport._pump`),
    so every send asks this first: a server that stopped reading makes it return False
    instead of leaving the sender blocked. ``poll`` where the platform has it (``select``
    fails on descriptors past 1023, which a long-running application may well reach).
    """
    fileno = sock.fileno()
    if fileno < 0:
        return True  # closed: let the send itself fail with the reason
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLOUT)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    _, ready, failed = select.select([], [fileno], [fileno], timeout)  # pragma: no cover - Windows
    return bool(ready or failed)  # pragma: no cover - Windows


def _has_room(ws: websocket.WebSocket) -> bool:
    """True when ``ws``'s socket can take a control frame (a pong, a close) right now."""
    sock = ws.sock
    return sock is not None and writable(sock, 0)


def _readable_waiter(sock: Any, timeout: float) -> Callable[[], None]:
    """A call that blocks (GIL released) until ``sock`` has bytes to read or has ended, at most ``timeout`` s."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        milliseconds = int(timeout * 1000)
        return lambda: None if poller.poll(milliseconds) else None
    fileno = sock.fileno()  # pragma: no cover - Windows
    return lambda: None if select.select([fileno], [], [fileno], timeout) else None  # pragma: no cover - Windows


#: Longest wait of a TLS reader for its socket to become readable before it reads anyway.
_TLS_WAIT = 1.0
#: Seconds a close frame waits for a send under way before it is left out.
_CLOSE_WAIT = 0.05

#: The parameters ``WebSocketApp.create_dispatcher`` is known to take (1.6 to 1.9); another
#: one means its contract changed.
_KNOWN_DISPATCHER_PARAMETERS = frozenset(("self", "ping_timeout", "dispatcher", "is_ssl", "handleDisconnect"))


def missing_internals() -> Optional[str]:
    """What the batch framer needs of the installed websocket-client and does not find, or None."""
    if not callable(_socket_send):
        return "websocket._socket.send is gone"
    app = websocket.WebSocketApp
    create = getattr(app, "create_dispatcher", None)
    if create is None:
        return "WebSocketApp.create_dispatcher is gone"
    try:
        unknown = set(inspect.signature(create).parameters) - _KNOWN_DISPATCHER_PARAMETERS
        run_forever = inspect.signature(app.run_forever).parameters
    except (TypeError, ValueError) as err:
        return f"cannot inspect WebSocketApp ({err})"
    if unknown:
        return f"WebSocketApp.create_dispatcher takes new parameters {sorted(unknown)}"
    for name in ("reconnect", "skip_utf8_validation", "dispatcher"):
        if name not in run_forever:
            return f"WebSocketApp.run_forever has no {name!r} parameter"
    if not isinstance(getattr(websocket.WebSocket(), "connected", None), bool):
        return "WebSocket.connected is gone"
    return None


def _fallback_reason() -> Optional[str]:
    if os.environ.get("BFXSYNC_STOCK_FRAMING", "") not in ("", "0"):
        return "BFXSYNC_STOCK_FRAMING is set"
    return missing_internals()


#: Why frames are read by websocket-client's stock reader, or None when the batch framer is in use.
#: Checked once at import; tests set it to run the transport through the fallback.
FALLBACK_REASON: Optional[str] = _fallback_reason()
_fallback_logged = False


def _give_up_batch_framing(error: BaseException) -> None:
    """The batch framer's glue failed at run time (an internal changed in a way the import check missed):
    every later connection of the process reads with the stock reader. The failed one redials as usual."""
    global FALLBACK_REASON
    if FALLBACK_REASON is None:
        FALLBACK_REASON = f"the batch framer failed: {error!r}"  # a str swap: safe from any reader thread


def _note_fallback(reason: str) -> None:
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        logger.warning("reading WebSocket frames with websocket-client %s's own reader (slower): %s",
                       getattr(websocket, "__version__", "?"), reason)


def _masked(frame: Any) -> bool:
    """Whether a frame read by websocket-client carried a mask (the field is ``mask_value`` from 1.9, ``mask`` before)."""
    value = getattr(frame, "mask_value", None)
    if value is None:
        value = getattr(frame, "mask", None)  # in 1.9 ``ABNF.mask`` is the masking function: not an int
    return type(value) is int and value != 0


class OwnThreadsAtDebug(logging.Filter):
    """On the ``websocket`` logger: records emitted on bfxsync's threads count as DEBUG.

    websocket-client logs an ordinary drop of bfxsync's connections at ERROR
    (``... - goodbye``) and a connect at INFO; bfxsync logs those events itself with
    their meaning. A record from any other thread (the application's own use of
    websocket-client) passes untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not on_bfxsync_thread():
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


def _install_log_filter() -> None:
    """Once per process, whatever reloads the module (the class is compared by name)."""
    target = logging.getLogger("websocket")
    if not any(type(f).__name__ == OwnThreadsAtDebug.__name__ for f in target.filters):
        target.addFilter(OwnThreadsAtDebug())


_install_log_filter()


class TransportListener(Protocol):
    """What a transport reports to (on the reader thread)."""

    #: The connection's number (as in ``Client.connections()``); recordings name it.
    number: int

    def on_open(self) -> None:
        """The WebSocket handshake completed."""

    def on_message(self, data: Any) -> None:
        """A text frame arrived (``bytes``: UTF-8 is validated when it is decoded)."""

    def on_control(self) -> None:
        """A ping or pong control frame arrived (websocket-client answers pings itself)."""

    def on_error(self, error: Exception) -> None:
        """The transport saw an error (a refused upgrade, a broken socket, ...)."""

    def on_close(self, code: Optional[int], reason: Optional[str]) -> None:
        """A close frame arrived, or the socket ended without one (``code`` None)."""


class Transport(Protocol):
    """One WebSocket session on a connected socket."""

    def run(self, sock: socket.socket, listener: TransportListener) -> None:
        """Upgrade ``sock`` and read frames until it ends (blocks the reader thread)."""

    def send(self, text: str) -> None:
        """Send one text frame from any thread; :class:`NotConnectedError` when the socket is gone."""

    def send_close(self) -> None:
        """Start a polite close (a close frame); the reader ends when the server answers."""


#: Builds a transport for a URL (the default is :class:`WebSocketAppTransport`).
TransportFactory = Callable[[str], Transport]


class _FrameReader:
    """Stands in for websocket-client's *dispatcher* (its name for the object
    ``WebSocketApp.run_forever`` reads frames through, built by ``create_dispatcher``): it
    runs the transport's batch framer on the socket instead of calling back into
    websocket-client per frame. In bfxsync the word "dispatcher" means only this
    websocket-client object (see the glossary in :mod:`bfxsync._engine`).

    ``reconnect`` is never called (``run_forever(reconnect=0)``); ``send`` is what
    websocket-client's own dispatchers do with outgoing frames.
    """

    def __init__(self, app: websocket.WebSocketApp, transport: WebSocketAppTransport) -> None:
        self.app = app
        self._transport = transport

    def read(self, *args: Any, **kwargs: Any) -> None:  # (sock, read_callback, check_callback), all unused
        self._transport._read(self.app)

    def send(self, sock: Any, data: Any) -> int:
        assert _socket_send is not None  # the batch framer runs only when missing_internals() found it
        return _socket_send(sock, data)


class _App(websocket.WebSocketApp):
    """``WebSocketApp`` whose frames are read by :class:`_FrameReader`.

    websocket-client still does the HTTP upgrade on the socket it is handed, sends every
    frame (with its lock and masking) and runs ``on_open``/``on_error``/``on_close``; only
    the reading of frames is replaced.
    """

    def __init__(self, url: str, transport: WebSocketAppTransport, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._transport = transport

    def create_dispatcher(self, *args: Any, **kwargs: Any) -> Any:
        return _FrameReader(self, self._transport)


class _TurnTakingTLSSocket:
    """The stock reader's TLS socket: ``recv`` is :meth:`WebSocketAppTransport._tls_reader`'s
    read, which never runs beside a send; everything else is the socket's own.

    websocket-client reads through ``WebSocket.sock.recv`` (its ``_socket.recv``), so the
    stock reader gets the same turns at the socket as the batch reader. A wait that ends
    without a whole record raises ``socket.timeout``, which websocket-client turns into
    ``WebSocketTimeoutException``: the stock loop goes on, and its frame reader resumes
    where it stopped.
    """

    def __init__(self, sock: ssl.SSLSocket, read: Callable[[memoryview], Optional[int]]) -> None:
        self._sock = sock
        self._read = read

    def recv(self, size: int) -> bytes:
        buffer = bytearray(size)
        count = self._read(memoryview(buffer))
        if count is None:
            raise socket.timeout("no whole TLS record yet")
        return bytes(buffer[:count])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class WebSocketAppTransport:
    """The default transport: websocket-client's ``WebSocketApp`` on the connection's socket,
    with frames read in batches by :class:`~bfxsync._engine.framing.Framer`.

    websocket-client reads a frame with two or three ``recv`` calls, an ``ABNF`` object and
    a trip through its dispatcher (websocket-client's); at book-update rates that was half the reader thread's
    time. Here one ``recv_into`` takes whatever the kernel holds (up to ``read_size``
    bytes, into a buffer allocated once: a fresh ``recv`` of a large size costs an ``mmap``
    every time, some 10 µs even for a 40-byte frame) and one framer call hands every
    complete message it contains to the same ``on_message`` callback.

    A read that fills the buffer means a backlog: then the reader gives other connections'
    readers turns at the GIL (:mod:`~bfxsync._engine.turns`). ``read_size`` is what one
    batch holds the GIL for between two chances to give a turn: 4 KiB, some 40 book
    updates, is a fraction of a millisecond; with 256 KiB one batch held it 5-10 ms.

    While no other reader of the process keeps up (every one has a backlog, or this one is
    alone), nobody waits for a turn, and a reader with a backlog reads ``wide_read_size``
    at a time: every read releases the GIL, and 20 readers with a backlog on one CPU handed
    it over after nearly every 4 KiB batch, each time with a context switch. Together with
    busy readers running as batch threads (:class:`~bfxsync._engine.cpu_sharing.ReaderPolicy`)
    that took 20 saturating connections from 0.85-0.93x to 0.91-0.93x what one connection
    reads (``bench/many_connections.py``, throughput). A reader that keeps up, such as a
    quiet account connection, keeps every batch at ``read_size``.

    Args:
        url: ``ws://`` or ``wss://`` endpoint.
        max_frame_size: largest frame (or fragmented message) accepted; a header
            announcing more fails the connection before any of its payload is read.
        read_size: bytes asked of the socket per read.
        wide_read_size: bytes asked per read while every reader has a backlog.
    """

    def __init__(self, url: str, max_frame_size: int = MAX_FRAME_SIZE, read_size: int = 4096,
                 wide_read_size: int = 16384) -> None:
        self.url = url
        self.max_frame_size = max_frame_size
        self.read_size = read_size
        self.wide_read_size = wide_read_size
        self._app: Optional[websocket.WebSocketApp] = None
        self._ws: Optional[websocket.WebSocket] = None  # the stock reader's (fallback) session
        self._running = True
        self._close: Tuple[Optional[int], Optional[str]] = (None, None)
        # Over TLS the reader and the senders take turns at the socket (see _tls_reader); over
        # plain TCP only senders take it, which websocket-client's own lock serialises anyway.
        self._io_lock = threading.Lock()

    @classmethod
    def factory(cls, max_frame_size: int) -> TransportFactory:
        """A :data:`TransportFactory` building this transport with ``max_frame_size``."""
        return functools.partial(cls, max_frame_size=max_frame_size)

    def run(self, sock: socket.socket, listener: TransportListener) -> None:
        reason = FALLBACK_REASON
        if reason is not None:
            _note_fallback(reason)
            self._run_stock(sock, listener)
            return
        on_message = listener.on_message  # bound once: called for every frame
        app = _App(
            self.url,
            self,
            socket=sock,
            on_open=lambda app: listener.on_open(),
            on_message=lambda app, data: on_message(data),
            on_ping=lambda app, data: listener.on_control(),
            on_pong=lambda app, data: listener.on_control(),
            on_error=lambda app, error: self._on_error(listener, error),
            on_close=lambda app, code, reason: listener.on_close(*self._close_args(code, reason)),
        )
        self._app = app
        # reconnect=0: never let websocket-client redial by itself (websocket.setReconnect()
        # is process-wide); the connection's own loop redials and replays. UTF-8 is checked
        # where each message is decoded (the link), so websocket-client need not.
        app.run_forever(skip_utf8_validation=True, reconnect=0)

    @staticmethod
    def _on_error(listener: TransportListener, error: Exception) -> None:
        # A TypeError or AttributeError here comes from websocket-client's internals or our glue to
        # them, not from the server (network and protocol problems are WebSocketException/OSError).
        if isinstance(error, (TypeError, AttributeError)):
            _give_up_batch_framing(error)
        listener.on_error(error)

    def _close_args(self, code: Optional[int], reason: Optional[str]) -> Tuple[Optional[int], Optional[str]]:
        """The server's close code and reason: websocket-client does not see the close frame."""
        return (code, reason) if code is not None else self._close

    def _read(self, app: Any) -> None:
        """Reader thread: read and frame until a close frame, the end of the socket, or
        ``keep_running`` turning False (a close we sent). Raises on errors, which
        ``run_forever`` reports to ``on_error`` before ``on_close``."""
        ws = app.sock
        readers = READERS
        slot = readers.enter()
        try:
            self._pump(app, ws, readers, slot)
        except FrameError as err:
            logger.debug("failing the connection to %s: %s", self.url, err)
            self._fail(ws, err.status)
            raise
        finally:
            readers.leave(slot)
            # No close handshake by websocket-client after this: its close() would read
            # frames with its own reader (a hostile length included) for up to 3 s.
            ws.connected = False

    def _pump(self, app: Any, ws: Any, readers: Readers, slot: int) -> None:
        deliver = functools.partial(app.on_message, app)
        io_lock = self._io_lock

        def on_ping(payload: bytes) -> None:
            if _has_room(ws):  # a server that stopped reading gets no pong, never a blocked reader
                with io_lock:
                    ws.pong(payload)  # what websocket-client does for every ping it reads
            app.on_ping(app, payload)

        def on_callback_error(error: Exception) -> None:
            logger.error("on_message failed", exc_info=error)

        framer = Framer(deliver, on_ping, lambda payload: app.on_pong(app, payload), on_callback_error,
                        self.max_frame_size)
        parse = framer.parse
        # A blocking read: with a timeout, every read is a poll and then a recv, two trips
        # through the GIL where one will do, and with many connections those trips are what
        # a quiet one waits behind. Nothing needs the read to time out: the scheduler judges
        # silence and shuts the socket down (which ends this read), and sends wait for room
        # with their own deadline (Connection.send), so none blocks on a full socket. Over TLS
        # a read that may not run beside a send cannot block: see _tls_reader.
        ws.sock.settimeout(None)
        recv_into = self._tls_reader(ws.sock) if isinstance(ws.sock, ssl.SSLSocket) else ws.sock.recv_into
        narrow = max(self.read_size, 16)  # room for any header (14 bytes)
        base = buffer = bytearray(max(narrow, self.wide_read_size))
        view = memoryview(buffer)
        limit = narrow  # bytes of buffer one read may fill: narrow, or all of base (wide)
        held = 0  # bytes at the start of buffer: the beginning of a frame not yet complete
        need = 2  # bytes the next frame needs before parsing it is worth a call
        mark, others_keep_up, turn, monotonic = readers.mark, readers.others_keep_up, give_turn, time.monotonic
        pinned = CPU_SHARING.pinned
        policy = ReaderPolicy()
        had_backlog = False
        turn_ends = 0.0  # with a backlog: when this reader next gives a turn (0: at its next full read)
        while app.keep_running:
            room = limit if limit > need else need
            count = recv_into(view[held:room])
            if not count:
                if count is None:
                    continue  # TLS: part of a record, nothing to decrypt yet
                raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
            held += count
            if held < need:
                continue  # a large frame still arriving: no copy and no parse until it is whole
            # A backlog: the read filled its room, or a wide one brought more than a narrow one holds.
            backlog = held == room or count >= narrow
            if backlog is not had_backlog:
                mark(slot, backlog)
                had_backlog = backlog
                if not backlog:
                    policy.keeping_up()
            data = bytes(view[:held])
            used, need = parse(data)
            if framer.closed is not None:
                self._on_close_frame(ws, *framer.closed)
                return
            if not backlog:
                turn_ends = 0.0
                limit = narrow
            elif monotonic() >= turn_ends:
                policy.backlog()  # a batch thread while it has a backlog on the shared CPU
                if others_keep_up():
                    turn(pinned())  # for a reader that keeps up (see bfxsync._engine.turns)
                    limit = narrow
                else:
                    limit = len(base)  # nobody waits for a turn: fewer, larger batches
                turn_ends = monotonic() + TURN
            held -= used
            if need > len(buffer):  # one frame larger than a read: room for exactly that frame
                buffer = bytearray(need)
                view = memoryview(buffer)
            elif buffer is not base and need <= len(base):
                buffer = base
                view = memoryview(buffer)
            if held:
                view[:held] = data[used:]

    def _tls_reader(self, sock: ssl.SSLSocket) -> Callable[[memoryview], Optional[int]]:
        """``recv_into`` for a TLS socket that never runs beside a send on the same socket.

        OpenSSL does not allow one ``SSL`` object to be used by two threads at once
        (openssl/openssl#20446), and CPython does not serialise ``SSLSocket.recv_into`` with
        ``send`` (3.13.6 did, and a read blocked in ``SSL_read`` then held up every send:
        python/cpython#137583, undone in 3.13.7). On this project's machines (OpenSSL 3.0) a
        blocking read in one thread beside sends from another, on fresh connections, failed a
        few connections in 200 with a bad record MAC or an internal error: the read handled a
        post-handshake message while the write ran. So every read happens under the socket's
        lock, non-blocking, and the wait for data outside it (``poll``, GIL released), so that
        the lock is never held while waiting for the network; a read that found no whole record
        returns None. Senders take the same lock (:meth:`send`, pongs, close frames). The stock
        reader reads through this too (:class:`_TurnTakingTLSSocket`); the pongs it sends
        itself come from the reader thread, and websocket-client's own lock keeps them apart
        from other sends.

        The wait comes before a read unless the last read filled the buffer: a read that got
        less than it asked for emptied OpenSSL's buffer (CPython leaves read-ahead off, so
        OpenSSL takes a record's header and then exactly its body from the kernel), and whether
        more is there is then the kernel's to say. The wait still ends after
        :data:`_TLS_WAIT` seconds with a read, so a wrong guess costs a delay, never a stall.
        """
        io_lock, recv_into, settimeout = self._io_lock, sock.recv_into, sock.settimeout
        timeout = sock.gettimeout()  # what sends see: restored after every read
        wait = _readable_waiter(sock, _TLS_WAIT)
        full = [True]  # the last read filled the buffer: more may be waiting in OpenSSL already

        def read(target: memoryview) -> Optional[int]:
            if not full[0]:
                wait()
            with io_lock:
                settimeout(0.0)
                try:
                    count: Optional[int] = recv_into(target)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    count = None  # no whole record yet
                finally:
                    settimeout(timeout)
            full[0] = count == len(target)
            return count

        return read

    def _on_close_frame(self, ws: Any, code: Optional[int], reason: str) -> None:
        """The server closed: answer with its code (unless our close went first) and end."""
        self._close = (code, reason)
        self._close_frame(ws, code if code is not None else CLOSE_NORMAL)

    def _fail(self, ws: Any, status: int) -> None:
        """Best-effort close frame with ``status`` before the socket is dropped."""
        self._close_frame(ws, status)

    def _close_frame(self, ws: Any, status: int) -> None:
        """A close frame, best effort: only if the socket has room now and no send holds it.

        A server that stopped reading, or a sender blocked in a large frame, must not hold up
        a close: the connection shuts the socket down anyway.
        """
        if not (ws.connected and _has_room(ws)) or not self._io_lock.acquire(timeout=_CLOSE_WAIT):
            return
        try:
            ws.send_close(status)
        except (websocket.WebSocketException, OSError):
            pass  # gone already: nothing left to answer
        finally:
            self._io_lock.release()

    # -- the fallback: websocket-client's public, stock frame reading ---------------------------

    def _run_stock(self, sock: socket.socket, listener: TransportListener) -> None:
        """Read with ``WebSocket.recv_data_frame`` (public API only) until the socket ends.

        The checks websocket-client leaves out are made here: a masked server frame fails
        the connection (1002), a message over ``max_frame_size`` too (1009), but only once
        it has arrived (the stock reader buffers a frame whole before anyone sees it).
        """
        ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        try:
            # The HTTP upgrade on our socket (connected, and TLS-wrapped for wss://).
            ws.connect(self.url, socket=sock, timeout=sock.gettimeout())  # type: ignore[no-untyped-call]
        except Exception as err:  # noqa: BLE001 - reported as the connection's end, like run_forever does
            listener.on_error(err)
            listener.on_close(None, None)
            return
        if isinstance(ws.sock, ssl.SSLSocket):  # reads take turns with sends, as in the batch reader
            ws.sock = _TurnTakingTLSSocket(ws.sock, self._tls_reader(ws.sock))  # type: ignore[assignment]
        self._ws = ws
        listener.on_open()
        on_message = listener.on_message
        close: Tuple[Optional[int], Optional[str]] = (None, None)
        try:
            while self._running:
                try:
                    opcode, frame = ws.recv_data_frame(True)  # answers pings (and close frames) itself
                except websocket.WebSocketTimeoutException:
                    continue  # a quiet socket: liveness is the scheduler's call; the reader resumes mid-frame
                if _masked(frame):
                    raise FrameError("the server sent a masked frame (servers must not mask)")
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code, text = parse_close(frame.data)
                    close = (code, text)
                    break
                if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                    listener.on_control()
                    continue
                if len(frame.data) > self.max_frame_size:
                    raise FrameError(f"a message of {len(frame.data)} bytes (max_frame_size is {self.max_frame_size})",
                                     kind="oversized_frame", status=CLOSE_TOO_BIG)
                on_message(frame.data)
        except FrameError as err:
            logger.debug("failing the connection to %s: %s", self.url, err)
            self._fail(ws, err.status)
            listener.on_error(err)
        except websocket.WebSocketProtocolException as err:  # the stock reader's own checks
            self._fail(ws, CLOSE_PROTOCOL_ERROR)
            listener.on_error(FrameError(str(err)))
        except (websocket.WebSocketException, OSError) as err:
            listener.on_error(err)
        listener.on_close(*close)

    def send(self, text: str) -> None:
        app = self._app
        sock = app.sock if app is not None else self._ws
        if sock is None or not sock.connected:
            raise NotConnectedError("not connected to the server (the client reconnects by itself)")
        try:
            with self._io_lock:  # never beside a TLS read (see _tls_reader)
                sock.send(text)
        except (websocket.WebSocketException, OSError) as err:
            raise NotConnectedError(f"send failed, connection lost: {err}") from err

    def send_close(self) -> None:
        self._running = False
        app = self._app
        if app is not None or self._ws is not None:
            if app is not None:
                app.keep_running = False
            sock = app.sock if app is not None else self._ws
            if sock is not None:
                self._close_frame(sock, CLOSE_NORMAL)
