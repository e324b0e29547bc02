"""The subscription handle: what ``Client.subscribe_*`` returns, and the interface it talks to.

A handle lives as long as the user wants the data. Reconnects, resyncs and moves
between connections give it a new ``chan_id`` but never replace the object. It knows
its owner only through :class:`Owner` (the client's pool), never a connection: the
link that carries it calls the ``_on_*`` hooks, and where the handle needs something
done (a book resync) it returns a verdict that the link carries out. Everything public
may be called from any thread.

Threading: the state transitions (``_on_ack``, ``_on_detached``, ``_on_failed``,
``_on_unsubscribing``, ``_on_closed``, ``_on_stale``) run under the carrying link's
lock (``_guard``, set by the pool when it places the handle; checked in debug mode),
from the reader, the scheduler or a user thread. The data hooks (``_on_payload``,
``_on_heartbeat``, ``_on_checksum``, ``_on_bad_data``) run on the reader thread without
the lock, and take it only around writes that other threads may also make (a book);
they deliver to user callbacks outside it.
"""
from __future__ import annotations

import enum
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Protocol, Sequence, TypeVar

import attrs

from .._engine.ownership import LinkLock, check
from .._engine.queues import Delivery, Lane, QueueStats, take_reserved
from .._engine.threads import wait_event as wait
from ..errors import BfxError, BfxTimeoutError, SubscriptionClosedError, SubscriptionError
from ..events import ChannelMessage

if TYPE_CHECKING:  # pragma: no cover
    from .._engine.callback_runner import CallbackRunner
    from ..config import Config
    from ..specs import Spec

F = TypeVar("F", bound=Callable[..., Any])


class State(enum.Enum):
    """Where a subscription stands."""

    PENDING = "pending"  #: wanted; not (yet, or no longer) acknowledged on its connection
    ACTIVE = "active"  #: acknowledged; data flows
    FAILED = "failed"  #: rejected by the server; will not be retried
    CLOSED = "closed"  #: unsubscribed by the user


class Owner(Protocol):
    """What a handle may ask of the client that holds it."""

    config: "Config"
    callbacks: "CallbackRunner"

    def unsubscribe(self, subscription: "Subscription") -> None:
        """Stop ``subscription`` wherever it is carried."""

    def problem(self, kind: str, message: str) -> None:
        """Count a problem with incoming data (logged once per kind)."""

    def refuse_wait(self, what: str) -> None:
        """Raise if a blocking wait is not allowed here (a bfxsync thread, a client not started)."""

    def end_error(self) -> Optional[BfxError]:
        """The error waits raise once the client has ended (closed or fatal), else None."""

    def failure_hint(self) -> str:
        """`` (last connection failure: ...)`` for timeout messages, or an empty string."""


class Subscription:
    """A subscription to one public channel.

    Attributes:
        spec: the validated parameters (symbol, key, precision, ...).
        chan_id: the server's channel id on the current connection, or ``None``.
        received: frames received on this subscription (data, heartbeats, checksums).
        heartbeats: heartbeats received.
        last_heartbeat: ``time.monotonic()`` of the last heartbeat, or ``None``.
    """

    def __init__(self, spec: "Spec", owner: Owner) -> None:
        self.spec = spec
        self.chan_id: Optional[int] = None
        self.received = 0
        self.heartbeats = 0
        self.last_heartbeat: Optional[float] = None
        self._owner = owner
        self._channel = spec.channel
        #: The client-level handlers by event kind (copy-on-write tuples, read without a lock).
        self._client_handlers = owner.callbacks.handlers.by_kind
        self._call = owner.callbacks.call
        self._state = State.PENDING
        self._error: Optional[SubscriptionError] = None
        self._acked = threading.Event()
        self._handlers: Sequence[Callable[[Any], Any]] = ()
        self._handlers_lock = threading.Lock()
        self._expect_snapshot = True  # the reader thread (books: also _on_detached, under the link lock)
        self._ended = False
        #: The lock of the link that carries this handle (every transition holds it); the
        #: pool replaces this placeholder when it places the handle.
        self._guard = LinkLock(f"unplaced {spec!r}")
        #: How the callbacks run; queued handles own a queue from birth (see ``Client.subscribe``).
        self.delivery: Delivery = take_reserved()
        self._lane: Optional[Lane] = None
        if self.delivery.queued:
            self._lane = owner.callbacks.workers.lane(repr(spec), self.delivery, self._run_queued)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r} {self._state.value} chan_id={self.chan_id}>"

    @property
    def channel(self) -> str:
        """The channel name (``ticker``, ``trades``, ``book``, ``candles``, ``status``)."""
        return self.spec.channel

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def active(self) -> bool:
        """True while acknowledged on its connection."""
        return self._state is State.ACTIVE

    @property
    def error(self) -> Optional[SubscriptionError]:
        """The server's rejection, if the subscription failed."""
        return self._error

    @property
    def dispatch(self) -> str:
        """``inline`` (callbacks on the reader thread) or ``queued`` (on a callback thread)."""
        return self.delivery.mode

    @property
    def queue(self) -> Optional[QueueStats]:
        """The queue's depth, lag, drop and conflation counts, or ``None`` for an inline subscription."""
        return self._lane.stats() if self._lane is not None else None

    def on_data(self, handler: F) -> F:
        """Register ``handler(message: ChannelMessage)`` for this subscription; usable as a decorator.

        Runs on the reader thread of the connection that carries the subscription, or on
        a callback thread if it was subscribed with ``dispatch="queued"``.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        with self._handlers_lock:
            self._handlers = (*self._handlers, handler)
        return handler

    def remove_callback(self, handler: Callable[[Any], Any]) -> bool:
        """Unregister a handler added with :meth:`on_data`; True if it was registered."""
        with self._handlers_lock:
            kept = tuple(h for h in self._handlers if h is not handler)
            found = len(kept) != len(self._handlers)
            self._handlers = kept
        return found

    def options_conflict(self, options: Mapping[str, Any]) -> Optional[str]:
        """Why ``options`` cannot be served by this existing handle, or None (subclasses with options override)."""
        return f"{type(self).__name__} takes no options, got {sorted(options)}" if options else None

    def wait_subscribed(self, timeout: float = 10.0) -> "Subscription":
        """Block until the server acknowledges the subscription, and return ``self``.

        Raises:
            SubscriptionError: the server rejected it (``code`` and ``msg`` say why).
            SubscriptionClosedError: it was unsubscribed meanwhile.
            BfxTimeoutError: no acknowledgement within ``timeout`` seconds (the message
                names the last connection failure, if any).
            NotConnectedError: the client ended meanwhile.
            CallbackThreadError: called from a callback, where waiting would block the
                very thread that reads the answer.
        """
        self._owner.refuse_wait("wait_subscribed")
        if not wait(self._acked, timeout):
            raise BfxTimeoutError(f"{self.spec!r} not acknowledged within {timeout:g} s{self._owner.failure_hint()}")
        self._raise_if_over()
        return self

    def _raise_if_over(self) -> None:
        """After a wait woke up: raise if the subscription can no longer succeed."""
        if self._error is not None:
            raise self._error
        if self._state is State.CLOSED:
            raise SubscriptionClosedError(f"{self.spec!r} was unsubscribed")
        ended = self._owner.end_error()
        if ended is not None:
            raise ended

    def unsubscribe(self) -> None:
        """Stop this subscription. It is not restored on reconnect. Idempotent."""
        self._owner.unsubscribe(self)

    def counters(self) -> Mapping[str, int]:
        """Per-subscription counters that ``Client.stats()`` adds up (books: checksum results)."""
        return {}

    # -- hooks the link calls (reader thread, or the thread that ends the client) -----------

    def _wake(self) -> None:
        """The client ended: release every waiter (they raise)."""
        self._acked.set()

    def _on_ack(self, chan_id: int) -> None:
        check(self._guard, "Subscription._on_ack")
        self.chan_id = chan_id
        self._state = State.ACTIVE
        self._expect_snapshot = True
        self._acked.set()

    def _on_detached(self) -> None:
        """The connection dropped or a resubscribe began: data resumes after a new ack."""
        check(self._guard, "Subscription._on_detached")
        self.chan_id = None
        if self._state is State.ACTIVE:
            self._state = State.PENDING
        self._acked.clear()

    def _on_failed(self, error: SubscriptionError) -> None:
        check(self._guard, "Subscription._on_failed")
        self._error = error
        self._state = State.FAILED
        self.chan_id = None
        self._acked.set()

    def _on_unsubscribing(self) -> None:
        """The user unsubscribed an active channel: over for waiters now, confirmed later."""
        check(self._guard, "Subscription._on_unsubscribing")
        self._state = State.CLOSED
        self._acked.set()

    def _on_closed(self) -> bool:
        """The subscription is over; True the first time (when ``Unsubscribed`` is to be reported)."""
        check(self._guard, "Subscription._on_closed")
        first = not self._ended
        self._ended = True
        self._state = State.CLOSED
        self.chan_id = None
        self._acked.set()
        return first

    def _on_stale(self) -> None:
        """Maintenance began: data may be wrong until it ends (books go unsynced)."""
        check(self._guard, "Subscription._on_stale")

    def _drop_backlog(self) -> None:
        """The user unsubscribed: queued messages not yet delivered are discarded, and no more are taken."""
        if self._lane is not None:
            self._lane.close()

    def _on_heartbeat(self, now: float) -> None:
        self.heartbeats += 1
        self.last_heartbeat = now

    def _on_checksum(self, value: int) -> Optional[str]:
        """A ``cs`` frame; returns a reason when the link must resubscribe this channel."""
        self._owner.problem("checksum_not_book", f"cs frame on non-book channel {self.spec!r}")
        return None

    def _on_bad_data(self, error: Exception) -> Optional[str]:
        """A payload was malformed (already counted and reported); returns a reason to resubscribe, or None."""
        return None

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        """A snapshot or update; raises :class:`~bfxsync.errors.ProtocolError` for malformed data.

        ``flags`` are the ``conf`` flags in force on the carrying connection (they decide,
        for instance, whether a book may receive batched updates); the link passes them
        so that a handle never has to know which connection carries it.
        """
        raise NotImplementedError

    def _foreign_tag(self, tag: str) -> None:
        """A typed frame (``te``, an unknown tag) this channel never carries: counted and ignored."""
        self._owner.problem("unknown_tag", f"tag {tag!r} on {self.spec!r} ignored")

    def _deliver(self, items: Sequence[Any], snapshot: bool, tag: Optional[str], seq: Optional[int],
                 mts: Optional[int], convert: Optional[Callable[[Any], Any]] = None) -> None:
        """Hand a message to this subscription's and the client's handlers, if there are any.

        ``convert`` turns raw items into models only when someone will see them, so a
        book nobody listens to costs no model objects. This runs for every frame: it reads
        plain attributes only (no properties, no lookups through the owner).
        """
        client_handlers = self._client_handlers.get(self._channel)
        if self._handlers or client_handlers:
            if convert is None:
                models = tuple(items)
            elif len(items) == 1:
                models = (convert(items[0]),)
            else:
                models = tuple(map(convert, items))
            message = ChannelMessage(self, models, snapshot, tag, seq, mts)
            if self._lane is not None:
                self._lane.put(message, snapshot)  # handlers are looked up again when it runs
                return
            self._call_handlers(message, client_handlers)

    def _run_queued(self, message: ChannelMessage[Any], conflated: int) -> None:
        """Callback thread: deliver a queued message (conflated ones counted on it)."""
        message = self._conflate(message, conflated) if conflated else message
        self._call_handlers(message, self._client_handlers.get(self._channel))  # as registered now

    def _call_handlers(self, message: ChannelMessage[Any],
                       client_handlers: Optional[Sequence[Callable[[Any], Any]]]) -> None:
        """This subscription's handlers, then the client's for the channel."""
        if self._handlers:
            self._call(self._handlers, message)
        if client_handlers:
            self._call(client_handlers, message)

    def _conflate(self, message: ChannelMessage[Any], conflated: int) -> ChannelMessage[Any]:
        """The message delivered in place of ``conflated + 1`` (``latest``): the newest, counted."""
        return attrs.evolve(message, conflated=conflated)

    def _take_snapshot_flag(self) -> bool:
        snapshot = self._expect_snapshot
        self._expect_snapshot = False
        return snapshot
