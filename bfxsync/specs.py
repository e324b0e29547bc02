"""What to subscribe to: validated, normalised subscription parameters (pure).

A spec is checked when it is built, so a bad symbol, precision, frequency, length or
candle key raises ``ValueError`` before anything is sent. Two specs that mean the same
subscription compare equal, which is how subscribing twice returns the same handle.
:func:`parse_spec` reads the ``CHANNEL:ARGS`` text the command line takes.
"""
from __future__ import annotations

import re
from typing import Any, ClassVar, Dict, Tuple, Union

from attrs import field, frozen

from . import protocol

_TRADING = re.compile(r"^t[A-Z0-9]{3,}(?::[A-Z0-9]{2,})?$")
_FUNDING = re.compile(r"^f[A-Z0-9]{2,}$")
_CANDLE_KEY = re.compile(
    r"^trade:(?P<tf>[0-9]+[mhDWM]):(?P<symbol>[tf][A-Z0-9:]+?)"
    r"(?::a(?P<aggr>[0-9]+):p(?P<start>[0-9]+):p(?P<end>[0-9]+)|:p(?P<period>[0-9]+))?$"
)
_STATUS_KEY = re.compile(r"^(?:deriv:t[A-Z0-9]{3,}(?::[A-Z0-9]{2,})?|liq:global)$")
# What starts the options of a book spec: a precision (P0, R0, or a wrong one such as P9,
# so that it is reported as a precision), a length or a frequency. No part of a symbol
# after its colon looks like that (tSHIB:USD, tBTCF0:USTF0), so a symbol may hold colons.
_BOOK_OPTION = re.compile(r"^(?:[PR][0-9]+|[0-9]+|F[0-9]+)$")


def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is a trading (``tBTCUSD``, ``tBTCF0:USTF0``) or funding (``fUSD``) symbol."""
    if not isinstance(symbol, str) or not (_TRADING.match(symbol) or _FUNDING.match(symbol)):
        raise ValueError(
            f"invalid symbol {symbol!r}: use upper case with a 't' prefix for trading pairs "
            "(tBTCUSD, tBTCF0:USTF0) or 'f' for funding currencies (fUSD)"
        )
    return symbol


def _symbol(instance: Any, attribute: Any, value: str) -> None:
    check_symbol(value)


def _one_of(choices: Tuple[Any, ...]) -> Any:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"invalid {attribute.name} {value!r}: expected one of {', '.join(map(str, choices))}")
    return check


_LENGTHS = ", ".join(map(str, protocol.BOOK_LENGTHS))


def _length(value: Union[int, str]) -> int:
    # int(25.5) would quietly give 25: only whole numbers (or their text) are lengths.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"invalid length {value!r}: expected one of {_LENGTHS}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"invalid length {value!r}: expected one of {_LENGTHS}") from None


def _candle_key(instance: Any, attribute: Any, key: str) -> None:
    match = _CANDLE_KEY.match(key) if isinstance(key, str) else None
    problem = None
    if match is None:
        problem = "expected trade:TIMEFRAME:SYMBOL, e.g. trade:1m:tBTCUSD or trade:1m:fUSD:p30"
    elif match["tf"] not in protocol.CANDLE_TIMEFRAMES:
        problem = f"time frame must be one of {' '.join(protocol.CANDLE_TIMEFRAMES)}"
    elif protocol.is_funding(match["symbol"]):
        if not _FUNDING.match(match["symbol"]):
            problem = "bad funding currency"
        elif match["period"] is None and match["aggr"] is None:
            problem = "funding candles need a period (trade:1m:fUSD:p30) or an aggregate (trade:1m:fUSD:a30:p2:p30)"
        elif match["aggr"] is not None and match["aggr"] not in ("10", "30"):
            problem = "the aggregate must be a10 or a30"
    elif match["period"] is not None or match["aggr"] is not None or not _TRADING.match(match["symbol"]):
        problem = "trading candle keys take a trading pair and no period"
    if problem:
        raise ValueError(f"invalid candle key {key!r}: {problem}")


def _status_key(instance: Any, attribute: Any, key: str) -> None:
    if not isinstance(key, str) or not _STATUS_KEY.match(key):
        raise ValueError(f"invalid status key {key!r}: expected deriv:SYMBOL (deriv:tBTCF0:USTF0) or liq:global")


@frozen
class TickerSpec:
    """A ``ticker`` subscription."""

    channel: ClassVar[str] = protocol.TICKER
    symbol: str = field(validator=_symbol)

    def request(self) -> Dict[str, Any]:
        """The channel-specific fields of the ``subscribe`` event."""
        return {"symbol": self.symbol}


@frozen
class TradesSpec:
    """A ``trades`` subscription."""

    channel: ClassVar[str] = protocol.TRADES
    symbol: str = field(validator=_symbol)

    def request(self) -> Dict[str, Any]:
        """The channel-specific fields of the ``subscribe`` event."""
        return {"symbol": self.symbol}


@frozen
class BookSpec:
    """A ``book`` subscription: aggregated (``P0``-``P4``) or raw (``R0``).

    Attributes:
        symbol: the trading pair or funding currency.
        prec: ``P0``-``P4`` (aggregated by price) or ``R0`` (raw, order by order).
        freq: ``F0`` (real time) or ``F1`` (every two seconds).
        length: levels per side, one of 1, 25, 100, 250 (the wire calls it ``len``; the
            Python API, the command line's ``--length`` and the record specs say ``length``).
    """

    channel: ClassVar[str] = protocol.BOOK
    symbol: str = field(validator=_symbol)
    prec: str = field(default="P0", validator=_one_of(protocol.BOOK_PRECISIONS))
    freq: str = field(default="F0", validator=_one_of(protocol.BOOK_FREQUENCIES))
    length: int = field(default=25, converter=_length, validator=_one_of(protocol.BOOK_LENGTHS))

    def request(self) -> Dict[str, Any]:
        """The channel-specific fields of the ``subscribe`` event (``len`` as a string, as the docs send it)."""
        return {"symbol": self.symbol, "prec": self.prec, "freq": self.freq, "len": str(self.length)}


@frozen
class CandlesSpec:
    """A ``candles`` subscription by key (``trade:1m:tBTCUSD``, ``trade:1h:fUSD:p30``)."""

    channel: ClassVar[str] = protocol.CANDLES
    key: str = field(validator=_candle_key)

    def request(self) -> Dict[str, Any]:
        """The channel-specific fields of the ``subscribe`` event."""
        return {"key": self.key}

    @property
    def symbol(self) -> str:
        """The trading pair or funding currency of the key."""
        return _CANDLE_KEY.match(self.key)["symbol"]  # type: ignore[index]  # validated at init


@frozen
class StatusSpec:
    """A ``status`` subscription (``deriv:tBTCF0:USTF0`` or ``liq:global``)."""

    channel: ClassVar[str] = protocol.STATUS
    key: str = field(validator=_status_key)

    def request(self) -> Dict[str, Any]:
        """The channel-specific fields of the ``subscribe`` event."""
        return {"key": self.key}


Spec = Union[TickerSpec, TradesSpec, BookSpec, CandlesSpec, StatusSpec]


def parse_spec(text: str) -> Spec:
    """The spec a ``CHANNEL:ARGS`` text names (the ``bfxsync record`` arguments).

    ``book:SYMBOL[:PREC[:LENGTH[:FREQ]]]`` (``book:tBTCUSD``, ``book:tSHIB:USD:P1:100``,
    ``book:tBTCF0:USTF0:R0:25:F1``), ``ticker:SYMBOL``, ``trades:SYMBOL``, ``candles:KEY``
    (``candles:trade:1m:tBTCUSD``) and ``status:KEY`` (``status:deriv:tBTCF0:USTF0``).
    A symbol may contain a colon: in a book spec the options start at the first part
    that is a precision, a number or a frequency.

    Raises:
        ValueError: an unknown channel or bad arguments (the spec classes say what is wrong).
    """
    channel, _, rest = text.partition(":")
    if not rest:
        raise ValueError(f"subscription {text!r}: expected CHANNEL:ARGS, e.g. book:tBTCUSD or trades:tETHUSD")
    if channel == "book":
        parts = rest.split(":")
        start = next((n for n in range(1, len(parts)) if _BOOK_OPTION.match(parts[n])), len(parts))
        options = parts[start:]
        if len(options) > 3:
            raise ValueError(f"subscription {text!r}: expected book:SYMBOL[:PREC[:LENGTH[:FREQ]]]")
        prec, length, freq = options + ["P0", "25", "F0"][len(options):]
        return BookSpec(":".join(parts[:start]), prec, freq, length)
    if channel == "ticker":
        return TickerSpec(rest)
    if channel == "trades":
        return TradesSpec(rest)
    if channel == "candles":
        return CandlesSpec(rest)
    if channel == "status":
        return StatusSpec(rest)
    raise ValueError(f"subscription {text!r}: unknown channel {channel!r} (book, ticker, trades, candles, status)")


def candle_key(timeframe: str, symbol: str, period: Union[int, None] = None) -> str:
    """Build a candle key: ``candle_key("1m", "tBTCUSD")``, ``candle_key("1h", "fUSD", 30)``."""
    key = f"trade:{timeframe}:{symbol}" + (f":p{period}" if period is not None else "")
    _candle_key(None, None, key)
    return key
