"""Client options, grouped in one frozen object (use ``attrs.evolve`` for variants)."""
from __future__ import annotations

import os
import ssl
from typing import Optional, Union

from attrs import field, frozen
from attrs.validators import ge, gt, in_, instance_of, le, optional

from . import protocol
from .account.state import MAX_CLOSED_ORDERS
from .backoff import Backoff


def _path_or_none(value: Union[None, str, "os.PathLike[str]"]) -> Optional[str]:
    return None if value is None else os.fspath(value)


def _cpu_setting(instance: object, attribute: object, value: object) -> None:
    if value is None or value == "auto" or (type(value) is int and value >= 0):
        return
    raise ValueError(f"reader_cpu must be 'auto', a CPU number (an int >= 0) or None, not {value!r}")


@frozen
class Config:
    """Options of a :class:`bfxsync.Client`.

    Attributes:
        checksums: ask for ``cs`` frames (``OB_CHECKSUM``) and verify every book against them.
        sequence: ask for sequence numbers (``SEQ_ALL``); a gap means lost frames, so it is
            counted, reported to ``on_error`` and the connection is redialled (every
            subscription on it is rebuilt).
        timestamps: ask for server timestamps (``TIMESTAMP``), exposed as ``ChannelMessage.mts``.
        bulk_updates: ask for book updates in batches (``BULK_UPDATES``).
        verify_funding_checksums: resync funding books on a checksum mismatch. Off by
            default because the server's funding-book ordering is undocumented and the
            official clients skip the check; mismatches are still counted and logged.
        heartbeat_timeout: seconds without any frame after which the connection is
            considered dead and redialled (the server sends heartbeats every 15 s).
        keepalive_interval: seconds of silence after which the client sends an
            application ``ping`` (keeps idle sockets open and proves liveness);
            ``None`` means a third of ``heartbeat_timeout``.
        reconnect: redial after a drop (with ``backoff``) instead of staying closed.
        backoff: reconnect pacing.
        max_connects_per_minute: cap on connection attempts of the whole client, every
            connection together (the exchange bans an IP for 60 s past 15-20 a minute).
        connect_timeout: seconds allowed for the TCP/TLS/WebSocket handshake and for the
            server's ``info`` frame after it; also the longest a frame waits for the socket
            to take it (a server that stops reading gets the connection redialled).
        ssl_context: TLS settings for ``wss://`` URLs (default: system trust store).
        max_subscriptions: subscriptions per connection; more open further connections
            (the documentation says 25 per connection).
        subscribe_rate: subscribe requests sent per second, client-wide, after a burst
            of ``subscribe_burst``.
        subscribe_burst: subscribe requests that may leave at once.
        request_timeout: seconds a subscribe or unsubscribe may go unanswered; then the
            subscription fails with ``SubscriptionError`` (the server ignores some invalid
            requests) or the channel is treated as gone (unsubscribe, and ``on_recovery``
            says so).
        channel_timeout: seconds a subscribed channel may go without data or heartbeat
            (the server sends one every 15 s) before it is resubscribed alone.
        idle_connection_grace: seconds an extra connection stays open with no
            subscriptions before it is closed.
        input_rate: account inputs (orders, cancels, calc) sent per second after a burst
            of ``input_burst`` (the docs allow ``calc`` 8 times a second); inputs wait,
            they are never dropped.
        input_burst: account inputs that may leave at once.
        max_closed_orders: closed orders the account keeps with their final status
            (``Account.closed_order``, ``AccountSnapshot.closed_orders``); the oldest close
            is forgotten first.
        dispatch: how callbacks run unless a subscription or account stream says otherwise:
            ``inline`` (on the connection's reader thread, in frame order) or ``queued``
            (the reader only queues; a callback thread runs them, in order per
            subscription). See docs/market-data.md, "Slow consumers".
        queue_size: messages a queued subscription may hold before ``queue_overflow`` applies.
        queue_overflow: what a full queue does: ``block`` (the reader waits: backpressure,
            nothing lost), ``drop_oldest`` (counted) or ``latest`` (conflate to the newest
            state, counted as conflated). A lossy policy here never applies to the
            account's order, trade and other event streams (``bfxsync.trading.EVENT_STREAMS``):
            they ``block`` unless ``account.set_dispatch(stream, overflow=...)`` asks.
        dispatch_threads: the most callback threads a client starts for queued
            callbacks (started on demand; none unless something is queued).
        max_frame_size: largest WebSocket frame (or fragmented message) accepted, in
            bytes. A frame header announcing more drops the connection before any of its
            payload is buffered; it is counted in ``Client.stats()["oversized_frame"]``
            and the connection redials.
        record: write every frame of every connection, in and out, to this JSON Lines
            file (credentials redacted; format: :mod:`bfxsync.recording`). None records
            nothing and costs nothing. ``Emulator.replay(path)`` serves a recording.
        record_max_bytes: size at which the recording rotates to ``PATH.1`` (and older
            ones to ``PATH.2`` ...).
        record_backups: rotated recordings kept; 0 starts the file over instead.
        record_flush_interval: seconds between the recorder's writes: what a crash can
            lose at most. Frames are queued on the reader thread and written by the
            recorder's own thread, never one disk write per frame.
        reader_cpu: the CPU that the reader threads of the process share once two or more
            run (one per connection, every client of the process together): ``"auto"``
            (the default) takes the highest-numbered CPU the process may use, a number
            takes that CPU, None never pins a reader. Only one thread runs Python at a
            time, so readers on one core lose no parallelism, and they hand the GIL to each
            other without waking threads on other cores: a quiet connection beside 20 busy
            ones waits 0.6 ms instead of 8 ms (99th percentile). A pinned reader with a
            backlog runs as a ``SCHED_BATCH`` thread (woken, it does not preempt the reader
            running) until it keeps up again. Your own threads, and a lone reader, are never
            pinned (a thread started on a reader thread inherits its CPU and policy). Linux
            only; nothing happens elsewhere or on a
            free-threaded Python. See docs/performance.md, "Many connections".
    """

    checksums: bool = True
    sequence: bool = False
    timestamps: bool = False
    bulk_updates: bool = False
    verify_funding_checksums: bool = False
    heartbeat_timeout: float = field(default=30.0, validator=gt(0))
    keepalive_interval: Optional[float] = field(default=None, validator=optional(gt(0)))
    reconnect: bool = True
    backoff: Backoff = field(factory=Backoff, validator=instance_of(Backoff))
    max_connects_per_minute: int = field(default=15, validator=ge(1))
    connect_timeout: float = field(default=10.0, validator=gt(0))
    ssl_context: Optional[ssl.SSLContext] = field(default=None, validator=optional(instance_of(ssl.SSLContext)))
    max_subscriptions: int = field(default=protocol.MAX_SUBSCRIPTIONS, validator=ge(1))
    subscribe_rate: float = field(default=30.0, validator=gt(0))
    subscribe_burst: int = field(default=30, validator=ge(1))
    request_timeout: float = field(default=15.0, validator=gt(0))
    channel_timeout: float = field(default=2 * protocol.HEARTBEAT_INTERVAL + 5.0, validator=gt(0))
    idle_connection_grace: float = field(default=10.0, validator=ge(0))
    input_rate: float = field(default=8.0, validator=gt(0))
    input_burst: int = field(default=8, validator=ge(1))
    max_closed_orders: int = field(default=MAX_CLOSED_ORDERS, validator=ge(1))
    max_frame_size: int = field(default=16 * 1024 * 1024, validator=ge(1024))
    record: Optional[str] = field(default=None, converter=_path_or_none)
    record_max_bytes: int = field(default=256 * 1024 * 1024, validator=ge(4096))
    record_backups: int = field(default=3, validator=ge(0))
    record_flush_interval: float = field(default=0.5, validator=[gt(0), le(1.0)])
    dispatch: str = field(default="inline", validator=in_(("inline", "queued")))
    queue_size: int = field(default=1000, validator=ge(1))
    queue_overflow: str = field(default="block", validator=in_(("block", "drop_oldest", "latest")))
    dispatch_threads: int = field(default=4, validator=ge(1))
    reader_cpu: Union[str, int, None] = field(default="auto", validator=_cpu_setting)

    def __attrs_post_init__(self) -> None:
        if self.keepalive_interval is not None and self.keepalive_interval >= self.heartbeat_timeout:
            raise ValueError(
                f"keepalive_interval ({self.keepalive_interval:g} s) must be shorter than heartbeat_timeout "
                f"({self.heartbeat_timeout:g} s), or a quiet but healthy connection would be dropped"
            )

    @property
    def keepalive(self) -> float:
        """The effective keepalive interval in seconds."""
        return self.keepalive_interval if self.keepalive_interval is not None else self.heartbeat_timeout / 3

    @property
    def flags(self) -> int:
        """The complete ``conf`` flag set these options ask for (one frame: each conf replaces the last)."""
        return (
            (protocol.FLAG_CHECKSUM if self.checksums else 0)
            | (protocol.FLAG_SEQ_ALL if self.sequence else 0)
            | (protocol.FLAG_TIMESTAMP if self.timestamps else 0)
            | (protocol.FLAG_BULK_UPDATES if self.bulk_updates else 0)
        )
