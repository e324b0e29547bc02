"""The link lock: the one lock under which a link's state changes, and its debug check.

Every transition of a link's state (its registry, supervision, outbox, counters, the
handles it carries and their order books) happens while its :class:`LinkLock` is held,
whichever thread starts it: the link's reader (frames), the client's scheduler (timeouts,
silent channels) or a user thread (subscribe, unsubscribe). The threading contract is
written out in :mod:`bfxsync._engine`.

User code never runs under the lock: events meant for user callbacks are handed to
:meth:`LinkLock.later` and run by the thread that releases the lock, after releasing it.

Debug mode (``BFXSYNC_CHECK_OWNERSHIP=1`` in the environment, as the test suite sets it,
or :data:`CHECK` set to True) makes every write check that the writing thread holds the
lock; a violation raises :class:`OwnershipError` and is remembered in :data:`violations`
(a violation on a bfxsync thread could otherwise be caught and only counted).
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any, Callable, List, Optional

logger = logging.getLogger("bfxsync")

#: Check the writer of every link-state write (debug mode; costs a call per transition, none per data frame).
CHECK = os.environ.get("BFXSYNC_CHECK_OWNERSHIP", "") not in ("", "0")

#: Every violation seen in debug mode, as text (the test suite fails a test that added one).
violations: List[str] = []


class OwnershipError(AssertionError):
    """Debug mode: a thread changed a link's state without holding the link's lock."""


class LinkLock:
    """A re-entrant lock that runs deferred effects (user callbacks) once fully released.

    Args:
        name: what the lock guards, for messages (``link 3``).
    """

    __slots__ = ("name", "raw", "_lock", "_owner", "_depth", "_later")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.RLock()
        #: The bare lock, for the receive hot path's short book writes: no Python-level
        #: bookkeeping, so nothing under it may defer effects or check ownership.
        self.raw = self._lock
        self._owner: Optional[int] = None  # ident of the holding thread
        self._depth = 0
        self._later: List[Callable[[], Any]] = []

    def __enter__(self) -> "LinkLock":
        self._lock.acquire()
        self._depth += 1
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._depth -= 1
        if self._depth:
            self._lock.release()
            return
        later, self._later = self._later, []
        self._owner = None
        self._lock.release()
        for effect in later:
            try:
                effect()
            except Exception:  # noqa: BLE001 - the callback runner isolates user code; a bug of ours must not stop the rest
                logger.exception("a deferred effect of %s failed", self.name)

    def held(self) -> bool:
        """True when the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def later(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` once the lock is released (at once when the caller does not hold it)."""
        if self._owner != threading.get_ident():
            function(*args)
            return
        self._later.append(functools.partial(function, *args))

    def check(self, what: str) -> None:
        """Debug mode: raise :class:`OwnershipError` unless the calling thread holds the lock (bare or not)."""
        if CHECK and not self._lock._is_owned():  # type: ignore[attr-defined]  # RLock's own test (Condition uses it)
            violation(f"{what} written by {threading.current_thread().name} without the lock of {self.name}")


def violation(message: str) -> None:
    """Record and raise an ownership violation (debug mode)."""
    violations.append(message)
    raise OwnershipError(message)


def check(lock: Optional[LinkLock], what: str) -> None:
    """Debug mode: ``lock.check(what)``; a handle not yet carried by a link (``lock`` None) has no owner yet."""
    if CHECK and lock is not None:
        lock.check(what)
