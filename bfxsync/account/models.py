"""Frozen models of the authenticated channel-0 streams (docs: ws-auth-orders, ws-auth-positions,
ws-auth-trades, ws-auth-wallets, ws-auth-offers, ws-auth-credits, ws-auth-loans, ws-auth-balance,
ws-auth-margin, ws-auth-funding, ws-auth-notifications).

Every model has a ``from_wire(row)`` named constructor that reads the documented positions by
index. The wire has changed length over the years (orders 26 or 32 fields, trades 9, 11 or 12,
wallets 4, 5 or 7), so fields past the required ones are ``None`` when missing, and extra
trailing fields are ignored. A row too short, or with a wrong type, raises
:class:`~bfxsync.errors.ProtocolError`.

Money is :class:`decimal.Decimal`. Channel 0 is decoded with ``parse_float=str``, so numbers
arrive as ints or as the float's exact wire text; floats are accepted too (through ``repr``).
NaN, infinities and booleans are refused.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional, Sequence, Tuple

from attrs import field, frozen

from ..errors import ProtocolError
from ..models import _build
from ._wire import (
    SECONDS_BELOW,
    _at,
    _dec,
    _flag,
    _int,
    _loose_int,
    _maker,
    _mts,
    _opt_dec,
    _opt_int,
    _opt_mts,
    _opt_str,
    _str,
    _values,
    _whole,
    date_of_ms,
    status_word,
)
from .funding import AccountFundingTrade, FundingCredit, FundingInfo, FundingLoan, FundingOffer

__all__ = [
    "AccountFundingTrade", "BalanceInfo", "ClosedOrder", "FundingCredit", "FundingInfo", "FundingLoan", "FundingOffer",
    "MarginInfo", "Notification", "Order", "Position", "SymbolMarginInfo", "UserTrade", "Wallet", "status_word",
]


@frozen
class Order:
    """An order (``os``/``on``/``ou``/``oc``; 32 fields, 26 before 2018). ``amount`` > 0 buys."""

    id: int
    gid: Optional[int]
    cid: Optional[int]
    symbol: str
    mts_create: int
    mts_update: int
    amount: Decimal
    amount_orig: Decimal
    order_type: str
    type_prev: Optional[str]
    mts_tif: Optional[int]
    flags: int
    status: str
    price: Optional[Decimal]
    price_avg: Optional[Decimal]
    price_trailing: Optional[Decimal]
    price_aux_limit: Optional[Decimal]
    notify: bool
    hidden: bool
    placed_id: Optional[int]
    routing: Optional[str]
    meta: Optional[Any] = field(default=None, hash=False)

    @property
    def status_word(self) -> str:
        """The leading word(s) of ``status``: ``ACTIVE``, ``EXECUTED``, ``PARTIALLY FILLED``, ``CANCELED``, ..."""
        return status_word(self.status)

    @property
    def is_open(self) -> bool:
        """True while the order can still fill (ACTIVE or PARTIALLY FILLED)."""
        return self.status_word in ("ACTIVE", "PARTIALLY FILLED")

    @property
    def cid_date(self) -> str:
        """The UTC creation date ``YYYY-MM-DD``, which cancel-by-cid needs with the cid (docs: ws-auth-input).

        Taken from ``mts_create``, not from the cid: cids may be ms, µs or small integers.
        """
        return date_of_ms(self.mts_create)

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "Order":
        """Build from ``[ID, GID, CID, SYMBOL, MTS_CREATE, MTS_UPDATE, AMOUNT, AMOUNT_ORIG, TYPE, TYPE_PREV,
        MTS_TIF, _, FLAGS, STATUS, _, _, PRICE, PRICE_AVG, PRICE_TRAILING, PRICE_AUX_LIMIT, _, _, _, NOTIFY,
        HIDDEN, PLACED_ID, _, _, ROUTING, _, _, META]``; a null FLAGS reads as 0."""
        return _build(cls, row, 14, lambda: cls(
            _int(row[0]), _opt_int(row[1]), _opt_int(row[2]), _str(row[3]), _mts(row[4]), _mts(row[5]),
            _dec(row[6]), _dec(row[7]), _str(row[8]), _opt_str(row[9]), _opt_mts(row[10]),
            _opt_int(row[12]) or 0, _str(row[13]), _opt_dec(_at(row, 16)), _opt_dec(_at(row, 17)),
            _opt_dec(_at(row, 18)), _opt_dec(_at(row, 19)), _flag(_at(row, 23)), _flag(_at(row, 24)),
            _opt_int(_at(row, 25)), _opt_str(_at(row, 28)), _at(row, 31),
        ))


@frozen
class ClosedOrder:
    """An order that left the open orders, and how it ended (:attr:`AccountSnapshot.closed_orders`).

    Attributes:
        order: the order's final row as the exchange sent it in ``oc`` (``amount`` left,
            ``price_avg``, ...). For an order whose close was not seen (``status`` None), the
            last state this client knew, which still reads ``ACTIVE`` or ``PARTIALLY FILLED``.
        status: the exchange's final ORDER_STATUS text, unchanged: ``EXECUTED @ 30000.0(0.1)``,
            ``CANCELED``, ``CANCELED was: PARTIALLY FILLED @ ...``, ``POSTONLY CANCELED``,
            ``IOC CANCELED``, ``INSUFFICIENT MARGIN was: ...``, ... (docs: ws-auth-orders).
            None when the final status is unknown: the order was missing from a fresh orders
            snapshot (after a reconnect, say) and no ``oc`` said why. It may have filled, been
            cancelled (by the dead-man switch too) or expired: this client cannot tell.
        mts_closed: when it closed, in ms since the epoch: the update time of the ``oc`` (the
            exchange's clock). When ``status`` is None, this client's clock when the fresh
            snapshot showed the order gone: it closed at or before that moment.
    """

    order: Order
    status: Optional[str]
    mts_closed: int

    @property
    def id(self) -> int:
        """The order id."""
        return self.order.id

    @property
    def cid(self) -> Optional[int]:
        """The client order id."""
        return self.order.cid

    @property
    def cid_date(self) -> str:
        """The UTC creation date ``YYYY-MM-DD`` that identifies the order with its cid."""
        return self.order.cid_date

    @property
    def known(self) -> bool:
        """True when the exchange reported the final status (an ``oc`` arrived)."""
        return self.status is not None

    @property
    def status_word(self) -> str:
        """The leading word(s) of ``status`` (``EXECUTED``, ``CANCELED``, ``POSTONLY CANCELED``, ...); ``""`` if unknown."""
        return status_word(self.status)

    @classmethod
    def from_oc(cls, order: Order) -> "ClosedOrder":
        """The close the exchange reported in ``oc``: its status text and update time."""
        return cls(order, order.status, order.mts_update)

    @classmethod
    def unseen(cls, last_known: Order, noticed_ms: int) -> "ClosedOrder":
        """An order found gone from a fresh snapshot at ``noticed_ms`` (local clock) with no ``oc``: status unknown."""
        return cls(last_known, None, noticed_ms)


@frozen
class Position:
    """A position (``ps``/``pn``/``pu``/``pc``; 20 fields, 10 in 2018). ``amount`` > 0 is long.

    ``pl``, ``pl_perc``, ``price_liq`` and ``leverage`` may be None until requested with ``calc``.
    """

    symbol: str
    status: str
    amount: Decimal
    base_price: Decimal
    margin_funding: Optional[Decimal]
    margin_funding_type: Optional[int]
    pl: Optional[Decimal]
    pl_perc: Optional[Decimal]
    price_liq: Optional[Decimal]
    leverage: Optional[Decimal]
    position_id: Optional[int]
    mts_create: Optional[int]
    mts_update: Optional[int]
    type: Optional[int]
    collateral: Optional[Decimal]
    collateral_min: Optional[Decimal]
    meta: Optional[Any] = field(default=None, hash=False)

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "Position":
        """Build from ``[SYMBOL, STATUS, AMOUNT, BASE_PRICE, MARGIN_FUNDING, MARGIN_FUNDING_TYPE, PL, PL_PERC,
        PRICE_LIQ, LEVERAGE, _, POSITION_ID, MTS_CREATE, MTS_UPDATE, _, TYPE, _, COLLATERAL, COLLATERAL_MIN, META]``."""
        return _build(cls, row, 4, lambda: cls(
            _str(row[0]), _str(row[1]), _dec(row[2]), _dec(row[3]), _opt_dec(_at(row, 4)),
            _opt_int(_at(row, 5)), _opt_dec(_at(row, 6)), _opt_dec(_at(row, 7)), _opt_dec(_at(row, 8)),
            _opt_dec(_at(row, 9)), _opt_int(_at(row, 11)), _opt_mts(_at(row, 12)), _opt_mts(_at(row, 13)),
            _opt_int(_at(row, 15)), _opt_dec(_at(row, 17)), _opt_dec(_at(row, 18)), _at(row, 19),
        ))


@frozen
class UserTrade:
    """One of your trades (``te``/``tu``). ``fee`` is None in ``te``; ``cid`` is missing before 2021."""

    id: int
    symbol: str
    mts: int
    order_id: int
    exec_amount: Decimal
    exec_price: Decimal
    order_type: Optional[str]
    order_price: Optional[Decimal]
    maker: bool
    fee: Optional[Decimal]
    fee_currency: Optional[str]
    cid: Optional[int]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "UserTrade":
        """Build from ``[ID, SYMBOL, MTS, ORDER_ID, EXEC_AMOUNT, EXEC_PRICE, ORDER_TYPE, ORDER_PRICE, MAKER,
        FEE, FEE_CURRENCY, CID]`` (9, 11 or 12 fields)."""
        return _build(cls, row, 6, lambda: cls(
            _int(row[0]), _str(row[1]), _mts(row[2]), _int(row[3]), _dec(row[4]), _dec(row[5]),
            _opt_str(_at(row, 6)), _opt_dec(_at(row, 7)), _maker(_at(row, 8)), _opt_dec(_at(row, 9)),
            _opt_str(_at(row, 10)), _opt_int(_at(row, 11)),
        ))


@frozen
class Wallet:
    """A wallet balance (``ws``/``wu``; 7 fields, 4-5 before 2019).

    ``balance_available`` is None in snapshots and trade-driven updates until a ``calc`` fills it.
    """

    wallet_type: str
    currency: str
    balance: Decimal
    unsettled_interest: Optional[Decimal]
    balance_available: Optional[Decimal]
    description: Optional[str]
    meta: Optional[Any] = field(default=None, hash=False)

    @property
    def key(self) -> Tuple[str, str]:
        """``(wallet_type, currency)``, the key in :attr:`AccountSnapshot.wallets`."""
        return (self.wallet_type, self.currency)

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "Wallet":
        """Build from ``[WALLET_TYPE, CURRENCY, BALANCE, UNSETTLED_INTEREST, BALANCE_AVAILABLE, DESCRIPTION, META]``."""
        return _build(cls, row, 3, lambda: cls(
            _str(row[0]), _str(row[1]), _dec(row[2]), _opt_dec(_at(row, 3)), _opt_dec(_at(row, 4)),
            _opt_str(_at(row, 5)), _at(row, 6),
        ))


@frozen
class BalanceInfo:
    """Assets under management (``bu``); None until computed."""

    aum: Optional[Decimal]
    aum_net: Optional[Decimal]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "BalanceInfo":
        """Build from ``[AUM, AUM_NET]``."""
        return _build(cls, row, 2, lambda: cls(_opt_dec(row[0]), _opt_dec(row[1])))


@frozen
class MarginInfo:
    """Account-wide margin (``miu`` base). Values are None until computed; ``margin_min`` is missing in old frames."""

    user_pl: Optional[Decimal]
    user_swaps: Optional[Decimal]
    margin_balance: Optional[Decimal]
    margin_net: Optional[Decimal]
    margin_min: Optional[Decimal]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "MarginInfo":
        """Build from the ``miu`` payload ``["base", [USER_PL, USER_SWAPS, MARGIN_BALANCE, MARGIN_NET, MARGIN_MIN]]``
        or from the bare value list."""
        def make() -> "MarginInfo":
            _, v = _values(row, "base", 4)
            return cls(_opt_dec(v[0]), _opt_dec(v[1]), _opt_dec(v[2]), _opt_dec(v[3]), _opt_dec(_at(v, 4)))
        return _build(cls, row, 2, make)


@frozen
class SymbolMarginInfo:
    """Margin available for one trading pair (``miu`` sym); values are None until computed."""

    symbol: str
    tradable_balance: Optional[Decimal]
    gross_balance: Optional[Decimal]
    buy: Optional[Decimal]
    sell: Optional[Decimal]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "SymbolMarginInfo":
        """Build from the ``miu`` payload ``["sym", SYMBOL, [TRADABLE_BALANCE, GROSS_BALANCE, BUY, SELL, ...]]``."""
        def make() -> "SymbolMarginInfo":
            symbol, v = _values(row, "sym", 4)
            return cls(_str(symbol), _opt_dec(v[0]), _opt_dec(v[1]), _opt_dec(v[2]), _opt_dec(v[3]))
        return _build(cls, row, 3, make)


def _notification_mts(value: Any) -> Optional[int]:
    """MTS in ms; seconds (with or without a fraction, seen in old frames) become ms."""
    if value is None:
        return None
    number = _dec(value)
    if abs(number) < SECONDS_BELOW:
        number = number * 1000
    return _whole(number.to_integral_value(), value)


def _is_order_row(info: Any) -> bool:
    return isinstance(info, list) and len(info) >= 14 and info[0] is not None and isinstance(info[3], str)


@frozen
class Notification:
    """A notification (``n``): the answer to a request (``type`` ``on-req``, ``oc-req``, ...) and more.

    ``info`` is the raw NOTIFY_INFO: an order row, a list of order rows (``oc_multi-req``), an offer
    row, a dict (custom ``ucm-*``) or None (for example ``ox_multi-req`` errors). ``code`` is null in
    practice. ``mts`` is in ms (None in some 2017 frames).
    """

    mts: Optional[int]
    type: str
    message_id: Optional[int]
    info: Any = field(hash=False)
    code: Optional[int]
    status: Optional[str]
    text: Optional[str]

    @property
    def ok(self) -> bool:
        """True when ``status`` is ``SUCCESS`` (errors say ``ERROR`` or ``FAILURE``)."""
        return self.status == "SUCCESS"

    @property
    def order(self) -> Optional[Order]:
        """The order in ``info`` when it is one order row with an id, else None (ERROR rows have no id)."""
        if not _is_order_row(self.info):
            return None
        try:
            return Order.from_wire(self.info)
        except ProtocolError:
            return None

    @property
    def orders(self) -> Tuple[Order, ...]:
        """Every order in ``info``: the list of an ``oc_multi-req``, or the one order of ``on-req``/``oc-req``."""
        if _is_order_row(self.info):
            one = self.order
            return (one,) if one is not None else ()
        if not isinstance(self.info, list):
            return ()
        found = []
        for row in self.info:
            if _is_order_row(row):
                try:
                    found.append(Order.from_wire(row))
                except ProtocolError:
                    continue
        return tuple(found)

    @property
    def offer(self) -> Optional[FundingOffer]:
        """The funding offer in ``info`` (``fon-req``/``foc-req``), else None."""
        info = self.info
        if not (isinstance(info, list) and len(info) >= 16 and isinstance(info[1], str) and info[1].startswith("f")):
            return None
        try:
            return FundingOffer.from_wire(info)
        except ProtocolError:
            return None

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "Notification":
        """Build from ``[MTS, TYPE, MESSAGE_ID, _, NOTIFY_INFO, CODE, STATUS, TEXT]``."""
        return _build(cls, row, 2, lambda: cls(
            _notification_mts(row[0]), _str(row[1]), _loose_int(_at(row, 2)), _at(row, 4), _loose_int(_at(row, 5)),
            _opt_str(_at(row, 6)), _opt_str(_at(row, 7)),
        ))

