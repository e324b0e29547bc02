"""Which threads are bfxsync's, and waits that survive Ctrl-C.

Blocking helpers (``wait_*``, ``ping``, ``run_forever``) must refuse to run on a thread
bfxsync owns: they would wait for frames that only such a thread delivers. Every
reader and the scheduler mark themselves here, whichever client or connection they
serve.

``threading.Event.wait`` is built on a ``Condition`` whose Python-level bookkeeping a
``KeyboardInterrupt`` can tear (a second Ctrl-C inside it leaves the condition's lock
held or released twice, and a later ``set()`` from a reader thread then blocks for
good). The main thread therefore never waits inside a ``Condition``: it polls the
event's flag with short sleeps, which an interrupt cannot corrupt.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable

_local = threading.local()

#: Longest sleep between two looks at the flag when the main thread waits.
_POLL_MAX = 0.02


def mark_bfxsync_thread() -> None:
    """Called first thing by every thread bfxsync starts."""
    _local.bfxsync = True


def on_bfxsync_thread() -> bool:
    """True on a reader, scheduler or other thread that bfxsync started."""
    return getattr(_local, "bfxsync", False)


def refuse_on_bfxsync_thread(what: str) -> None:
    """Raise :class:`~bfxsync.errors.CallbackThreadError` when called where waiting would deadlock."""
    if on_bfxsync_thread():
        from ..errors import CallbackThreadError  # errors is pure; imported late to keep this module leaf-like

        raise CallbackThreadError(
            f"cannot call {what}() from a bfxsync callback: it would wait for the thread it blocks "
            "(hand the work to your own thread or queue)"
        )


def wait_event(event: threading.Event, timeout: float) -> bool:
    """``event.wait(timeout)``, but interrupt-safe on the main thread (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        return event.wait(timeout)
    return poll(event.is_set, timeout)


def poll(predicate: Callable[[], bool], timeout: float) -> bool:
    """Sleep in short steps until ``predicate()`` is true or ``timeout`` passes; returns the last result."""
    deadline = time.monotonic() + timeout
    step = 0.001
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return predicate()
        time.sleep(min(step, remaining))
        step = min(step * 2, _POLL_MAX)
    return True


class InterruptsAsFlag:
    """While ``run_forever`` waits on the main thread, Ctrl-C sets a flag instead of raising.

    A ``KeyboardInterrupt`` can land anywhere, including inside a lock's bookkeeping or
    half-way through ``close()``; a second Ctrl-C soon after the first (an impatient user,
    ``timeout -s INT``) then left threads running or a lock broken. With Python's default
    handler replaced for the duration, both interrupts just ask for the close, which
    then runs undisturbed. A handler the application installed itself is left alone.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def __enter__(self) -> "InterruptsAsFlag":
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.seen = True

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
