"""The transport seam: how one already-connected socket becomes WebSocket frames.

A :class:`~bfxsync._engine.connection.Connection` dials TCP (and TLS) itself, then hands
the socket to a transport that does the HTTP upgrade and reads frames until the socket
ends, reporting to a :class:`TransportListener`. The default is websocket-client's
``WebSocketApp``, whose ``on_open``/``on_message``/``on_ping``/``on_error``/``on_close``
callbacks stay the entry points. Recording, replay and faster framers plug in here by
passing another :data:`TransportFactory`.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Callable, Optional, Protocol

import websocket

from ..errors import NotConnectedError

logger = logging.getLogger("bfxsync")


class TransportListener(Protocol):
    """What a transport reports to (on the reader thread)."""

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


class _ReadAheadSocket:
    """A socket whose ``recv`` reads up to 256 KiB at a time and hands it out in the small
    pieces websocket-client asks for (2 header bytes, then the payload, per frame).

    Without it every frame costs a ``select`` and two or three ``recv`` system calls.
    ``pending()`` reports the bytes held here (plus TLS-buffered ones), which is what
    websocket-client's SSL dispatcher checks before it blocks in ``select``; see
    :class:`_App`. Everything else is the wrapped socket's.
    """

    _CHUNK = 262_144

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._offset = 0

    def recv(self, size: int) -> bytes:
        if self._offset >= len(self._buffer):
            data = self._sock.recv(max(size, self._CHUNK))
            if len(data) <= size:
                return data  # small reads (and EOF) need no bookkeeping
            self._buffer, self._offset = data, 0
        start = self._offset
        self._offset = start + size
        return self._buffer[start:start + size]

    def pending(self) -> int:
        held = len(self._buffer) - self._offset
        pending = getattr(self._sock, "pending", None)  # TLS: bytes decrypted but not yet read
        return max(held, 0) + (pending() if pending is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _App(websocket.WebSocketApp):
    """``WebSocketApp`` that always uses the dispatcher which honours ``pending()``.

    websocket-client picks its SSL dispatcher only for ``wss://``; with the read-ahead
    socket a plain ``ws://`` connection can also hold bytes the kernel no longer
    reports as readable, so it needs that dispatcher too.
    """

    def create_dispatcher(self, ping_timeout: Any, dispatcher: Any = None, is_ssl: bool = False,
                          *args: Any, **kwargs: Any) -> Any:
        return super().create_dispatcher(ping_timeout, dispatcher, True, *args, **kwargs)


class WebSocketAppTransport:
    """The default transport: websocket-client's ``WebSocketApp`` on the connection's socket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._app: Optional[websocket.WebSocketApp] = None

    def run(self, sock: socket.socket, listener: TransportListener) -> None:
        app = _App(
            self.url,
            socket=_ReadAheadSocket(sock),  # type: ignore[arg-type]  # duck-typed socket
            on_open=lambda app: listener.on_open(),
            on_message=lambda app, data: listener.on_message(data),
            on_ping=lambda app, data: listener.on_control(),
            on_pong=lambda app, data: listener.on_control(),
            on_error=lambda app, error: listener.on_error(error),
            on_close=lambda app, code, reason: listener.on_close(code, reason),
        )
        self._app = app
        # skip_utf8_validation: websocket-client's validator is pure Python and runs per
        # byte; decoding in the link validates UTF-8 at C speed. reconnect=0: never let
        # websocket-client redial by itself (websocket.setReconnect() is process-wide);
        # the connection's own loop redials and replays.
        app.run_forever(skip_utf8_validation=True, reconnect=0)

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
