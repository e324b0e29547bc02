"""One WebSocket connection: its reader thread, reconnect loop and liveness watchdog.

The connection knows nothing about channels. It hands every received frame, and every
open/close, to a :class:`Listener` (the session that interprets the protocol), and it
redials by itself: ``while not stopped: dial -> read until the socket ends -> back off``.
A loop, not recursion, and the back-off pause is ``stop.wait(delay)`` so ``close()``
interrupts it at once.

Threads (both daemons, both joined by ``close()``):

* ``bfxsync-reader-<n>`` runs websocket-client's ``WebSocketApp.run_forever`` and with
  it every listener callback, and so every user callback.
* ``bfxsync-watchdog-<n>`` wakes about once a second: after ``keepalive_interval`` of
  silence it asks the listener to send a ``ping``; after ``heartbeat_timeout`` of
  silence it aborts the socket so the reader loop redials (a stalled socket can stop
  delivering without ever closing, reference §11.10).
"""
from __future__ import annotations

import itertools
import logging
import socket
import ssl
import threading
import time
from typing import Any, Optional, Protocol, Tuple
from urllib.parse import urlsplit

import websocket

from .backoff import ConnectRateLimit, retry_after
from .config import Config
from .errors import NotConnectedError

logger = logging.getLogger(__name__)

_numbers = itertools.count(1)


class Listener(Protocol):
    """What a connection reports to. All methods run on the reader thread except ``on_idle``."""

    def on_open(self) -> None:
        """The WebSocket handshake completed."""

    def on_frame(self, data: Any) -> None:
        """A text frame arrived (``bytes``: UTF-8 is validated by the decoder, not per byte here)."""

    def on_closed(self, reason: str, code: Optional[int], will_reconnect: bool) -> None:
        """The socket ended (or a dial failed)."""

    def on_reconnecting(self, attempt: int, delay: float) -> None:
        """The loop will dial again after ``delay`` seconds."""

    def on_idle(self, silent_for: float) -> None:
        """Nothing arrived for ``keepalive_interval`` seconds (called on the watchdog thread)."""


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


class Connection:
    """A self-healing WebSocket connection to ``url``.

    Args:
        url: ``ws://`` or ``wss://`` endpoint.
        config: client options (timeouts, back-off, TLS).
        listener: receives frames and state changes.
    """

    def __init__(self, url: str, config: Config, listener: Listener) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"invalid WebSocket URL {url!r}: expected ws://host[:port]/path or wss://...")
        self.url = url
        self.number = next(_numbers)
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "wss" else 80)
        self._secure = parts.scheme == "wss"
        self._config = config
        self._listener = listener
        self._stop = threading.Event()
        self._open = threading.Event()
        self._state_lock = threading.Lock()
        self._app: Optional[websocket.WebSocketApp] = None
        self._reader: Optional[threading.Thread] = None
        self._watchdog: Optional[threading.Thread] = None
        self._closed = False
        #: time.monotonic() of the last frame of any kind (data, heartbeat, control).
        self.last_received = time.monotonic()
        self._healthy = False
        self._end: Tuple[str, Optional[int]] = ("closed", None)
        self._refused_status: Optional[int] = None
        #: Connection attempts made, successful or not.
        self.dials = 0

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader and watchdog threads (once)."""
        with self._state_lock:
            if self._reader is not None:
                raise RuntimeError("connection already started")
            self._reader = threading.Thread(target=self._run, name=f"bfxsync-reader-{self.number}", daemon=True)
            self._watchdog = threading.Thread(target=self._watch, name=f"bfxsync-watchdog-{self.number}", daemon=True)
        self._reader.start()
        self._watchdog.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop for good: close the socket, stop redialling, join both threads.

        Idempotent. From a callback (the reader thread) it cannot join itself; the
        reader then ends as soon as that callback returns.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        app = self._app
        sock = app.sock if app is not None else None
        if app is not None:
            app.keep_running = False
        if sock is not None:
            try:
                sock.send_close()  # polite close frame; the server's reply ends the read loop
            except Exception:  # noqa: BLE001 - the socket may already be gone; abort below covers it
                pass
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        if self._reader is not None and self._reader is not current:
            self._reader.join(min(1.0, timeout))
            if self._reader.is_alive():
                self._abort()
                self._reader.join(max(0.0, deadline - time.monotonic()))
        else:
            self._abort()
        if self._watchdog is not None and self._watchdog is not current:
            self._watchdog.join(max(0.0, deadline - time.monotonic()))

    @property
    def is_open(self) -> bool:
        """True while a socket is open (the handshake is done and it has not ended)."""
        return self._open.is_set()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def threads(self) -> Tuple[threading.Thread, ...]:
        """The threads this connection started (for diagnostics and tests)."""
        return tuple(t for t in (self._reader, self._watchdog) if t is not None)

    def on_reader_thread(self) -> bool:
        """True when called from this connection's reader thread (where waiting would deadlock)."""
        return threading.current_thread() is self._reader

    # -- used by the session --------------------------------------------------------

    def send(self, text: str) -> None:
        """Send one text frame. Raises NotConnectedError when no socket is open.

        websocket-client serialises concurrent sends with its own lock
        (``enable_multithread``), so this may be called from any thread.
        """
        app = self._app
        sock = app.sock if app is not None else None
        if sock is None or not self._open.is_set():
            raise NotConnectedError("not connected to the server (the client reconnects by itself; wait_connected() waits for it)")
        try:
            sock.send(text)
        except (websocket.WebSocketException, OSError) as err:
            raise NotConnectedError(f"send failed, connection lost: {err}") from err

    def mark_healthy(self) -> None:
        """The server spoke the protocol on this socket: the next redial starts the back-off afresh."""
        self._healthy = True

    def drop(self, reason: str) -> None:
        """Abort the current socket so the loop redials (server restart notice, stall, sequence gap)."""
        if self._open.is_set():
            logger.warning("bfxsync: dropping connection to %s: %s", self.url, reason)
            self._end = (reason, None)
            self._abort()

    # -- reader thread --------------------------------------------------------------

    def _run(self) -> None:
        limiter = ConnectRateLimit(self._config.max_connects_per_minute)
        attempt = 0
        while not self._stop.is_set():
            limiter.record(time.monotonic())
            self._dial()
            self._open.clear()
            will_reconnect = self._config.reconnect and not self._stop.is_set()
            reason, code = self._end
            self._listener.on_closed(reason, code, will_reconnect)
            if not will_reconnect:
                break
            if self._healthy:
                attempt = 0
            delay = max(
                self._config.backoff.delay(attempt),
                retry_after(self._refused_status),
                limiter.wait_time(time.monotonic()),
            )
            attempt += 1
            self._listener.on_reconnecting(attempt, delay)
            if self._stop.wait(delay):
                break

    def _dial(self) -> None:
        """One connection attempt, read until it ends. Records why it ended in ``self._end``."""
        self.dials += 1
        self._healthy = False
        self._refused_status = None
        self._end = ("closed", None)
        try:
            sock = self._open_socket()
        except (OSError, ssl.SSLError) as err:
            self._end = (f"connect to {self._host}:{self._port} failed: {err}", None)
            return
        app = _App(
            self.url,
            socket=_ReadAheadSocket(sock),  # type: ignore[arg-type]  # duck-typed socket
            on_open=self._on_open,
            on_message=self._on_message,
            on_ping=self._on_control,
            on_pong=self._on_control,
            on_error=self._on_error,
            on_close=self._on_close,
        )
        self._app = app
        if self._stop.is_set():  # close() ran before it could see this app
            sock.close()
            return
        try:
            # skip_utf8_validation: websocket-client's validator is pure Python and
            # runs per byte; decoding in the session validates UTF-8 at C speed.
            app.run_forever(skip_utf8_validation=True)
        except Exception as err:  # noqa: BLE001 - run_forever should not raise; never let it kill the thread
            logger.exception("bfxsync: websocket-client failed")
            self._end = (f"websocket-client failed: {err!r}", None)
        finally:
            # After a close handshake websocket-client leaves the TCP socket open (its
            # close() returns early once the close frame was sent), and the server then
            # waits for our FIN. Close it ourselves.
            sock.close()

    def _open_socket(self) -> socket.socket:
        """TCP (and TLS) connect with a timeout; websocket-client then does the HTTP upgrade on it.

        Preparing the socket here gives a per-connection connect timeout without
        touching websocket-client's process-wide default timeout.
        """
        timeout = self._config.connect_timeout
        sock = socket.create_connection((self._host, self._port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._secure:
                context = self._config.ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return sock

    def _on_open(self, app: websocket.WebSocketApp) -> None:
        self.last_received = time.monotonic()
        if self._stop.is_set():
            self._abort()
            return
        self._open.set()
        self._listener.on_open()

    def _on_message(self, app: websocket.WebSocketApp, data: Any) -> None:
        self.last_received = time.monotonic()
        self._listener.on_frame(data)

    def _on_control(self, app: websocket.WebSocketApp, data: Any) -> None:
        # websocket-client answers pings itself; a control frame still proves the peer is alive.
        self.last_received = time.monotonic()

    def _on_error(self, app: websocket.WebSocketApp, error: Exception) -> None:
        status = getattr(error, "status_code", None)
        if isinstance(error, websocket.WebSocketBadStatusException):
            self._refused_status = status
            self._end = (f"handshake refused with HTTP {status}", None)
        elif self._end[0] == "closed":
            self._end = (f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, None)
        if not isinstance(error, (websocket.WebSocketConnectionClosedException, OSError, websocket.WebSocketBadStatusException)):
            logger.debug("bfxsync: websocket error on %s: %r", self.url, error)

    def _on_close(self, app: websocket.WebSocketApp, code: Optional[int], reason: Optional[str]) -> None:
        if code is not None:
            self._end = (f"closed by server: {code} {reason or ''}".rstrip(), code)
        elif self._stop.is_set():
            self._end = ("closed by client", None)

    def _abort(self) -> None:
        app = self._app
        sock = app.sock if app is not None else None
        if sock is not None:
            sock.abort()

    # -- watchdog thread ------------------------------------------------------------

    def _watch(self) -> None:
        config = self._config
        period = min(1.0, config.keepalive / 4, config.heartbeat_timeout / 4)
        while not self._stop.wait(period):
            if not self._open.is_set():
                continue
            silent = time.monotonic() - self.last_received
            if silent >= config.heartbeat_timeout:
                self.drop(f"no frame for {silent:.1f} s (heartbeat timeout {config.heartbeat_timeout:g} s)")
            elif silent >= config.keepalive:
                try:
                    self._listener.on_idle(silent)
                except Exception:  # noqa: BLE001 - the watchdog must survive anything
                    logger.exception("bfxsync: keepalive failed")
