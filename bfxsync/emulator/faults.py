"""The emulator's fault-injection control API (a base class of ``Emulator``).

Every method is thread-safe and returns at once: it flips a switch the hub or a connection
reads on its next frame or request. Methods taking ``conn`` act on one connection (an ID
from ``Emulator.connection_ids``) or, with None, on every open connection, and where it is
stated, on connections opened later too.
"""
from __future__ import annotations

from typing import get_args

from bfxsync import protocol

from .config import SubscribeReply, UnsubscribeReply
from .hub import Hub
from .session import Session

__all__ = ["FaultControls"]


class FaultControls:
    """Fault injection: dropped, stalled or muted connections, missing replies, bad checksums."""

    _hub: Hub  # set by Emulator.__init__

    def _targets(self, conn: int | None) -> list[Session]:
        return self._hub.sessions() if conn is None else [self._hub.find(conn)]

    def drop_connections(self, conn: int | None = None) -> None:
        """End connections abruptly: TCP closed without a close frame (the client sees 1006)."""
        for session in self._targets(conn):
            self._hub.detach(session)
            session.abort()

    def close_connections(self, code: int = 1001, reason: str = "", conn: int | None = None) -> None:
        """Close connections gracefully after their queued frames (returns without waiting)."""
        for session in self._targets(conn):
            self._hub.detach(session)
            session.close(code, reason)

    def set_silent(self, silent: bool = True, conn: int | None = None) -> None:
        """Stall: keep sockets open but send nothing (no data, hb, acks, pongs).

        With ``conn=None`` it applies to every open connection and to new ones; with a
        connection ID only to that one. Requests are still processed, and frames produced
        meanwhile are lost (they consume sequence numbers, so SEQ_ALL shows the gap).
        """
        if conn is None:
            self._hub.silent = silent
        for session in self._targets(conn):
            session.silent = silent

    def mute_channels(self, muted: bool = True, conn: int | None = None) -> None:
        """Stop channel traffic (data and heartbeats of every chanId) but keep answering events.

        Pings still get pongs, and subscribe, unsubscribe and conf are answered (a new
        subscription gets its ack, but no snapshot). This is what a client's per-channel
        liveness check must notice. Frames dropped meanwhile consume SEQ_ALL numbers, as
        with :meth:`set_silent`. With ``conn=None`` it applies to every open connection and
        to new ones; with a connection ID only to that one.
        """
        if conn is None:
            self._hub.muted = muted
        for session in self._targets(conn):
            session.muted = muted

    def hold_info(self, hold: bool = True) -> None:
        """Connections opened while held get no ``info`` frame at all (a stuck handshake).

        The upgrade completes and pings are still answered, so the socket looks alive; the
        connection's subscribe requests are ignored. Releasing the hold affects only
        connections opened afterwards: a held connection never gets its ``info``.
        """
        self._hub.hold_info = hold

    def set_subscribe_reply(self, mode: SubscribeReply = "ok") -> None:
        """How ``subscribe`` is answered, on every connection, from the next request.

        ``"ok"``: normally (ack and snapshot, or an error). ``"none"``: requests are
        silently ignored, with no ack, no error and no subscription.
        """
        _check_mode(mode, get_args(SubscribeReply), "subscribe reply")
        self._hub.subscribe_reply = mode

    def set_unsubscribe_reply(self, mode: UnsubscribeReply = "ok") -> None:
        """How ``unsubscribe`` is answered, on every connection, from the next request.

        ``"ok"``: ``unsubscribed`` (or a 10400 echo for an unknown chanId). ``"none"``: no
        answer at all, although the channel is removed and its data stops.
        ``"error_no_chanid"``: ``{"event":"error","msg":"unsubscribe: invalid","code":10400}``
        with no chanId or other echo, so the client cannot tell which request failed; the
        channel stays subscribed and its data keeps coming.
        """
        _check_mode(mode, get_args(UnsubscribeReply), "unsubscribe reply")
        self._hub.unsubscribe_reply = mode

    def corrupt_checksums(self, symbol: str, prec: str = "P0", on: bool = True) -> None:
        """Make every ``cs`` frame of the ``symbol``/``prec`` book wrong, on every connection.

        The value sent is the correct checksum XOR 1 (still a signed 32-bit int) until
        called again with ``on=False``. :meth:`Emulator.book_checksum` keeps returning the
        correct value.
        """
        if prec not in protocol.BOOK_PRECISIONS:
            raise ValueError(f"prec must be one of {', '.join(protocol.BOOK_PRECISIONS)}, not {prec!r}")
        with self._hub.market_lock:
            if on:
                self._hub.corrupt_checksums.add((symbol, prec))
            else:
                self._hub.corrupt_checksums.discard((symbol, prec))

    def skip_sequence(self, conn: int | None = None, count: int = 1) -> None:
        """Make the next SEQ_ALL number jump by ``count`` (a lost frame) on each target."""
        for session in self._targets(conn):
            session.skip_sequence(count)

    def set_send_delay(self, seconds: float, conn: int | None = None) -> None:
        """Delay every frame by ``seconds`` before it is written (0 restores)."""
        for session in self._targets(conn):
            session.delay = seconds

    def broadcast_info(self, code: int, msg: str = "") -> None:
        """Send ``{"event":"info","code":code,"msg":msg}`` to every connection."""
        for session in self._hub.sessions():
            session.send_event({"event": "info", "code": code, "msg": msg})

    def start_maintenance(self) -> None:
        """Info 20060 to everyone; new connections get ``platform.status`` 0 until it ends."""
        self._hub.platform_status = 0
        self.broadcast_info(protocol.INFO_MAINTENANCE_START, "Maintenance: resync start")

    def end_maintenance(self) -> None:
        """Info 20061 to everyone; new connections get ``platform.status`` 1 again."""
        self._hub.platform_status = 1
        self.broadcast_info(protocol.INFO_MAINTENANCE_END, "Maintenance: resync end")

    def inject(self, text: str, chan_id: int | None = None) -> None:
        """Send ``text`` unchanged to every connection, or only those subscribed to ``chan_id``."""
        for session in self._hub.sessions():
            with session.lock:
                if chan_id is None or chan_id in session.subs:
                    session.send_raw(text)


def _check_mode(mode: str, modes: tuple[str, ...], what: str) -> None:
    # The Literal annotation only helps type-checked callers; tests often pass plain strings.
    if mode not in modes:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, modes))}, not {mode!r}")
