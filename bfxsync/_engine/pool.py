"""Pool: every connection of a client, and which subscriptions each one carries.

The pool owns the set of wanted subscriptions (so subscribing twice returns the same
handle, client-wide) and places each on a link with room: at most
``max_subscriptions`` channels per connection, counting channels still leaving, so the
server never answers 10305 because of us. A full pool opens another link; a link left
empty closes after ``idle_connection_grace`` (the first one stays, for pings and
``wait_connected``). The pool is also the handles' :class:`~bfxsync.subscriptions.Owner`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set

import attrs

from ..errors import BfxError, NotConnectedError
from ..events import ConnectionInfo
from ..specs import Spec
from ..subscriptions import State, Subscription, make_subscription
from .account_link import AccountLink
from .account_session import AccountSession
from .link import STAT_KEYS, Link
from .pacing import ConnectPacer, SendPacer
from .runtime import Runtime
from .threads import refuse_on_bfxsync_thread
from .transport import TransportFactory, WebSocketAppTransport

#: The kinds of bad input the subscriptions count client-wide (``Pool.problem``); with the links'
#: kinds (``link.PROBLEM_KINDS``) every one is in ``Client.stats()`` from the start, with 0.
CLIENT_PROBLEM_KINDS = ("checksum_unsynced", "checksum_not_book", "unknown_tag")

logger = logging.getLogger("bfxsync")


class Pool:
    """The links of one client and the subscriptions placed on them.

    Args:
        url: the endpoint every link dials.
        runtime: client-wide options, callback runner and end state.
        wake: asks the scheduler to run within the given seconds.
        transport_factory: the transport of every dial.
    """

    def __init__(self, url: str, runtime: Runtime, wake: Callable[[float], None],
                 transport_factory: TransportFactory = WebSocketAppTransport,
                 account: Optional[AccountSession] = None, auth_url: str = "") -> None:
        self.url = url
        self.config = runtime.config
        self.callbacks = runtime.callbacks
        self._runtime = runtime
        self._wake = wake
        self._factory = transport_factory
        self._pacer = ConnectPacer(runtime.config.max_connects_per_minute)
        self._send_pacer = SendPacer(runtime.config.subscribe_rate, runtime.config.subscribe_burst)
        self._lock = threading.Lock()
        self._links: List[Link] = []
        self._retired: List[Link] = []
        self._wanted: Dict[Spec, Subscription] = {}
        self._placed: Dict[Link, Set[Subscription]] = {}
        self._where: Dict[Subscription, Link] = {}
        self._idle_since: Dict[Link, float] = {}
        self._account: Optional[AccountLink] = None
        if account is not None:
            # Inputs: well under the documented calc limit of 8/s and the order rate the official clients keep.
            self._account = AccountLink(auth_url, runtime, self._pacer, self._send_pacer, wake, transport_factory,
                                        account, SendPacer(runtime.config.input_rate, runtime.config.input_burst))
        self._started = False
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the first connection."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
            link = self._new_link()
        link.start()
        if self._account is not None:
            self._account.start()

    def _new_link(self) -> Link:
        link = Link(self.url, self._runtime, self._pacer, self._send_pacer, self._wake, self._factory)
        self._links.append(link)
        self._placed[link] = set()
        return link

    def _every_link(self) -> List[Link]:
        """Public links, retired ones not yet reaped, and the account link (lock held)."""
        return self._links + self._retired + ([self._account] if self._account is not None else [])

    def account_link(self) -> Optional[AccountLink]:
        """The authenticated link, if the client has credentials."""
        return self._account

    def stop(self) -> None:
        """Stop every link without waiting and release every waiter (any thread, callbacks included)."""
        with self._lock:
            self._stopped = True
            links = self._every_link()
            handles = list(self._wanted.values())
        for link in links:
            link.stop()
        for subscription in handles:
            subscription._wake()

    def join(self, deadline: float) -> None:
        """Wait for every reader thread to end, until ``deadline`` (``time.monotonic()``)."""
        with self._lock:
            links = self._every_link()
        for link in links:
            link.connection.join(max(0.0, deadline - time.monotonic()))

    def release_in_child(self) -> None:
        """In a forked child: close this process's copies of every socket (no lock: see Connection.release_in_child)."""
        for link in self._links + self._retired + ([self._account] if self._account is not None else []):
            link.connection.release_in_child()

    def threads(self) -> List[threading.Thread]:
        """The reader threads of the current connections (and of closed ones not yet reaped)."""
        with self._lock:
            links = self._every_link()
        return [t for t in (link.connection.thread() for link in links) if t is not None]

    # -- Owner of the handles ------------------------------------------------------------

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop ``subscription`` wherever it is carried (idempotent)."""
        self._runtime.check_process()  # first: in a fork, self._lock may have been held by a parent thread
        with self._lock:
            if self._wanted.get(subscription.spec) is not subscription:
                return
            del self._wanted[subscription.spec]
            link = self._where.pop(subscription)
            self._placed[link].discard(subscription)
        link.remove(subscription)

    def problem(self, kind: str, message: str) -> None:
        """Count a problem with incoming data (client-wide)."""
        self._runtime.problem(kind, message)

    def refuse_wait(self, what: str) -> None:
        """Blocking waits need a started client, this process (not a fork) and a thread that is not bfxsync's."""
        self._runtime.check_process()
        refuse_on_bfxsync_thread(what)
        if not self._started:
            raise NotConnectedError("call start() first, or use the client as a context manager")

    def end_error(self) -> Optional[BfxError]:
        """What waits raise once the client has ended."""
        if not self._runtime.ended.is_set():
            return None
        return self._runtime.fatal or NotConnectedError("the client was closed")

    def failure_hint(self) -> str:
        """The last connection failure, for timeout messages."""
        with self._lock:
            links = self._links + ([self._account] if self._account is not None else [])
            failures = [link.last_disconnect for link in links if not link.connected and link.last_disconnect]
        return f" (last connection failure: {failures[-1]})" if failures else ""

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(self, spec: Spec, options: Dict[str, Any],
                  on_data: Optional[Callable[[Any], Any]] = None) -> Subscription:
        """The handle for ``spec``: the existing one, or a new one placed on a link with room.

        ``on_data`` is attached before the request can go out, so it sees the snapshot.
        """
        new_link = None
        with self._lock:
            if self._stopped:
                raise NotConnectedError("the client is closed")
            existing = self._wanted.get(spec)
            if existing is not None and existing.state is not State.FAILED:
                conflict = existing.options_conflict(options)
                if conflict:
                    raise ValueError(conflict)
                if on_data is not None:
                    existing.on_data(on_data)
                return existing
            if existing is not None:  # rejected before: forget it and try afresh
                self._drop(existing)
            subscription = make_subscription(spec, self, **options)
            if on_data is not None:
                subscription.on_data(on_data)
            link = self._place()
            # From here on every transition of the handle holds this link's lock, including
            # an unsubscribe from another thread before link.add() below (which then adds nothing).
            subscription._guard = link.lock
            if link.connection.thread() is None:
                new_link = link
            self._wanted[spec] = subscription
            self._where[subscription] = link
            self._placed[link].add(subscription)
        if new_link is not None:
            logger.info("opening connection %d (every connection holds at most %d subscriptions)",
                        new_link.number, self.config.max_subscriptions)
            new_link.start()
        link.add(subscription)
        return subscription

    def _place(self) -> Link:
        limit = self.config.max_subscriptions
        for link in self._links:
            if len(self._placed[link]) + link.registry.lingering < limit:
                self._idle_since.pop(link, None)
                return link
        return self._new_link()

    def _drop(self, subscription: Subscription) -> None:
        """Forget a handle (lock held)."""
        self._wanted.pop(subscription.spec, None)
        link = self._where.pop(subscription, None)
        if link is not None:
            self._placed[link].discard(subscription)

    def subscriptions(self) -> List[Subscription]:
        """Every wanted subscription."""
        with self._lock:
            return list(self._wanted.values())

    # -- state ---------------------------------------------------------------------------

    def links(self) -> List[Link]:
        """The open links, the first one first, the account link last."""
        with self._lock:
            return self._links + ([self._account] if self._account is not None else [])

    def public_links(self) -> List[Link]:
        """The links that carry public subscriptions."""
        with self._lock:
            return list(self._links)

    def connected(self) -> bool:
        """True when every link is connected."""
        links = self.links()
        return bool(links) and all(link.connected for link in links)

    def maintenance(self) -> bool:
        """True while any connection's server announces maintenance."""
        return any(link.maintenance for link in self.links())

    # -- scheduler thread -------------------------------------------------------------------

    def sweep(self, now: float) -> float:
        """Housekeeping for every link; returns the seconds until the next sweep is due."""
        links = self.links()
        for link in links:
            # First, and without the link's lock: a send blocked on a full socket holds that lock.
            stalled = link.connection.send_stalled(now)
            if stalled is not None:
                link.drop(f"a send has been blocked for {stalled:.1f} s (the server stopped reading)")
        for link in links:
            link.sweep(now)
        self._retire_idle(now)
        config = self.config
        return min(1.0, config.keepalive / 4, config.heartbeat_timeout / 4, config.channel_timeout / 4,
                   config.request_timeout / 4)

    def _retire_idle(self, now: float) -> None:
        grace = self.config.idle_connection_grace
        stopping = []
        with self._lock:
            for subscription in list(self._wanted.values()):
                if subscription.state is State.FAILED:
                    self._drop(subscription)
            for link in self._links[1:]:
                if self._placed[link] or link.registry.lingering:
                    self._idle_since.pop(link, None)
                    continue
                since = self._idle_since.setdefault(link, now)
                if now - since >= grace:
                    stopping.append(link)
            for link in stopping:
                self._links.remove(link)
                del self._placed[link]
                self._idle_since.pop(link, None)
                self._retired.append(link)
            self._retired = [link for link in self._retired if link.connection.alive() or link in stopping]
        for link in stopping:
            logger.info("closing connection %d: no subscriptions for %g s", link.number, grace)
            link.stop()

    # -- statistics ------------------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Client-wide counters: every link's, the handles', the runtime's."""
        stats: Dict[str, Any] = dict.fromkeys(STAT_KEYS + CLIENT_PROBLEM_KINDS, 0)
        stats.update(dict.fromkeys(("checks_passed", "checks_failed", "resyncs", "callback_errors"), 0))
        for link in self.links():
            for key, value in link.stats().items():
                stats[key] = stats.get(key, 0) + value
        for key, value in self._runtime.count_copy().items():
            stats[key] = stats.get(key, 0) + value
        states = {state.value: 0 for state in State}
        for subscription in self.subscriptions():
            states[subscription.state.value] += 1
            for key, value in subscription.counters().items():
                stats[key] += value
        if self._account is not None:
            stats.update(self._account.session.counts)
            stats["requests_in_flight"] = self._account.session.requests.pending()
        stats["callback_errors"] = self.callbacks.callback_errors
        stats.update(self._queue_stats())
        stats["subscriptions"] = states
        stats["connections"] = len(self.links())
        return stats

    def _queue_stats(self) -> Dict[str, Any]:
        """Queued callbacks: every queue's figures by name, their totals, and the callback threads."""
        lanes = {repr(sub.spec): sub.queue for sub in self.subscriptions() if sub.queue is not None}
        lanes.update((kind, lane.stats()) for kind, lane in self.callbacks.lanes().items())
        figures = list(lanes.values())
        return {
            "queues": {name: attrs.asdict(figures) for name, figures in lanes.items()},
            "queue_depth": sum(q.depth for q in figures), "queue_lag": max((q.lag for q in figures), default=0.0),
            "queue_dropped": sum(q.dropped for q in figures), "queue_conflated": sum(q.conflated for q in figures),
            "queue_delivered": sum(q.delivered for q in figures), "queue_blocked": sum(q.blocked for q in figures),
            "dispatch_threads": len(self.callbacks.workers.threads()),
        }

    def connections(self) -> List[ConnectionInfo]:
        """A description of every open connection."""
        now = time.monotonic()
        with self._lock:
            placed = {link: len(subs) for link, subs in self._placed.items()}
            links = self._links + ([self._account] if self._account is not None else [])
        return [
            ConnectionInfo(
                link.number, link.url,
                "connected" if link.connected else "closed" if link.connection.stopped else "connecting",
                placed.get(link, 0), link.supervision.last_frame_age(now), link.stats(),
            )
            for link in links
        ]
