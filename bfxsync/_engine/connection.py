"""One WebSocket connection: its socket, its reader thread and its redial loop.

The connection knows nothing about channels. It dials TCP (and TLS) itself, hands the
socket to an injected :class:`~bfxsync._engine.transport.Transport`, and reports every
frame and every open/close to a :class:`Listener` (the link that speaks the protocol).
It redials by itself: ``while not stopped: pace -> dial -> read until the socket ends ->
back off``. Liveness (keepalive pings, silent sockets) is the scheduler's job; it calls
:meth:`drop` when a socket must be abandoned.

Stopping is prompt whatever the server does: the socket is kept from the moment it is
created, so :meth:`stop` can shut it down under a blocked TCP connect, TLS handshake,
HTTP upgrade or read, even when the server ignores the close frame.

A connection belongs to the process that created it. After ``os.fork()`` the child holds
copies of the parent's sockets, and a close frame, a ``shutdown`` or any frame sent from
there would act on the parent's connection; in a child every send raises
:class:`~bfxsync.errors.ForkedClientError`, nothing is ever shut down, and
:meth:`release_in_child` only closes the child's copy of the socket.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, List, Optional, Protocol, Tuple
from urllib.parse import urlsplit

import websocket

from ..backoff import retry_after
from ..config import Config
from ..errors import BfxError, CertificateError, NotConnectedError
from .cpu_sharing import CPU_SHARING
from .framing import FrameError
from .pacing import ConnectPacer
from .runtime import forked_error
from .threads import mark_bfxsync_thread
from .transport import Transport, TransportFactory, WebSocketAppTransport, writable

logger = logging.getLogger("bfxsync")

_numbers = itertools.count(1)

#: Seconds ``join`` waits for the server to answer our close frame before shutting the socket.
CLOSE_GRACE = 0.5


class Listener(Protocol):
    """What a connection reports to. Every method runs on the reader thread."""

    def on_open(self) -> None:
        """The WebSocket handshake completed."""

    def on_frame(self, data: Any) -> None:
        """A text frame arrived."""

    def on_closed(self, reason: str, code: Optional[int], will_reconnect: bool) -> None:
        """The socket ended (or a dial failed)."""

    def on_reconnecting(self, attempt: int, delay: float) -> None:
        """The loop will dial again after about ``delay`` seconds."""

    def on_crashed(self, error: BaseException) -> None:
        """The reader loop itself failed (a bug): the connection cannot go on."""

    def on_fatal(self, error: BfxError) -> None:
        """A dial failed in a way no redial can fix (a certificate that does not verify): end the client."""


class Connection:
    """A self-healing WebSocket connection to ``url``.

    Args:
        url: ``ws://`` or ``wss://`` endpoint.
        config: client options (timeouts, back-off, TLS).
        listener: receives frames and state changes.
        pacer: the client-wide gate every dial passes.
        transport_factory: builds the transport of each dial.
    """

    def __init__(self, url: str, config: Config, listener: Listener, pacer: ConnectPacer,
                 transport_factory: TransportFactory = WebSocketAppTransport) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"invalid WebSocket URL {url!r}: expected ws://host[:port]/path or wss://...")
        self.url = url
        #: Unique in the process (the reader thread's name carries it), shared by no other client.
        self.number = next(_numbers)
        self._pid = os.getpid()  # the process whose sockets these are (see the module docstring)
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "wss" else 80)
        self._secure = parts.scheme == "wss"
        self._config = config
        self._listener = listener
        self._on_frame = listener.on_frame  # bound once: called for every frame
        self._pacer = pacer
        if transport_factory is WebSocketAppTransport:
            transport_factory = WebSocketAppTransport.factory(config.max_frame_size)
        self._factory = transport_factory
        self._stop = threading.Event()
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        self._sock: Optional[socket.socket] = None
        self._transport: Optional[Transport] = None
        self._healthy = False
        self._redial_after = 0.0  # a floor under the next back-off delay, set by drop()
        self._end: Tuple[str, Optional[int]] = ("closed", None)
        self._refused_status: Optional[int] = None
        self._fatal: Optional[BfxError] = None
        #: Connection attempts made, successful or not.
        self.dials = 0
        #: Dials since the last connection the server spoke the protocol on, the current one included.
        self.attempt = 0
        #: Frames of any kind received (data, events, control); the scheduler watches it move.
        self.frames = 0
        #: ``time.monotonic()`` of the last socket open, or None.
        self.opened_at: Optional[float] = None
        # When each send now in progress began (appended and removed by the senders; a list's
        # append and remove are atomic under the GIL, and send_stalled() only reads it).
        self._sending: List[float] = []

    # -- lifecycle (any thread) -----------------------------------------------------

    def start(self) -> None:
        """Start the reader thread (once)."""
        with self._lock:
            if self._reader is not None:
                raise RuntimeError("connection already started")
            self._reader = threading.Thread(target=self._run, name=f"bfxsync-reader-{self.number}", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """Stop for good without waiting: a close frame now, the socket shut down by :meth:`join`.

        On the reader thread itself (a callback closing the client) the socket is shut at
        once; the reader then ends as soon as that callback returns.
        """
        if self.forked():
            self.release_in_child()
            return
        self._stop.set()
        transport = self._transport
        if transport is not None and self._open.is_set():
            transport.send_close()
        if self.on_reader_thread():
            self._shutdown()

    def join(self, timeout: float) -> None:
        """Wait for the reader to end (after :meth:`stop`), shutting the socket if the server dawdles."""
        reader = self._reader
        if reader is None or reader is threading.current_thread() or self.forked():
            return
        deadline = time.monotonic() + timeout
        reader.join(min(CLOSE_GRACE, timeout))
        while reader.is_alive() and time.monotonic() < deadline:
            self._shutdown()  # again each round: a new socket may have been made meanwhile
            reader.join(min(0.2, max(0.0, deadline - time.monotonic())))

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    @property
    def is_open(self) -> bool:
        """True while a socket is open (the WebSocket handshake is done and it has not ended)."""
        return self._open.is_set()

    def alive(self) -> bool:
        """True while the reader thread runs."""
        return self._reader is not None and self._reader.is_alive()

    def on_reader_thread(self) -> bool:
        """True when called from this connection's reader thread."""
        return threading.current_thread() is self._reader

    def thread(self) -> Optional[threading.Thread]:
        """The reader thread, once started."""
        return self._reader

    def forked(self) -> bool:
        """True in a process forked from the one that created this connection."""
        return os.getpid() != self._pid

    def release_in_child(self) -> None:
        """In a forked child: close this process's copy of the socket, nothing else.

        No close frame and no ``shutdown``: both would end the parent's connection. Takes
        no lock (a parent thread may have held one at the fork, and it stays held here).
        """
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -- used by the link -----------------------------------------------------------

    def send(self, text: str) -> None:
        """Send one text frame from any thread.

        The socket is blocking (reads are cheaper that way), so a send first waits for room,
        at most ``connect_timeout``: a server that stopped reading gets the connection
        dropped (and redialled) instead of a sender blocked for good, holding its link's
        lock. A frame larger than the room the kernel reported can still block after
        that; :meth:`send_stalled` lets the scheduler see it and :meth:`drop` the socket,
        which ends the send.

        Raises:
            NotConnectedError: no socket is open, the server took nothing for
                ``connect_timeout``, or the send failed (the connection redials).
        """
        if os.getpid() != self._pid:
            raise forked_error(self._pid)
        transport, sock = self._transport, self._sock
        if transport is None or sock is None or not self._open.is_set():
            raise NotConnectedError(
                "not connected to the server (the client reconnects by itself; wait_connected() waits for it)")
        limit = self._config.connect_timeout
        if not writable(sock, limit):
            reason = f"the server took no data for {limit:g} s"
            self.drop(reason)
            raise NotConnectedError(f"not sent: {reason} (the client reconnects by itself)")
        started = time.monotonic()
        self._sending.append(started)
        try:
            transport.send(text)
        except NotConnectedError as err:
            # Part of the frame may be on the wire (a send that timed out or was cut): nothing
            # more can follow it on this socket.
            if not self._stop.is_set():
                self.drop(str(err))
            raise
        finally:
            self._sending.remove(started)

    def send_stalled(self, now: float) -> Optional[float]:
        """Seconds the oldest send in progress has been blocked, when over ``connect_timeout``
        (any thread, no lock: the blocked sender holds its link's lock)."""
        oldest = min(self._sending, default=None)
        if oldest is None or now - oldest < self._config.connect_timeout:
            return None
        return now - oldest

    def mark_healthy(self) -> None:
        """The server spoke the protocol on this socket: the next redial starts the back-off afresh."""
        self._healthy = True

    def drop(self, reason: str, redial_after: float = 0.0) -> None:
        """Abandon the current socket so the loop redials (restart notice, stall, sequence gap),
        waiting at least ``redial_after`` seconds before it does."""
        if self._open.is_set() or self._sock is not None:
            logger.warning("dropping connection %d to %s: %s", self.number, self.url, reason)
            self._end = (reason, None)
            self._redial_after = redial_after
            self._shutdown()

    # -- reader thread --------------------------------------------------------------

    def _run(self) -> None:
        mark_bfxsync_thread()
        sharing = None
        try:
            sharing = CPU_SHARING.join(self._config.reader_cpu)  # see bfxsync._engine.cpu_sharing
            self._loop()
        except BaseException as err:  # noqa: BLE001 - never a silently dead reader
            self._open.clear()
            self._listener.on_crashed(err)
        finally:
            CPU_SHARING.leave(sharing)

    def _loop(self) -> None:
        backoff = self._config.backoff
        attempt = 0
        while not self._stop.is_set():
            if not self._pacer.acquire(self._stop):
                break
            self._dial()
            self._open.clear()
            if self._fatal is not None:
                self._listener.on_fatal(self._fatal)  # ends the client, which stops this loop
            will_reconnect = self._config.reconnect and not self._stop.is_set()
            reason, code = self._end
            self._listener.on_closed(reason, code, will_reconnect)
            if not will_reconnect:
                break
            if self._healthy:
                attempt = 0
            hold = retry_after(self._refused_status)
            if hold:
                self._pacer.hold_off(hold)  # the ban is per IP: every connection of the client waits
            delay, self._redial_after = max(backoff.delay(attempt), self._redial_after), 0.0
            attempt += 1
            self._listener.on_reconnecting(attempt, max(delay, hold, self._pacer.wait_time()))
            if self._stop.wait(delay):
                break

    def _dial(self) -> None:
        """One connection attempt, read until it ends. Records why it ended in ``self._end``."""
        self.dials += 1
        self.attempt = 1 if self._healthy else self.attempt + 1
        self._healthy = False
        self._refused_status = None
        self._end = ("closed", None)
        try:
            sock = self._open_socket()
        except ssl.SSLCertVerificationError as err:
            # No redial can fix a certificate (a missing CA, a wrong host name): fail now, with the reason.
            why = f"TLS certificate of {self._host}:{self._port} did not verify: {err.verify_message or err}"
            self._end = (why, None)
            self._sock = None
            self._fatal = CertificateError(
                f"{why} (trust its CA with Config(ssl_context=...), or fix the host name; not retried)")
            self._fatal.__cause__ = err
            return
        except (OSError, ssl.SSLError) as err:
            self._end = (f"connect to {self._host}:{self._port} failed: {err}", None)
            self._sock = None
            return
        if sock is None:  # stopped while connecting
            return
        transport = self._factory(self.url)
        self._transport = transport
        try:
            if not self._stop.is_set():
                transport.run(sock, self)
        except Exception as err:  # noqa: BLE001 - the transport should not raise; never let it kill the thread
            logger.exception("the transport failed")
            self._end = (f"transport failed: {err!r}", None)
        finally:
            # After a close handshake websocket-client leaves the TCP socket open; close it ourselves.
            self._sock = None
            sock.close()

    def _open_socket(self) -> Optional[socket.socket]:
        """TCP (and TLS) connect with a timeout, interruptible by :meth:`stop`; None if stopped."""
        timeout = self._config.connect_timeout
        deadline = time.monotonic() + timeout
        infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        last: Optional[OSError] = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            self._sock = sock
            try:
                if not self._connect(sock, address, deadline):
                    sock.close()
                    return None
                sock.settimeout(timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._secure:
                    context = self._config.ssl_context or ssl.create_default_context()
                    sock = context.wrap_socket(sock, server_hostname=self._host, do_handshake_on_connect=False)
                    self._sock = sock  # the raw socket is detached now: stop() must see this one
                    sock.do_handshake()
                return sock
            except OSError as err:
                sock.close()
                last = err
        raise last or OSError(f"no address for {self._host}")

    def _connect(self, sock: socket.socket, address: Any, deadline: float) -> bool:
        """Non-blocking connect polled in short slices, so stop() is never stuck behind a dropped SYN."""
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            raise OSError(code, os.strerror(code))
        while code != 0:
            if self._stop.is_set():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            _, writable, failed = select.select([], [sock], [sock], min(0.1, remaining))
            if writable or failed:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                break
        sock.setblocking(True)
        return True

    def _shutdown(self) -> None:
        sock = self._sock
        if sock is not None and not self.forked():  # in a fork the socket is the parent's too
            try:
                # The base-class method: SSLSocket.shutdown would also drop its TLS object under the reader.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # not connected (yet or any more)

    # -- TransportListener (reader thread) --------------------------------------------

    def on_open(self) -> None:
        self.frames += 1
        if self._stop.is_set():
            self._shutdown()
            return
        self.opened_at = time.monotonic()
        self._open.set()
        self._listener.on_open()

    def on_message(self, data: Any) -> None:
        self.frames += 1
        self._on_frame(data)

    def on_control(self) -> None:
        self.frames += 1

    def on_error(self, error: Exception) -> None:
        status = getattr(error, "status_code", None)
        if isinstance(error, websocket.WebSocketBadStatusException):
            self._refused_status = status
            self._end = (f"handshake refused with HTTP {status}", None)
        elif self._end[0] == "closed":
            self._end = (f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, None)
        if isinstance(error, FrameError):
            # The server broke the framing rules (or the size limit): counted in
            # Client.stats() under error.kind, like any other bad input; the loop redials.
            problem = getattr(self._listener, "problem", None)
            if problem is not None:
                problem(error.kind, f"connection {self.number} to {self.url} dropped: {error}")
        if not isinstance(error, (websocket.WebSocketConnectionClosedException, OSError,
                                  websocket.WebSocketBadStatusException)):
            logger.debug("websocket error on %s: %r", self.url, error)

    def on_close(self, code: Optional[int], reason: Optional[str]) -> None:
        if self._stop.is_set():
            self._end = ("closed by client", code)  # the server's close code is the echo of ours
        elif code is not None:
            self._end = (f"closed by server: {code} {reason or ''}".rstrip(), code)
