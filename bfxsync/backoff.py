"""Reconnect pacing: capped exponential backoff with jitter, and a connection-rate cap (pure)."""
from __future__ import annotations

import random
from collections import deque
from typing import Callable, Deque, Optional

from attrs import field, frozen
from attrs.validators import ge


@frozen
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): ``initial * factor**n``, capped at ``maximum``.

    ``jitter`` is the fraction of the delay that is randomised, so several clients (or
    shards) dropped together do not redial in lock-step and trip the server's
    connection-rate ban (docs: requirements-and-limitations).
    """

    initial: float = field(default=1.0, validator=ge(0))
    factor: float = field(default=2.0, validator=ge(1))
    maximum: float = field(default=30.0, validator=ge(0))
    jitter: float = field(default=0.5, validator=ge(0))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt number ``attempt``."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1 - self.jitter * rand()) if self.jitter else base


class ConnectRateLimit:
    """At most ``limit`` connection attempts in any ``window`` seconds (the docs allow 15-20 a minute on api-pub).

    ``wait_time(now)`` says how long to hold off; ``record(now)`` notes an attempt.
    Times come from ``time.monotonic()``.
    """

    def __init__(self, limit: int = 15, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._attempts: Deque[float] = deque()

    def wait_time(self, now: float) -> float:
        """Seconds until another attempt is allowed (0 if allowed now)."""
        while self._attempts and now - self._attempts[0] >= self.window:
            self._attempts.popleft()
        if len(self._attempts) < self.limit:
            return 0.0
        return self._attempts[0] + self.window - now

    def record(self, now: float) -> None:
        """Note an attempt made at ``now``."""
        self._attempts.append(now)


def retry_after(status_code: Optional[int]) -> float:
    """Minimum wait after a refused handshake: HTTP 429 means a 60 s IP ban (docs: requirements-and-limitations)."""
    return 60.0 if status_code == 429 else 0.0
