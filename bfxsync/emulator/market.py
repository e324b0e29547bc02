"""Seeded synthetic market: one truth per symbol, shared by every connection (pure, no locks).

Each symbol holds resting orders (trading) or offers (funding) around a random-walking mid.
A tick drifts the mid (executing orders left on the wrong side), lets a taker hit the top of
the book, adds, cancels and modifies a few orders, and keeps the depth near ``book_depth``.
Everything is drawn from one ``random.Random(seed)`` in a fixed order, so the same seed gives
the same orders, trades and IDs tick after tick; only timestamps follow the wall clock.

The caller (``hub.py``) serialises access with the market lock.
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs

from bfxsync.protocol import is_funding

from .books import BookView, Order, build_view, is_bid
from .candles import CandleKey, CandleSeries
from .config import symbol_spec

__all__ = ["Market", "SymbolMarket", "Trade"]

# Amounts that break float-based checksum code (docs: ws-websocket-checksum) are drawn often enough to be in the
# top 25 of every book most of the time.
_SPECIAL_AMOUNTS = tuple(Decimal(v) for v in ("0.00000001", "0.0000082", "0.00000123", "1", "12", "0.5"))
_EIGHT_DP = Decimal("0.00000001")
_FUNDING_PERIODS = (2, 2, 2, 7, 14, 30, 30)
TRADES_KEPT = 60
_FUNDING_EVENT_MS = 8 * 3600 * 1000


@attrs.frozen
class Trade:
    """A public trade; ``amount`` > 0 when the taker bought (funding: hit an ask)."""

    id: int
    mts: int
    amount: Decimal
    price: Decimal
    period: int | None = None

    def wire(self) -> list[Any]:
        """Trading ``[ID, MTS, AMOUNT, PRICE]``, funding ``[ID, MTS, AMOUNT, RATE, PERIOD]`` (docs: ws-public-trades)."""
        entry = [self.id, self.mts, float(self.amount), float(self.price)]
        if self.period is not None:
            entry.append(self.period)
        return entry


#: Trade IDs reserved per symbol: each symbol numbers its trades consecutively within its own
#: block, so a subscriber can count lost trades (at 100 trades a second, a block lasts 11 days).
TRADE_ID_BLOCK = 100_000_000


class _Ids:
    """Monotonic order IDs, and per-symbol blocks of trade IDs; large like the real ones but below 2**53."""

    def __init__(self, rng: random.Random) -> None:
        self.order = 34_753_000_000 + rng.randrange(1_000_000)
        self.trade = 401_597_000 + rng.randrange(1_000)

    def next_order(self) -> int:
        self.order += 1
        return self.order

    def trade_block(self) -> int:
        """The last ID before a new symbol's block (its first trade is this + 1)."""
        start = self.trade
        self.trade += TRADE_ID_BLOCK
        return start


class SymbolMarket:
    """The order book, trades and daily statistics of one symbol."""

    def __init__(self, symbol: str, rng: random.Random, ids: _Ids, depth: int, now_ms: int) -> None:
        spec = symbol_spec(symbol)
        self.symbol = symbol
        self.funding = is_funding(symbol)
        self.base, self.tick, self.size = spec.base, spec.tick, spec.size
        self.depth = depth
        self.mid = spec.base
        self.orders: dict[int, Order] = {}
        # The same orders by side, in the same (insertion) order: an order never changes side
        # (modify and partial fills keep the amount's sign), and the market asks for one side
        # several times per tick; filtering the whole book each time was a third of a tick.
        self._sides: dict[bool, dict[int, Order]] = {True: {}, False: {}}
        self.version = 0  # bumped on every order change; views are cached per version
        self.trades: deque[Trade] = deque(maxlen=TRADES_KEPT)
        self.new_trades: list[Trade] = []
        self.open = self.last = self.high = self.low = spec.base
        self.volume = Decimal(0)
        self._rng, self._ids = rng, ids
        self._trade_id = ids.trade_block()  # consecutive per symbol: a gap is a lost trade
        self._views: dict[tuple[str, int], tuple[int, BookView]] = {}
        for bid in (True, False):
            for _ in range(depth):
                self._add(bid)
        mts = now_ms - 30 * 3000
        for _ in range(30):
            mts += rng.randint(0, 3000)
            price = self.mid + self.tick * rng.randint(-5, 5)
            self.trades.append(Trade(self._next_trade_id(), mts, self.random_amount() * rng.choice((1, -1)),
                                     price, self._period()))

    # -- queries -----------------------------------------------------------------------
    def view(self, prec: str, length: int) -> BookView:
        """The best ``length`` entries per side at ``prec`` (cached until the book changes)."""
        cached = self._views.get((prec, length))
        if cached is None or cached[0] != self.version:
            cached = (self.version, build_view(self.orders.values(), self.funding, prec, length))
            self._views[(prec, length)] = cached
        return cached[1]

    def ticker(self) -> list[Any]:
        """Trading: 10 fields plus a trailing null (seen live); funding: 16 fields (docs: ws-public-ticker)."""
        view = self.view("P0", 25)
        bid, ask = view.bids[0][1], view.asks[0][1]
        bid_size = float(sum(abs(Decimal(repr(e[-1]))) for _, e in view.bids))
        ask_size = float(sum(abs(Decimal(repr(e[-1]))) for _, e in view.asks))
        change = self.last - self.open
        relative = float((change / self.open).quantize(Decimal("0.0001")))
        daily = [float(change), relative, float(self.last), float(self.volume),
                 float(self.high), float(self.low)]
        if self.funding:
            frr_available = float((self.size * 300).quantize(_EIGHT_DP))
            return ([float(self.mid), bid[0], bid[1], bid_size, ask[0], ask[1], ask_size]
                    + daily + [None, None, frr_available])
        return [bid[0], bid_size, ask[0], ask_size] + daily + [None]

    def trades_snapshot(self, limit: int = 30) -> list[list[Any]]:
        """Newest first (docs: ws-public-trades)."""
        return [t.wire() for t in list(self.trades)[::-1][:limit]]

    # -- one tick ----------------------------------------------------------------------
    def step(self, now_ms: int) -> None:
        """Advance one tick: drift, executions, a taker trade, a few add/cancel/modify."""
        rng = self._rng
        self.new_trades = []
        if rng.random() < 0.35:
            direction = rng.choice((-1, 1))
            mid = self.mid + direction * self.tick
            if not self.base * Decimal("0.8") <= mid <= self.base * Decimal("1.2"):
                mid = self.mid - direction * self.tick
            self.mid = mid
            crossed = [o for o in self.orders.values()
                       if (o.price >= mid if is_bid(o, self.funding) else o.price <= mid)]
            for order in sorted(crossed, key=lambda o: (o.price, o.id)):
                self._execute(order, abs(order.amount), now_ms)
        if rng.random() < 0.4:
            side = self._side(rng.random() < 0.5)
            if side:
                best = min(side, key=self._rank)
                self._execute(best, min(abs(best.amount), self.random_amount()), now_ms)
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.45:
                self._add(rng.random() < 0.5)
            elif op < 0.75:
                self._remove(self.orders[rng.choice(list(self.orders))])
            else:
                self._modify(self.orders[rng.choice(list(self.orders))])
        for bid in (True, False):
            side = self._side(bid)
            while len(side) < self.depth * 0.8:
                side.append(self._add(bid))
            while len(side) > self.depth * 1.2:
                worst = max(side, key=self._rank)
                side.remove(worst)
                self._remove(worst)

    # -- helpers -----------------------------------------------------------------------
    def _side(self, bid: bool) -> list[Order]:
        return list(self._sides[bid].values())

    def _rank(self, order: Order) -> tuple[Any, ...]:
        # Best first: highest bid, lowest ask; then time priority (lower ID first).
        return (-order.price if is_bid(order, self.funding) else order.price, order.id)

    def random_amount(self) -> Decimal:
        """A positive order size: 15% of the time one of the awkward special values."""
        rng = self._rng
        if rng.random() < 0.15:
            return rng.choice(_SPECIAL_AMOUNTS)
        raw = self.size * Decimal(rng.randint(1, 300_000_000)).scaleb(-8)
        return max(raw.quantize(_EIGHT_DP), _EIGHT_DP).normalize()

    def _next_trade_id(self) -> int:
        self._trade_id += 1
        return self._trade_id

    def _period(self) -> int | None:
        if not self.funding:
            return None
        rng = self._rng
        return rng.choice(_FUNDING_PERIODS) if rng.random() < 0.8 else rng.randint(2, 30)

    def _price(self, bid: bool) -> Decimal:
        rng = self._rng
        # Offsets are skewed toward the mid, so the top levels hold several orders each.
        offset = 1 + int(rng.random() ** 2 * self.depth)
        return self.mid - offset * self.tick if bid else self.mid + offset * self.tick

    def _add(self, bid: bool) -> Order:
        rng = self._rng
        side = self._sides[bid]
        price = self._price(bid)
        # Reusing a resting price makes counts > 1 and, on funding books, the same rate at
        # several periods (the (rate, period) identity of docs: ws-public-books).
        if side and rng.random() < 0.3:
            price = rng.choice(list(side.values())).price
        sign = 1 if bid != self.funding else -1
        order = Order(self._ids.next_order(), price, sign * self.random_amount(), self._period())
        self._put(order, bid)
        return order

    def _remove(self, order: Order) -> None:
        del self.orders[order.id]
        del self._sides[is_bid(order, self.funding)][order.id]
        self.version += 1

    def _put(self, order: Order, bid: bool) -> None:
        # Adds, or replaces in place (a replaced order keeps its place in both dicts).
        self.orders[order.id] = self._sides[bid][order.id] = order
        self.version += 1

    def _modify(self, order: Order) -> None:
        amount = self.random_amount().copy_sign(order.amount)
        price = order.price
        bid = is_bid(order, self.funding)
        if self._rng.random() < 0.3:
            price = self._price(bid)
        self._put(attrs.evolve(order, price=price, amount=amount), bid)

    def _execute(self, order: Order, fill: Decimal, now_ms: int) -> None:
        remaining = abs(order.amount) - fill
        if remaining > 0:
            self._put(attrs.evolve(order, amount=remaining.copy_sign(order.amount)), is_bid(order, self.funding))
        else:
            self._remove(order)
        # The taker is on the other side of the resting order.
        taker_sign = -1 if is_bid(order, self.funding) else 1
        trade = Trade(self._next_trade_id(), now_ms, taker_sign * fill, order.price, order.period)
        self.trades.append(trade)
        self.new_trades.append(trade)
        self.last = order.price
        self.high, self.low = max(self.high, order.price), min(self.low, order.price)
        self.volume += fill


class Market:
    """All symbols plus derived streams: candles, derivative status and liquidations."""

    def __init__(self, symbols: Sequence[str], seed: int, depth: int, now_ms: int) -> None:
        self.seed = seed
        self.depth = depth
        self._rng = random.Random(seed)
        self._ids = _Ids(self._rng)
        self.symbols: dict[str, SymbolMarket] = {
            s: SymbolMarket(s, self._rng, self._ids, depth, now_ms) for s in symbols
        }
        self.candles: dict[str, CandleSeries] = {}
        self.statuses: dict[str, list[Any]] = {}
        self.liquidations: list[list[Any]] = []
        self.ticks = 0
        self._pos_id = 140_000_000 + self._rng.randrange(1_000_000)
        for symbol in self.derivatives():
            self.statuses[symbol] = self._status_row(symbol, now_ms)

    def add_symbol(self, symbol: str, now_ms: int) -> SymbolMarket:
        """Create a market for ``symbol`` now (``EmulatorConfig.any_symbol``); returns it.

        It draws from its own generator, seeded from the seed and the symbol, so its orders
        and trades do not depend on when it was created or on what else is subscribed.
        """
        rng = random.Random(f"{self.seed}:market:{symbol}")
        market = self.symbols[symbol] = SymbolMarket(symbol, rng, _Ids(rng), self.depth, now_ms)
        if symbol in self.derivatives():
            self.statuses[symbol] = self._status_row(symbol, now_ms)
        return market

    def derivatives(self) -> list[str]:
        """Symbols with a ``deriv:`` status stream (perpetuals, ``...F0:...F0``)."""
        return [s for s in self.symbols if s.startswith("t") and "F0:" in s]

    def candle_series(self, key: CandleKey, now_ms: int) -> CandleSeries:
        """The series of ``key``, created (with seeded history) on first use."""
        series = self.candles.get(key.key)
        if series is None:
            market = self.symbols[key.symbol]
            series = CandleSeries(key, market.last, market.tick, self.seed, now_ms)
            self.candles[key.key] = series
        return series

    def tick(self, now_ms: int, with_status: bool) -> None:
        """Advance every symbol by one tick; ``with_status`` refreshes the derivative status."""
        self.ticks += 1
        for market in self.symbols.values():
            market.step(now_ms)
            if market.new_trades:
                self._fold_candles(market.symbol, market.new_trades)
        self.liquidations = []
        if self._rng.random() < 0.03 and any(s.startswith("t") for s in self.symbols):
            self.liquidations = [self._liquidation(now_ms)]
        if with_status:
            for symbol in self.derivatives():
                self.statuses[symbol] = self._status_row(symbol, now_ms)

    def _fold_candles(self, symbol: str, trades: Iterable[Trade]) -> None:
        for series in self.candles.values():
            if series.key.symbol == symbol:
                for trade in trades:
                    if series.accepts(trade.period):
                        series.add_trade(trade.price, trade.amount, trade.mts)

    def _status_row(self, symbol: str, now_ms: int) -> list[Any]:
        # 23 fields, WS layout (REST index minus one), docs: ws-public-status.
        rng = self._rng
        market = self.symbols[symbol]
        spot_symbol = "t" + symbol[1:].split("F0:")[0] + "USD"
        spot = self.symbols[spot_symbol].mid if spot_symbol in self.symbols else market.mid
        next_event = now_ms - now_ms % _FUNDING_EVENT_MS + _FUNDING_EVENT_MS
        funding = float(Decimal(rng.randint(-500, 1500)).scaleb(-8))
        mark = float(market.mid + market.tick * rng.randint(-2, 2))
        open_interest = float(Decimal(rng.randint(10**9, 10**11)).scaleb(-8))
        return [now_ms, None, float(market.mid), float(spot), None, 1396531.67460709, None,
                next_event, funding, 6, None, funding, None, None, mark, None, None,
                open_interest, None, None, None, 0.001, 0.3]

    def _liquidation(self, now_ms: int) -> list[Any]:
        rng = self._rng
        trading = [s for s in self.symbols if s.startswith("t")]
        symbol = rng.choice(self.derivatives() or trading)
        market = self.symbols[symbol]
        self._pos_id += rng.randint(1, 50)
        amount = float(market.random_amount() * rng.choice((1, -1)))
        price = market.mid + market.tick * rng.randint(-30, 30)
        return ["pos", self._pos_id, now_ms, None, symbol, amount, float(price), None,
                rng.randint(0, 1), rng.randint(0, 1), None, float(price + market.tick * 3)]
