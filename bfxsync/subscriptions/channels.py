"""Handles of the ticker, trades, candles and status channels, and how each reads its payloads.

Payload shapes follow the public documentation (https://docs.bitfinex.com/reference/ws-public-ticker,
ws-public-trades, ws-public-candles, ws-public-status). Methods whose name starts with
``_on`` run on the reader thread of the connection that carries the subscription.

Polling without callbacks: every handle keeps what its channel holds, so a program can
read it from its own loop: ``last`` (the newest ticker, trade, candle or status),
``recent(n)`` (trades and status: the newest items, bounded by ``recent_size``) and
``candles(n)`` (the merged candle series). They are kept whether or not a callback is
registered, across reconnects, and still readable after ``unsubscribe()``.

Threading: the reader thread of the carrying connection is the only writer. It builds
each new value aside and publishes it by rebinding one attribute to an immutable object
(a model, or a tuple of models), so a reader on any thread takes the current value with
one attribute read: no lock, never a half-made list. ``candles`` is the exception (a dict
changed in place; see :meth:`CandlesSubscription.candles` for why its copy is consistent).
"""
from __future__ import annotations

from typing import Any, Dict, Generic, Mapping, Optional, Tuple, TypeVar, Union

from ..errors import ProtocolError
from ..models import Candle, DerivativesStatus, FundingTicker, FundingTrade, Liquidation, Trade, TradingTicker
from ..protocol import is_funding
from ..specs import CandlesSpec, StatusSpec, TickerSpec, TradesSpec
from .base import Owner, Subscription

T = TypeVar("T")

#: Items ``recent()`` keeps by default (trades, statuses, liquidations).
RECENT_SIZE = 100


class _Recent(Generic[T]):
    """The newest items of a channel, oldest first, at most ``size`` of them.

    Written by the reader thread only; ``items`` is an immutable tuple rebound whole on
    each change, so any thread reads it without a lock. A change costs a copy of at most
    ``size`` references, which is cheap next to the frame's own parse.
    """

    __slots__ = ("items", "size")

    def __init__(self, size: int) -> None:
        self.items: Tuple[T, ...] = ()
        self.size = size

    def add(self, new: Tuple[T, ...]) -> None:
        """Reader thread: append ``new`` (oldest first), dropping the oldest beyond ``size``."""
        self.replace(self.items + new)

    def replace(self, items: Tuple[T, ...]) -> None:
        """Reader thread: publish ``items`` (oldest first), keeping the newest ``size``."""
        size = self.size
        self.items = items[-size:] if len(items) > size else items

    def take(self, n: Optional[int]) -> Tuple[T, ...]:
        """The newest ``n`` (all if None), oldest first."""
        items = self.items
        return items if n is None else items[-n:] if n > 0 else ()

    def resize(self, size: int) -> None:
        """Keep at most ``size`` from now on (any thread; the reader applies it at the next item)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"recent_size must be a whole number >= 1, got {size!r}")
        self.size = size


class _RecentWindow:
    """What the trades and status handles share: a bounded window of their newest items."""

    _recent: _Recent[Any]  # written by the reader thread (each handle's __init__ creates it)

    @property
    def recent_size(self) -> int:
        """How many items :meth:`recent` keeps (100 by default); set it to keep more or fewer."""
        return self._recent.size

    @recent_size.setter
    def recent_size(self, size: int) -> None:
        self._recent.resize(size)


class TickerSubscription(Subscription):
    """``ticker``: each message carries one :class:`TradingTicker` or :class:`FundingTicker`.

    The first message after each (re)subscription has ``snapshot=True``. :attr:`last`
    keeps the latest ticker for polling.
    """

    spec: TickerSpec

    def __init__(self, spec: TickerSpec, owner: Owner) -> None:
        super().__init__(spec, owner)
        self._model = FundingTicker if is_funding(spec.symbol) else TradingTicker
        self._last: Union[TradingTicker, FundingTicker, None] = None  # written by the reader thread only

    @property
    def last(self) -> Union[TradingTicker, FundingTicker, None]:
        """The latest ticker (:class:`TradingTicker` or :class:`FundingTicker`), or ``None`` before the first.

        Kept with or without a callback; safe to read from any thread (an immutable model).
        """
        return self._last

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        if tag is not None:
            self._foreign_tag(tag)
            return
        ticker = self._model.from_wire(payload)
        self._last = ticker
        self._deliver((ticker,), self._take_snapshot_flag(), tag, seq, mts)


class TradesSubscription(_RecentWindow, Subscription):
    """``trades``: a snapshot (oldest first), then one message per executed trade.

    Every trade is sent twice, as ``te`` at execution and ``tu`` shortly after; only
    ``te``/``fte`` are delivered unless ``execution_updates`` is True.

    For polling, the handle keeps the newest trades (:meth:`recent`, :attr:`last`): the
    snapshot, then each executed trade once (``te``/``fte``; the ``tu`` duplicates are
    not added), at most :attr:`recent_size` (100 by default). After a reconnect the
    fresh snapshot is merged in by trade id; trades executed while disconnected that the
    snapshot no longer holds are missing, so this is a recent window, not a ledger.
    """

    spec: TradesSpec

    def __init__(self, spec: TradesSpec, owner: Owner, execution_updates: bool = False) -> None:
        super().__init__(spec, owner)
        self._model = FundingTrade if is_funding(spec.symbol) else Trade
        self.execution_updates = execution_updates
        self._recent: _Recent[Union[Trade, FundingTrade]] = _Recent(RECENT_SIZE)  # written by the reader thread

    def recent(self, n: Optional[int] = None) -> Tuple[Union[Trade, FundingTrade], ...]:
        """The newest trades, oldest first (only the newest ``n`` if given). Safe from any thread."""
        return self._recent.take(n)

    @property
    def last(self) -> Union[Trade, FundingTrade, None]:
        """The newest trade, or ``None`` before the snapshot. Safe from any thread."""
        items = self._recent.items
        return items[-1] if items else None

    def options_conflict(self, options: Mapping[str, Any]) -> Optional[str]:
        wanted = bool(options.get("execution_updates", False))
        if set(options) - {"execution_updates"}:
            return f"unknown trades options {sorted(set(options) - {'execution_updates'})}"
        if wanted != self.execution_updates:
            return (f"already subscribed to trades {self.spec.symbol} with execution_updates={self.execution_updates}; "
                    "unsubscribe it first to change the option")
        return None

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        if tag is None:
            if not isinstance(payload, list):
                raise _shape(self, payload)
            self._expect_snapshot = False
            # The wire lists the snapshot newest first; deliver it in time order.
            trades = tuple(self._model.from_wire(row) for row in reversed(payload))
            # After a reconnect, keep the older trades the new snapshot does not repeat.
            fresh = {trade.id for trade in trades}
            kept = tuple(trade for trade in self._recent.items if trade.id not in fresh)
            self._recent.replace(kept + trades)
            self._deliver(trades, True, None, seq, mts)
        elif tag in ("te", "fte"):
            trade = self._model.from_wire(payload)
            self._recent.add((trade,))
            self._deliver((trade,), False, tag, seq, mts)
        elif self.execution_updates and tag in ("tu", "ftu"):
            self._deliver((self._model.from_wire(payload),), False, tag, seq, mts)
        elif tag not in ("tu", "ftu"):
            self._foreign_tag(tag)


class CandlesSubscription(Subscription):
    """``candles``: a snapshot (oldest first), then updates of the current or a new candle.

    The handle also keeps the series: :meth:`candles` returns the snapshot merged with
    every update since (an update with a known MTS replaces that candle, a new MTS adds
    one), and :attr:`last` the newest candle, so a script can read the latest candles
    without writing a callback.
    """

    spec: CandlesSpec

    #: Candles kept beyond the snapshot's own length, oldest dropped first.
    MIN_HISTORY = 240

    def __init__(self, spec: CandlesSpec, owner: Owner) -> None:
        super().__init__(spec, owner)
        self._series: Dict[int, Candle] = {}  # the reader thread changes it (see candles())
        self._last: Optional[Candle] = None  # the reader thread rebinds it
        self._history = self.MIN_HISTORY

    def candles(self, n: Optional[int] = None) -> Tuple[Candle, ...]:
        """The series, oldest first; only the newest ``n`` if given. Safe from any thread."""
        # list(dict.values()) runs in C without releasing the GIL: a consistent copy.
        series = sorted(list(self._series.values()), key=_by_mts)
        return tuple(series if n is None else series[-n:] if n > 0 else ())

    @property
    def last(self) -> Optional[Candle]:
        """The newest candle (the one still forming), or ``None`` before the snapshot. Safe from any thread."""
        return self._last

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        if tag is not None:
            self._foreign_tag(tag)
            return
        if payload and isinstance(payload[0], list):
            candles = tuple(Candle.from_wire(row) for row in reversed(payload))
            self._history = max(self.MIN_HISTORY, len(candles))
            self._series = {candle.mts: candle for candle in candles}  # rebinding: readers see old or new
            self._last = max(candles, key=_by_mts) if candles else None
            self._expect_snapshot = False
            self._deliver(candles, True, tag, seq, mts)
        elif not payload:
            self._series = {}
            self._last = None
            self._deliver((), self._take_snapshot_flag(), tag, seq, mts)
        else:
            candle = Candle.from_wire(payload)
            series = self._series
            series[candle.mts] = candle
            if len(series) > self._history:  # only when a new candle opens: rare
                del series[min(series)]
            last = self._last
            if last is None or candle.mts >= last.mts:  # a late update of an older candle leaves it
                self._last = candle
            self._deliver((candle,), False, tag, seq, mts)


def _by_mts(candle: Candle) -> int:
    return candle.mts


class StatusSubscription(_RecentWindow, Subscription):
    """``status``: :class:`DerivativesStatus` for ``deriv:`` keys, :class:`Liquidation` items for ``liq:global``.

    For polling, :attr:`last` keeps the latest status (``liq:global``: the latest
    liquidation) and :meth:`recent` the newest items (statuses, or liquidations), at most
    :attr:`recent_size` (100 by default).
    """

    spec: StatusSpec

    def __init__(self, spec: StatusSpec, owner: Owner) -> None:
        super().__init__(spec, owner)
        self._recent: _Recent[Union[DerivativesStatus, Liquidation]] = _Recent(RECENT_SIZE)  # the reader writes

    @property
    def last(self) -> Union[DerivativesStatus, Liquidation, None]:
        """The latest :class:`DerivativesStatus` (or, for ``liq:global``, :class:`Liquidation`), or ``None``.

        Safe from any thread.
        """
        items = self._recent.items
        return items[-1] if items else None

    def recent(self, n: Optional[int] = None) -> Tuple[Union[DerivativesStatus, Liquidation], ...]:
        """The newest statuses or liquidations, oldest first (only the newest ``n`` if given). Safe from any thread."""
        return self._recent.take(n)

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        if tag is not None:
            self._foreign_tag(tag)
            return
        if type(payload) is not list:
            raise _shape(self, payload)
        snapshot = self._take_snapshot_flag()
        if self.spec.key.startswith("liq:"):
            items: Tuple[Any, ...] = tuple(Liquidation.from_wire(row) for row in payload)
        else:
            items = (DerivativesStatus.from_wire(payload),)
        self._recent.add(items)
        self._deliver(items, snapshot, tag, seq, mts)


def _shape(subscription: Subscription, payload: Any) -> ProtocolError:
    return ProtocolError(f"unexpected payload shape on {subscription.spec!r}: {payload!r:.200}")
