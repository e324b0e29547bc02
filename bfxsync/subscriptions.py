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
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar

from . import protocol
from .errors import BfxTimeoutError, NotConnectedError, ProtocolError, SubscriptionError
from .events import ChannelMessage
from .models import (
    Candle, DerivativesStatus, FundingTicker, FundingTrade, Liquidation, Trade, TradingTicker,
)
from .specs import CandlesSpec, Spec, StatusSpec, TickerSpec, TradesSpec

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
            NotConnectedError: the client was closed meanwhile.
            RuntimeError: called from a callback, where waiting would block the very thread that reads the answer.
        """
        self._session.refuse_reader_thread("wait_subscribed")
        if not self._acked.wait(timeout):
            raise BfxTimeoutError(f"{self.spec!r} not acknowledged within {timeout:g} s")
        self._raise_if_over()
        return self

    def _raise_if_over(self) -> None:
        """After a wait woke up: raise if the subscription can no longer succeed."""
        if self._error is not None:
            raise self._error
        if self._state is State.CLOSED:
            raise SubscriptionError(None, "unsubscribed", self.spec.request())
        if self._session.connection.closed:
            raise NotConnectedError("the client was closed")

    def _wake(self) -> None:
        """The client closed: release every waiter (they raise NotConnectedError)."""
        self._acked.set()

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

    def _deliver(self, items: Sequence[Any], snapshot: bool, tag: Optional[str], seq: Optional[int],
                 mts: Optional[int], convert: Optional[Callable[[Any], Any]] = None) -> None:
        """Hand a message to this subscription's and the client's handlers, if there are any.

        ``convert`` turns raw rows into models only when someone will see them, so a
        book nobody listens to costs no model objects.
        """
        client_handlers = self._session.handlers.get(self.channel)
        if self._handlers or client_handlers:
            models = tuple(map(convert, items)) if convert is not None else tuple(items)
            message = ChannelMessage(self, models, snapshot, tag, seq, mts)
            dispatcher = self._session.dispatcher
            if self._handlers:
                dispatcher.call(self._handlers, message)
            if client_handlers:
                dispatcher.call(client_handlers, message)

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
    """``candles``: a snapshot (oldest first), then updates of the current or a new candle.

    The handle also keeps the series: :meth:`candles` returns the snapshot merged with
    every update since (an update with a known MTS replaces that candle, a new MTS adds
    one), so a script can read the latest candles without writing a callback.
    """

    spec: CandlesSpec

    #: Candles kept beyond the snapshot's own length, oldest dropped first.
    MIN_HISTORY = 240

    def __init__(self, spec: CandlesSpec, session: "Session") -> None:
        super().__init__(spec, session)
        self._series: Dict[int, Candle] = {}
        self._history = self.MIN_HISTORY

    def candles(self, n: Optional[int] = None) -> Tuple[Candle, ...]:
        """The series, oldest first; only the newest ``n`` if given. Safe from any thread."""
        # list(dict.values()) runs in C without releasing the GIL: a consistent copy.
        series = sorted(list(self._series.values()), key=_by_mts)
        return tuple(series if n is None else series[-n:] if n > 0 else ())

    @property
    def latest(self) -> Optional[Candle]:
        """The newest candle, or ``None`` before the snapshot."""
        newest = self.candles(1)
        return newest[0] if newest else None

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int]) -> None:
        if payload and isinstance(payload[0], list):
            candles = tuple(Candle.from_wire(row) for row in reversed(payload))
            self._history = max(self.MIN_HISTORY, len(candles))
            self._series = {candle.mts: candle for candle in candles}  # rebinding: readers see old or new
            self._expect_snapshot = False
            self._deliver(candles, True, tag, seq, mts)
        elif not payload:
            self._series = {}
            self._deliver((), self._take_snapshot_flag(), tag, seq, mts)
        else:
            candle = Candle.from_wire(payload)
            series = self._series
            series[candle.mts] = candle
            if len(series) > self._history:  # only when a new candle opens: rare
                del series[min(series)]
            self._deliver((candle,), False, tag, seq, mts)


def _by_mts(candle: Candle) -> int:
    return candle.mts


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


def _shape(subscription: Subscription, payload: Any) -> ProtocolError:
    return ProtocolError(f"unexpected payload shape on {subscription.spec!r}: {payload!r:.200}")
