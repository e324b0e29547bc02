"""Readers for channel-0 fields, shared by the account models (pure).

Channel 0 is decoded with ``json`` ``parse_float=str``: numbers arrive as ints or as the exact
text of the float. Money becomes :class:`decimal.Decimal`; floats are accepted through ``repr``;
NaN, infinities and booleans are refused. Each reader raises TypeError/ValueError, which the
models' ``from_wire`` turn into :class:`~bfxsync.errors.ProtocolError`.

Every number is bounded before it is converted, in constant time: a text longer than
``MAX_NUMBER_TEXT``, an exponent beyond ``MAX_EXPONENT`` or an integer of ``INT_LIMIT``
or more (:mod:`bfxsync.protocol.constants`) is refused. Without the bounds a 30-byte ``1e1000000`` in an id
would cost seconds of GIL inside ``int(Decimal(text))``.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Optional, Sequence, Tuple

from ..protocol.constants import INT_LIMIT, MAX_EXPONENT, MAX_NUMBER_TEXT

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Status prefixes made of two words; everything else is one word (docs: ws-auth-orders).
_TWO_WORD_STATUSES = frozenset({
    "PARTIALLY FILLED", "POSTONLY CANCELED", "IOC CANCELED", "FILLORKILL CANCELED",
    "INSUFFICIENT BALANCE", "INSUFFICIENT MARGIN",
})
#: Notification times below this are seconds (1e11 ms is 1973; 1e11 s is year 5138).
SECONDS_BELOW = Decimal(10) ** 11
_INT_LIMIT_DEC = Decimal(INT_LIMIT)
_INT_LOW = -INT_LIMIT  # precomputed: negating a big int allocates one


def _at(row: Sequence[Any], index: int) -> Any:
    """``row[index]``, or None past the end (missing trailing fields read as null)."""
    return row[index] if index < len(row) else None


def _dec(value: Any) -> Decimal:
    """A finite Decimal within the bounds above (constant time whatever the input's size)."""
    if isinstance(value, bool) or not isinstance(value, (int, str, float, Decimal)):
        raise TypeError(f"expected a number, got {value!r:.50}")
    if isinstance(value, int):
        return Decimal(_bounded_int(value))
    if isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
        raise ValueError(f"number text of {len(value)} characters (at most {MAX_NUMBER_TEXT}): {value:.30}...")
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r:.50}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r:.50}")
    if not -MAX_EXPONENT <= result.adjusted() <= MAX_EXPONENT:
        raise ValueError(f"exponent out of range (|e| <= {MAX_EXPONENT}): {value!r:.50}")
    return result


def _bounded_int(value: int) -> int:
    if not _INT_LOW < value < INT_LIMIT:
        raise ValueError(f"integer out of range (|n| < 1e21): a {value.bit_length()}-bit integer")
    return value


def _whole(number: Decimal, value: Any) -> int:
    """``int(number)`` for a Decimal from :func:`_dec` (so at most about 400 digits), bounded."""
    if not -_INT_LIMIT_DEC < number < _INT_LIMIT_DEC:
        raise ValueError(f"integer out of range (|n| < 1e21): {value!r:.50}")
    return int(number)


def _opt_dec(value: Any) -> Optional[Decimal]:
    return None if value is None else _dec(value)


def _int(value: Any) -> int:
    """An integer field; integral floats or number texts (``"5.0"``) are accepted, fractions are not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _bounded_int(value)
    number = _dec(value)
    if number != number.to_integral_value():
        raise ValueError(f"expected an integer, got {value!r:.50}")
    return _whole(number, value)


def _opt_int(value: Any) -> Optional[int]:
    return None if value is None else _int(value)


def _mts(value: Any) -> int:
    """A millisecond timestamp; a fractional one (seen in ``te``) is truncated."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _bounded_int(value)
    return _whole(_dec(value), value)


def _opt_mts(value: Any) -> Optional[int]:
    return None if value is None else _mts(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else _str(value)


def _flag(value: Any) -> bool:
    """A 0/1 (or null) switch."""
    return value is not None and _int(value) == 1


def _maker(value: Any) -> bool:
    """MAKER is 1 for maker, -1 (or null) for taker."""
    return value is not None and _int(value) == 1


def status_word(status: Optional[str]) -> str:
    """The leading word(s) of a status text: ``"EXECUTED @ 107.6(-0.2)"`` -> ``"EXECUTED"``.

    Status texts carry suffixes and histories (``"CANCELED was: PARTIALLY FILLED @ ..."``,
    ``"INSUFFICIENT BALANCE (G1)"``, ``"ACTIVE (note:POSCLOSE)"``, ``"EXECUTED at FRR delta"``);
    only the leading words are stable. ``""`` for None.
    """
    words = (status or "").split()
    if len(words) >= 2 and f"{words[0]} {words[1].rstrip(':,')}" in _TWO_WORD_STATUSES:
        return f"{words[0]} {words[1].rstrip(':,')}"
    return words[0].rstrip(":,") if words else ""


def date_of_ms(mts: int) -> str:
    """The UTC date ``YYYY-MM-DD`` of a millisecond timestamp (ValueError when out of range, e.g. µs)."""
    try:
        return (EPOCH + timedelta(milliseconds=mts)).strftime("%Y-%m-%d")
    except OverflowError:
        raise ValueError(f"{mts} is not a millisecond timestamp (out of the calendar's range)") from None


def _loose_int(value: Any) -> Optional[int]:
    """An informational integer (MESSAGE_ID, CODE): anything else reads as None rather than failing the row."""
    if isinstance(value, int) and not isinstance(value, bool) and _INT_LOW < value < INT_LIMIT:
        return value
    return None


def _values(row: Sequence[Any], kind: str, need: int) -> Tuple[Optional[str], Sequence[Any]]:
    """Split ``["sym", SYMBOL, [values]]`` (or ``["base", [values]]`` for kind "base")."""
    if kind == "base":
        values = row[1] if row[0] == "base" else row
        symbol = None
    else:
        if row[0] != "sym":
            raise ValueError(f"expected a 'sym' row, got {row[0]!r}")
        symbol, values = _str(row[1]), row[2]
    if not isinstance(values, (list, tuple)) or len(values) < need:
        raise ValueError(f"expected {need}+ values, got {values!r}")
    return symbol, values

