"""Handles of the ticker, trades, candles and status channels, and how each reads its payloads.

Payload shapes follow the public documentation (https://docs.bitfinex.com/reference/ws-public-ticker,
ws-public-trades, ws-public-candles, ws-public-status). Methods whose name starts with
``_on`` run on the reader thread of the connection that carries the subscription.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from ..errors import ProtocolError
from ..models import Candle, DerivativesStatus, FundingTicker, FundingTrade, Liquidation, Trade, TradingTicker
from ..protocol import is_funding
from ..specs import CandlesSpec, StatusSpec, TickerSpec, TradesSpec
from .base import Owner, Subscription


class TickerSubscription(Subscription):
    """``ticker``: each message carries one :class:`TradingTicker` or :class:`FundingTicker`.

    The first message after each (re)subscription has ``snapshot=True``.
    """

    spec: TickerSpec

    def __init__(self, spec: TickerSpec, owner: Owner) -> None:
        super().__init__(spec, owner)
        self._model = FundingTicker if is_funding(spec.symbol) else TradingTicker
        #: The latest ticker, or ``None`` before the first one.
        self.last: Optional[Any] = None

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        if tag is not None:
            self._foreign_tag(tag)
            return
        ticker = self._model.from_wire(payload)
        self.last = ticker
        self._deliver((ticker,), self._take_snapshot_flag(), tag, seq, mts)


class TradesSubscription(Subscription):
    """``trades``: a snapshot (oldest first), then one message per executed trade.

    Every trade is sent twice, as ``te`` at execution and ``tu`` shortly after; only
    ``te``/``fte`` are delivered unless ``execution_updates`` is True.
    """

    spec: TradesSpec

    def __init__(self, spec: TradesSpec, owner: Owner, execution_updates: bool = False) -> None:
        super().__init__(spec, owner)
        self._model = FundingTrade if is_funding(spec.symbol) else Trade
        self.execution_updates = execution_updates

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
            self._deliver(trades, True, None, seq, mts)
        elif tag in ("te", "fte") or (self.execution_updates and tag in ("tu", "ftu")):
            self._deliver((self._model.from_wire(payload),), False, tag, seq, mts)
        elif tag not in ("tu", "ftu"):
            self._foreign_tag(tag)


class CandlesSubscription(Subscription):
    """``candles``: a snapshot (oldest first), then updates of the current or a new candle.

    The handle also keeps the series: :meth:`candles` returns the snapshot merged with
    every update since (an update with a known MTS replaces that candle, a new MTS adds
    one), so a script can read the latest candles without writing a callback.
    """

    spec: CandlesSpec

    #: Candles kept beyond the snapshot's own length, oldest dropped first.
    MIN_HISTORY = 240

    def __init__(self, spec: CandlesSpec, owner: Owner) -> None:
        super().__init__(spec, owner)
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

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        if tag is not None:
            self._foreign_tag(tag)
            return
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
        self._deliver(items, snapshot, tag, seq, mts)


def _shape(subscription: Subscription, payload: Any) -> ProtocolError:
    return ProtocolError(f"unexpected payload shape on {subscription.spec!r}: {payload!r:.200}")
