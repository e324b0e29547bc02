"""Client-wide state that every link shares: options, callbacks, and whether the client has ended.

There is one closed/fatal state for the whole client, whichever connection found the
problem: a fatal handshake (another API version), a connection that ended with
reconnect off, a callback that raised ``SystemExit``, or the user's ``close()``. Ending
calls the client's ``on_end`` once, which stops every connection without waiting (it
may run on a reader thread); joining the threads is left to ``close()``.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Counter, Optional

from ..config import Config
from ..errors import BfxError
from .dispatch import Dispatcher, Handlers, log_visibly

logger = logging.getLogger("bfxsync")


class Runtime:
    """Options, the dispatcher, the end state and client-wide problem counters."""

    def __init__(self, config: Config, handlers: Handlers, on_end: Callable[[], None]) -> None:
        self.config = config
        self.dispatcher = Dispatcher(handlers, on_fatal=self._callback_escaped, max_threads=config.dispatch_threads)
        #: Set once the client has ended (closed by the user or stopped by a fatal problem).
        self.ended = threading.Event()
        #: What stopped the client, if it did not end by ``close()``.
        self.fatal: Optional[BfxError] = None
        self._on_end = on_end
        self._lock = threading.Lock()  # the end state and the counters
        #: Client-wide problem counters (written under ``_lock``; read a copy with :meth:`count_copy`).
        self.counts: Counter[str] = collections.Counter()

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
                log_visibly(logging.ERROR, "bfxsync: the client stops: %s", error)
                self.dispatcher.report(error)
            self._on_end()

    def _callback_escaped(self, error: BaseException) -> None:
        self.end(BfxError(f"a callback raised {error!r}, which ends the client"))

    def problem(self, kind: str, message: str) -> None:
        """Count a problem with incoming data; log the first of each kind as a warning (any thread)."""
        with self._lock:  # every reader thread counts here: += on a Counter is not atomic
            self.counts[kind] += 1
            first = self.counts[kind] == 1
        if first:
            logger.warning("bfxsync: %s (first of its kind; later ones are counted in Client.stats()[%r])", message, kind)
