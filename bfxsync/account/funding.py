"""Frozen models of your funding activity on channel 0 (docs: ws-auth-offers, ws-auth-credits,
ws-auth-loans, ws-auth-trades, ws-auth-funding). Read by index like :mod:`bfxsync.account.models`.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Dict, Optional, Sequence

from attrs import frozen

from ..models import _build
from ._wire import _at, _dec, _flag, _int, _maker, _mts, _opt_dec, _opt_int, _opt_mts, _opt_str, _str, _values, status_word

__all__ = ["AccountFundingTrade", "FundingCredit", "FundingInfo", "FundingLoan", "FundingOffer"]


@frozen
class AccountFundingTrade:
    """One of your funding trades (``fte``/``ftu``)."""

    id: int
    symbol: str
    mts: int
    offer_id: int
    amount: Decimal
    rate: Decimal
    period: int
    maker: bool

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "AccountFundingTrade":
        """Build from ``[ID, SYMBOL, MTS, OFFER_ID, AMOUNT, RATE, PERIOD, MAKER]``."""
        return _build(cls, row, 7, lambda: cls(
            _int(row[0]), _str(row[1]), _mts(row[2]), _int(row[3]), _dec(row[4]), _dec(row[5]),
            _int(row[6]), _maker(_at(row, 7)),
        ))


@frozen
class FundingOffer:
    """A funding offer (``fos``/``fon``/``fou``/``foc``; 21 fields)."""

    id: int
    symbol: str
    mts_create: int
    mts_update: int
    amount: Decimal
    amount_orig: Decimal
    offer_type: str
    flags: int
    status: str
    rate: Decimal
    period: int
    notify: bool
    hidden: bool
    renew: bool
    rate_real: Optional[Decimal]

    @property
    def status_word(self) -> str:
        """The leading word(s) of ``status`` (offers say ``"EXECUTED at ..."``)."""
        return status_word(self.status)

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "FundingOffer":
        """Build from ``[ID, SYMBOL, MTS_CREATE, MTS_UPDATE, AMOUNT, AMOUNT_ORIG, TYPE, _, _, FLAGS, STATUS, _, _, _,
        RATE, PERIOD, NOTIFY, HIDDEN, _, RENEW, RATE_REAL]``."""
        return _build(cls, row, 16, lambda: cls(
            _int(row[0]), _str(row[1]), _mts(row[2]), _mts(row[3]), _dec(row[4]), _dec(row[5]), _str(row[6]),
            _opt_int(row[9]) or 0, _str(row[10]), _dec(row[14]), _int(row[15]), _flag(_at(row, 16)),
            _flag(_at(row, 17)), _flag(_at(row, 19)), _opt_dec(_at(row, 20)),
        ))


_CREDIT_NAMES = (
    "id", "symbol", "side", "mts_create", "mts_update", "amount", "flags", "status", "rate_type", "rate", "period",
    "mts_opening", "mts_last_payout", "notify", "hidden", "renew", "rate_real", "no_close",
)


def _credit_fields(row: Sequence[Any]) -> Dict[str, Any]:
    """The fields credits and loans share (indexes 0-20), by name."""
    return dict(zip(_CREDIT_NAMES, (
        _int(row[0]), _str(row[1]), _int(row[2]), _mts(row[3]), _mts(row[4]), _dec(row[5]),
        _opt_int(row[6]) or 0, _str(row[7]), _opt_str(row[8]), _dec(row[11]), _int(row[12]),
        _opt_mts(_at(row, 13)), _opt_mts(_at(row, 14)), _flag(_at(row, 15)), _flag(_at(row, 16)),
        _flag(_at(row, 18)), _opt_dec(_at(row, 19)), _flag(_at(row, 20)),
    )))


@frozen
class FundingLoan:
    """Funding you took or gave that is not used in a position (``fls``/``fln``/``flu``/``flc``; 21 fields).

    ``side``: 1 lender, 0 both, -1 borrower.
    """

    id: int
    symbol: str
    side: int
    mts_create: int
    mts_update: int
    amount: Decimal
    flags: int
    status: str
    rate_type: Optional[str]
    rate: Decimal
    period: int
    mts_opening: Optional[int]
    mts_last_payout: Optional[int]
    notify: bool
    hidden: bool
    renew: bool
    rate_real: Optional[Decimal]
    no_close: bool

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "FundingLoan":
        """Build from ``[ID, SYMBOL, SIDE, MTS_CREATE, MTS_UPDATE, AMOUNT, FLAGS, STATUS, RATE_TYPE, _, _, RATE,
        PERIOD, MTS_OPENING, MTS_LAST_PAYOUT, NOTIFY, HIDDEN, _, RENEW, RATE_REAL, NO_CLOSE]``."""
        return _build(cls, row, 13, lambda: cls(**_credit_fields(row)))


@frozen
class FundingCredit:
    """Funding used in a position (``fcs``/``fcn``/``fcu``/``fcc``; 22 fields): a loan plus ``position_pair``."""

    id: int
    symbol: str
    side: int
    mts_create: int
    mts_update: int
    amount: Decimal
    flags: int
    status: str
    rate_type: Optional[str]
    rate: Decimal
    period: int
    mts_opening: Optional[int]
    mts_last_payout: Optional[int]
    notify: bool
    hidden: bool
    renew: bool
    rate_real: Optional[Decimal]
    no_close: bool
    position_pair: Optional[str]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "FundingCredit":
        """Build from the loan fields plus ``POSITION_PAIR`` (index 21)."""
        return _build(cls, row, 13, lambda: cls(**_credit_fields(row), position_pair=_opt_str(_at(row, 21))))


@frozen
class FundingInfo:
    """Funding yields and durations of one currency (``fiu``)."""

    symbol: str
    yield_loan: Optional[Decimal]
    yield_lend: Optional[Decimal]
    duration_loan: Optional[Decimal]
    duration_lend: Optional[Decimal]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> "FundingInfo":
        """Build from the ``fiu`` payload ``["sym", SYMBOL, [YIELD_LOAN, YIELD_LEND, DURATION_LOAN, DURATION_LEND]]``."""
        def make() -> "FundingInfo":
            symbol, v = _values(row, "sym", 4)
            return cls(_str(symbol), _opt_dec(v[0]), _opt_dec(v[1]), _opt_dec(v[2]), _opt_dec(v[3]))
        return _build(cls, row, 3, make)
