"""Session: the one parser of a connection's frames, and the protocol state around it.

Every frame the connection receives goes through :meth:`Session.on_frame`. Array frames
(channel data) are the hot path: the chanId is sliced from the text, the owning
subscription looked up without a lock, the frame decoded once (book channels keep
float tokens as text for the checksum) and handed to the subscription. Object frames
(events) drive the handshake: ``info`` -> ``conf`` + replay of every wanted
subscription, acks, errors, unsubscribe confirmations, pongs.

Problems in incoming data (malformed frames, unknown chanIds, wrong shapes) are counted
in :meth:`stats`, logged once per kind, and never end the reader thread.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any, Counter, Dict, List, Mapping, Optional, Tuple

from . import protocol
from ._dispatch import Dispatcher, Handlers
from .config import Config
from .connection import Connection
from .errors import (
    BfxError, BfxTimeoutError, NotConnectedError, ProtocolError, ServerError, SubscriptionError, VersionMismatchError,
)
from .book_subscription import BookSubscription
from .channels import ChannelRegistry, new_subscription
from .events import Connected, Disconnected, ErrorEvent, Info, Reconnecting, Subscribed, Unsubscribed
from .specs import Spec
from .subscriptions import State, Subscription

logger = logging.getLogger(__name__)

#: Counters always present in :meth:`Session.stats` (bad-input kinds are added as they occur).
STAT_KEYS = ("disconnects", "reconnects", "sequence_gaps", "checks_passed", "checks_failed", "resyncs",
             "callback_errors", "dials")


class Session:
    """Protocol state of one connection: flags, subscriptions, pings, counters.

    Args:
        url: the endpoint.
        config: client options.
        handlers: the client-level callback registry.
    """

    def __init__(self, url: str, config: Config, handlers: Handlers) -> None:
        self.url = url
        self.config = config
        self.handlers = handlers
        self.dispatcher = Dispatcher(handlers)
        self.registry = ChannelRegistry()
        self.lock = self.registry.lock
        self.connection = Connection(url, config, self)
        #: The conf flags in force on the current connection (0 until the server confirms).
        self.flags = 0
        self._connected = threading.Event()
        #: Notified when the connection state changes (connected, fatal error, closed).
        self._wakeup = threading.Condition()
        self._ever_connected = False
        self._fatal: Optional[BfxError] = None
        self._last_seq: Optional[int] = None
        self._ping_ids = itertools.count(1)
        self._pings: Dict[int, Tuple[threading.Event, List[float]]] = {}
        self._last_keepalive = 0.0
        self._counts: Counter[str] = collections.Counter()
        #: True while the platform is in maintenance (info 20060 until 20061, or platform status 0).
        self.maintenance = False
        #: Why the last connection (or attempt) ended, or None.
        self.last_disconnect: Optional[str] = None

    # -- public surface used by the client ----------------------------------------------

    def start(self) -> None:
        """Start the connection's threads."""
        self.connection.start()

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection for good and wake every waiter."""
        self.connection.close(timeout)
        self._connected.clear()
        self._wake_waiters()
        for subscription in self.subscriptions():
            subscription._wake()

    def wait_connected(self, timeout: float) -> None:
        """Block until the server's ``info`` arrived and flags and subscriptions were sent."""
        self.refuse_reader_thread("wait_connected")
        with self._wakeup:
            self._wakeup.wait_for(lambda: self._connected.is_set() or self._fatal or self.connection.closed, timeout)
        if self._fatal is not None:
            raise self._fatal
        if self._connected.is_set():
            return
        if self.connection.closed:
            raise NotConnectedError("the client was closed")
        last = f" (last attempt: {self.last_disconnect})" if self.last_disconnect else ""
        raise BfxTimeoutError(f"not connected to {self.url} within {timeout:g} s{last}")

    def _wake_waiters(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    @property
    def connected(self) -> bool:
        """True while connected and past the ``info`` handshake."""
        return self._connected.is_set()

    def refuse_reader_thread(self, what: str) -> None:
        """Blocking helpers would deadlock on the reader thread: they wait for frames only it reads."""
        if self.connection.on_reader_thread():
            raise RuntimeError(f"cannot call {what}() from a bfxsync callback: it would wait for the thread it blocks")

    def subscribe(self, spec: Spec, **options: Any) -> Subscription:
        """Return the subscription for ``spec``, creating and sending it if it is new."""
        with self.lock:
            subscription, created = self.registry.get_or_add(spec, lambda: new_subscription(spec, self, **options))
            if created and self.registry.wanted_count() > self.config.max_subscriptions:
                self.registry.forget(subscription)
                raise SubscriptionError(
                    protocol.ERR_SUB_LIMIT,
                    f"a connection holds at most {self.config.max_subscriptions} subscriptions; "
                    "unsubscribe something first (sharding across connections is not implemented yet)",
                    spec.request(),
                )
            sub_id = self.registry.send_plan(subscription)
        if sub_id is not None:
            self._send_subscribe(subscription, sub_id)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop ``subscription`` (idempotent); an active one completes when the server confirms."""
        with self.lock:
            if subscription.state in (State.CLOSED, State.FAILED):
                return
            chan_id = self.registry.begin_leave(subscription, again=False)
        if chan_id is not None:
            self._send(protocol.encode_unsubscribe(chan_id))
        else:
            # Never acknowledged: over for the user now; a late ack is unsubscribed quietly.
            subscription._on_closed()
            self.dispatcher.emit("unsubscribed", Unsubscribed(subscription))

    def resubscribe(self, subscription: Subscription, reason: str) -> None:
        """Rebuild one subscription from scratch: unsubscribe, await the confirmation, subscribe again."""
        with self.lock:
            chan_id = self.registry.begin_leave(subscription, again=True)
        subscription._on_detached()
        if chan_id is not None:
            logger.info("bfxsync: resubscribing %r (%s)", subscription.spec, reason)
            self._send(protocol.encode_unsubscribe(chan_id))

    def subscriptions(self) -> List[Subscription]:
        """Every wanted subscription."""
        with self.lock:
            return self.registry.wanted()

    def ping(self, timeout: float) -> float:
        """Send a ``ping`` and return the round trip in seconds once the ``pong`` arrives."""
        self.refuse_reader_thread("ping")
        cid = next(self._ping_ids)
        waiter: Tuple[threading.Event, List[float]] = (threading.Event(), [])
        self._pings[cid] = waiter
        started = time.monotonic()
        try:
            self.connection.send(protocol.encode_ping(cid))
            if not waiter[0].wait(timeout):
                raise BfxTimeoutError(f"no pong within {timeout:g} s")
            return waiter[1][0] - started
        finally:
            self._pings.pop(cid, None)

    def stats(self) -> Dict[str, Any]:
        """Counters: connection events, bad input by kind, book checksums, callback errors, subscriptions.

        The keys in :data:`STAT_KEYS` are always present; problem kinds appear once seen.
        """
        with self.lock:
            states = self.registry.state_counts()
            books = [s for s in self.registry.wanted() if isinstance(s, BookSubscription)]
        stats: Dict[str, Any] = dict.fromkeys(STAT_KEYS, 0)
        stats.update(self._counts)
        stats["checks_passed"] = sum(b.checks_passed for b in books)
        stats["checks_failed"] = sum(b.checks_failed for b in books)
        stats["resyncs"] = sum(b.resyncs for b in books)
        stats["callback_errors"] = self.dispatcher.callback_errors
        stats["dials"] = self.connection.dials
        stats["subscriptions"] = states
        return stats

    def problem(self, kind: str, message: str) -> None:
        """Count a problem with incoming data; log the first of each kind as a warning."""
        self._counts[kind] += 1
        if self._counts[kind] == 1:
            logger.warning("bfxsync: %s (first of its kind; later ones are counted in Client.stats()[%r])", message, kind)

    # -- Listener: reader thread --------------------------------------------------------

    def on_open(self) -> None:
        """A socket opened: flags reset until the server confirms ours (each connection starts bare)."""
        self.flags = 0
        self._last_seq = None

    def on_frame(self, data: Any) -> None:
        """The one parser. Must never raise: the reader thread has to survive any input."""
        try:
            text = data.decode("utf-8") if type(data) is bytes else data
            if text[:1] == "[":
                self._on_array(text)
            else:
                self._on_event(protocol.decode(text))
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as err:
            self._bad_frame("malformed", err, data)
        except Exception as err:  # noqa: BLE001 - a bug of ours must not kill the stream
            if not self._counts["internal"]:  # the traceback once; later ones are counted
                logger.exception("bfxsync: failed to handle frame %.200r", data)
            self._bad_frame("internal", err, data)

    def on_closed(self, reason: str, code: Optional[int], will_reconnect: bool) -> None:
        """The socket ended: every subscription waits for the replay of the next connection."""
        was_connected = self._connected.is_set()
        self._connected.clear()
        self.last_disconnect = reason
        with self.lock:
            wanted, left = self.registry.detach_all()
        for subscription in wanted:
            subscription._on_detached()
        for subscription in left:
            subscription._on_closed()
            self.dispatcher.emit("unsubscribed", Unsubscribed(subscription))
        if was_connected:
            self._counts["disconnects"] += 1
            level = logging.WARNING if will_reconnect else logging.INFO
            logger.log(level, "bfxsync: disconnected from %s: %s", self.url, reason)
        else:
            logger.info("bfxsync: connection attempt to %s ended: %s", self.url, reason)
        self.dispatcher.emit("disconnected", Disconnected(reason, code, will_reconnect))

    def on_reconnecting(self, attempt: int, delay: float) -> None:
        """Tell the user how long the client waits before dialling again."""
        self.dispatcher.emit("reconnecting", Reconnecting(attempt, delay))

    def on_idle(self, silent_for: float) -> None:
        """Watchdog thread: a quiet socket gets an application ping (at most one per interval)."""
        now = time.monotonic()
        if self._connected.is_set() and now - self._last_keepalive >= self.config.keepalive:
            self._last_keepalive = now
            self._send(protocol.encode_ping(next(self._ping_ids)))

    # -- array frames: the hot path -----------------------------------------------------

    def _on_array(self, text: str) -> None:
        chan_id = int(text[1:text.index(",")])
        subscription = self.registry.active.get(chan_id)
        if subscription is None:
            self._on_stray(chan_id, text)
            return
        message = subscription.decode(text)
        second = message[1]
        flags = self.flags
        if type(second) is list:
            payload, tag, rest = second, None, 2
        elif second == protocol.HEARTBEAT:
            if flags & protocol.FLAG_SEQ_ALL:
                self._check_sequence(message[2])
            subscription._on_heartbeat(time.monotonic())
            return
        elif second == protocol.CHECKSUM:
            if flags & protocol.FLAG_SEQ_ALL:
                self._check_sequence(message[3])
            subscription._on_checksum(int(message[2]))
            return
        elif type(second) is str:
            payload, tag, rest = message[2], second, 3
        else:
            raise ProtocolError(f"unexpected element after the chanId: {second!r:.100}")
        seq = mts = None
        if flags & (protocol.FLAG_SEQ_ALL | protocol.FLAG_TIMESTAMP):
            seq, mts = self._trailing(message, rest, flags)
        try:
            subscription._on_payload(payload, tag, seq, mts)
        except ProtocolError as err:
            self._bad_payload(subscription, err)

    def _trailing(self, message: List[Any], rest: int, flags: int) -> Tuple[Optional[int], Optional[int]]:
        """Read the sequence number and/or timestamp the flags append (§5.1), by flag, not by guessing."""
        seq = mts = None
        if flags & protocol.FLAG_SEQ_ALL:
            seq = message[rest]
            self._check_sequence(seq)
            rest += 1
        if flags & protocol.FLAG_TIMESTAMP and len(message) > rest:
            mts = message[rest]
        return seq, mts

    def _check_sequence(self, seq: Any) -> None:
        """SEQ_ALL numbers every frame of the connection; a gap means a lost frame, so rebuild everything."""
        last = self._last_seq
        self._last_seq = seq
        if last is not None and seq != last + 1:
            self._counts["sequence_gaps"] += 1
            self.dispatcher.emit("error", ErrorEvent(ProtocolError(f"sequence gap: {last} then {seq}")))
            self.connection.drop(f"sequence gap ({last} then {seq}): frames were lost")

    def _on_stray(self, chan_id: int, text: str) -> None:
        """A frame for a chanId that is not active: normal right after an unsubscribe, else counted."""
        if self.flags & protocol.FLAG_SEQ_ALL:
            message = protocol.decode(text)  # its sequence number still counts
            index = 3 if type(message[1]) is str and message[1] != protocol.HEARTBEAT else 2
            if len(message) > index:
                self._check_sequence(message[index])
        if chan_id == 0:
            self.problem("account_frame", "frame on channel 0 (account stream) without authentication support")
        elif not self.registry.is_leaving(chan_id):
            self.problem("unknown_channel", f"frame for unknown chanId {chan_id}: {text[:120]}")

    def _bad_payload(self, subscription: Subscription, error: ProtocolError) -> None:
        self.problem("bad_payload", f"bad payload on {subscription.spec!r}: {error}")
        self.dispatcher.emit("error", ErrorEvent(error, subscription))
        if isinstance(subscription, BookSubscription):
            subscription._on_bad_update(error)

    def _bad_frame(self, kind: str, error: Exception, data: Any) -> None:
        raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        self.problem(kind, f"{kind} frame ({error}): {raw[:200]!r}")
        failure = error if isinstance(error, BfxError) else ProtocolError(f"{kind} frame: {error}", raw=raw[:500])
        self.dispatcher.emit("error", ErrorEvent(failure))

    # -- event frames ------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if type(event) is not dict:
            raise ProtocolError(f"frame is neither an event object nor a channel array: {event!r:.100}")
        kind = event.get("event")
        handler = _EVENT_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.problem("unknown_event", f"unknown event {kind!r}: {event!r:.200}")
            return
        handler(self, event)

    def _on_info(self, event: Mapping[str, Any]) -> None:
        if "version" in event:
            self._on_hello(event)
            return
        code = event.get("code")
        info = Info(code, str(event.get("msg", "")), event)
        logger.info("bfxsync: info %s: %s", code, info.msg)
        self.dispatcher.emit("info", info)
        if code == protocol.INFO_RECONNECT:
            self.connection.drop("server asked clients to reconnect (info 20051)")
        elif code == protocol.INFO_MAINTENANCE_START:
            # The trading engine resyncs (up to ~2 min, §3.2): books cannot be trusted until it ends.
            self.maintenance = True
            for subscription in self.subscriptions():
                if isinstance(subscription, BookSubscription):
                    subscription._on_stale()
        elif code == protocol.INFO_MAINTENANCE_END:
            # Docs: after maintenance, resubscribe every channel to get fresh snapshots.
            self.maintenance = False
            for subscription in self.subscriptions():
                if subscription.active:
                    self.resubscribe(subscription, "maintenance ended (info 20061)")

    def _on_hello(self, event: Mapping[str, Any]) -> None:
        """The first frame of a connection: check the version, then send conf and every subscription."""
        version = event.get("version")
        if version != protocol.API_VERSION:
            self._fatal = VersionMismatchError(f"server speaks API version {version!r}, bfxsync speaks {protocol.API_VERSION}")
            logger.error("bfxsync: %s; closing", self._fatal)
            self._wake_waiters()
            self.dispatcher.emit("error", ErrorEvent(self._fatal))
            self.close()  # on the reader thread: aborts the socket, the reader then ends
            return
        self.connection.mark_healthy()
        platform = event.get("platform")
        status = platform.get("status") if isinstance(platform, dict) else None
        self.maintenance = status == 0
        if self.maintenance:
            logger.warning("bfxsync: %s is in maintenance (platform status 0); books resync when it ends", self.url)
        if self.config.flags:
            self._send(protocol.encode_conf(self.config.flags))
        with self.lock:
            plan = self.registry.replay()
        for subscription, sub_id in plan:
            self._send_subscribe(subscription, sub_id)
        reconnect = self._ever_connected
        self._ever_connected = True
        self._connected.set()
        self._wake_waiters()
        if reconnect:
            self._counts["reconnects"] += 1
            logger.info("bfxsync: reconnected to %s; replaying %d subscriptions", self.url, len(plan))
        self.dispatcher.emit("connected", Connected(self.url, event.get("serverId"), status, reconnect))

    def _on_conf(self, event: Mapping[str, Any]) -> None:
        if event.get("status") == "OK":
            self.flags = int(event.get("flags", self.config.flags))
            return
        self.flags = 0
        error = ServerError(event.get("code", protocol.ERR_CONF_FAIL), str(event.get("msg", "conf failed")), event)
        logger.error("bfxsync: the server refused conf flags %d: %s", self.config.flags, error)
        self.dispatcher.emit("error", ErrorEvent(error))

    def _on_subscribed(self, event: Mapping[str, Any]) -> None:
        chan_id = int(event["chanId"])
        with self.lock:
            subscription = self.registry.take_pending(event.get("subId"), event.get("channel"), event)
        if subscription is None:
            self.problem("unexpected_ack", f"ack for nothing we asked: {event!r:.200}")
        else:
            self._acknowledge(subscription, chan_id)

    def _acknowledge(self, subscription: Subscription, chan_id: int) -> None:
        with self.lock:
            keep = self.registry.activate(subscription, chan_id)
        if keep:
            subscription._on_ack(chan_id)
            self.dispatcher.emit("subscribed", Subscribed(subscription))
        else:  # unsubscribed while the request was in flight
            self._send(protocol.encode_unsubscribe(chan_id))

    def _on_unsubscribed(self, event: Mapping[str, Any]) -> None:
        self._finish_leave(int(event["chanId"]))

    def _finish_leave(self, chan_id: int) -> bool:
        with self.lock:
            found = self.registry.finish_leave(chan_id)
            if found is None:
                return False
            subscription, again = found
            sub_id = self.registry.send_plan(subscription) if again else None
        if again:
            if sub_id is not None:
                self._send_subscribe(subscription, sub_id)
        elif subscription.state is not State.CLOSED:  # a cancelled request was reported already
            subscription._on_closed()
            self.dispatcher.emit("unsubscribed", Unsubscribed(subscription))
        return True

    def _on_error(self, event: Mapping[str, Any]) -> None:
        code = event.get("code")
        msg = str(event.get("msg", ""))
        if code in (protocol.ERR_UNSUB_FAIL, protocol.ERR_UNSUB_NOT) and "chanId" in event:
            # The server does not know the channel: our side of it is over either way.
            if self._finish_leave(int(event["chanId"])):
                return
        with self.lock:
            subscription = self.registry.take_pending(event.get("subId"), event.get("channel"), event)
        if subscription is None:
            error = ServerError(code, msg, event)
            logger.warning("bfxsync: server error: %s", error)
            self.dispatcher.emit("error", ErrorEvent(error))
            return
        if code == protocol.ERR_SUB_MULTI and "chanId" in event:
            # "already subscribed" names the existing channel: adopt it (§2.5).
            self._acknowledge(subscription, int(event["chanId"]))
            return
        with self.lock:
            self.registry.forget(subscription)
        rejection = SubscriptionError(code, msg, event)
        logger.warning("bfxsync: subscription %r rejected: %s", subscription.spec, rejection)
        subscription._on_failed(rejection)
        self.dispatcher.emit("error", ErrorEvent(rejection, subscription))

    def _on_pong(self, event: Mapping[str, Any]) -> None:
        waiter = self._pings.get(event.get("cid"))  # type: ignore[arg-type]
        if waiter is not None:
            waiter[1].append(time.monotonic())
            waiter[0].set()

    # -- sending -----------------------------------------------------------------------

    def _send_subscribe(self, subscription: Subscription, sub_id: str) -> None:
        self._send(protocol.encode_subscribe(subscription.channel, subscription.spec.request(), sub_id))

    def _send(self, text: str) -> None:
        """Send, or leave it to the replay of the next connection if this one just dropped."""
        try:
            self.connection.send(text)
        except NotConnectedError:
            logger.debug("bfxsync: not sent (disconnected; replayed on reconnect): %.200s", text)


_EVENT_HANDLERS = {
    "info": Session._on_info,
    "conf": Session._on_conf,
    "subscribed": Session._on_subscribed,
    "unsubscribed": Session._on_unsubscribed,
    "error": Session._on_error,
    "pong": Session._on_pong,
}
