"""Scheduler: the one housekeeping thread of a client, whatever its number of connections.

It runs the pool's sweep (keepalive pings, silent sockets and channels, unanswered
requests, paused resyncs, paced subscribe requests, idle connections) about once a
second, and sooner when something asks for it with :meth:`Scheduler.wake`.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Callable, Optional

from .threads import mark_bfxsync_thread

logger = logging.getLogger("bfxsync")

_numbers = itertools.count(1)


class Scheduler:
    """Calls ``tick(now)`` on its own thread; ``tick`` returns the seconds until it wants to run again."""

    def __init__(self, tick: Callable[[float], float]) -> None:
        self._tick = tick
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._lock = threading.Lock()
        #: When the thread plans to tick next (monotonic); wake() only disturbs it for an earlier time.
        self._next = float("inf")
        #: Ticks run so far (the scheduler's thread writes it; read by stats and tests).
        self.sweeps = 0
        self._thread: Optional[threading.Thread] = None
        self._failures = 0

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"bfxsync-scheduler-{next(_numbers)}", daemon=True)
            self._thread.start()

    def wake(self, delay: float = 0.0) -> None:
        """Run the tick within ``delay`` seconds (any thread).

        Only a wake-up earlier than the one already planned disturbs the thread's wait, and a
        call from inside the tick only moves the plan: the loop reads it after the tick. (A
        tick that asked for itself in 0.5 s used to end the next wait at once, and the thread
        swept in a loop at one full core.)
        """
        at = time.monotonic() + delay
        with self._lock:
            if at >= self._next:
                return
            self._next = at
            if threading.current_thread() is self._thread:
                return
        self._wakeup.set()

    def stop(self) -> None:
        """Stop without waiting."""
        self._stop.set()
        self._wakeup.set()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (after :meth:`stop`); never from the thread itself."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def thread(self) -> Optional[threading.Thread]:
        """The thread, once started."""
        return self._thread

    def _run(self) -> None:
        mark_bfxsync_thread()
        while not self._stop.is_set():
            # Cleared before the tick: a wake() from another thread during the tick still ends the wait.
            self._wakeup.clear()
            with self._lock:
                self._next = float("inf")
            now = time.monotonic()
            try:
                period = self._tick(now)
            except Exception:  # noqa: BLE001 - housekeeping must survive a bug of ours
                self._failures += 1
                if self._failures == 1:
                    logger.exception("housekeeping failed (later failures are not logged)")
                period = 1.0
            with self._lock:
                self._next = min(self._next, now + max(0.0, period))
                deadline = self._next
            self.sweeps += 1
            self._wakeup.wait(max(0.0, deadline - time.monotonic()))
