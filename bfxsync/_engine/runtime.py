"""Client-wide state that every link shares: options, callbacks, and whether the client has ended.

There is one closed/fatal state for the whole client, whichever connection found the
problem: a fatal handshake (another API version), a connection that ended with
reconnect off, a callback that raised ``SystemExit``, or the user's ``close()``. Ending
calls the client's ``on_end`` once, which stops every connection without waiting (it
may run on a reader thread); joining the threads is left to ``close()``.

The runtime also remembers the process that created the client: after ``os.fork()`` the
child has copies of the client's objects but none of its threads, and its sockets are
the parent's. :meth:`Runtime.check_process` is what every client call asks first.
"""
from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import warnings
from typing import Callable, Counter, Optional

from ..config import Config
from ..errors import BfxError, ForkedClientError
from .callback_runner import CallbackRunner, Handlers, log_visibly

logger = logging.getLogger("bfxsync")


def warn_without_gil() -> None:
    """Warn when the interpreter runs without the GIL (a free-threaded build, ``PYTHON_GIL=0``).

    The engine's one-writer rules lean on the GIL (counters bumped without a lock, handler
    tuples swapped and read without one): without it they can lose updates or tear state.
    """
    gil_enabled = getattr(sys, "_is_gil_enabled", None)  # Python 3.13+; earlier builds always have the GIL
    if gil_enabled is not None and not gil_enabled():
        warnings.warn("bfxsync relies on the GIL, which is disabled in this interpreter (a free-threaded build): "
                      "its threads may lose counts or corrupt state. Run it with the GIL enabled "
                      "(PYTHON_GIL=1, or a standard build).", RuntimeWarning, stacklevel=2)


def forked_error(creator: int) -> ForkedClientError:
    """The error for a client (or connection) created by process ``creator`` and used in this one."""
    return ForkedClientError(
        f"this bfxsync client was created in process {creator} and cannot be used in process {os.getpid()}, "
        "a fork of it: its connections and threads belong to the parent. Create a new Client in the child "
        "(after the fork: gunicorn's post_fork hook, a multiprocessing initializer); close() here only "
        "releases this process's copies")


class Runtime:
    """Options, the callback runner, the end state and client-wide problem counters."""

    def __init__(self, config: Config, handlers: Handlers, on_end: Callable[[], None]) -> None:
        self.config = config
        self.callbacks = CallbackRunner(handlers, on_fatal=self._callback_escaped, max_threads=config.dispatch_threads)
        #: Set once the client has ended (closed by the user or stopped by a fatal problem).
        self.ended = threading.Event()
        #: What stopped the client, if it did not end by ``close()``.
        self.fatal: Optional[BfxError] = None
        self._on_end = on_end
        self._lock = threading.Lock()  # the end state and the counters
        #: Client-wide problem counters (written under ``_lock``; read a copy with :meth:`count_copy`).
        self.counts: Counter[str] = collections.Counter()
        #: The process that created the client (see :meth:`check_process`).
        self.pid = os.getpid()

    def forked(self) -> bool:
        """True in a process forked from the one that created the client."""
        return os.getpid() != self.pid

    def check_process(self) -> None:
        """Raise :class:`ForkedClientError` in a forked child: the client belongs to its parent."""
        if os.getpid() != self.pid:
            raise forked_error(self.pid)

    def count_copy(self) -> Counter[str]:
        """A copy of :attr:`counts` (any thread)."""
        with self._lock:
            return collections.Counter(self.counts)

    def end(self, error: Optional[BfxError] = None) -> None:
        """End the client (idempotent); ``error`` says why when it was not the user's ``close()``."""
        with self._lock:
            first = not self.ended.is_set()
            if first and error is not None:
                self.fatal = error
            self.ended.set()
        if first:
            if error is not None:
                log_visibly(logging.ERROR, "the client stops: %s", error)
                self.callbacks.report(error)
            self._on_end()

    def _callback_escaped(self, error: BaseException) -> None:
        self.end(BfxError(f"a callback raised {error!r}, which ends the client"))

    def problem(self, kind: str, message: str) -> None:
        """Count a problem with incoming data; log the first of each kind as a warning (any thread)."""
        with self._lock:  # every reader thread counts here: += on a Counter is not atomic
            self.counts[kind] += 1
            first = self.counts[kind] == 1
        if first:
            logger.warning("%s (first of its kind; later ones are counted in Client.stats()[%r])", message, kind)
