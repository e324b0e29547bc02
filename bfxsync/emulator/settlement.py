"""Fills and their consequences: wallets, positions, fees, and the frames they produce (pure).

One taker pass touches the taker's account and those of the resting orders it met. Each
account's frames come out in the order seen on the wire in 2025 (docs: ws-auth-trades
describes the tags; the order is observed, not documented)::

    wu (trade, base) -> wu (trade, quote) -> te   ... per fill
    ou / oc (the order's new state)
    wu (fee) -> tu                                ... per fill
    bu

Margin and derivative fills put ``pn``/``pu``/``pc`` before their ``te`` instead of the two
trade ``wu``, and realised profit or loss as a ``wu`` of the margin wallet after it.
"""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs

from .accounts import ZERO, AccountLedger, Position, WorkingOrder, number_label, split_pair
from .config import WalletKey
from .market import Market
from .session import AuthSeq

__all__ = ["MARGIN_LEVERAGE", "Batch", "Out", "Settler"]

#: Leverage of margin (non-derivative) positions; derivatives use the order's ``lev`` (default 10).
MARGIN_LEVERAGE = 5
DERIVATIVE_LEVERAGE = 10
_EIGHT_DP = Decimal("0.00000001")
_USD_LIKE = ("USD", "UST", "USTF0")


@attrs.frozen
class Out:
    """One channel-0 frame for the connections of account ``key`` (or only connection ``only``)."""

    key: str
    tag: str
    payload: Any
    seq: AuthSeq = "next"
    only: int | None = None


class Batch:
    """Frames of one matching pass, grouped per account and phase (see the module docstring)."""

    def __init__(self) -> None:
        self._phases: dict[str, tuple[list[Out], list[Out], list[Out]]] = {}

    def phase(self, key: str, index: int) -> list[Out]:
        """The frame list of ``key`` for phase 0 (trade), 1 (order state) or 2 (fees)."""
        return self._phases.setdefault(key, ([], [], []))[index]

    def touched(self) -> list[str]:
        return list(self._phases)

    def flush(self, settler: Settler) -> Iterator[Out]:
        """Every account's frames in wire order, each account's ending with its ``bu``."""
        for key, phases in self._phases.items():
            for frames in phases:
                yield from frames
            if phases[0]:  # a trade happened
                yield Out(key, "bu", settler.balance(key))


def is_derivative(symbol: str) -> bool:
    """Perpetual futures (``tBTCF0:USTF0``) trade on margin only, with collateral."""
    return "F0:" in symbol


def q8(value: Decimal) -> Decimal:
    """Rounded to 8 decimals, as amounts and fees are on the wire."""
    return value.quantize(_EIGHT_DP)


class Settler:
    """Books fills onto accounts; also answers the balance and margin questions of ``calc``."""

    def __init__(self, accounts: dict[str, AccountLedger], market: Market, maker_fee: Decimal,
                 taker_fee: Decimal, next_trade_id: Any, next_position_id: Any) -> None:
        self.accounts = accounts
        self.market = market
        self.fees = {True: maker_fee, False: taker_fee}
        self._trade_id = next_trade_id
        self._position_id = next_position_id

    # -- fills -----------------------------------------------------------------------------
    def fill(self, order: WorkingOrder, price: Decimal, amount: Decimal, maker: bool, mts: int,
             batch: Batch, other: WorkingOrder | None = None) -> None:
        """Book a fill of signed ``amount`` at ``price`` on ``order`` (the order state frame is the caller's)."""
        account = self.accounts[order.owner]
        order.record_fill(price, amount)
        order.mts_update = mts
        base, quote = split_pair(order.symbol)
        trade_frames = batch.phase(account.key, 0)
        fee_frames = batch.phase(account.key, 2)
        rate = self.fees[maker]
        meta = {"reason": "TRADE", "order_id": order.id, "order_id_oppo": other.id if other else None,
                "trade_price": number_label(price), "trade_amount": number_label(amount),
                "order_cid": order.cid, "order_gid": order.gid}
        if order.exchange:
            text = (f"Exchange {number_label(abs(amount))} {base} for {quote} @ {number_label(price)}")
            self._credit(account, ("exchange", base), amount, text, meta, trade_frames)
            self._credit(account, ("exchange", quote), -amount * price, text, meta, trade_frames)
            fee_wallet = ("exchange", base) if amount > 0 else ("exchange", quote)
            fee = q8(amount * rate) if amount > 0 else q8(-amount * price * rate)
        else:
            profit = self._position_fill(account, order, price, amount, mts, trade_frames)
            if profit:
                self._credit(account, ("margin", quote), q8(profit), f"Position closed @ {number_label(price)}",
                             {"reason": "POSITION_CLOSED", "order_id": order.id}, fee_frames)
            fee_wallet, fee = ("margin", quote), q8(abs(amount) * price * rate)
        trade = [self._trade_id(), order.symbol, mts, order.id, amount, price, order.type,
                 order.price if order.price is not None else price, 1 if maker else -1, None, None, order.cid]
        trade_frames.append(Out(account.key, "te", trade))
        if fee:
            text = (f"Trading fee for {number_label(abs(amount))} {base} @ {number_label(price)} "
                    f"on BFX ({number_label(rate * 100)}%)")
            self._credit(account, fee_wallet, -fee, text, {"reason": "TRADING_FEE", "order_id": order.id},
                         fee_frames)
        trade_update = list(trade)
        trade_update[9], trade_update[10] = -fee, fee_wallet[1]
        fee_frames.append(Out(account.key, "tu", trade_update))

    def _credit(self, account: AccountLedger, key: WalletKey, delta: Decimal, text: str,
                meta: dict[str, Any], frames: list[Out]) -> None:
        account.wallets[key] = account.balance(*key) + delta
        frames.append(Out(account.key, "wu", account.wallet_wire(key, description=text, meta=meta)))

    def _position_fill(self, account: AccountLedger, order: WorkingOrder, price: Decimal, amount: Decimal,
                       mts: int, frames: list[Out]) -> Decimal:
        position = account.positions.get(order.symbol)
        profit = ZERO
        if position is None:
            lev = (order.lev or DERIVATIVE_LEVERAGE) if is_derivative(order.symbol) else MARGIN_LEVERAGE
            position = Position(self._position_id(), order.symbol, amount, price, mts, mts,
                                is_derivative(order.symbol), lev)
            account.positions[order.symbol] = position
            frames.append(Out(account.key, "pn", position.wire()))
            return profit
        old, new = position.amount, position.amount + amount
        if (old > 0) == (amount > 0):
            position.base_price = (old * position.base_price + amount * price) / new
        else:
            closed = min(abs(amount), abs(old))
            profit = (price - position.base_price) * closed * (1 if old > 0 else -1)
            if new and (new > 0) != (old > 0):
                position.base_price = price  # flipped: the rest opens a new side at this price
        position.amount, position.mts_update = new, mts
        if new == 0:
            del account.positions[order.symbol]
        frames.append(Out(account.key, "pu" if new else "pc", position.wire()))
        return profit

    # -- questions ---------------------------------------------------------------------------
    def mid(self, symbol: str) -> Decimal | None:
        market = self.market.symbols.get(symbol)
        return market.mid if market is not None else None

    def usd_price(self, currency: str) -> Decimal:
        """A currency's value in USD from the market's mids (0 when no market prices it)."""
        if currency in _USD_LIKE:
            return Decimal(1)
        for symbol in (f"t{currency}USD", f"t{currency}:USD"):
            mid = self.mid(symbol)
            if mid is not None:
                return mid
        return ZERO

    def balance(self, key: str) -> list[Any]:
        """``bu``: ``[AUM, AUM_NET]`` in USD (docs: ws-auth-balance-info); NET adds open P/L."""
        account = self.accounts[key]
        aum = sum((b * self.usd_price(c) for (_, c), b in account.wallets.items()), ZERO)
        return [q8(aum), q8(aum + self.open_profit(account))]

    def open_profit(self, account: AccountLedger) -> Decimal:
        total = ZERO
        for position in account.positions.values():
            mark = self.mid(position.symbol)
            if mark is not None:
                total += (mark - position.base_price) * position.amount * self.usd_price(split_pair(position.symbol)[1])
        return total

    def tradable(self, account: AccountLedger, quote: str, lev: int, skip: int | None = None) -> Decimal:
        """Notional (in ``quote``) still open to margin orders: collateral times leverage, less use."""
        used = sum((abs(p.amount * p.base_price) for p in account.positions.values()
                    if split_pair(p.symbol)[1] == quote), ZERO)
        used += sum((abs(o.amount) * o.hold_price for o in account.orders.values()
                     if not o.exchange and o.id != skip and split_pair(o.symbol)[1] == quote), ZERO)
        return account.balance("margin", quote) * lev - used

    def margin_base(self, key: str) -> list[Any]:
        """``miu`` base: ``[USER_PL, USER_SWAPS, MARGIN_BALANCE, MARGIN_NET, MARGIN_MIN]`` (USD)."""
        account = self.accounts[key]
        balance = sum((b * self.usd_price(c) for (t, c), b in account.wallets.items() if t == "margin"), ZERO)
        profit = self.open_profit(account)
        return ["base", [q8(profit), ZERO, q8(balance), q8(balance + profit), ZERO]]

    def margin_symbol(self, key: str, symbol: str) -> list[Any]:
        """``miu`` sym: ``[TRADABLE_BALANCE, GROSS_BALANCE, BUY, SELL]`` plus the 4 nulls seen live."""
        quote = split_pair(symbol)[1]
        lev = DERIVATIVE_LEVERAGE if is_derivative(symbol) else MARGIN_LEVERAGE
        tradable = max(self.tradable(self.accounts[key], quote, lev), ZERO)
        mid = self.mid(symbol) or Decimal(1)
        return ["sym", symbol, [q8(tradable), q8(tradable), q8(tradable / mid), q8(-tradable / mid),
                                None, None, None, None]]
