"""Candle keys and synthetic candle series (docs: ws-public-candles; pure).

Keys are ``trade:TF:SYMBOL`` for trading symbols and ``trade:TF:fUSD:pN`` or
``trade:TF:fUSD:aA:pS:pE`` for funding (a funding key without a period is invalid).
A series starts with a seeded history of 100 candles and then follows the emulator's
trades; an update with the MTS of the current candle replaces it, a new MTS appends.
"""
from __future__ import annotations

import calendar
import random
import time
from collections.abc import Container
from decimal import Decimal
from typing import Any

import attrs

from bfxsync.protocol import is_funding

__all__ = ["TIMEFRAME_MS", "CandleKey", "CandleKeyError", "CandleSeries", "parse_candle_key"]

_MINUTE = 60_000
_DAY = 1440 * _MINUTE
#: Candle widths in ms; ``1M`` is a calendar month and handled separately.
TIMEFRAME_MS = {
    "1m": _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE, "30m": 30 * _MINUTE,
    "1h": 60 * _MINUTE, "3h": 180 * _MINUTE, "6h": 360 * _MINUTE, "12h": 720 * _MINUTE,
    "1D": _DAY, "1W": 7 * _DAY, "14D": 14 * _DAY, "1M": 30 * _DAY,
}
HISTORY = 100


class CandleKeyError(ValueError):
    """The key is malformed (``key: invalid``) or names an unknown symbol (``symbol: invalid``)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


@attrs.frozen
class CandleKey:
    """A parsed candle key; ``periods`` is the funding-period filter (None for trading)."""

    key: str
    timeframe: str
    symbol: str
    periods: frozenset[int] | None = None


def _period(text: str) -> int:
    if not text.startswith("p") or not text[1:].isdigit() or not 2 <= int(text[1:]) <= 30:
        raise CandleKeyError("key: invalid")
    return int(text[1:])


def parse_candle_key(key: object, symbols: Container[str]) -> CandleKey:
    """Validate a ``candles`` key against the known ``symbols``; raises :class:`CandleKeyError`."""
    if not isinstance(key, str):
        raise CandleKeyError("key: invalid")
    parts = key.split(":")
    if len(parts) < 3 or parts[0] != "trade" or parts[1] not in TIMEFRAME_MS:
        raise CandleKeyError("key: invalid")
    if is_funding(parts[2]):
        symbol, rest = parts[2], parts[3:]
        if len(rest) == 1:
            periods = frozenset([_period(rest[0])])
        elif len(rest) == 3 and rest[0] in ("a10", "a30"):
            start, end = _period(rest[1]), _period(rest[2])
            if start > end:
                raise CandleKeyError("key: invalid")
            periods = frozenset(range(start, end + 1))
        else:
            raise CandleKeyError("key: invalid")
    else:
        # Trading symbols may contain colons themselves (tBTCF0:USTF0).
        symbol, periods = ":".join(parts[2:]), None
    if symbol not in symbols:
        raise CandleKeyError("symbol: invalid")
    return CandleKey(key, parts[1], symbol, periods)


def bucket_start(timeframe: str, mts: int) -> int:
    """Start (ms) of the candle containing ``mts``; months follow the UTC calendar."""
    if timeframe == "1M":
        tm = time.gmtime(mts // 1000)
        return calendar.timegm((tm.tm_year, tm.tm_mon, 1, 0, 0, 0)) * 1000
    width = TIMEFRAME_MS[timeframe]
    return mts - mts % width


def _previous_bucket(timeframe: str, start: int) -> int:
    return bucket_start(timeframe, start - 1) if timeframe == "1M" else start - TIMEFRAME_MS[timeframe]


class CandleSeries:
    """One key's candles, oldest first: ``[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]`` as Decimals."""

    def __init__(self, key: CandleKey, last_price: Decimal, tick: Decimal, seed: int, now_ms: int) -> None:
        self.key = key
        self.version = 0
        self._candles: list[list[Any]] = []
        # A per-key generator keeps the history identical whatever else was subscribed first.
        rng = random.Random(f"{seed}:{key.key}")
        start = bucket_start(key.timeframe, now_ms)
        close = last_price
        step = tick
        for _ in range(HISTORY):
            open_ = max(close + step * rng.randint(-20, 20), step)
            high = max(open_, close) + step * rng.randint(0, 4)
            low = max(min(open_, close) - step * rng.randint(0, 4), step)
            volume = Decimal(rng.randint(1, 10**10)).scaleb(-8)
            self._candles.append([start, open_, close, high, low, volume])
            close = open_
            start = _previous_bucket(key.timeframe, start)
        self._candles.reverse()

    def accepts(self, period: int | None) -> bool:
        """Whether a trade (with this funding period, None for trading) belongs to the series."""
        return self.key.periods is None or period in self.key.periods

    def add_trade(self, price: Decimal, amount: Decimal, mts: int) -> None:
        """Fold one trade in: update the current candle, or open a new one at a new MTS."""
        start = bucket_start(self.key.timeframe, mts)
        current = self._candles[-1]
        if start > current[0]:
            self._candles.append([start, current[2], price, max(current[2], price),
                                  min(current[2], price), abs(amount)])
            del self._candles[:-HISTORY * 2]
        else:
            current[2] = price
            current[3] = max(current[3], price)
            current[4] = min(current[4], price)
            current[5] += abs(amount)
        self.version += 1

    def latest(self) -> list[Any]:
        """The current candle as a wire entry."""
        return _wire(self._candles[-1])

    def snapshot(self, limit: int = HISTORY) -> list[list[Any]]:
        """The newest ``limit`` candles, newest first (docs: ws-public-candles)."""
        return [_wire(c) for c in reversed(self._candles[-limit:])]


def _wire(candle: list[Any]) -> list[Any]:
    return [candle[0]] + [float(v) for v in candle[1:]]
