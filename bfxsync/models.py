"""Frozen models of public channel payloads (https://docs.bitfinex.com/docs/ws-public).

Each model has a ``from_wire(row)`` named constructor that unpacks the documented
positions explicitly, tolerates extra trailing fields (Bitfinex appends fields without a
version bump, as the docs warn) and raises :class:`~bfxsync.errors.ProtocolError` when a field is
missing or has the wrong type. Numbers may arrive as floats, ints or (book channels,
``DEC_S``) decimal strings; the models always hold finite ``float`` values and ``int``
(NaN, Infinity, overflowing numbers and JSON booleans are rejected, never stored).
Integers must be JSON integers below ``INT_LIMIT`` (1e21) in magnitude: ``1e250000`` in an
id is a float's text and refused at once, never converted.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Type, TypeVar

from attrs import frozen

from .errors import ProtocolError
from .protocol.constants import INT_LIMIT

_M = TypeVar("_M")
_INT_LOW = -INT_LIMIT  # precomputed: negating a big int allocates one


#: Types a decimal field may arrive as: ``bool`` is deliberately absent (JSON true/false is no number).
_NUMBER_TYPES = frozenset((int, float, str))


def _num(value: Any) -> float:
    """A finite float from an int, a float or a decimal string (``DEC_S``); anything else is a ValueError.

    NaN, Infinity, ``1e999`` and ints too large for a float are rejected, as are booleans.
    """
    if type(value) not in _NUMBER_TYPES:
        raise TypeError(f"expected a number, got {value!r:.50}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{value!r:.50} is too large for a float") from None
    if number - number:  # nan for NaN and +-inf
        raise ValueError(f"{value!r:.50} is not finite")
    return number


def _int(value: Any) -> int:
    """An integer field (id, timestamp, count, period): a JSON integer, never a bool, float or string."""
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r:.50}")
    if not _INT_LOW < value < INT_LIMIT:
        raise ValueError(f"integer out of range (|n| < 1e21): a {value.bit_length()}-bit integer")
    return value


def _opt(value: Any) -> Optional[float]:
    return None if value is None else _num(value)


def _opt_int(value: Any) -> Optional[int]:
    return None if value is None else _int(value)


def _flag(value: Any) -> bool:
    """A 0/1 flag (JSON may also say true/false)."""
    if type(value) not in (int, bool) or value not in (0, 1):
        raise ValueError(f"expected a 0/1 flag, got {value!r:.50}")
    return bool(value)


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r:.50}")
    return value


def _build(cls: Type[_M], row: Any, need: int, make: Callable[[], _M]) -> _M:
    """Run ``make`` (which reads ``row``) after checking the shape; any failure is a ProtocolError."""
    if not isinstance(row, (list, tuple)) or len(row) < need:
        raise ProtocolError(f"{cls.__name__} needs a list of {need}+ fields, got {row!r:.200}", raw=repr(row)[:500])
    try:
        return make()
    except (TypeError, ValueError) as err:
        raise ProtocolError(f"cannot read {cls.__name__} from {row!r:.200}: {err}", raw=repr(row)[:500]) from err


@frozen
class TradingTicker:
    """Ticker of a trading pair (``tBTCUSD``); every frame is the full row."""

    bid: float
    bid_size: float
    ask: float
    ask_size: float
    daily_change: float
    daily_change_relative: float
    last_price: float
    volume: float
    high: float
    low: float

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "TradingTicker":
        """Build from ``[BID, BID_SIZE, ASK, ASK_SIZE, DAILY_CHANGE, DAILY_CHANGE_RELATIVE, LAST_PRICE, VOLUME,
        HIGH, LOW, ...]``."""
        return _build(cls, row, 10, lambda: cls(*(_num(v) for v in row[:10])))


@frozen
class FundingTicker:
    """Ticker of a funding currency (``fUSD``); field order follows the docs (ws-public-ticker)."""

    frr: float
    bid: float
    bid_period: int
    bid_size: float
    ask: float
    ask_period: int
    ask_size: float
    daily_change: float
    daily_change_relative: float
    last_price: float
    volume: float
    high: float
    low: float
    frr_amount_available: Optional[float]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "FundingTicker":
        """Build from the 16-field funding ticker row (positions 13 and 14 are placeholders)."""
        return _build(cls, row, 13, lambda: cls(
            _num(row[0]), _num(row[1]), _int(row[2]), _num(row[3]), _num(row[4]), _int(row[5]),
            _num(row[6]), _num(row[7]), _num(row[8]), _num(row[9]), _num(row[10]),
            _num(row[11]), _num(row[12]), _opt(row[15]) if len(row) > 15 else None,
        ))


@frozen
class Trade:
    """A public trade. ``amount`` > 0: the taker bought; < 0: the taker sold."""

    id: int
    mts: int
    amount: float
    price: float

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "Trade":
        """Build from ``[ID, MTS, AMOUNT, PRICE]``."""
        return _build(cls, row, 4, lambda: cls(_int(row[0]), _int(row[1]), _num(row[2]), _num(row[3])))


@frozen
class FundingTrade:
    """A public funding trade. ``amount`` > 0: lent; < 0: borrowed."""

    id: int
    mts: int
    amount: float
    rate: float
    period: int

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "FundingTrade":
        """Build from ``[ID, MTS, AMOUNT, RATE, PERIOD]``."""
        return _build(cls, row, 5, lambda: cls(_int(row[0]), _int(row[1]), _num(row[2]), _num(row[3]), _int(row[4])))


@frozen
class BookLevel:
    """A price level of an aggregated trading book (P0-P4). ``count`` 0 means removed."""

    price: float
    count: int
    amount: float

    @property
    def is_bid(self) -> bool:
        """True for the bid side (positive amount)."""
        return self.amount > 0

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "BookLevel":
        """Build from ``[PRICE, COUNT, AMOUNT]``."""
        return _build(cls, row, 3, lambda: cls(_num(row[0]), _int(row[1]), _num(row[2])))


@frozen
class FundingBookLevel:
    """A level of an aggregated funding book, identified by (rate, period). Bids have amount < 0."""

    rate: float
    period: int
    count: int
    amount: float

    @property
    def is_bid(self) -> bool:
        """True for the bid (borrow) side: funding books invert the sign (docs: ws-public-books)."""
        return self.amount < 0

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "FundingBookLevel":
        """Build from ``[RATE, PERIOD, COUNT, AMOUNT]``."""
        return _build(cls, row, 4, lambda: cls(_num(row[0]), _int(row[1]), _int(row[2]), _num(row[3])))


@frozen
class RawBookOrder:
    """An order of a raw trading book (R0). ``price`` 0 means the order was removed."""

    order_id: int
    price: float
    amount: float

    @property
    def is_bid(self) -> bool:
        """True for the bid side (positive amount)."""
        return self.amount > 0

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "RawBookOrder":
        """Build from ``[ORDER_ID, PRICE, AMOUNT]``."""
        return _build(cls, row, 3, lambda: cls(_int(row[0]), _num(row[1]), _num(row[2])))


@frozen
class RawFundingOffer:
    """An offer of a raw funding book (R0). ``rate`` 0 means removed; bids have amount < 0."""

    offer_id: int
    period: int
    rate: float
    amount: float

    @property
    def is_bid(self) -> bool:
        """True for the bid (borrow) side."""
        return self.amount < 0

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "RawFundingOffer":
        """Build from ``[OFFER_ID, PERIOD, RATE, AMOUNT]``."""
        return _build(cls, row, 4, lambda: cls(_int(row[0]), _int(row[1]), _num(row[2]), _num(row[3])))


@frozen
class Candle:
    """One candle. Note the wire order: CLOSE comes before HIGH."""

    mts: int
    open: float
    close: float
    high: float
    low: float
    volume: float

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "Candle":
        """Build from ``[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]``."""
        return _build(cls, row, 6, lambda: cls(_int(row[0]), *(_num(v) for v in row[1:6])))


@frozen
class DerivativesStatus:
    """Status of a derivatives pair (key ``deriv:SYMBOL``); ``None`` where the server sends null."""

    mts: int
    deriv_price: Optional[float]
    spot_price: Optional[float]
    insurance_fund_balance: Optional[float]
    next_funding_evt_mts: Optional[int]
    next_funding_accrued: Optional[float]
    next_funding_step: Optional[float]
    current_funding: Optional[float]
    mark_price: Optional[float]
    open_interest: Optional[float]
    clamp_min: Optional[float]
    clamp_max: Optional[float]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "DerivativesStatus":
        """Build from the 23-field WS payload (REST indices minus one, docs: ws-public-status)."""
        return _build(cls, row, 18, lambda: cls(
            _int(row[0]), _opt(row[2]), _opt(row[3]), _opt(row[5]), _opt_int(row[7]), _opt(row[8]),
            _opt(row[9]), _opt(row[11]), _opt(row[14]), _opt(row[17]),
            _opt(row[21]) if len(row) > 21 else None, _opt(row[22]) if len(row) > 22 else None,
        ))


@frozen
class Liquidation:
    """One liquidation from ``liq:global``."""

    pos_id: int
    mts: int
    symbol: str
    amount: float
    base_price: float
    is_match: bool
    is_market_sold: bool
    liquidation_price: Optional[float]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "Liquidation":
        """Build from ``["pos", POS_ID, MTS, _, SYMBOL, AMOUNT, BASE_PRICE, _, IS_MATCH, IS_MARKET_SOLD, _,
        LIQUIDATION_PRICE]``."""
        return _build(cls, row, 10, lambda: cls(
            _int(row[1]), _int(row[2]), _str(row[4]), _num(row[5]), _num(row[6]),
            _flag(row[8]), _flag(row[9]), _opt(row[11]) if len(row) > 11 else None,
        ))

