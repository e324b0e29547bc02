"""ChannelRegistry: which subscriptions one connection holds, sent, active and leaving.

Keys follow the documentation's advice (ws-general, "Subscribe to channels"): requests
carry our own ``subId`` and acks are matched by it; active channels are keyed by the
server's ``chanId``, which is unique only within one connection and changes on every
resubscribe and reconnect. The handles themselves never change, so a reconnect
replays the wanted set and the user keeps the same objects.

The registry has no lock of its own: every method runs under its link's
:class:`~bfxsync._engine.ownership.LinkLock` (checked in debug mode) and returns a plan
(what to send, whom to tell) that the link carries out. The receive hot path reads
:attr:`active` without the lock: a single ``dict.get`` is atomic under the GIL, and the
dict is only mutated in place under the lock.
"""
from __future__ import annotations

import itertools
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..subscriptions.base import Subscription
from .ownership import LinkLock


class ChannelRegistry:
    """Subscription bookkeeping for one connection (no I/O; the link sends).

    Args:
        guard: the link's lock, held by every caller.
    """

    def __init__(self, guard: LinkLock) -> None:
        self._guard = guard
        #: chanId -> subscription, for the receive hot path.
        self.active: Dict[int, Subscription] = {}
        #: Server-side channels that are not wanted any more but not yet confirmed gone
        #: (they still count against the server's per-connection limit).
        self.lingering = 0
        self._wanted: Dict[Subscription, None] = {}  # an ordered set
        self._pending: Dict[str, Tuple[Subscription, float]] = {}  # subId -> (subscription, sent at)
        #: chanId -> (subscription, subscribe again once confirmed, sent at)
        self._leaving: Dict[int, Tuple[Subscription, bool, float]] = {}
        #: requests withdrawn before their ack: unsubscribe the channel if an ack ever comes
        self._cancelled: Dict[str, Tuple[Subscription, float]] = {}
        #: chanId -> sent at: channels the server opened that nothing here wants (an ack for
        #: nothing we asked, or for a request given up long ago), unsubscribed at once
        self._orphans: Dict[int, float] = {}
        self._ids = itertools.count(1)
        self._live = False

    def _recount(self) -> None:
        self.lingering = len(self._cancelled) + len(self._orphans) + sum(1 for _, again, _ in self._leaving.values() if not again)

    # -- what the user wants ---------------------------------------------------------

    def add(self, subscription: Subscription) -> bool:
        """Hold ``subscription`` here; True if it should be sent now (the connection is live)."""
        self._guard.check("registry.add")
        self._wanted[subscription] = None
        return self._live

    def remove(self, subscription: Subscription) -> Tuple[Optional[int], bool]:
        """Stop holding ``subscription``: ``(chanId to unsubscribe or None, was it acknowledged or asked)``.

        A request still awaiting its ack is remembered and unsubscribed if the ack comes
        (the caller must not wait for one: an answer is not guaranteed).
        """
        self._guard.check("registry.remove")
        if self._wanted.pop(subscription, False) is False:
            return None, False
        chan_id = subscription.chan_id
        if chan_id is not None and self.active.get(chan_id) is subscription:
            del self.active[chan_id]
            self._leaving[chan_id] = (subscription, False, time.monotonic())
            self._recount()
            return chan_id, True
        for sub_id, (pending, sent) in list(self._pending.items()):
            if pending is subscription:
                del self._pending[sub_id]
                self._cancelled[sub_id] = (subscription, sent)
                self._recount()
                return None, True
        for chan_id, (leaving, _, sent) in list(self._leaving.items()):
            if leaving is subscription:  # mid-resync: finish leaving, never come back
                self._leaving[chan_id] = (subscription, False, sent)
                self._recount()
                return None, True
        return None, False

    def forget(self, subscription: Subscription) -> None:
        """Drop a subscription the server rejected."""
        self._guard.check("registry.forget")
        self._wanted.pop(subscription, None)

    def rejoin(self, subscription: Subscription) -> Optional[int]:
        """Begin a resubscribe (book resync, stalled channel): the chanId to unsubscribe, if active."""
        self._guard.check("registry.rejoin")
        chan_id = subscription.chan_id
        if subscription not in self._wanted or chan_id is None or self.active.get(chan_id) is not subscription:
            return None
        del self.active[chan_id]
        self._leaving[chan_id] = (subscription, True, time.monotonic())
        return chan_id

    # -- sending and answers -----------------------------------------------------------

    def begin_send(self, subscription: Subscription) -> Optional[str]:
        """A fresh ``subId`` if ``subscription`` should be sent now (live, wanted, not in flight or active)."""
        self._guard.check("registry.begin_send")
        if not self._live or subscription not in self._wanted or subscription.chan_id is not None:
            return None
        if any(pending is subscription for pending, _ in self._pending.values()):
            return None
        if any(leaving is subscription for leaving, _, _ in self._leaving.values()):
            return None
        sub_id = str(next(self._ids))
        self._pending[sub_id] = (subscription, time.monotonic())
        return sub_id

    def take_pending(self, sub_id: Any, channel: Any, echo: Mapping[str, Any]) -> Tuple[Optional[Subscription], bool]:
        """The request an ack or error answers: ``(subscription, was it cancelled)``.

        With a ``subId`` only that id matches (an ack carrying someone else's id is not
        ours, whatever fields it echoes). Without one, the echoed request fields must name
        the subscription: every field we sent that the echo carries must agree, the symbol
        or key must be there (an echo without it could be anyone's), and exactly one
        request may match (``book tBTCUSD`` with no ``prec`` could be P0 or R0).
        """
        self._guard.check("registry.take_pending")
        if sub_id is not None:
            key = str(sub_id)
            if key in self._pending:
                return self._pending.pop(key)[0], False
            if key in self._cancelled:
                subscription = self._cancelled.pop(key)[0]
                self._recount()
                return subscription, True
            return None, False
        if not any(name in echo for name in ("symbol", "key")):
            return None, False
        matches = [key for key, (subscription, _) in self._pending.items()
                   if subscription.channel == channel and all(
                       str(echo[name]) == str(value) for name, value in subscription.spec.request().items()
                       if name in echo)]
        if len(matches) != 1:
            return None, False
        return self._pending.pop(matches[0])[0], False

    def activate(self, subscription: Subscription, chan_id: int) -> bool:
        """Record an ack. False when the subscription is not wanted here any more (then unsubscribe it)."""
        self._guard.check("registry.activate")
        if subscription not in self._wanted:
            self._leaving[chan_id] = (subscription, False, time.monotonic())
            self._recount()
            return False
        self.active[chan_id] = subscription
        return True

    def orphan(self, chan_id: int) -> bool:
        """The server opened ``chan_id`` for nothing wanted here: True if it is to be unsubscribed now."""
        self._guard.check("registry.orphan")
        if chan_id in self.active or chan_id in self._leaving or chan_id in self._orphans:
            return False
        self._orphans[chan_id] = time.monotonic()
        self._recount()
        return True

    def finish_leave(self, chan_id: int) -> Optional[Tuple[Optional[Subscription], bool]]:
        """The server confirmed (or denied knowing) ``chan_id``: ``(subscription or None for an orphan, subscribe again)``."""
        self._guard.check("registry.finish_leave")
        if self._orphans.pop(chan_id, None) is not None:
            self._recount()
            return None, False
        found = self._leaving.pop(chan_id, None)
        self._recount()
        if found is None:
            return None
        subscription, again, _ = found
        return subscription, again and subscription in self._wanted

    def is_leaving(self, chan_id: int) -> bool:
        """True for chanIds whose frames may still arrive after an unsubscribe (to drop quietly)."""
        return chan_id in self._leaving or chan_id in self._orphans

    def expired(self, now: float, timeout: float) -> Tuple[List[Subscription], List[Tuple[int, Subscription, bool]]]:
        """Requests unanswered for ``timeout`` s: ``(subscribes given up, leaving channels given up)``.

        A given-up subscribe is no longer wanted here (an ack arriving later is
        unsubscribed); a given-up leaver is treated as confirmed. Old cancelled
        requests are simply forgotten.
        """
        self._guard.check("registry.expired")
        pending = [(sub_id, sub) for sub_id, (sub, sent) in self._pending.items() if now - sent >= timeout]
        for sub_id, sub in pending:
            del self._pending[sub_id]
            self._wanted.pop(sub, None)
            self._cancelled[sub_id] = (sub, now)
        leaving = [(chan_id, sub, again and sub in self._wanted)
                   for chan_id, (sub, again, sent) in self._leaving.items() if now - sent >= timeout]
        for chan_id, _, _ in leaving:
            del self._leaving[chan_id]
        for sub_id, (_, sent) in list(self._cancelled.items()):
            if now - sent >= timeout:
                del self._cancelled[sub_id]
        for chan_id, sent in list(self._orphans.items()):
            if now - sent >= timeout:
                del self._orphans[chan_id]
        self._recount()
        return [sub for _, sub in pending], leaving

    # -- connection lifecycle ----------------------------------------------------------

    def replay(self) -> List[Subscription]:
        """A new connection is ready: every wanted subscription is to be sent again."""
        self._guard.check("registry.replay")
        self._forget_channels()
        self._live = True
        return list(self._wanted)

    def _forget_channels(self) -> None:
        """No channel of the last connection exists any more (the wanted set stays)."""
        self.active.clear()
        self._pending.clear()
        self._leaving.clear()
        self._cancelled.clear()
        self._orphans.clear()
        self._recount()

    def detach_all(self) -> Tuple[List[Subscription], List[Subscription]]:
        """The connection ended: ``(still wanted, finished leaving)``; nothing is active any more."""
        self._guard.check("registry.detach_all")
        self._live = False
        left = [sub for sub, again, _ in self._leaving.values() if not again]
        self._forget_channels()
        return list(self._wanted), left

    # -- reading -------------------------------------------------------------------------

    def wanted(self) -> List[Subscription]:
        """The subscriptions this connection holds."""
        self._guard.check("registry.wanted")
        return list(self._wanted)

    def active_items(self) -> List[Tuple[int, Subscription]]:
        """``(chanId, subscription)`` of every active channel."""
        self._guard.check("registry.active_items")
        return list(self.active.items())
