"""One client connection: flags, sequence numbers, subscriptions and an ordered send queue.

Frames for one connection come from several threads (the connection's request handler,
the market thread, the heartbeat thread, the control API). Each frame is built, given its
sequence number and queued under the connection lock, so sequence numbers are assigned in
exactly the order frames are written. A writer thread per connection drains the queue;
producers never block on a socket, so a slow or dead client cannot stall the market thread.
A client that lets ``max_pending_frames`` pile up is dropped.

Lock order: market lock → connection lock → registry lock (see ``hub.py``).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from typing import Any, Literal, Protocol

from bfxsync import protocol

from . import wire
from .channels import Subscription

__all__ = ["AuthSeq", "Session", "Transport"]

#: How a channel-0 frame moves the account sequence number (SEQ_ALL): ``next`` advances it,
#: ``current`` repeats the last one (notifications), ``zero`` sends 0 (calc answers).
AuthSeq = Literal["next", "current", "zero"]

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """What a session needs from its WebSocket (``server.py`` adapts websockets to it)."""

    def send(self, text: str) -> None:
        """Write one text frame (writer thread); may block, and raises once the connection is gone."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason`` (writer thread only)."""

    def abort(self) -> None:
        """End the TCP connection at once, without a close frame; callable from any thread."""


def now_ms() -> int:
    """Server time in ms, as put in ``pong``, ``TIMESTAMP`` and trades."""
    return int(time.time() * 1000)


class _Close:
    """Queue item asking the writer for a graceful close after the frames before it."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Session:
    """State of one connection. Every public method is thread-safe.

    Args:
        conn_id: the emulator's number for this connection (shown by ``subscriptions()``).
        transport: the socket side.
        max_pending: queued frames tolerated before the connection is dropped.
    """

    def __init__(self, conn_id: int, transport: Transport, max_pending: int = 10_000) -> None:
        self.id = conn_id
        self.subs: dict[int, Subscription] = {}
        self.flags = 0
        self.silent = False  # fault: nothing at all is written
        self.muted = False  # fault: channel frames (data and hb) are dropped, events still go out
        self.held = False  # fault: never sent ``info``, and its subscribe requests are ignored
        self.delay = 0.0
        self.lock = threading.RLock()
        self._transport = transport
        self._max_pending = max_pending
        self._cond = threading.Condition(self.lock)
        self._queue: deque[str | _Close] = deque()
        self._queued = 0  # items ever queued
        self._written = 0  # items the writer finished (sent, or failed)
        self._in_flight = 0  # items the writer took from the queue and has not finished
        self._seq = 0
        self._skip = 0
        self._account = False  # authenticated: channel 0 is open (heartbeats, account sequence)
        self._account_traffic = 0.0
        self._auth_seq = 0
        self._auth_skip = 0
        self._open = True  # accepting frames
        self._dead = False  # writer gone: nothing will be written any more
        self._gone = threading.Event()  # set when the connection ends; interrupts delays
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name=f"bfxsync-emulator-writer-{conn_id}")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (called once, by ``Hub.open_session``)."""
        self._writer.start()

    def finish(self, timeout: float = 5.0) -> None:
        """The connection is over: stop accepting frames, discard the queue, join the writer."""
        self._stop_accepting()
        if self._writer.ident is not None and self._writer is not threading.current_thread():
            self._writer.join(timeout)
            if self._writer.is_alive():
                logger.warning("writer of connection %d did not stop within %.1f s", self.id, timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Graceful close: frames already queued are written, then the close frame."""
        with self._cond:
            if not self._open:
                return
            self._open = False
            self._push(_Close(code, reason))

    def abort(self) -> None:
        """Abrupt close: the TCP connection ends without a close frame (the client sees 1006)."""
        self._stop_accepting()
        self._transport.abort()

    @property
    def is_open(self) -> bool:
        """True until the connection stops accepting frames (closed, aborted or dropped)."""
        return self._open

    # -- producing frames ----------------------------------------------------------------
    def set_flags(self, flags: int) -> None:
        """Replace the flag set (``conf`` replaces, docs: ws-general); SEQ_ALL restarts the count at 1."""
        with self._cond:
            if flags & protocol.FLAG_SEQ_ALL and not self.flags & protocol.FLAG_SEQ_ALL:
                self._seq = 0
            self.flags = flags

    def skip_sequence(self, count: int = 1) -> None:
        """Fault injection: the next array frame's sequence number jumps by ``count``."""
        with self._cond:
            self._skip += count

    def open_account_channel(self) -> None:
        """Authentication succeeded: channel 0 gets heartbeats and the account sequence starts at 1."""
        with self._cond:
            self._account = True
            self._account_traffic = time.monotonic()
            self._auth_seq = 0

    def skip_auth_sequence(self, count: int = 1) -> None:
        """Fault injection: the next account sequence number (channel 0) jumps by ``count``."""
        with self._cond:
            self._auth_skip += count

    def wait_gone(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True (early) if the connection ended meanwhile."""
        return self._gone.wait(timeout)

    def send_event(self, event: dict[str, Any]) -> None:
        """Queue an event object (events carry no sequence number or timestamp)."""
        with self._cond:
            if self._open and not self.silent:
                self._push(wire.encode(event))

    def send_raw(self, text: str) -> None:
        """Queue ``text`` unchanged (fault injection)."""
        with self._cond:
            if self._open and not self.silent:
                self._push(text)

    def send_array(self, chan_id: int, body: list[Any], mts: int | None = None,
                   heartbeat: bool = False, auth: AuthSeq | None = None) -> None:
        """Queue ``[chan_id, *body]`` with the trailing elements the flags ask for (docs: ws-general).

        With DEC_S the body's floats become strings. SEQ_ALL appends the connection's next
        sequence number; TIMESTAMP then appends the server time, except on heartbeats.
        (Whether the live server timestamps ``hb`` frames is unconfirmed; we assume not,
        like its sample frames. ``cs`` frames get one: also unconfirmed, not confirmed by the docs.)
        A silenced or muted connection still consumes sequence numbers, as if the frames
        were lost.

        Channel-0 frames pass ``auth``: with SEQ_ALL they end ``[SEQ, AUTH_SEQ]``, the
        second counting the account frames of this authenticated session (see ``AuthSeq``).
        """
        with self._cond:
            if not self._open:
                return
            sub = self.subs.get(chan_id)
            if sub is not None:
                sub.last_traffic = time.monotonic()
            elif chan_id == 0:
                self._account_traffic = time.monotonic()
            flags = self.flags
            frame = [chan_id]
            frame.extend(wire.decimal_strings(body) if flags & protocol.FLAG_DEC_S else body)
            auth_seq = None if auth is None else self._next_auth_seq(auth)
            if flags & protocol.FLAG_SEQ_ALL:
                self._seq += 1 + self._skip
                self._skip = 0
                frame.append(self._seq)
                if auth_seq is not None:
                    frame.append(auth_seq)
            if flags & protocol.FLAG_TIMESTAMP and not heartbeat:
                frame.append(mts if mts is not None else now_ms())
            if not self.silent and not self.muted:
                self._push(wire.encode(frame))

    def _next_auth_seq(self, mode: AuthSeq) -> int:
        # Called with the lock held. The account sequence advances even without SEQ_ALL, so
        # a client enabling the flag later sees the session's true count.
        if mode == "zero":
            return 0
        if mode == "next":
            self._auth_seq += 1 + self._auth_skip
            self._auth_skip = 0
        return self._auth_seq

    def send_heartbeats(self, now: float, interval: float) -> float:
        """Send ``hb`` on every channel idle for ``interval``; return when the next one is due.

        Channel 0 of an authenticated connection counts as a channel (``[0,"hb"]``).
        """
        with self._cond:
            due = now + interval
            if self._account:
                if self._account_traffic + interval <= now:
                    self.send_array(0, [protocol.HEARTBEAT], heartbeat=True)
                due = min(due, self._account_traffic + interval)
            for chan_id, sub in list(self.subs.items()):
                if sub.last_traffic + interval <= now:
                    self.send_array(chan_id, [protocol.HEARTBEAT], heartbeat=True)
                due = min(due, sub.last_traffic + interval)
            return due

    def _stop_accepting(self) -> None:
        # _gone is set under the lock so the writer cannot miss it between check and wait.
        with self._cond:
            self._open = False
            self._queue.clear()
            self._gone.set()
            self._cond.notify_all()

    def _push(self, item: str | _Close) -> None:
        # Called with the lock held.
        unsent = len(self._queue) + self._in_flight
        if unsent >= self._max_pending:
            logger.warning("connection %d has %d unsent frames; dropping it as too slow", self.id, unsent)
            self._stop_accepting()
            self._transport.abort()
            return
        self._queue.append(item)
        self._queued += 1
        self._cond.notify_all()

    # -- writing -------------------------------------------------------------------------
    def wait_flushed(self, timeout: float) -> bool:
        """Wait until every frame queued so far has been written (or the connection ended)."""
        with self._cond:
            target = self._queued
            def done() -> bool:
                return self._written >= target or self._dead or (not self._open and not self._queue)

            return self._cond.wait_for(done, timeout)

    def _write_loop(self) -> None:
        # Everything queued is taken in one hold of the lock and written outside it. Producers
        # (the market, heartbeats, request handlers) take the same lock for every frame; a
        # writer that came back for it twice per frame spent most of its time waiting for it
        # (on Python 3.13 most of all, whose locks hand off to waiters), and frames then aged
        # in this queue for seconds, which clients measured as their own lag.
        ending = False
        while not ending:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._gone.is_set())
                if not self._queue:
                    break
                batch, self._queue = self._queue, deque()
                self._in_flight = len(batch)
                delay = self.delay
            written = 0
            try:
                for item in batch:
                    # Checked per frame: at most one frame leaves after the connection ended.
                    if self._gone.is_set() or (delay > 0 and self._gone.wait(delay)):
                        ending = True
                        break
                    written += 1  # counted first: an item that fails also counts as finished
                    if isinstance(item, _Close):
                        self._transport.close(item.code, item.reason)
                        ending = True
                        break
                    self._transport.send(item)
            # Broad on purpose: the transport raises whatever its library raises once the
            # connection is gone, and the writer must always reach its bookkeeping below.
            # The handler thread cleans the connection up.
            except Exception as exc:  # noqa: BLE001
                logger.debug("connection %d: send failed: %r", self.id, exc)
                ending = True
            finally:
                with self._cond:
                    self._written += written
                    self._in_flight = 0
                    self._cond.notify_all()
        with self._cond:
            self._dead = True
            self._open = False
            self._queue.clear()
            self._cond.notify_all()


def shutdown_socket(sock: socket.socket) -> None:
    """End a TCP connection at once, without a WebSocket close frame or TLS close_notify.

    ``shutdown`` (unlike ``close``) also wakes a thread blocked sending on the socket. The
    plain ``socket.socket`` method is called on purpose, bypassing ``SSLSocket.shutdown``.
    """
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
