"""The only place user callbacks are invoked.

A handler that raises is logged with its traceback and reported to the ``on_error``
handlers; the stream goes on. Handler lists are copied under the owner's lock and
called after it is released, so no bfxsync lock is ever held while user code runs.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Sequence, TypeVar

from .errors import CallbackError
from .events import ErrorEvent

logger = logging.getLogger("bfxsync")

Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Callable[..., Any])


class Handlers:
    """Handler lists by event kind, safe to register from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_kind: Dict[str, List[Handler]] = {}

    def add(self, kind: str, handler: F) -> F:
        """Register ``handler`` for ``kind`` and return it (so it works as a decorator)."""
        if not callable(handler):
            raise TypeError(f"handler for {kind!r} must be callable, got {handler!r}")
        with self._lock:
            # Copy-on-write: readers take the current list without the lock.
            self._by_kind[kind] = self._by_kind.get(kind, []) + [handler]
        return handler

    def remove(self, kind: str, handler: Handler) -> None:
        """Unregister ``handler``; unknown handlers are ignored."""
        with self._lock:
            self._by_kind[kind] = [h for h in self._by_kind.get(kind, []) if h is not handler]

    def get(self, kind: str) -> Sequence[Handler]:
        """The handlers of ``kind`` (an immutable-by-convention list, possibly empty)."""
        return self._by_kind.get(kind, ())


class Dispatcher:
    """Calls handlers, isolating the stream from their exceptions."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self.callback_errors = 0

    def emit(self, kind: str, event: Any) -> None:
        """Call the client-level handlers of ``kind`` with ``event``."""
        handlers = self.handlers.get(kind)
        if handlers:
            self.call(handlers, event, report=kind != "error")

    def call(self, handlers: Sequence[Handler], event: Any, report: bool = True) -> None:
        """Call each handler with ``event``; a raising handler is logged and, if ``report``, sent to on_error.

        ``report`` is False for the on_error handlers themselves, so a raising error
        handler is logged once instead of feeding itself forever.
        """
        for handler in handlers:
            try:
                handler(event)
            except Exception as err:  # noqa: BLE001 - user code may raise anything
                self.callback_errors += 1
                logger.exception("bfxsync callback %r raised", getattr(handler, "__qualname__", handler))
                if report:
                    failure = CallbackError(handler, err)
                    failure.__cause__ = err
                    self.emit("error", ErrorEvent(failure, getattr(event, "subscription", None)))
