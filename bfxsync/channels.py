"""ChannelRegistry: which subscriptions are wanted, sent, active and being removed, on one connection.

Keys, as the reference asks (§2.3): wanted subscriptions by their spec (their normalised
parameters), sent ones by the ``subId`` echoed in the ack, active ones by ``chanId``.
chanIds change on every resubscribe and reconnect, the specs never do, so a reconnect
replays the wanted set and the user's handles stay the same objects.

All mutations happen under ``lock``. The receive hot path reads :attr:`active` without
it: a single ``dict.get`` is atomic under the GIL, and the dict is only ever mutated
in place under the lock.
"""
from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from .book_subscription import BookSubscription
from .specs import BookSpec, CandlesSpec, Spec, TickerSpec, TradesSpec
from .subscriptions import (
    CandlesSubscription, State, StatusSubscription, Subscription, TickerSubscription, TradesSubscription,
)

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session


class ChannelRegistry:
    """Subscription bookkeeping for one connection (no I/O; the session sends)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: chanId -> subscription, for the receive hot path.
        self.active: Dict[int, Subscription] = {}
        self._wanted: Dict[Spec, Subscription] = {}
        self._pending: Dict[str, Subscription] = {}
        #: chanId -> (subscription, subscribe again once the server confirms).
        self._leaving: Dict[int, Tuple[Subscription, bool]] = {}
        #: subscriptions to unsubscribe as soon as their (already requested) ack arrives.
        self._cancelled: Dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        #: True between a connection's replay and its end: new subscriptions go out at once.
        self.live = False

    # Every method below must be called with ``lock`` held.

    def get_or_add(self, spec: Spec, factory: Callable[[], Subscription]) -> Tuple[Subscription, bool]:
        """The wanted subscription for ``spec``, created with ``factory`` if there is none."""
        existing = self._wanted.get(spec)
        if existing is not None:
            return existing, False
        subscription = factory()
        self._wanted[spec] = subscription
        return subscription, True

    def wanted_count(self) -> int:
        """How many subscriptions the connection should hold."""
        return len(self._wanted)

    def wanted(self) -> List[Subscription]:
        """All wanted subscriptions."""
        return list(self._wanted.values())

    def send_plan(self, subscription: Subscription) -> Optional[str]:
        """A fresh ``subId`` if ``subscription`` should be sent now (live, wanted, not in flight)."""
        if not self.live or self._wanted.get(subscription.spec) is not subscription:
            return None
        if subscription in self._pending.values() or subscription.chan_id is not None:
            return None
        sub_id = str(next(self._ids))
        self._pending[sub_id] = subscription
        return sub_id

    def replay(self) -> List[Tuple[Subscription, str]]:
        """Start a new connection: every wanted subscription gets a fresh ``subId``."""
        self.active.clear()
        self._pending.clear()
        self._leaving.clear()
        self._cancelled.clear()
        self.live = True
        plan = []
        for subscription in self._wanted.values():
            sub_id = str(next(self._ids))
            self._pending[sub_id] = subscription
            plan.append((subscription, sub_id))
        return plan

    def detach_all(self) -> Tuple[List[Subscription], List[Subscription]]:
        """The connection ended: ``(still wanted, finished leaving)``; nothing is active any more."""
        self.live = False
        # Cancelled requests were reported closed when cancelled; only confirmed leavers remain.
        leaving = [sub for sub, again in self._leaving.values() if not again and sub.state is not State.CLOSED]
        self.active.clear()
        self._pending.clear()
        self._leaving.clear()
        self._cancelled.clear()
        return list(self._wanted.values()), leaving

    def take_pending(self, sub_id: Any, channel: Optional[str], echo: Mapping[str, Any]) -> Optional[Subscription]:
        """Remove and return the pending subscription an ack or error answers.

        Matched by ``subId``; when the server left it out, by channel and the echoed
        request fields (the echo holds what was sent, §2.2).
        """
        if sub_id is not None:
            key = str(sub_id)
            found = self._pending.pop(key, None) or self._cancelled.pop(key, None)
            if found is not None:
                return found
        for key, subscription in list(self._pending.items()):
            if subscription.channel == channel and all(
                str(echo[name]) == str(value) for name, value in subscription.spec.request().items() if name in echo
            ):
                return self._pending.pop(key)
        return None

    def activate(self, subscription: Subscription, chan_id: int) -> bool:
        """Record an ack. False when the subscription was cancelled meanwhile (then unsubscribe it)."""
        if self._wanted.get(subscription.spec) is not subscription:
            self._leaving[chan_id] = (subscription, False)
            return False
        self.active[chan_id] = subscription
        return True

    def forget(self, subscription: Subscription) -> None:
        """Drop a subscription that failed or ended."""
        if self._wanted.get(subscription.spec) is subscription:
            del self._wanted[subscription.spec]

    def begin_leave(self, subscription: Subscription, again: bool) -> Optional[int]:
        """Start removing ``subscription`` from the server; returns the chanId to unsubscribe, if any.

        ``again`` (a book resync) keeps it wanted and subscribes it anew once the server
        confirms; otherwise it is forgotten. A request still awaiting its ack is
        remembered, and unsubscribed if an ack ever comes (the server leaves some
        requests unanswered, §4.7, so the caller must not wait for one).
        """
        if not again:
            self.forget(subscription)
        chan_id = subscription.chan_id
        if chan_id is not None and self.active.get(chan_id) is subscription:
            del self.active[chan_id]
            self._leaving[chan_id] = (subscription, again)
            return chan_id
        if not again:
            for sub_id, pending in list(self._pending.items()):
                if pending is subscription:
                    self._cancelled[sub_id] = self._pending.pop(sub_id)
        return None

    def finish_leave(self, chan_id: int) -> Optional[Tuple[Subscription, bool]]:
        """The server confirmed (or denied knowing) ``chan_id``: ``(subscription, subscribe again)``."""
        return self._leaving.pop(chan_id, None)

    def is_leaving(self, chan_id: int) -> bool:
        """True for chanIds whose frames may still arrive after an unsubscribe (to drop quietly)."""
        return chan_id in self._leaving

    def state_counts(self) -> Dict[str, int]:
        """Counts by subscription state, for ``Client.stats()``."""
        counts: Dict[str, int] = {state.value: 0 for state in State}
        for subscription in self._wanted.values():
            counts[subscription.state.value] += 1
        return counts


def new_subscription(spec: Spec, session: "Session", **options: Any) -> Subscription:
    """The handle class that reads ``spec``'s channel."""
    if isinstance(spec, BookSpec):
        return BookSubscription(spec, session)
    if isinstance(spec, TradesSpec):
        return TradesSubscription(spec, session, **options)
    if isinstance(spec, TickerSpec):
        return TickerSubscription(spec, session)
    if isinstance(spec, CandlesSpec):
        return CandlesSubscription(spec, session)
    return StatusSubscription(spec, session)
