"""Subscription handles: what ``Client.subscribe_*`` returns, and how each channel reads its frames.

A handle lives as long as the user wants the data: reconnects and book resyncs give it
a new ``chan_id`` but never replace the object. Methods whose name starts with ``_on``
run on the connection's reader thread only; everything public may be called from any
thread.
"""
from __future__ import annotations

import enum
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, TypeVar

from . import protocol
from .errors import BfxTimeoutError, ChecksumMismatchError, ProtocolError, SubscriptionError
from .events import BookSynced, ChannelMessage, ChecksumMismatch, ErrorEvent
from .models import (
    Candle, DerivativesStatus, FundingTicker, FundingTrade, Liquidation, Trade, TradingTicker,
)
from .orderbook import BookSnapshot, Level, OrderBook
from .checksum import same_checksum
from .specs import BookSpec, CandlesSpec, Spec, StatusSpec, TickerSpec, TradesSpec

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class State(enum.Enum):
    """Where a subscription stands."""

    PENDING = "pending"  #: wanted; not (yet, or no longer) acknowledged on the current connection
    ACTIVE = "active"  #: acknowledged; data flows
    FAILED = "failed"  #: rejected by the server; will not be retried
    CLOSED = "closed"  #: unsubscribed by the user


class Subscription:
    """A subscription to one public channel.

    Attributes:
        spec: the validated parameters (symbol, key, precision, ...).
        chan_id: the server's channel id on the current connection, or ``None``.
        heartbeats: heartbeats received.
        last_heartbeat: ``time.monotonic()`` of the last heartbeat, or ``None``.
    """

    #: How this channel's frames are decoded (book channels override it).
    decode = staticmethod(protocol.decode)

    def __init__(self, spec: Spec, session: "Session") -> None:
        self.spec = spec
        self.chan_id: Optional[int] = None
        self.heartbeats = 0
        self.last_heartbeat: Optional[float] = None
        self._session = session
        self._state = State.PENDING
        self._error: Optional[SubscriptionError] = None
        self._acked = threading.Event()
        self._handlers: Sequence[Callable[[Any], Any]] = ()
        self._expect_snapshot = True

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
        """True while acknowledged on the current connection."""
        return self._state is State.ACTIVE

    @property
    def error(self) -> Optional[SubscriptionError]:
        """The server's rejection, if the subscription failed."""
        return self._error

    def on_data(self, handler: F) -> F:
        """Register ``handler(message: ChannelMessage)`` for this subscription; usable as a decorator.

        Handlers run on the connection's reader thread: keep them short, and do not call
        blocking bfxsync methods from them.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        with self._session.lock:
            self._handlers = (*self._handlers, handler)
        return handler

    def wait_subscribed(self, timeout: float = 10.0) -> "Subscription":
        """Block until the server acknowledges the subscription, and return ``self``.

        Raises:
            SubscriptionError: the server rejected it (``code`` and ``msg`` say why), or it was unsubscribed.
            BfxTimeoutError: no acknowledgement within ``timeout`` seconds.
            RuntimeError: called from a callback, where waiting would block the very thread that reads the answer.
        """
        self._session.refuse_reader_thread("wait_subscribed")
        if not self._acked.wait(timeout):
            raise BfxTimeoutError(f"{self.spec!r} not acknowledged within {timeout:g} s")
        if self._error is not None:
            raise self._error
        if self._state is State.CLOSED:
            raise SubscriptionError(None, "unsubscribed", self.spec.request())
        return self

    def unsubscribe(self) -> None:
        """Stop this subscription. It is not restored on reconnect. Idempotent."""
        self._session.unsubscribe(self)

    # -- reader thread ----------------------------------------------------------------

    def _on_ack(self, chan_id: int) -> None:
        self.chan_id = chan_id
        self._state = State.ACTIVE
        self._expect_snapshot = True
        self._acked.set()

    def _on_detached(self) -> None:
        """The connection dropped or a resync began: data will resume after a new ack."""
        self.chan_id = None
        if self._state is State.ACTIVE:
            self._state = State.PENDING
        self._acked.clear()

    def _on_failed(self, error: SubscriptionError) -> None:
        self._error = error
        self._state = State.FAILED
        self.chan_id = None
        self._acked.set()

    def _on_closed(self) -> None:
        self._state = State.CLOSED
        self.chan_id = None
        self._acked.set()

    def _on_heartbeat(self, now: float) -> None:
        self.heartbeats += 1
        self.last_heartbeat = now

    def _on_checksum(self, value: int) -> None:
        self._session.problem("checksum_not_book", f"cs frame on non-book channel {self.spec!r}")

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        raise NotImplementedError

    def _deliver(self, items: Tuple[Any, ...], snapshot: bool, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        client_handlers = self._session.handlers.get(self.channel)
        if self._handlers or client_handlers:
            message = ChannelMessage(self, items, snapshot, tag, seq, mts)
            dispatcher = self._session.dispatcher
            if self._handlers:
                dispatcher.call(self._handlers, message)
            if client_handlers:
                dispatcher.call(client_handlers, message)

    def _wants_models(self) -> bool:
        return bool(self._handlers or self._session.handlers.get(self.channel))

    def _take_snapshot_flag(self) -> bool:
        snapshot = self._expect_snapshot
        self._expect_snapshot = False
        return snapshot


class TickerSubscription(Subscription):
    """``ticker``: each message carries one :class:`TradingTicker` or :class:`FundingTicker`.

    The first message after each (re)subscription has ``snapshot=True``.
    """

    spec: TickerSpec

    def __init__(self, spec: TickerSpec, session: "Session") -> None:
        super().__init__(spec, session)
        self._model = FundingTicker if spec.symbol.startswith("f") else TradingTicker
        #: The latest ticker, or ``None`` before the first one.
        self.last: Optional[Any] = None

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        ticker = self._model.from_wire(payload)
        self.last = ticker
        self._deliver((ticker,), self._take_snapshot_flag(), tag, seq, mts)


class TradesSubscription(Subscription):
    """``trades``: a snapshot (oldest first), then one message per executed trade.

    Every trade is sent twice, as ``te`` at execution and ``tu`` shortly after (§4.3);
    only ``te``/``fte`` are delivered unless ``execution_updates`` is True.
    """

    spec: TradesSpec

    def __init__(self, spec: TradesSpec, session: "Session", execution_updates: bool = False) -> None:
        super().__init__(spec, session)
        self._model = FundingTrade if spec.symbol.startswith("f") else Trade
        self.execution_updates = execution_updates

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        if tag is None:
            if not isinstance(payload, list):
                raise _shape(self, payload)
            self._expect_snapshot = False
            # The wire lists the snapshot newest first; deliver it in time order.
            trades = tuple(self._model.from_wire(row) for row in reversed(payload))
            self._deliver(trades, True, None, seq, mts)
        elif tag in ("te", "fte") or (self.execution_updates and tag in ("tu", "ftu")):
            self._deliver((self._model.from_wire(payload),), False, tag, seq, mts)
        elif tag not in ("tu", "ftu"):
            self._session.problem("unknown_tag", f"unknown trades tag {tag!r}")


class CandlesSubscription(Subscription):
    """``candles``: a snapshot (oldest first), then updates of the current or a new candle."""

    spec: CandlesSpec

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        if payload and isinstance(payload[0], list):
            candles = tuple(Candle.from_wire(row) for row in reversed(payload))
            self._expect_snapshot = False
            self._deliver(candles, True, tag, seq, mts)
        elif not payload:
            self._deliver((), self._take_snapshot_flag(), tag, seq, mts)
        else:
            self._deliver((Candle.from_wire(payload),), False, tag, seq, mts)


class StatusSubscription(Subscription):
    """``status``: :class:`DerivativesStatus` for ``deriv:`` keys, :class:`Liquidation` items for ``liq:global``."""

    spec: StatusSpec

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        snapshot = self._take_snapshot_flag()
        if self.spec.key.startswith("liq:"):
            items: Tuple[Any, ...] = tuple(Liquidation.from_wire(row) for row in payload)
        else:
            items = (DerivativesStatus.from_wire(payload),)
        self._deliver(items, snapshot, tag, seq, mts)


class BookSubscription(Subscription):
    """``book``: keeps a local :class:`OrderBook`, verified against every ``cs`` checksum.

    On a mismatch the book is dropped and rebuilt from a fresh snapshot (unsubscribe,
    wait for ``unsubscribed``, subscribe again) without any action from the user.
    Messages carry the levels of each snapshot or update; read the book itself for state.

    Attributes:
        book: the local book (safe to read from any thread).
        checks_passed: checksums that matched.
        checks_failed: checksums that did not.
        resyncs: times the book was rebuilt after a mismatch or a bad frame.
    """

    spec: BookSpec
    decode = staticmethod(protocol.decode_tokens)

    def __init__(self, spec: BookSpec, session: "Session") -> None:
        super().__init__(spec, session)
        self.book = OrderBook(spec.symbol, spec.prec)
        self._synced = threading.Event()
        self._model = self.book._model  # noqa: SLF001 - same row -> level mapping as the book
        self.checks_passed = 0
        self.checks_failed = 0
        self.resyncs = 0
        self._was_synced = False
        self._mismatch_logged = False

    def wait_synced(self, timeout: float = 10.0) -> "BookSubscription":
        """Block until the book holds a fresh snapshot, and return ``self``.

        Raises:
            SubscriptionError: the subscription was rejected.
            BfxTimeoutError: not synced within ``timeout`` seconds.
        """
        self._session.refuse_reader_thread("wait_synced")
        if not self._synced.wait(timeout):
            if self._error is not None:
                raise self._error
            raise BfxTimeoutError(f"book {self.spec!r} not synced within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self

    @property
    def synced(self) -> bool:
        """True while the book holds a snapshot plus every update since."""
        return self.book.synced

    # Read API, forwarded so scripts can use the handle as the book.
    def best_bid(self) -> Optional[Level]:
        """The best bid (see :meth:`OrderBook.best_bid`)."""
        return self.book.best_bid()

    def best_ask(self) -> Optional[Level]:
        """The best ask (see :meth:`OrderBook.best_ask`)."""
        return self.book.best_ask()

    def spread(self) -> Optional[float]:
        """Best ask minus best bid."""
        return self.book.spread()

    def mid(self) -> Optional[float]:
        """Midpoint of best bid and ask."""
        return self.book.mid()

    def top(self, n: int = 10) -> Tuple[Tuple[Level, ...], Tuple[Level, ...]]:
        """The best ``n`` bids and asks."""
        return self.book.top(n)

    def snapshot(self) -> BookSnapshot:
        """A consistent copy of the book with its checksum."""
        return self.book.snapshot()

    def checksum(self) -> int:
        """The book's current checksum."""
        return self.book.checksum()

    # -- reader thread ----------------------------------------------------------------

    def _on_detached(self) -> None:
        super()._on_detached()
        self._synced.clear()
        self.book.invalidate()

    def _on_failed(self, error: SubscriptionError) -> None:
        super()._on_failed(error)
        self._synced.set()  # wake wait_synced(), which raises the error

    def _on_closed(self) -> None:
        super()._on_closed()
        self.book.invalidate()

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        if self._expect_snapshot:
            # The first payload after each ack is the snapshot even when it looks like a
            # bulk update or is empty (§5: BULK_UPDATES makes both shapes alike).
            self.book.apply_snapshot(payload)
            self._expect_snapshot = False
            self._mismatch_logged = False
            self._synced.set()
            self._session.dispatcher.emit("book_synced", BookSynced(self, self._was_synced))
            self._was_synced = True
            if self._wants_models():
                self._deliver(tuple(map(self._model, payload)), True, tag, seq, mts)
            return
        if not self.book.synced:
            return  # dropped after a mismatch; waiting for the resync's snapshot
        if payload and type(payload[0]) is list:  # BULK_UPDATES batch
            rows: List[Any] = payload
            for row in rows:
                self.book.apply_update(row)
        else:
            rows = [payload]
            self.book.apply_update(payload)
        if self._wants_models():
            self._deliver(tuple(map(self._model, rows)), False, tag, seq, mts)

    def _on_bad_update(self, error: Exception) -> None:
        """A malformed update means the book lost data: rebuild it rather than drift."""
        self._resync(f"bad update: {error}")

    def _on_checksum(self, value: int) -> None:
        if not self.book.synced:
            # A cs before the snapshot, or while a resync is under way, has nothing to check.
            self._session.problem("checksum_unsynced", f"cs frame for {self.spec!r} while the book is not synced")
            return
        local = self.book.checksum()
        if same_checksum(value, local):
            self.checks_passed += 1
            return
        self.checks_failed += 1
        resync = not self.book.is_funding or self._session.config.verify_funding_checksums
        # Logged-only funding books would repeat the warning on every cs: warn once per snapshot.
        level = logging.WARNING if resync or not self._mismatch_logged else logging.DEBUG
        self._mismatch_logged = True
        logger.log(
            level, "bfxsync: checksum mismatch on %s %s: server %d, local %d%s", self.spec.symbol, self.spec.prec,
            value, local, "; resyncing" if resync else " (funding book: logged only, see Config.verify_funding_checksums)",
        )
        dispatcher = self._session.dispatcher
        dispatcher.emit("checksum", ChecksumMismatch(self, value, local, resync))
        dispatcher.emit("error", ErrorEvent(ChecksumMismatchError(self.spec.symbol, value, local), self))
        if resync:
            self._resync("checksum mismatch")

    def _resync(self, reason: str) -> None:
        self.resyncs += 1
        self._synced.clear()
        self.book.invalidate(clear=True)
        self._session.resubscribe(self, reason)


def _shape(subscription: Subscription, payload: Any) -> ProtocolError:
    return ProtocolError(f"unexpected payload shape on {subscription.spec!r}: {payload!r:.200}")


def make_subscription(spec: Spec, session: "Session", **options: Any) -> Subscription:
    """The handle class that reads ``spec``'s channel."""
    if isinstance(spec, BookSpec):
        return BookSubscription(spec, session)
    if isinstance(spec, TradesSpec):
        return TradesSubscription(spec, session, **options)
    if isinstance(spec, TickerSpec):
        return TickerSubscription(spec, session)
    if isinstance(spec, CandlesSpec):
        return CandlesSubscription(spec, session)
    return StatusSubscription(spec, session)
