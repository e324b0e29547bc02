"""Link: the protocol spoken on one connection.

Every frame of the connection goes through :meth:`Link.on_frame`. Array frames
(channel data) are the hot path: the frame is decoded once, every float kept as its wire
text (books need it for the checksum, the models read numbers from it, channel 0 keeps
money exact), the subscription looked up by chanId without a lock, and the payload
handed to the handle. Object frames (events) drive the
handshake: ``info`` -> ``conf`` + replay of every subscription held here, acks,
errors, unsubscribe confirmations, pongs (message shapes:
https://docs.bitfinex.com/docs/ws-general).

Event frames are handled in :mod:`bfxsync._engine.link_events`. Liveness and every
timeout are decided by :mod:`bfxsync._engine.supervision`; the
scheduler calls :meth:`Link.sweep`, which carries the decisions out. Problems in incoming data (malformed frames, unknown
chanIds, wrong shapes) are counted, logged once per kind, and never end the reader.

Threading: every change of the link's state runs under :attr:`Link.lock` (see the
contract in :mod:`bfxsync._engine`); events for user callbacks are emitted once it is
released (:meth:`Link._emit`). Requests are sent under the lock, so a text built from
the registry's state leaves on the connection that state describes.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any, Callable, Counter, Deque, Dict, List, Optional, Tuple

from ..errors import BfxError, BfxTimeoutError, NotConnectedError, ProtocolError, SubscriptionError
from ..events import Disconnected, Reconnecting, Recovery, Unsubscribed
from ..protocol import CHECKSUM, FLAG_SEQ_ALL, FLAG_TIMESTAMP, HEARTBEAT, codec
from ..protocol.codec import decode_tokens, scan_tokens
from ..subscriptions.base import Subscription
from .connection import Connection
from .link_events import EventFrames
from .ownership import LinkLock
from .pacing import ConnectPacer, SendPacer
from .queues import interrupt_waits_with
from .registry import ChannelRegistry
from .runtime import Runtime
from .supervision import Supervision
from .threads import wait_event
from .transport import TransportFactory

logger = logging.getLogger("bfxsync")

#: The flags that append a sequence number or a timestamp to data frames.
_TRAILING_FLAGS = FLAG_SEQ_ALL | FLAG_TIMESTAMP

#: The kinds of bad input a link counts (``Link.problem``): every one is in its stats from the start,
#: with 0, so ``stats()[kind]`` never raises KeyError before the first one. ``protocol_error`` and
#: ``oversized_frame`` are framing faults (``FrameError.kind``), counted when they drop the socket.
PROBLEM_KINDS = ("malformed", "internal", "bad_payload", "unknown_channel", "account_frame", "unknown_event",
                 "repeated_info", "unexpected_ack", "unexpected_auth", "protocol_error", "oversized_frame")

#: Counters always present in a link's stats.
STAT_KEYS = ("disconnects", "reconnects", "sequence_gaps", "dials", "channel_stalls", "request_timeouts",
             "handshake_timeouts", "resubscribes") + PROBLEM_KINDS


def _decode(decode: Callable[[str], Any], text: str) -> Any:
    """Decode a frame; undecodable text (bad JSON, absurd nesting) is bad input, not our bug."""
    try:
        return decode(text)
    except (ValueError, RecursionError) as err:
        raise ProtocolError(f"undecodable frame: {err}", raw=text[:500]) from None


def _at(message: List[Any], index: int) -> Any:
    return message[index] if len(message) > index else None


class Link(EventFrames):
    """One connection's protocol state: handshake, parser, chanId registry, pings, counters.

    Args:
        url: the endpoint.
        runtime: client-wide options, callback runner and end state.
        pacer: the client-wide connection pacer.
        send_pacer: the client-wide subscribe pacer.
        wake: asks the scheduler to run again within the given seconds.
        transport_factory: the transport each dial uses.
    """

    def __init__(self, url: str, runtime: Runtime, pacer: ConnectPacer, send_pacer: SendPacer,
                 wake: Callable[[float], None], transport_factory: TransportFactory) -> None:
        self.url = url
        self.config = runtime.config
        self._runtime = runtime
        self._callbacks = runtime.callbacks
        #: Held by every change of this link's state, whichever thread makes it.
        self.lock = LinkLock("a link")
        self.registry = ChannelRegistry(self.lock)
        self._active = self.registry.active.get  # the dict is changed in place, never replaced
        self.connection = Connection(url, runtime.config, self, pacer, transport_factory)
        self.number = self.connection.number
        self.lock.name = f"link {self.number}"
        self._send_pacer = send_pacer
        self.wake = wake
        #: The conf flags in force on the current connection (0 until the server confirms).
        self.flags = 0
        self._last_seq: Optional[int] = None
        self._connected = threading.Event()
        self._ever_connected = False
        #: True while the platform is in maintenance (info 20060 until 20061, or platform status 0).
        self.maintenance = False
        #: Why the last connection (or attempt) ended, or None.
        self.last_disconnect: Optional[str] = None
        self.counts: Counter[str] = collections.Counter()
        self._ping_ids = itertools.count(1)
        self._pings: Dict[int, Tuple[threading.Event, List[float]]] = {}
        self._outbox: Deque[Subscription] = collections.deque()
        self.supervision = Supervision(runtime.config, time.monotonic(), self.lock)
        #: Set when the socket is abandoned: a reader blocked on a full ``block`` queue gives
        #: up waiting (the message is counted as discarded) so that it can notice the drop.
        self._interrupt = threading.Event()

    def __repr__(self) -> str:
        return f"<Link {self.number} {self.url} {'connected' if self.connected else 'not connected'}>"

    # -- owner's interface (any thread) --------------------------------------------------

    def start(self) -> None:
        """Start dialling."""
        self.connection.start()

    def stop(self) -> None:
        """Stop for good without waiting, and release every waiter."""
        self.connection.stop()
        self._fail_pings()

    @property
    def connected(self) -> bool:
        """True while connected and past the ``info`` handshake."""
        return self._connected.is_set()

    def load(self) -> int:
        """Channels this link holds or has not yet seen leave (what the server's limit counts)."""
        with self.lock:
            return len(self.registry.wanted()) + self.registry.lingering

    def add(self, subscription: Subscription) -> None:
        """Carry ``subscription`` here; it is sent at once if connected (paced), else on connect.

        A handle unsubscribed meanwhile (between the pool placing it and this call) is not
        added: its ``Unsubscribed`` was reported already and nothing must reach the server.
        """
        with self.lock:
            if subscription._ended:
                return
            if self.registry.add(subscription):
                self.send_subscribe(subscription)

    def remove(self, subscription: Subscription) -> None:
        """Stop carrying ``subscription`` (the user unsubscribed); it completes when the server confirms."""
        with self.lock:
            subscription._drop_backlog()  # no data callback after unsubscribe() returns
            chan_id, _ = self.registry.remove(subscription)
            self.supervision.forget(subscription)
            if chan_id is not None:
                subscription._on_unsubscribing()  # waits end now; Unsubscribed comes with the server's confirmation
                self.send(codec.encode_unsubscribe(chan_id))
            elif subscription._on_closed():
                # Never acknowledged: over for the user now; a late ack is unsubscribed quietly.
                self._emit("unsubscribed", Unsubscribed(subscription))

    def ping(self, timeout: float) -> float:
        """Send a ``ping`` and return the round trip in seconds once the ``pong`` arrives."""
        cid = next(self._ping_ids)
        waiter: Tuple[threading.Event, List[float]] = (threading.Event(), [])
        self._pings[cid] = waiter  # registered before the request goes out
        started = time.monotonic()
        try:
            self.connection.send(codec.encode_ping(cid))
            if not wait_event(waiter[0], timeout):
                raise BfxTimeoutError(f"no pong within {timeout:g} s")
            if not waiter[1]:
                raise NotConnectedError("the connection ended before the pong arrived")
            return waiter[1][0] - started
        finally:
            self._pings.pop(cid, None)

    def stats(self) -> Dict[str, Any]:
        """This connection's counters."""
        stats: Dict[str, Any] = dict.fromkeys(STAT_KEYS, 0)
        with self.lock:
            stats.update(self.counts)
        stats["dials"] = self.connection.dials
        return stats

    def sweep(self, now: float) -> None:
        """Scheduler thread: keepalive, silent sockets and channels, unanswered requests, paused resyncs."""
        with self.lock:
            connection = self.connection
            if connection.stopped:
                return
            drop, keepalive = self.supervision.socket_verdict(
                now, connection.frames, connection.is_open, self.connected, connection.opened_at)
            if drop is not None:
                if not self.connected:
                    self.counts["handshake_timeouts"] += 1
                    self.recovered("redial", drop)
                self.drop(drop)
                return
            if keepalive:
                self.send(codec.encode_ping(next(self._ping_ids)))
            if not self.connected:
                return
            unanswered, given_up = self.registry.expired(now, self.config.request_timeout)
            for subscription in unanswered:
                # The server ignores some invalid requests (an unknown deriv: key gets no reply at
                # all), so an unanswered subscribe fails visibly instead of being retried for ever.
                self.counts["request_timeouts"] += 1
                rejection = SubscriptionError(None, f"no answer to the subscribe request within "
                                                    f"{self.config.request_timeout:g} s (the server ignores some invalid "
                                                    "requests, such as unknown deriv: keys)", subscription.spec.request())
                logger.warning("subscription %r failed: %s", subscription.spec, rejection)
                subscription._on_failed(rejection)
                self._report(rejection, subscription)
            for chan_id, subscription, again in given_up:
                self.counts["request_timeouts"] += 1
                self.recovered("unsubscribe_timeout", f"chanId {chan_id} was never confirmed unsubscribed; "
                               "treated as gone", subscription)
                self.after_leave(subscription, again)
            active = [subscription for _, subscription in self.registry.active_items()]
            for subscription in self.supervision.silent_channels(now, active):
                reason = f"no data or heartbeat for {self.config.channel_timeout:g} s"
                self.counts["channel_stalls"] += 1
                logger.warning("%r went silent (%s); resubscribing it", subscription.spec, reason)
                self.recovered("resubscribe", reason, subscription)
                self.resync(subscription, reason)
            for subscription in self.supervision.due_resubscribes(now):
                self._outbox.append(subscription)
            self.drain()

    # -- sending ---------------------------------------------------------------------------

    def drop(self, reason: str) -> None:
        """Abandon the socket (the connection redials); a reader blocked on a full queue stops waiting."""
        self._interrupt.set()
        self.connection.drop(reason)

    def send(self, text: str) -> None:
        """Send, or leave it to the replay of the next connection if this one just dropped (lock held)."""
        try:
            self.connection.send(text)
        except NotConnectedError:
            logger.debug("not sent (disconnected; replayed on reconnect): %.200s", text)

    def send_subscribe(self, subscription: Subscription) -> None:
        """Queue a subscribe request; requests leave at the client-wide subscribe rate (lock held)."""
        self.lock.check("Link._outbox")
        self._outbox.append(subscription)
        self.drain()

    def drain(self) -> None:
        """Send queued subscribe requests while the pacer allows; the scheduler retries the rest (lock held)."""
        self.lock.check("Link._outbox")
        while self._outbox:
            wait = self._send_pacer.take()
            if wait:
                self.wake(wait)
                return
            subscription = self._outbox.popleft()
            sub_id = self.registry.begin_send(subscription)
            if sub_id is not None:
                self.send(codec.encode_subscribe(subscription.channel, subscription.spec.request(), sub_id))

    def rejoin(self, subscription: Subscription) -> None:
        """Unsubscribe an active channel so it can be subscribed afresh once the server confirms.

        Nothing happens to a channel that is not active here any more (unsubscribed,
        detached by a drop, or already rejoining since the caller looked it up).
        """
        with self.lock:
            chan_id = self.registry.rejoin(subscription)
            if chan_id is not None:
                subscription._on_detached()
                self.send(codec.encode_unsubscribe(chan_id))

    def resync(self, subscription: Subscription, reason: str) -> None:
        """Rebuild one channel from a fresh snapshot (after a pause if it keeps failing); any thread."""
        with self.lock:
            self.counts["resubscribes"] += 1
            self.supervision.resync(subscription, reason, time.monotonic())
            self.rejoin(subscription)

    def after_leave(self, subscription: Subscription, again: bool) -> None:
        """A channel is gone from the server (confirmed or given up): subscribe again, or report it over (lock held)."""
        self.lock.check("Link.after_leave")
        if again:
            pause = self.supervision.ready_to_resubscribe(subscription, time.monotonic())
            if pause is None:
                self.send_subscribe(subscription)
            else:
                self.wake(pause)
        elif subscription._on_closed():  # False: a cancelled request was reported already
            self._emit("unsubscribed", Unsubscribed(subscription))

    def recovered(self, kind: str, reason: str, subscription: Optional[Subscription] = None) -> None:
        """Tell the user the client repaired something by itself."""
        self._emit("recovery", Recovery(kind, reason, subscription, self.number))

    def _emit(self, kind: str, event: Any) -> None:
        """Emit to the client's handlers once the link's lock is released (at once if not held)."""
        self.lock.later(self._callbacks.emit, kind, event)

    def _report(self, error: BfxError, subscription: Optional[Subscription] = None) -> None:
        """Report to the on_error handlers once the link's lock is released (at once if not held)."""
        self.lock.later(self._callbacks.report, error, subscription)

    def _count(self, kind: str) -> int:
        """Add one to a counter; returns the new count (any thread)."""
        with self.lock:
            self.counts[kind] += 1
            return self.counts[kind]

    def problem(self, kind: str, message: str) -> None:
        """Count a problem with incoming data; log the first of each kind as a warning."""
        if self._count(kind) == 1:
            logger.warning("%s (first of its kind; later ones are counted in Client.stats()[%r])", message, kind)

    def _fail_pings(self) -> None:
        for event, _ in list(self._pings.values()):
            event.set()  # no time recorded: ping() raises NotConnectedError

    # -- connection Listener: reader thread -----------------------------------------------

    def on_open(self) -> None:
        """A socket opened: flags reset until the server confirms ours (each connection starts bare)."""
        interrupt_waits_with(self._interrupt)  # this thread's blocked queue waits end when the socket is dropped
        with self.lock:
            self._interrupt.clear()
            self.flags = 0
            self._last_seq = None

    def on_frame(self, data: Any) -> None:
        """The one parser. Never raises: the reader thread has to survive any input."""
        try:
            text = data.decode("utf-8") if type(data) is bytes else data
            if text[:1] != "[":
                self._on_event(_decode(codec.decode, text))
                return
            # A channel frame: the hot path, written out here rather than called, and reading
            # only locals and module constants. One decoder serves every channel (see the
            # module docstring), so the chanId comes out of the one parse.
            try:
                message, end = scan_tokens(text, 0)
                if end != len(text):
                    message = decode_tokens(text)  # whitespace or trailing data: the full decoder decides
                chan_id = message[0]
                second = message[1]
            except StopIteration:
                raise ProtocolError("undecodable frame: no JSON value", raw=text[:500]) from None
            except (ValueError, RecursionError) as err:
                raise ProtocolError(f"undecodable frame: {err}", raw=text[:500]) from None
            except IndexError:
                raise ProtocolError(f"channel frame without payload: {text[:100]!r}") from None
            if type(chan_id) is not int:
                raise ProtocolError(f"channel frame without a numeric chanId: {text[:100]!r}")
            subscription = self._active(chan_id)
            if subscription is None:
                self._on_stray(chan_id, message, text)
                return
            subscription.received += 1
            flags = self.flags
            if type(second) is list:
                payload, tag, rest = second, None, 2
            elif second == HEARTBEAT:
                if flags & FLAG_SEQ_ALL:
                    self._check_sequence(_at(message, 2))
                subscription._on_heartbeat(time.monotonic())
                return
            elif second == CHECKSUM:
                self._on_checksum(subscription, message, flags, text)
                return
            elif type(second) is str and len(message) > 2:
                payload, tag, rest = message[2], second, 3
            else:
                raise ProtocolError(f"unexpected element after the chanId: {second!r:.100}")
            seq = mts = None
            if flags & _TRAILING_FLAGS:
                seq, mts = self._trailing(message, rest, flags)
            try:
                subscription._on_payload(payload, tag, seq, mts, flags)
            except ProtocolError as err:
                self.problem("bad_payload", f"bad payload on {subscription.spec!r}: {err}")
                self._callbacks.report(err, subscription)
                reason = subscription._on_bad_data(err)
                if reason is not None:
                    self.resync(subscription, reason)
        except (ProtocolError, UnicodeDecodeError) as err:
            self._bad_frame("malformed", err, data)
        except Exception as err:  # noqa: BLE001 - a bug of ours must not kill the stream
            if not self.counts.get("internal"):  # the traceback once; later ones are counted
                logger.exception("internal error handling frame %.200r", data)
            self._bad_frame("internal", err, data)

    def on_closed(self, reason: str, code: Optional[int], will_reconnect: bool) -> None:
        """The socket ended: every subscription here waits for the replay of the next connection."""
        with self.lock:
            was_connected = self._connected.is_set()
            self._connected.clear()
            self.last_disconnect = reason
            self._outbox.clear()
            self._fail_pings()
            wanted, left = self.registry.detach_all()
            self.supervision.reset()
            for subscription in wanted:
                subscription._on_detached()
            for subscription in left:
                if subscription._on_closed():
                    self._emit("unsubscribed", Unsubscribed(subscription))
            if was_connected:
                self.counts["disconnects"] += 1
                level = logging.WARNING if will_reconnect else logging.INFO
                logger.log(level, "connection %d to %s ended: %s", self.number, self.url, reason)
            else:
                logger.info("connection %d to %s: attempt %d failed: %s", self.number, self.url, self.connection.attempt,
                            reason)
            self._emit("disconnected", Disconnected(reason, code, will_reconnect, self.number))
            if not will_reconnect and not self.connection.stopped:
                self.lock.later(self._runtime.end, NotConnectedError(
                    f"the connection to {self.url} ended ({reason}) and reconnect is off"))

    def on_reconnecting(self, attempt: int, delay: float) -> None:
        """Tell the user how long this connection waits before dialling again."""
        self._callbacks.emit("reconnecting", Reconnecting(attempt, delay, self.number))

    def on_crashed(self, error: BaseException) -> None:
        """The reader loop failed: end the client visibly rather than leave a dead connection."""
        logger.error("reader of connection %d failed", self.number, exc_info=error)
        self._runtime.end(BfxError(f"the reader of connection {self.number} failed: {error!r}"))

    def on_fatal(self, error: BfxError) -> None:
        """A dial failed for a reason no redial fixes (an unverifiable certificate): end the client with it."""
        self._runtime.end(error)

    # -- channel frames: helpers of on_frame --------------------------------------------------

    def _on_checksum(self, subscription: Subscription, message: List[Any], flags: int, text: str) -> None:
        if flags & FLAG_SEQ_ALL:
            self._check_sequence(_at(message, 3))
        value = _at(message, 2)
        if type(value) is not int or not -0x80000000 <= value <= 0xFFFFFFFF:
            raise ProtocolError(f"checksum is not a 32-bit integer: {text[:100]!r}")
        reason = subscription._on_checksum(value)
        if reason is not None:
            self.resync(subscription, reason)

    def _trailing(self, message: List[Any], rest: int, flags: int) -> Tuple[Optional[int], Optional[int]]:
        """Read the sequence number and/or timestamp the flags append, by flag, not by guessing."""
        seq = mts = None
        if flags & FLAG_SEQ_ALL:
            seq = _at(message, rest)
            self._check_sequence(seq)
            rest += 1
        if flags & FLAG_TIMESTAMP and len(message) > rest:
            mts = message[rest]
            if type(mts) is not int:
                raise ProtocolError(f"non-integer server timestamp: {mts!r:.50}")
        return seq, mts

    def _check_sequence(self, seq: Any) -> None:
        """SEQ_ALL numbers every frame of the connection; a gap means a lost frame, so rebuild everything."""
        if type(seq) is not int:
            raise ProtocolError(f"missing or non-integer sequence number: {seq!r:.50}")
        last = self._last_seq
        self._last_seq = seq
        if last is not None and seq != last + 1:
            self._count("sequence_gaps")
            self._report(ProtocolError(f"sequence gap: {last} then {seq}"))
            self.drop(f"sequence gap ({last} then {seq}): frames were lost")

    def _on_stray(self, chan_id: int, message: List[Any], text: str) -> None:
        """A frame for a chanId that is not active: normal right after an unsubscribe, else counted."""
        if chan_id == 0:
            self._on_channel_zero(message, text)
            return
        if self.flags & FLAG_SEQ_ALL:  # its sequence number still counts
            index = 3 if type(message[1]) is str and message[1] != HEARTBEAT else 2
            self._check_sequence(_at(message, index))
        if not self.registry.is_leaving(chan_id):
            self.problem("unknown_channel", f"frame for unknown chanId {chan_id}: {text[:120]}")

    def _on_channel_zero(self, message: List[Any], text: str) -> None:
        """A channel-0 (account) frame (floats as wire text); only an authenticated link expects them."""
        self.problem("account_frame", "frame on channel 0 (account stream) on a connection that did not authenticate")

    def _bad_frame(self, kind: str, error: Exception, data: Any) -> None:
        raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        self.problem(kind, f"{kind} frame ({error}): {raw[:200]!r}")
        failure = error if isinstance(error, BfxError) else ProtocolError(f"{kind} frame: {error}", raw=raw[:500])
        self._report(failure)
