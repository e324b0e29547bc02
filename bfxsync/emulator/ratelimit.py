"""Per-client connection-rate limit: a rolling window of admitted handshakes (no I/O).

Bitfinex refuses the HTTP upgrade with 429 once one IP opens more than 20 connections a
minute on api-pub (docs: ws-public, requirements-and-limitations). The emulator applies the same rule so clients can
test their reconnect throttling against it.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["ConnectLimiter"]


class ConnectLimiter:
    """Admits at most ``limit`` handshakes per key (the client IP) within any ``window`` seconds.

    Thread-safe: websockets runs each handshake on its own thread. Only admitted handshakes
    are recorded; a refused attempt does not push the client's next admission further out.

    Args:
        limit: handshakes admitted per window and key; None admits everything.
        window: length of the rolling window in seconds.
        clock: monotonic time source (tests may pass a fake one).
    """

    def __init__(self, limit: int | None, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1 or None, not {limit}")
        if window <= 0:
            raise ValueError(f"window must be positive, not {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._admitted: dict[str, deque[float]] = {}

    def admit(self, key: str) -> bool:
        """Record a handshake from ``key`` and return True, or return False if over the limit."""
        if self.limit is None:
            return True
        now = self._clock()
        with self._lock:
            times = self._admitted.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            # Forget idle keys, so a long-running server does not keep one entry per client ever seen.
            for other in [k for k, v in self._admitted.items() if v and v[-1] <= now - self.window]:
                del self._admitted[other]
            return True
