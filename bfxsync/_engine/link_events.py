"""The event frames of a link: the ``info`` handshake, ``conf``, acks, errors, unsubscribe confirmations, pongs.

Split from :mod:`bfxsync._engine.link` for size; :class:`EventFrames` is the half of
:class:`~bfxsync._engine.link.Link` that answers object frames (shapes:
https://docs.bitfinex.com/docs/ws-general), and it uses only the link's own state.
Every handler that changes that state holds the link's lock while it does; events for
user callbacks go out through ``_emit``/``_report`` once the lock is released.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Counter, Deque, Dict, List, Mapping, Optional, Tuple

from .. import protocol
from ..config import Config
from ..errors import BfxError, ProtocolError, ServerError, SubscriptionError, VersionMismatchError
from ..events import Connected, Info, Subscribed
from ..protocol import codec
from ..subscriptions.base import Subscription
from .callback_runner import CallbackRunner
from .connection import Connection
from .ownership import LinkLock
from .registry import ChannelRegistry
from .runtime import Runtime
from .supervision import Supervision

logger = logging.getLogger("bfxsync")

#: What each known info code means, for the log line (the server's msg may be empty).
_INFO_MEANINGS = {
    protocol.INFO_RECONNECT: "the server is restarting: reconnecting",
    protocol.INFO_MAINTENANCE_START: "maintenance starts: books are stale until it ends",
    protocol.INFO_MAINTENANCE_END: "maintenance ended: resubscribing",
}


def chan_id_of(event: Mapping[str, Any]) -> int:
    """The event's ``chanId``; a missing or non-integer one is bad input."""
    value = event.get("chanId")
    if type(value) is not int:
        raise ProtocolError(f"{event.get('event')} event without an integer chanId: {event!r:.200}")
    return value


class EventFrames:
    """Handlers of a link's object frames (mixed into :class:`~bfxsync._engine.link.Link`)."""

    url: str
    config: Config
    flags: int
    maintenance: bool
    registry: ChannelRegistry
    connection: Connection
    supervision: Supervision
    counts: Counter[str]
    _runtime: Runtime
    _callbacks: CallbackRunner
    _connected: threading.Event
    _ever_connected: bool
    _outbox: Deque[Subscription]
    _pings: Dict[int, Tuple[threading.Event, List[float]]]
    number: int
    lock: LinkLock

    if TYPE_CHECKING:  # provided by Link
        def problem(self, kind: str, message: str) -> None: ...
        def drop(self, reason: str) -> None: ...
        def _emit(self, kind: str, event: Any) -> None: ...
        def _report(self, error: BfxError, subscription: Optional[Subscription] = None) -> None: ...
        def send(self, text: str) -> None: ...
        def send_subscribe(self, subscription: Subscription) -> None: ...
        def drain(self) -> None: ...
        def rejoin(self, subscription: Subscription) -> None: ...
        def after_leave(self, subscription: Subscription, again: bool) -> None: ...

    def _on_event(self, event: Any) -> None:
        if type(event) is not dict:
            raise ProtocolError(f"frame is neither an event object nor a channel array: {event!r:.100}")
        kind = event.get("event")
        # Looked up by name on the instance, so an authenticated link can extend the handlers.
        handler = _EVENT_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.problem("unknown_event", f"unknown event {kind!r}: {event!r:.200}")
            return
        getattr(self, handler)(event)

    def _on_info(self, event: Mapping[str, Any]) -> None:
        with self.lock:
            if "version" in event:
                self._on_hello(event)
            else:
                self._on_info_code(event)

    def _on_info_code(self, event: Mapping[str, Any]) -> None:
        code = event.get("code")
        info = Info(code if type(code) is int else None, str(event.get("msg", "")), event)
        meaning = _INFO_MEANINGS.get(info.code, "unknown code") if info.code is not None else "no code"
        logger.info("server info %s (%s): %s", code, meaning, info.msg or "no message")
        self._emit("info", info)
        if code == protocol.INFO_RECONNECT:
            self.drop("server asked clients to reconnect (info 20051)")
        elif code == protocol.INFO_MAINTENANCE_START:
            # The trading engine resyncs (up to ~2 min): books cannot be trusted until it ends.
            self.maintenance = True
            for subscription in self.registry.wanted():
                subscription._on_stale()
        elif code == protocol.INFO_MAINTENANCE_END:
            # Docs: after maintenance, resubscribe every channel to get fresh snapshots.
            self.maintenance = False
            for _, subscription in self.registry.active_items():
                self.rejoin(subscription)

    def _on_hello(self, event: Mapping[str, Any]) -> None:
        """The first frame of a connection: check the version, then send conf and every subscription.

        A second hello on the same connection breaks the protocol (docs: ws-general, the
        ``info`` event opens a connection). Replaying then would subscribe every active
        channel a second time on top of itself, so it is counted (``repeated_info``) and
        ignored; a version mismatch stays fatal whenever it comes.
        """
        version = event.get("version")
        if version != protocol.API_VERSION:
            self.lock.later(self._runtime.end, VersionMismatchError(
                f"{self.url} speaks API version {version!r}, bfxsync speaks {protocol.API_VERSION}"))
            return
        if self._connected.is_set():
            self.problem("repeated_info", f"a second info frame on connection {self.number} ignored: {event!r:.200}")
            return
        self.connection.mark_healthy()
        platform = event.get("platform")
        status = platform.get("status") if isinstance(platform, dict) else None
        self.maintenance = status == 0
        if self.maintenance:
            logger.warning("%s is in maintenance (platform status 0); books resync when it ends", self.url)
        if self.config.flags:
            self.send(codec.encode_conf(self.config.flags))
        self._after_handshake()
        plan = self.registry.replay()
        self._outbox.extend(plan)
        self.drain()
        reconnect = self._ever_connected
        self._ever_connected = True
        self._connected.set()
        if reconnect:
            self.counts["reconnects"] += 1
            logger.info("connection %d reconnected to %s; replaying %d subscriptions", self.number, self.url,
                        len(plan))
        else:
            logger.info("connection %d connected to %s", self.number, self.url)
        self._emit("connected", Connected(self.url, event.get("serverId"), status, reconnect, self.number))

    def _on_conf(self, event: Mapping[str, Any]) -> None:
        if event.get("status") == "OK":
            flags = event.get("flags", self.config.flags)
            self.flags = flags if type(flags) is int else self.config.flags
            return
        self.flags = 0
        error = ServerError(event.get("code", protocol.ERR_CONF_FAIL), str(event.get("msg", "conf failed")), event)
        logger.error("the server refused conf flags %d: %s", self.config.flags, error)
        self._report(error)

    def _on_subscribed(self, event: Mapping[str, Any]) -> None:
        chan_id = chan_id_of(event)
        with self.lock:
            subscription, _ = self.registry.take_pending(event.get("subId"), event.get("channel"), event)
            if subscription is not None:
                self._acknowledge(subscription, chan_id)
                return
            # The server holds a channel for us that nothing here wants (a request given up
            # long ago, a hostile ack): close it, or it would count against the limit for good.
            if self.registry.orphan(chan_id):
                self.send(codec.encode_unsubscribe(chan_id))
        self.problem("unexpected_ack", f"ack for nothing we asked (its channel is unsubscribed): {event!r:.200}")

    def _acknowledge(self, subscription: Subscription, chan_id: int) -> None:
        """Activate and mark acknowledged in one step under the lock, so that an unsubscribe
        from another thread sees either the request in flight or the active channel."""
        if self.registry.activate(subscription, chan_id):
            subscription._on_ack(chan_id)
            self.supervision.watch(subscription, time.monotonic())
            self._emit("subscribed", Subscribed(subscription))
        else:  # unsubscribed while the request was in flight
            self.send(codec.encode_unsubscribe(chan_id))

    def _on_unsubscribed(self, event: Mapping[str, Any]) -> None:
        chan_id = chan_id_of(event)
        with self.lock:
            self._finish_leave(chan_id)

    def _finish_leave(self, chan_id: int) -> bool:
        found = self.registry.finish_leave(chan_id)
        if found is None:
            return False
        subscription, again = found
        if subscription is not None:
            self.after_leave(subscription, again)
        return True

    def _on_error(self, event: Mapping[str, Any]) -> None:
        with self.lock:
            self._on_error_locked(event)

    def _on_error_locked(self, event: Mapping[str, Any]) -> None:
        code = event.get("code")
        msg = str(event.get("msg", ""))
        if code in (protocol.ERR_UNSUB_FAIL, protocol.ERR_UNSUB_NOT) and type(event.get("chanId")) is int:
            # The server does not know the channel: our side of it is over either way.
            if self._finish_leave(event["chanId"]):
                return
        subscription, cancelled = self.registry.take_pending(event.get("subId"), event.get("channel"), event)
        if subscription is None or cancelled:
            error = ServerError(code, msg, event)
            logger.warning("server error: %s", error)
            self._report(error)
            return
        if code == protocol.ERR_SUB_MULTI and type(event.get("chanId")) is int:
            if self.registry.is_leaving(event["chanId"]):
                # The channel is one we are unsubscribing (an unsubscribed handle of the same
                # spec whose ack came late): our unsubscribe left before this answer arrived,
                # so a new request now reaches the server after it and opens a fresh channel.
                self.send_subscribe(subscription)
                return
            # "already subscribed" names the existing channel: adopt it.
            self._acknowledge(subscription, event["chanId"])
            return
        self.registry.forget(subscription)
        rejection = SubscriptionError(code, msg, event)
        logger.warning("subscription %r rejected: %s", subscription.spec, rejection)
        subscription._on_failed(rejection)
        self._report(rejection, subscription)

    def _after_handshake(self) -> None:
        """Hook: the ``info`` frame arrived and ``conf`` went out (an authenticated link authenticates here)."""

    def _on_auth(self, event: Mapping[str, Any]) -> None:
        """Hook: an ``auth`` answer; only an authenticated link expects one."""
        self.problem("unexpected_auth", f"auth event on a connection that did not authenticate: {event!r:.200}")

    def _on_pong(self, event: Mapping[str, Any]) -> None:
        waiter = self._pings.get(event.get("cid"))  # type: ignore[arg-type]
        if waiter is not None:
            waiter[1].append(time.monotonic())
            waiter[0].set()


_EVENT_HANDLERS: Dict[str, str] = {
    "info": "_on_info",
    "conf": "_on_conf",
    "subscribed": "_on_subscribed",
    "unsubscribed": "_on_unsubscribed",
    "error": "_on_error",
    "pong": "_on_pong",
    "auth": "_on_auth",
}
