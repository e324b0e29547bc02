"""Back-off delays and the connection-rate cap (pure)."""
from bfxsync.backoff import Backoff, ConnectRateLimit, retry_after


def test_exponential_and_capped():
    """Without jitter the delay doubles from ``initial`` up to ``maximum``."""
    b = Backoff(initial=1, factor=2, maximum=10, jitter=0)
    assert [b.delay(n) for n in range(6)] == [1, 2, 4, 8, 10, 10]


def test_jitter_stays_in_range():
    """Jitter only shortens the delay, by at most the jitter fraction."""
    b = Backoff(initial=4, factor=2, maximum=60, jitter=0.5)
    assert b.delay(0, rand=lambda: 0.0) == 4
    assert b.delay(0, rand=lambda: 0.999) > 2


def test_huge_attempts_do_not_overflow():
    """Attempt counts far past the cap still give the cap."""
    assert Backoff(jitter=0, maximum=30).delay(10_000) == 30


def test_rate_limit_window():
    """The (limit+1)th attempt inside the window waits until the oldest one expires."""
    limit = ConnectRateLimit(limit=2, window=60)
    limit.record(0)
    limit.record(1)
    assert limit.wait_time(2) == 58
    assert limit.wait_time(61) == 0


def test_429_waits_a_minute():
    """A handshake refused with HTTP 429 means a 60 s ban."""
    assert retry_after(429) == 60 and retry_after(503) == 0 and retry_after(None) == 0
