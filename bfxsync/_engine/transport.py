"""The transport seam: how one already-connected socket becomes WebSocket frames.

A :class:`~bfxsync._engine.connection.Connection` dials TCP (and TLS) itself, then hands
the socket to a transport that does the HTTP upgrade and reads frames until the socket
ends, reporting to a :class:`TransportListener`. The default is websocket-client's
``WebSocketApp``, whose ``on_open``/``on_message``/``on_ping``/``on_error``/``on_close``
callbacks stay the entry points. Recording, replay and faster framers plug in here by
passing another :data:`TransportFactory`.
"""
from __future__ import annotations

import functools
import logging
import socket
from typing import Any, Callable, Optional, Protocol, Tuple

import websocket
from websocket._socket import send as _socket_send

from ..errors import NotConnectedError
from .framing import CLOSE_NORMAL, MAX_FRAME_SIZE, FrameError, Framer

logger = logging.getLogger("bfxsync")


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
    """The dispatcher ``WebSocketApp.run_forever`` reads through: it runs the transport's
    batch framer on the socket instead of calling back into websocket-client per frame.

    ``reconnect`` is never called (``run_forever(reconnect=0)``); ``send`` is what
    websocket-client's own dispatchers do with outgoing frames.
    """

    def __init__(self, app: websocket.WebSocketApp, transport: WebSocketAppTransport) -> None:
        self.app = app
        self._transport = transport

    def read(self, sock: Any, read_callback: Any, check_callback: Any) -> None:
        self._transport._read(self.app)

    def send(self, sock: Any, data: Any) -> int:
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


class WebSocketAppTransport:
    """The default transport: websocket-client's ``WebSocketApp`` on the connection's socket,
    with frames read in batches by :class:`~bfxsync._engine.framing.Framer`.

    websocket-client reads a frame with two or three ``recv`` calls, an ``ABNF`` object and
    a trip through its dispatcher; at book-update rates that was half the reader thread's
    time. Here one ``recv_into`` takes whatever the kernel holds (up to ``read_size``
    bytes, into a buffer allocated once: a fresh 256 KiB ``recv`` costs an ``mmap`` every
    time, some 10 µs even for a 40-byte frame) and one framer call hands every complete
    message it contains to the same ``on_message`` callback.

    Args:
        url: ``ws://`` or ``wss://`` endpoint.
        max_frame_size: largest frame (or fragmented message) accepted; a header
            announcing more fails the connection before any of its payload is read.
        read_size: bytes asked of the socket per read.
    """

    def __init__(self, url: str, max_frame_size: int = MAX_FRAME_SIZE, read_size: int = 262_144) -> None:
        self.url = url
        self.max_frame_size = max_frame_size
        self.read_size = read_size
        self._app: Optional[websocket.WebSocketApp] = None
        self._close: Tuple[Optional[int], Optional[str]] = (None, None)

    @classmethod
    def factory(cls, max_frame_size: int) -> TransportFactory:
        """A :data:`TransportFactory` building this transport with ``max_frame_size``."""
        return functools.partial(cls, max_frame_size=max_frame_size)

    def run(self, sock: socket.socket, listener: TransportListener) -> None:
        on_message = listener.on_message  # bound once: called for every frame
        app = _App(
            self.url,
            self,
            socket=sock,
            on_open=lambda app: listener.on_open(),
            on_message=lambda app, data: on_message(data),
            on_ping=lambda app, data: listener.on_control(),
            on_pong=lambda app, data: listener.on_control(),
            on_error=lambda app, error: listener.on_error(error),
            on_close=lambda app, code, reason: listener.on_close(*self._close_args(code, reason)),
        )
        self._app = app
        # reconnect=0: never let websocket-client redial by itself (websocket.setReconnect()
        # is process-wide); the connection's own loop redials and replays. UTF-8 is checked
        # where each message is decoded (the link), so websocket-client need not.
        app.run_forever(skip_utf8_validation=True, reconnect=0)

    def _close_args(self, code: Optional[int], reason: Optional[str]) -> Tuple[Optional[int], Optional[str]]:
        """The server's close code and reason: websocket-client does not see the close frame."""
        return (code, reason) if code is not None else self._close

    def _read(self, app: Any) -> None:
        """Reader thread: read and frame until a close frame, the end of the socket, or
        ``keep_running`` turning False (a close we sent). Raises on errors, which
        ``run_forever`` reports to ``on_error`` before ``on_close``."""
        ws = app.sock
        try:
            self._pump(app, ws)
        except FrameError as err:
            logger.debug("bfxsync: failing the connection to %s: %s", self.url, err)
            self._fail(ws, err.status)
            raise
        finally:
            # No close handshake by websocket-client after this: its close() would read
            # frames with its own reader (a hostile length included) for up to 3 s.
            ws.connected = False

    def _pump(self, app: Any, ws: Any) -> None:
        deliver = functools.partial(app.on_message, app)

        def on_ping(payload: bytes) -> None:
            ws.pong(payload)  # what websocket-client does for every ping it reads
            app.on_ping(app, payload)

        def on_callback_error(error: Exception) -> None:
            logger.error("bfxsync: on_message failed", exc_info=error)

        framer = Framer(deliver, on_ping, lambda payload: app.on_pong(app, payload), on_callback_error,
                        self.max_frame_size)
        parse = framer.parse
        recv_into = ws.sock.recv_into
        base = buffer = bytearray(max(self.read_size, 16))  # room for any header (14 bytes)
        view = memoryview(buffer)
        held = 0  # bytes at the start of buffer: the beginning of a frame not yet complete
        need = 2  # bytes the next frame needs before parsing it is worth a call
        while app.keep_running:
            try:
                count = recv_into(view[held:])
            except socket.timeout:
                continue  # a quiet socket: liveness is the scheduler's call, not ours
            if not count:
                raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
            held += count
            if held < need:
                continue  # a large frame still arriving: no copy and no parse until it is whole
            data = bytes(view[:held])
            used, need = parse(data)
            if framer.closed is not None:
                self._on_close_frame(ws, *framer.closed)
                return
            held -= used
            if need > len(buffer):  # one frame larger than a read: room for exactly that frame
                buffer = bytearray(need)
                view = memoryview(buffer)
            elif buffer is not base and need <= len(base):
                buffer = base
                view = memoryview(buffer)
            if held:
                view[:held] = data[used:]

    def _on_close_frame(self, ws: Any, code: Optional[int], reason: str) -> None:
        """The server closed: answer with its code (unless our close went first) and end."""
        self._close = (code, reason)
        if ws.connected:
            try:
                ws.send_close(code if code is not None else CLOSE_NORMAL)
            except (websocket.WebSocketException, OSError):
                pass  # gone already: nothing left to answer

    def _fail(self, ws: Any, status: int) -> None:
        """Best-effort close frame with ``status`` before the socket is dropped."""
        if ws.connected:
            try:
                ws.send_close(status)
            except (websocket.WebSocketException, OSError):
                pass  # gone already

    def send(self, text: str) -> None:
        app = self._app
        sock = app.sock if app is not None else None
        if sock is None or not sock.connected:
            raise NotConnectedError("not connected to the server (the client reconnects by itself)")
        try:
            # websocket-client serialises concurrent sends with its own lock.
            sock.send(text)
        except (websocket.WebSocketException, OSError) as err:
            raise NotConnectedError(f"send failed, connection lost: {err}") from err

    def send_close(self) -> None:
        app = self._app
        if app is not None:
            app.keep_running = False
            sock = app.sock
            if sock is not None and sock.connected:
                try:
                    sock.send_close()
                except (websocket.WebSocketException, OSError):
                    pass  # already gone: the connection shuts the socket down anyway
