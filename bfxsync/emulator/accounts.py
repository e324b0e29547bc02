"""Account state: wallets, orders, positions, funding offers, and their wire arrays (pure).

Amounts are :class:`~decimal.Decimal` throughout; the wire encoder writes them as JSON
numbers, as the real server does. Field layouts follow docs: ws-auth-orders,
ws-auth-positions, ws-auth-trades, ws-auth-wallets, ws-auth-funding-offers and
ws-auth-notifications, with the choices seen on the wire where those differ (noted below).
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from .config import EmulatorAccount, WalletKey

__all__ = [
    "AccountLedger",
    "EmulatorAccountSnapshot",
    "FundingOffer",
    "Position",
    "WorkingOrder",
    "notification",
    "number_label",
    "split_pair",
]

FLAG_HIDDEN = 64
FLAG_CLOSE = 512
FLAG_REDUCE_ONLY = 1024
FLAG_POST_ONLY = 4096
FLAG_OCO = 16384
ZERO = Decimal(0)
_DECIMAL_TEXT = re.compile(r"-?(\d+\.?\d*|\.\d+)")


def split_pair(symbol: str) -> tuple[str, str]:
    """``tBTCUSD`` -> ``("BTC", "USD")``; ``tSHIB:USD`` -> ``("SHIB", "USD")``."""
    pair = symbol[1:]
    if ":" in pair:
        base, quote = pair.split(":", 1)
        return base, quote
    return pair[:3], pair[3:]


def number_label(value: Decimal) -> str:
    """A number as order statuses print it: ``30000.0``, ``0.5``, ``-0.2`` (always a point)."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def utc_date(mts: int) -> str:
    """``YYYY-MM-DD`` of a millisecond timestamp, the ``cid_date`` an order is cancelled by."""
    return datetime.datetime.fromtimestamp(mts / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


@attrs.define(eq=False)
class WorkingOrder:
    """One order of one account, open or just closed. ``amount`` is the signed remainder."""

    id: int
    owner: str
    symbol: str
    type: str
    amount: Decimal
    amount_orig: Decimal
    price: Decimal | None
    mts_create: int
    gid: int | None = None
    cid: int | None = None
    flags: int = 0
    price_aux_limit: Decimal | None = None
    lev: int | None = None
    meta: dict[str, Any] = attrs.Factory(dict)
    type_prev: str | None = None
    mts_update: int = 0
    status: str = "ACTIVE"
    history: list[str] = attrs.Factory(list)  # fill segments, oldest first
    filled_value: Decimal = ZERO  # sum of price * |fill|, for PRICE_AVG
    triggered: bool = False  # a stop order that became a market / limit order
    price_trailing: Decimal | None = None  # TRAILING STOP distance; ``price`` is its current stop
    trail_anchor: Decimal | None = None  # TRAILING STOP: the best price seen since placement
    mts_tif: int | None = None  # auto-cancel time (ms), from ``tif``
    placed_id: int | None = None  # OCO: the ID of the other leg

    @property
    def exchange(self) -> bool:
        """An ``EXCHANGE ...`` order (spot wallet) rather than a margin/derivative one."""
        return self.type.startswith("EXCHANGE ")

    @property
    def kind(self) -> str:
        """The type without ``EXCHANGE``: ``LIMIT``, ``MARKET``, ``STOP``, ``IOC``, ..."""
        return self.type[9:] if self.exchange else self.type

    @property
    def buy(self) -> bool:
        return self.amount_orig > 0

    @property
    def filled(self) -> Decimal:
        return self.amount_orig - self.amount

    @property
    def waiting_stop(self) -> bool:
        """A stop not triggered yet: it rests without matching."""
        return self.kind in ("STOP", "STOP LIMIT", "TRAILING STOP") and not self.triggered

    @property
    def limit(self) -> Decimal | None:
        """The worst price this order may trade at; None for market orders."""
        if self.kind in ("MARKET", "STOP", "TRAILING STOP"):
            return None
        return self.price

    @property
    def oco_stop_leg(self) -> bool:
        """The stop leg of an OCO pair: its limit leg holds the balance for both."""
        return self.placed_id is not None and self.kind == "STOP" and bool(self.flags & FLAG_OCO)

    @property
    def hold_price(self) -> Decimal:
        """The price a buy's wallet hold is counted at (0 for the stop leg of an OCO pair).

        A STOP LIMIT holds at its limit price, an OCO limit leg at the higher of its limit
        and its stop (PRICE_AUX_LIMIT), whichever of the two legs fills.
        """
        if self.oco_stop_leg:
            return ZERO
        if self.kind == "STOP LIMIT" and self.price_aux_limit is not None:
            return self.price_aux_limit
        if self.flags & FLAG_OCO and self.kind == "LIMIT" and self.price_aux_limit is not None and self.price:
            return max(self.price, self.price_aux_limit)
        return self.price or ZERO

    def flag(self, bit: int) -> bool:
        return bool(self.flags & bit)

    def record_fill(self, price: Decimal, amount: Decimal) -> None:
        """Account a fill of signed ``amount`` at ``price`` and write the status text."""
        self.amount -= amount
        self.filled_value += price * abs(amount)
        word = "EXECUTED" if self.amount == 0 else "PARTIALLY FILLED"
        self.history.append(f"{word} @ {number_label(price)}({number_label(amount)})")
        self.status = self.fill_status()

    def fill_status(self) -> str:
        """``EXECUTED @ 30000.0(0.1): was PARTIALLY FILLED @ 29999.0(0.05)``: newest first."""
        return ": was ".join(reversed(self.history)) if self.history else "ACTIVE"

    def close(self, reason: str) -> None:
        """Cancel with ``reason`` (``CANCELED``, ``IOC CANCELED``, ...), keeping the fill history."""
        self.status = f"{reason} was: {self.fill_status()}" if self.history else reason

    def wire(self) -> list[Any]:
        """The 32-field order array (docs: ws-auth-orders).

        As seen live: post-only comes back as FLAGS without 4096 and META ``{"$F7": 1}``;
        hidden as FLAGS 64 plus HIDDEN = 1; ROUTING is ``API>BFX``.
        """
        meta = dict(self.meta)
        flags = self.flags
        if flags & FLAG_POST_ONLY:
            flags &= ~FLAG_POST_ONLY
            meta["$F7"] = 1
        if self.lev is not None:
            meta.update({"lev": self.lev, "$F33": self.lev})
        avg = self.filled_value / abs(self.filled) if self.filled else ZERO
        return [self.id, self.gid, self.cid, self.symbol, self.mts_create, self.mts_update or self.mts_create,
                self.amount, self.amount_orig, self.type, self.type_prev, self.mts_tif, None, flags, self.status,
                None, None, self.price if self.price is not None else ZERO, avg,
                self.price_trailing if self.price_trailing is not None else ZERO,
                self.price_aux_limit if self.price_aux_limit is not None else ZERO, None, None, None,
                0, 1 if flags & FLAG_HIDDEN else 0, self.placed_id, None, None, "API>BFX", None, None, meta]


def _wire_number(value: Any) -> Decimal | None:
    """A request's decimal (string or JSON number) as the number the server echoes; None if it is not one."""
    if isinstance(value, str):
        return Decimal(value) if _DECIMAL_TEXT.fullmatch(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return Decimal(repr(value))
    return None


def _wire_int(value: Any) -> int | None:
    return value if type(value) is int else None


def request_wire(payload: Mapping[str, Any]) -> list[Any]:
    """The order array of a refused request: ID null, the fields the request carried.

    Shaped like the ERROR ``on-req`` sample of docs: ws-auth-notifications: amounts and
    prices are JSON numbers (the request's decimal strings converted), integers stay
    integers, anything malformed is null, NOTIFY and HIDDEN are 0.
    """
    wire: list[Any] = [None] * 32
    for index, name in ((0, "id"), (1, "gid"), (2, "cid"), (12, "flags")):
        wire[index] = _wire_int(payload.get(name))
    for index, name in ((6, "amount"), (16, "price"), (18, "price_trailing"), (19, "price_aux_limit")):
        wire[index] = _wire_number(payload.get(name))
    for index, name in ((3, "symbol"), (8, "type")):
        value = payload.get(name)
        wire[index] = value if isinstance(value, str) else None
    wire[23], wire[24] = 0, 0
    return wire


@attrs.define(eq=False)
class Position:
    """A margin or derivative position; ``amount`` > 0 long, < 0 short."""

    id: int
    symbol: str
    amount: Decimal
    base_price: Decimal
    mts_create: int
    mts_update: int
    derivative: bool
    lev: int

    def wire(self, mark: Decimal | None = None) -> list[Any]:
        """The 20-field position array (docs: ws-auth-positions).

        PL, PL_PERC, PRICE_LIQ and LEVERAGE are null unless ``mark`` is given (a ``calc``
        answer), as on the wire; COLLATERAL_MIN is null too.
        """
        status = "ACTIVE" if self.amount else "CLOSED"
        pl = perc = liq = lev = None
        if mark is not None and self.amount:
            pl = (mark - self.base_price) * self.amount
            perc = (pl / abs(self.base_price * self.amount) * 100).quantize(Decimal("0.0001"))
            liq = self.base_price * (1 - Decimal(1) / self.lev if self.amount > 0 else 1 + Decimal(1) / self.lev)
            lev = self.lev
        collateral = abs(self.amount * self.base_price) / self.lev if self.derivative else ZERO
        return [self.symbol, status, self.amount, self.base_price, ZERO, 0, pl, perc, liq, lev, None,
                self.id, self.mts_create, self.mts_update, None, 1 if self.derivative else 0, None,
                collateral, None, {"reason": "TRADE"}]


@attrs.define(eq=False)
class FundingOffer:
    """A funding offer; ``amount`` > 0 lends (an ask in the funding book), < 0 borrows."""

    id: int
    owner: str
    symbol: str
    type: str
    amount: Decimal
    rate: Decimal
    period: int
    mts_create: int
    flags: int = 0
    status: str = "ACTIVE"
    mts_update: int = 0

    def wire(self) -> list[Any]:
        """The 21-field offer array (docs: ws-auth-funding-offers)."""
        return [self.id, self.symbol, self.mts_create, self.mts_update or self.mts_create, self.amount,
                self.amount, self.type, None, None, self.flags, self.status, None, None, None, self.rate,
                self.period, 0, 1 if self.flags & FLAG_HIDDEN else 0, None, 0, None]


def notification(mts: int, kind: str, info: Any, status: str, text: str | None) -> list[Any]:
    """``[MTS, TYPE, MESSAGE_ID, null, NOTIFY_INFO, CODE, STATUS, TEXT]`` (docs: ws-auth-notifications).

    MESSAGE_ID and CODE are null, as in every frame observed.
    """
    return [mts, kind, None, None, info, None, status, text]


class AccountLedger:
    """The emulator's running ledger of one API key: everything it owns.

    Not thread-safe: the trading lock guards it. (Not to be confused with the client's
    :class:`bfxsync.account.AccountState`, which mirrors an account from channel 0.)
    """

    def __init__(self, account: EmulatorAccount, user_id: int) -> None:
        self.key = account.key
        self.secret = account.secret
        self.user_id = user_id
        self.wallets: dict[WalletKey, Decimal] = account.starting_wallets()
        self.orders: dict[int, WorkingOrder] = {}  # open orders, by ID (placement order)
        self.positions: dict[str, Position] = {}  # open positions, by symbol
        self.offers: dict[int, FundingOffer] = {}  # active funding offers, by ID

    def balance(self, wallet_type: str, currency: str) -> Decimal:
        return self.wallets.get((wallet_type, currency), ZERO)

    def reserved(self, wallet_type: str, currency: str, skip: int | None = None) -> Decimal:
        """What open exchange orders and lending offers hold of one wallet.

        A buy holds quote currency (remaining times its limit or stop price), a sell its
        base currency; ``skip`` leaves one order out (when it is being updated).
        """
        held = ZERO
        if wallet_type == "exchange":
            for order in self.orders.values():
                if not order.exchange or order.id == skip:
                    continue
                base, quote = split_pair(order.symbol)
                if order.amount > 0 and quote == currency:
                    held += order.amount * order.hold_price
                elif order.amount < 0 and base == currency and not order.oco_stop_leg:
                    held += -order.amount
        elif wallet_type == "funding":
            held = sum((o.amount for o in self.offers.values()
                        if o.amount > 0 and o.symbol[1:] == currency and o.id != skip), ZERO)
        return held

    def available(self, wallet_type: str, currency: str, skip: int | None = None) -> Decimal:
        return self.balance(wallet_type, currency) - self.reserved(wallet_type, currency, skip)

    def wallet_wire(self, key: WalletKey, available: bool = False, description: str | None = None,
                    meta: dict[str, Any] | None = None) -> list[Any]:
        """The 7-field wallet array (docs: ws-auth-wallets).

        BALANCE_AVAILABLE is null in ``ws`` and in trade-driven ``wu`` (as on the wire) and
        filled in only for ``calc`` answers (``available=True``).
        """
        wallet_type, currency = key
        free = self.available(wallet_type, currency) if available else None
        return [wallet_type, currency, self.balance(*key), ZERO, free, description, meta]

    def snapshot(self) -> EmulatorAccountSnapshot:
        """A frozen copy for the control API."""
        return EmulatorAccountSnapshot(
            key=self.key, user_id=self.user_id, wallets=dict(self.wallets),
            orders=tuple(attrs.evolve(o, meta=dict(o.meta), history=list(o.history))
                         for o in self.orders.values()),
            positions={s: attrs.evolve(p) for s, p in self.positions.items()},
            offers=tuple(attrs.evolve(o) for o in self.offers.values()))


@attrs.frozen
class EmulatorAccountSnapshot:
    """What ``Emulator.account(key)`` returns: copies, so changing them changes nothing.

    Named apart from the client's :class:`bfxsync.AccountSnapshot`, which is what a client
    knows of an account; this is what the emulated exchange holds.

    Attributes:
        wallets: balance per ``(wallet type, currency)``.
        orders: open orders, oldest first (``.wire()`` gives the order array).
        positions: open positions by symbol.
        offers: active funding offers, oldest first.
    """

    key: str
    user_id: int
    wallets: dict[WalletKey, Decimal]
    orders: tuple[WorkingOrder, ...]
    positions: dict[str, Position]
    offers: tuple[FundingOffer, ...]

    def order(self, order_id: int) -> WorkingOrder | None:
        """The open order with that ID, or None."""
        return next((o for o in self.orders if o.id == order_id), None)
