"""Client-wide pacing: connection attempts under the per-IP limit, and subscribe requests.

The exchange counts connection attempts per IP (api-pub: 20 a minute in the docs, 15 on
the older limitations page) and answers a burst with HTTP 429 and a 60 s ban. Every
connection of a client therefore asks one :class:`ConnectPacer` before it dials, so a
mass drop where every link redials at once still stays under the limit.
"""
from __future__ import annotations

import threading
import time

from ..backoff import ConnectRateLimit


class ConnectPacer:
    """Gate for connection attempts, shared by every connection of one client.

    Args:
        per_minute: attempts allowed in any 60 s.
        spacing: minimum seconds between two attempts (spreads a burst of redials).
    """

    def __init__(self, per_minute: int, spacing: float = 0.05) -> None:
        self._lock = threading.Lock()
        self._limit = ConnectRateLimit(per_minute)
        self._spacing = spacing
        self._last = -spacing
        self._hold_until = 0.0

    def acquire(self, stop: threading.Event) -> bool:
        """Block until an attempt is allowed and record it; False if ``stop`` was set meanwhile."""
        while True:
            with self._lock:
                now = time.monotonic()
                wait = max(self._limit.wait_time(now), self._hold_until - now, self._last + self._spacing - now)
                if wait <= 0:
                    self._limit.record(now)
                    self._last = now
                    return True
            if stop.wait(wait):
                return False

    def hold_off(self, seconds: float) -> None:
        """No attempt from any connection for ``seconds`` (after a 429: the IP is banned for 60 s)."""
        with self._lock:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    def wait_time(self) -> float:
        """Seconds until the next attempt would be allowed (for the ``Reconnecting`` event)."""
        with self._lock:
            now = time.monotonic()
            return max(0.0, self._limit.wait_time(now), self._hold_until - now)


class SendPacer:
    """A token bucket for subscribe requests: ``burst`` at once, then ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self._lock = threading.Lock()
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> float:
        """Take a token: 0.0 when one was available, else the seconds until the next one (none taken)."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate
