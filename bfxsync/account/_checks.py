"""Argument checks shared by the input builders (pure, except the cid source's lock).

Every check raises ``ValueError`` naming the argument and what is wrong with it.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..numbers import plain, to_decimal

MAX_SAFE_INT = 9_007_199_254_740_991
MAX_GID = 2**31 - 1
#: Generated cids start at a random point below this, leaving room below the 45-bit limit.
CID_START_RANGE = 2**44
TIF_FORMAT = "%Y-%m-%d %H:%M:%S"


class _CidSource:
    """Client order ids unique in this process and, with overwhelming probability, across processes.

    A cid is a positive integer of at most 45 bits that should be unique per UTC day on a key
    (docs: ws-auth-input). A millisecond timestamp, as other clients use, repeats when two
    processes on one key place orders in the same millisecond. Each process here starts at a
    random point of a 44-bit range and counts up: two processes collide only if their runs of
    cids overlap, about (orders of both) / 2**44 (one in 8 million for a million orders each).
    """

    def __init__(self, start: Optional[int] = None) -> None:
        self._last = secrets.randbelow(CID_START_RANGE) if start is None else start
        self._lock = threading.Lock()

    def next(self) -> int:
        """The next cid (the cid date, sent with cancels by cid, carries the day)."""
        with self._lock:
            self._last += 1
            return self._last


_cids = _CidSource()


def _int(value: Any, name: str, low: int = 1, high: int = MAX_SAFE_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value


def _ints(values: Any, name: str, high: int = MAX_SAFE_INT) -> List[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty list of ints, got {values!r}")
    return [_int(v, f"{name}[{i}]", high=high) for i, v in enumerate(values)]


def _decimal(value: Any, name: str) -> Decimal:
    """An amount, price or rate argument by the number policy of :mod:`bfxsync.numbers`."""
    return to_decimal(value, name)


def _plain(number: Decimal) -> str:
    """Fixed-point text without exponent or trailing zeros: ``3E+4`` -> ``"30000"``, ``0.0010`` -> ``"0.001"``."""
    return plain(number)


def _money(value: Any, name: str, *, positive: bool = False) -> str:
    """A money argument as wire text; non-zero (and > 0 when ``positive``)."""
    number = _decimal(value, name)
    if number == 0 or (positive and number < 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-zero'}, got {value!r}")
    return _plain(number)


def _symbol(symbol: Any, pattern: "re.Pattern[str]", kind: str) -> str:
    if not isinstance(symbol, str) or not pattern.fullmatch(symbol):
        example = "tBTCUSD or tBTCF0:USTF0" if kind == "trading" else "fUSD"
        raise ValueError(f"symbol must be a {kind} symbol like {example}, got {symbol!r}")
    return symbol


def _tif(value: Any, now_ms: int) -> str:
    """Auto-cancel time as ``YYYY-MM-DD HH:MM:SS`` UTC; naive datetimes are taken as UTC."""
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, str):
        try:
            moment = datetime.strptime(value, TIF_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            raise ValueError(f"tif must be a datetime or a 'YYYY-MM-DD HH:MM:SS' UTC string, got {value!r}") from None
    else:
        raise ValueError(f"tif must be a datetime or a 'YYYY-MM-DD HH:MM:SS' UTC string, got {value!r}")
    if moment.timestamp() * 1000 <= now_ms:
        raise ValueError(f"tif {moment.strftime(TIF_FORMAT)} UTC is not in the future")
    return moment.strftime(TIF_FORMAT)


def _cid_date(value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
        except ValueError:
            pass
    raise ValueError(f"cid_date must be a date or a 'YYYY-MM-DD' string (the order's UTC creation date), got {value!r}")


def _lev(lev: Any) -> int:
    return _int(lev, "lev", low=1, high=100)


def _now_ms(now_ms: Optional[int]) -> int:
    return int(time.time() * 1000) if now_ms is None else _int(now_ms, "now_ms", low=0)


def _clean(value: Any, where: str) -> Any:
    """Copy a caller's payload for the wire: Decimals and floats become plain decimal strings.

    The server refuses JSON numbers with a fraction or an exponent, so a float goes out as the
    text of its shortest ``repr`` (the policy of :mod:`bfxsync.numbers`); NaN and infinities are
    refused. Ints, strings, booleans and None pass as they are (ids, flags, meta switches).
    """
    if isinstance(value, (float, Decimal)):
        return plain(to_decimal(value, where))
    if isinstance(value, Mapping):
        return {k: _clean(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _meta(meta: Any) -> Dict[str, Any]:
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise ValueError(f"meta must be a mapping with string keys, got {meta!r}")
    return {key: _clean(value, f"meta.{key}") for key, value in meta.items()}
