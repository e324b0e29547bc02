"""The callback runner: the only place user callbacks are invoked.

A callback that raises never stops the stream. Its first traceback (per callback and
exception type) is logged, later ones are counted and summarised at most once a
minute, and each is reported to the ``on_error`` handlers. When logging is not
configured at all, that first traceback goes to Python's last-resort handler (stderr),
so a broken callback is never silent. Handler lists are copy-on-write: the reader
thread takes the current tuple without a lock, and no bfxsync lock is held while user
code runs.

Callbacks run on the reader thread (``inline``) unless their subscription or account
stream is ``queued``: then the reader only appends to a bounded queue and a callback
thread (:mod:`.queues`) calls them here later. Client-level event kinds are routed by
:meth:`CallbackRunner.route` (the account streams use it); subscriptions hold their own queue.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from ..errors import BfxError, CallbackError
from ..events import ErrorEvent
from .queues import Delivery, Lane, Workers
from .threads import on_bfxsync_thread

logger = logging.getLogger("bfxsync")

Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Callable[..., Any])

#: Seconds between two summaries of a callback that keeps raising.
SUMMARY_INTERVAL = 60.0


def log_visibly(level: int, message: str, *args: Any, exc_info: Any = None) -> None:
    """Log under ``bfxsync``; if no handler would show it (logging unconfigured), use the last-resort one."""
    if _has_real_handler(logger) or logging.lastResort is None:
        logger.log(level, message, *args, exc_info=exc_info)
        return
    record = logger.makeRecord(logger.name, level, __file__, 0, message, args, None)
    if exc_info:
        record.exc_info = exc_info if isinstance(exc_info, tuple) else (type(exc_info), exc_info, exc_info.__traceback__)
    logging.lastResort.handle(record)


def _has_real_handler(start: logging.Logger) -> bool:
    current: Optional[logging.Logger] = start
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


class Handlers:
    """Handler lists by event kind, safe to change from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Handlers by kind. Readers (the receive path) use it without the lock; each change
        #: replaces a kind's tuple whole, so a reader sees the old or the new tuple, never half.
        self.by_kind: Dict[str, Tuple[Handler, ...]] = {}

    def add(self, kind: str, handler: F) -> F:
        """Register ``handler`` for ``kind`` and return it (so it works as a decorator)."""
        if not callable(handler):
            raise TypeError(f"handler for {kind!r} must be callable, got {handler!r}")
        with self._lock:
            self.by_kind[kind] = (*self.by_kind.get(kind, ()), handler)
        return handler

    def remove(self, handler: Handler, kind: Optional[str] = None) -> bool:
        """Unregister ``handler`` (from ``kind``, or from every kind). True if it was registered."""
        found = False
        with self._lock:
            for name in [kind] if kind is not None else list(self.by_kind):
                handlers = self.by_kind.get(name, ())
                kept = tuple(h for h in handlers if h is not handler)
                found = found or len(kept) != len(handlers)
                self.by_kind[name] = kept
        return found

    def get(self, kind: str) -> Sequence[Handler]:
        """The handlers of ``kind`` (a tuple, possibly empty)."""
        return self.by_kind.get(kind, ())


class CallbackRunner:
    """Calls handlers, isolating the stream from their exceptions.

    Args:
        handlers: the client-level handler registry.
        on_fatal: called with the exception when a callback raises a ``BaseException``
            that is not an ``Exception`` (``SystemExit``) on a bfxsync thread: the client
            then ends visibly instead of leaving a dead reader behind.
    """

    def __init__(self, handlers: Handlers, on_fatal: Callable[[BaseException], None], max_threads: int = 4) -> None:
        self.handlers = handlers
        self._on_fatal = on_fatal
        #: The callback threads of ``queued`` callbacks (none started until one is needed).
        self.workers = Workers(max_threads)
        #: Event kinds whose handlers run queued, with their queue (copy-on-write, read without a lock).
        self._routes: Dict[str, Lane] = {}
        self._routes_lock = threading.Lock()
        self.callback_errors = 0
        self._raised_lock = threading.Lock()
        #: (callback name, exception type) -> [raises since the last summary, time of the last summary]
        self._raised: Dict[Tuple[str, str], List[Any]] = {}

    def emit(self, kind: str, event: Any) -> None:
        """Call the client-level handlers of ``kind`` with ``event``, or queue them if ``kind`` is routed."""
        handlers = self.handlers.get(kind)
        if handlers:
            lane = self._routes.get(kind)
            if lane is not None:
                lane.put(event)  # the handlers are looked up again when the message runs
            else:
                self.call(handlers, event, report=kind != "error")

    def route(self, kind: str, delivery: Delivery) -> None:
        """Run the handlers of ``kind`` as ``delivery`` says from now on (an account stream's mode).

        A queue already holding messages keeps delivering them, so set the mode before
        ``start()`` to keep every message of the kind in one order.
        """
        with self._routes_lock:
            routes = dict(self._routes)
            if delivery.queued:
                routes[kind] = self.workers.lane(kind, delivery, lambda event, conflated: self._run_routed(kind, event))
            else:
                routes.pop(kind, None)
            self._routes = routes

    def routed(self, kind: str) -> Optional[Lane]:
        """The queue of ``kind``, if its handlers run queued."""
        return self._routes.get(kind)

    def lanes(self) -> Dict[str, Lane]:
        """Every routed kind's queue."""
        return dict(self._routes)

    def _run_routed(self, kind: str, event: Any) -> None:
        self.call(self.handlers.get(kind), event, report=kind != "error")

    def call(self, handlers: Sequence[Handler], event: Any, report: bool = True) -> None:
        """Call each handler with ``event``; a raising handler is logged and, if ``report``, sent to on_error.

        ``report`` is False for the on_error handlers themselves, so a raising error
        handler is logged instead of feeding itself forever.
        """
        for handler in handlers:
            try:
                handler(event)
            except Exception as err:  # noqa: BLE001 - user code may raise anything
                self._failed(handler, err, event, report)
            except BaseException as err:
                if not on_bfxsync_thread():
                    raise  # Ctrl-C or SystemExit on the user's own thread is theirs to handle
                name = _name(handler)
                log_visibly(logging.ERROR, "callback %s raised %r; the client stops", name, err, exc_info=err)
                self._on_fatal(err)
                return

    def _failed(self, handler: Handler, err: Exception, event: Any, report: bool) -> None:
        name = _name(handler)
        key = (name, type(err).__name__)
        now = time.monotonic()
        # Callbacks fail on every reader and callback thread: the counts change under a lock
        # (never held while a callback runs; the logging and the error event come after).
        with self._raised_lock:
            self.callback_errors += 1
            seen = self._raised.get(key)
            if seen is None:
                self._raised[key] = [0, now]
                summary = None
            else:
                seen[0] += 1
                summary = None
                if now - seen[1] >= SUMMARY_INTERVAL:
                    summary = (seen[0], now - seen[1])
                    seen[0], seen[1] = 0, now
        if seen is None:
            log_visibly(logging.ERROR, "callback %s raised (later raises of this kind are counted, "
                        "summarised every %d s and in Client.stats()['callback_errors'])", name, SUMMARY_INTERVAL,
                        exc_info=err)
        elif summary is not None:
            logger.warning("callback %s raised %s %d more times in the last %.0f s",
                           name, key[1], summary[0], summary[1])
        if report:
            failure = CallbackError(handler, err)
            failure.__cause__ = err
            self.emit("error", ErrorEvent(failure, getattr(event, "subscription", None)))

    def report(self, error: BfxError, subscription: Any = None) -> None:
        """Send ``error`` to the on_error handlers."""
        self.emit("error", ErrorEvent(error, subscription))


def _name(handler: Handler) -> str:
    return str(getattr(handler, "__qualname__", handler))
