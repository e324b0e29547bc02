"""When to re-authenticate for fresh snapshots after the account state was damaged (pure).

Bitfinex sends the account snapshots (``os``, ``ps``, ``ws``, ``fos``, ``fcs``, ``fls``) only
right after ``auth`` (docs: ws-auth), so the one way to replace a damaged state (see
:attr:`~bfxsync.account.AccountSnapshot.damaged`) is to authenticate again on a new
connection. :class:`SnapshotRepair` decides when: at once for the first damage, then after
the reconnect back-off, and at most :data:`REPAIR_TRIES` times in any :data:`REPAIR_WINDOW`
seconds. Beyond that the client goes on with the rows it could read and says so in a warning,
so a server that always sends a row bfxsync cannot read costs a few reconnects, not a loop.

Threading: one thread (the account link's housekeeping sweep) calls :meth:`SnapshotRepair.verdict`;
:meth:`SnapshotRepair.given_up` may be read from any thread.
"""
from __future__ import annotations

import collections
import logging
from typing import Deque, Dict, FrozenSet, Optional

from ..backoff import Backoff

__all__ = ["REAUTHS", "REPAIR_TRIES", "REPAIR_WINDOW", "SnapshotRepair"]

logger = logging.getLogger("bfxsync")

#: Re-authentications for damaged state allowed in any :data:`REPAIR_WINDOW` seconds.
REPAIR_TRIES = 3
#: Seconds over which :data:`REPAIR_TRIES` is counted.
REPAIR_WINDOW = 600.0
#: The counter of re-authentications asked for damaged state (in ``Client.stats()``).
REAUTHS = "account_repair_reauths"


class SnapshotRepair:
    """The re-authentication policy for damaged account state.

    Args:
        counts: where to count the re-authentications (key :data:`REAUTHS`).
        backoff: the wait before the 2nd, 3rd, ... re-authentication (the client's reconnect
            back-off; attempt ``n`` waits ``backoff.delay(n)`` after the previous one).
    """

    def __init__(self, counts: Optional[Dict[str, int]] = None, backoff: Optional[Backoff] = None) -> None:
        self.counts: Dict[str, int] = counts if counts is not None else {}
        self.counts.setdefault(REAUTHS, 0)
        self.backoff = backoff or Backoff()
        self._times: Deque[float] = collections.deque()  # when the recent re-authentications were asked
        self._auth: Optional[int] = None  # the authentication whose damage was seen ...
        self._due = 0.0  # ... and when to re-authenticate for it
        self._handled: Optional[int] = None  # the authentication re-authenticated for, or given up on
        self._given_up: Optional[int] = None  # the authentication given up on

    def verdict(self, now: float, auth: int, damaged: FrozenSet[str]) -> Optional[str]:
        """Why to re-authenticate now, or None (whole, backing off, or given up).

        Args:
            now: ``time.monotonic()``.
            auth: the number of the current authentication (it changes with each one).
            damaged: the state's damaged tags (:attr:`~bfxsync.account.AccountSnapshot.damaged`).
        """
        if not damaged or auth == self._handled:
            return None
        times = self._times
        while times and now - times[0] >= REPAIR_WINDOW:
            times.popleft()
        if len(times) >= REPAIR_TRIES:
            self._handled = self._given_up = auth
            logger.warning("bfxsync: account state damaged (%s) after %d re-authentications in %g s; going on with "
                           "the rows that could be read (AccountSnapshot.damaged says which streams may be "
                           "incomplete or stale)", ", ".join(sorted(damaged)), len(times), REPAIR_WINDOW)
            return None
        if auth != self._auth:  # first seen now: plan the attempt once (the back-off has jitter)
            self._auth = auth
            self._due = times[-1] + self.backoff.delay(len(times)) if times else now
        if now < self._due:
            return None
        times.append(now)
        self._handled = auth
        self.counts[REAUTHS] += 1
        return (f"account state damaged ({', '.join(sorted(damaged))}): re-authenticating for fresh snapshots "
                f"({len(times)} of at most {REPAIR_TRIES} in {REPAIR_WINDOW:g} s)")

    def given_up(self, auth: int) -> bool:
        """True when the damage of authentication ``auth`` is to be lived with (no more re-authentications)."""
        return self._given_up == auth
