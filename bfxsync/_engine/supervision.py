"""Supervision: the liveness rules and timeouts of one link, as decisions the link carries out.

Nothing here sends or drops anything; each method looks at what it is told and returns
what should happen, so every rule is testable on its own and the link stays the only
writer of its connection. Every method runs under the link's
:class:`~bfxsync._engine.ownership.LinkLock` (checked in debug mode). The rules:

- a socket silent for ``heartbeat_timeout`` is dropped; a quiet one gets a keepalive
  ``ping`` every ``keepalive`` seconds (the server sends ``hb`` only per channel);
- a socket that completed the upgrade but sent no ``info`` within ``connect_timeout``
  is dropped, however busy it is;
- a channel that has seen neither data nor ``hb`` for ``channel_timeout`` while its
  connection is alive is resubscribed alone;
- a subscribe left unanswered for ``request_timeout`` fails with a
  ``SubscriptionError`` (the server ignores some invalid requests); an unsubscribe
  left unanswered is given up (the channel is treated as gone);
- a channel that keeps needing a resync (a failing checksum, a malformed snapshot)
  is resubscribed with growing pauses (capped), logged once per episode.
"""
from __future__ import annotations

import logging
import random
from typing import Dict, List, Optional, Tuple

from ..config import Config
from ..subscriptions.base import Subscription
from .ownership import LinkLock

logger = logging.getLogger("bfxsync")

#: A resync episode ends after this many seconds without another resync.
EPISODE_QUIET = 60.0
#: The first pause within an episode, doubled each time, capped at RESYNC_PAUSE_MAX.
RESYNC_PAUSE_FIRST = 0.5
RESYNC_PAUSE_MAX = 30.0


class _Episode:
    """The resyncs of one channel that follow each other closely."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    def pause(self, now: float) -> float:
        """Seconds to wait before this resync's subscribe: none for the first, then doubling."""
        self.count += 1
        self.last = now
        if self.count == 1:
            return 0.0
        base = min(RESYNC_PAUSE_MAX, RESYNC_PAUSE_FIRST * 2 ** min(self.count - 2, 16))
        return float(base * (0.8 + 0.4 * random.random()))


class Supervision:
    """Timers and counters behind a link's liveness decisions (callers hold the link's lock).

    Args:
        config: the client's options.
        now: ``time.monotonic()`` at creation.
        guard: the link's lock.
    """

    def __init__(self, config: Config, now: float, guard: LinkLock) -> None:
        self._config = config
        self._guard = guard
        self._episodes: Dict[Subscription, _Episode] = {}
        self._due: Dict[Subscription, float] = {}  # earliest resubscribe of a resyncing channel
        self._waiting: Dict[Subscription, float] = {}  # confirmed gone, resubscribe when due
        self._watch: Dict[Subscription, Tuple[int, float]] = {}  # frames seen, since when
        self._frames = -1
        self._quiet_since = now
        self._last_keepalive = 0.0

    def reset(self) -> None:
        """The connection ended: its channels start afresh on the next one."""
        self._guard.check("supervision.reset")
        self._due.clear()
        self._waiting.clear()
        self._watch.clear()

    def forget(self, subscription: Subscription) -> None:
        """The user unsubscribed."""
        self._guard.check("supervision.forget")
        for table in (self._episodes, self._due, self._waiting, self._watch):
            table.pop(subscription, None)

    # -- resyncs -----------------------------------------------------------------------

    def resync(self, subscription: Subscription, reason: str, now: float) -> None:
        """A channel must be rebuilt: note when its subscribe may go out, and log once per episode."""
        self._guard.check("supervision.resync")
        episode = self._episodes.get(subscription)
        if episode is None or now - episode.last >= EPISODE_QUIET:
            episode = self._episodes[subscription] = _Episode()
        pause = episode.pause(now)
        self._due[subscription] = now + pause
        count = episode.count
        if count == 1:
            logger.info("resubscribing %r (%s)", subscription.spec, reason)
        elif count == 2:
            logger.warning("%r needs another resync (%s); further resyncs pause longer each time "
                           "(up to %g s) and are logged at DEBUG until it recovers", subscription.spec, reason,
                           RESYNC_PAUSE_MAX)
        else:
            logger.debug("resync %d of %r (%s) in %.1f s", count, subscription.spec, reason, pause)

    def ready_to_resubscribe(self, subscription: Subscription, now: float) -> Optional[float]:
        """The channel is gone from the server: None to subscribe now, else the seconds to wait."""
        self._guard.check("supervision.ready_to_resubscribe")
        due = self._due.pop(subscription, 0.0)
        if due <= now:
            return None
        self._waiting[subscription] = due
        return due - now

    def due_resubscribes(self, now: float) -> List[Subscription]:
        """Channels whose pause is over."""
        self._guard.check("supervision.due_resubscribes")
        due = [sub for sub, when in self._waiting.items() if when <= now]
        for sub in due:
            del self._waiting[sub]
        return due

    # -- liveness ----------------------------------------------------------------------

    def watch(self, subscription: Subscription, now: float) -> None:
        """A channel was acknowledged: its silence is measured from now."""
        self._guard.check("supervision.watch")
        self._watch[subscription] = (subscription.received, now)

    def socket_verdict(self, now: float, frames: int, is_open: bool, connected: bool,
                       opened_at: Optional[float]) -> Tuple[Optional[str], bool]:
        """``(reason to drop the socket or None, send a keepalive ping)``."""
        self._guard.check("supervision.socket_verdict")
        config = self._config
        if frames != self._frames:
            self._frames, self._quiet_since = frames, now
        if not is_open:
            return None, False
        silent = now - self._quiet_since
        if not connected and opened_at is not None and now - opened_at >= config.connect_timeout:
            return f"no info frame within {config.connect_timeout:g} s of the upgrade", False
        if silent >= config.heartbeat_timeout:
            return f"no frame for {silent:.1f} s (heartbeat timeout {config.heartbeat_timeout:g} s)", False
        if connected and silent >= config.keepalive and now - self._last_keepalive >= config.keepalive:
            self._last_keepalive = now
            return None, True
        return None, False

    def silent_channels(self, now: float, active: List[Subscription]) -> List[Subscription]:
        """Active channels that saw nothing (no data, no ``hb``) for ``channel_timeout``."""
        limit = self._config.channel_timeout
        stalled = []
        self._guard.check("supervision.silent_channels")
        for subscription in active:
            seen = self._watch.get(subscription)
            if seen is None or seen[0] != subscription.received:
                self._watch[subscription] = (subscription.received, now)
            elif now - seen[1] >= limit:
                stalled.append(subscription)
                del self._watch[subscription]
        return stalled

    def last_frame_age(self, now: float) -> float:
        """Seconds since the socket last received anything (as of the last sweep)."""
        return now - self._quiet_since
