"""The scheduler thread sleeps until its next deadline, also while the pacers hold work back."""
import threading
import time

import attrs
import pytest

from bfxsync.emulator import DEFAULT_SYMBOLS, Emulator

from conftest import FAST, wait_until


def _thread_cpu_seconds(thread: threading.Thread) -> float:
    """User + system CPU of one thread of this process, from /proc (Linux)."""
    with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    clock_ticks = 100  # os.sysconf("SC_CLK_TCK") on Linux
    return (int(fields[11]) + int(fields[12])) / clock_ticks


@pytest.fixture
def quiet_emulator():
    """A still market: what the process spends is the client's, not the emulator's price feed."""
    with Emulator(seed=7, rate=0.0, heartbeat_interval=1.0) as emu:
        yield emu


def test_the_scheduler_sleeps_while_subscribes_wait_for_the_pacer(quiet_emulator, make_client):
    """Four subscribes held back at one a second: the scheduler wakes for each, not in a loop."""
    client = make_client(quiet_emulator.url, attrs.evolve(FAST, subscribe_rate=1.0, subscribe_burst=1))
    scheduler = next(t for t in client.threads() if t.name.startswith("bfxsync-scheduler-"))
    sweeps = client._scheduler.sweeps
    cpu = _thread_cpu_seconds(scheduler)
    process_cpu = time.process_time()
    started = time.monotonic()
    handles = [client.subscribe_ticker(symbol) for symbol in DEFAULT_SYMBOLS[:5]]
    # The first leaves at once, the other four one a second: the pacer really holds them back.
    assert wait_until(lambda: handles[0].active, 5)
    assert not handles[-1].active
    for handle in handles:
        handle.wait_subscribed(10)
    elapsed = time.monotonic() - started
    assert elapsed >= 3.0, "the pacer did not hold the subscribes back"
    swept = client._scheduler.sweeps - sweeps
    spent = _thread_cpu_seconds(scheduler) - cpu
    # A sleeping scheduler ticks for the pacer (4), the keepalives and the once-a-second sweep:
    # a few dozen times at most. The busy loop this guards against ran 60,000 times a second.
    assert swept < 20 * elapsed, f"{swept} sweeps in {elapsed:.1f} s"
    assert spent < 0.1 * elapsed, f"scheduler CPU {spent:.2f} s in {elapsed:.1f} s"
    # The whole process (emulator included) stays far from a busy core.
    assert (time.process_time() - process_cpu) < 0.25 * elapsed
