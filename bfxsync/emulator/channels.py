"""Subscribe requests: validation, the subscription record, acks and error echoes (pure).

Answers follow the documentation (ws-general): acks (defaults filled in, ``len`` as a string,
``pair``/``currency``, ``subId`` echoed), errors (the fields sent, then
``event``/``msg``/``code``, then ``chanId`` for a duplicate and ``pair``/``currency``).
"""
from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, TypeVar

import attrs

from bfxsync import protocol

from .books import BookView
from .candles import CandleKey, CandleKeyError, parse_candle_key

__all__ = ["NoReply", "SubscribeError", "Subscription", "ack_frame", "error_frame", "parse_subscribe"]

_LENGTHS = {str(n): n for n in protocol.BOOK_LENGTHS}

_T = TypeVar("_T")


class SubscribeError(Exception):
    """A rejected subscribe; ``msg`` and ``code`` go into the error echo."""

    def __init__(self, msg: str, code: int = protocol.ERR_SUB_FAIL) -> None:
        super().__init__(msg)
        self.msg, self.code = msg, code


class NoReply(Exception):
    """A request the live server ignores silently (``deriv:`` key of an unknown symbol, docs: ws-public-status)."""


@attrs.define(eq=False)
class Subscription:
    """One active channel of one connection, with what the feed last sent on it.

    ``params`` are the normalised request fields (what ``Emulator.subscriptions()`` reports);
    ``identity`` decides duplicates (10301).
    """

    channel: str
    params: dict[str, Any]
    symbol: str | None = None
    prec: str | None = None
    freq: str | None = None
    length: int | None = None
    candle: CandleKey | None = None
    chan_id: int = 0
    # Feed state, guarded by the connection lock.
    view: BookView | None = None
    view_version: int = -1
    candle_version: int = -1
    last_flush: float = 0.0
    last_traffic: float = 0.0

    @property
    def identity(self) -> tuple[Any, ...]:
        """The channel plus its sorted params: two subscriptions with equal identity are duplicates."""
        return (self.channel,) + tuple(sorted(self.params.items()))

    # parse_subscribe sets the optional fields per channel. These accessors give the feed
    # plain values and raise a clear error if code reads a field its channel does not set.
    def market_symbol(self) -> str:
        """The symbol whose market feeds this channel (set for all but ``status`` ``liq:global``)."""
        return self._required(self.symbol, "symbol")

    def book_shape(self) -> tuple[str, int]:
        """``(prec, length)`` of a book channel, the arguments of ``SymbolMarket.view``."""
        return self._required(self.prec, "prec"), self._required(self.length, "length")

    def candle_key(self) -> CandleKey:
        """The parsed key of a candles channel."""
        return self._required(self.candle, "candle")

    def _required(self, value: _T | None, name: str) -> _T:
        if value is None:
            raise ValueError(f"{self.channel} subscription {self.chan_id} has no {name}")
        return value

    def pair_field(self) -> dict[str, str]:
        """``pair``/``currency`` for symbol channels (acks and error echoes carry it)."""
        if self.channel in (protocol.TICKER, protocol.TRADES, protocol.BOOK):
            return pair_field(self.symbol)
        return {}


def _symbol(request: Mapping[str, Any], symbols: Container[str]) -> str:
    symbol = request.get("symbol")
    if not isinstance(symbol, str):
        raise SubscribeError("symbol: invalid")
    if symbol in symbols:
        return symbol
    # A probe saw "BTCUSD" accepted and acked as "tBTCUSD" (docs: ws-general, one source).
    if "t" + symbol in symbols:
        return "t" + symbol
    raise SubscribeError("symbol: invalid")


def _book(request: Mapping[str, Any], symbol: str) -> Subscription:
    prec = request.get("prec", "P0")
    if prec not in protocol.BOOK_PRECISIONS:
        raise SubscribeError("precision: invalid")
    freq = request.get("freq", "F0")
    if freq not in protocol.BOOK_FREQUENCIES:
        raise SubscribeError("freq: invalid")  # not observed live; the msg is our choice
    raw_len = request.get("len", "25")
    # Accept "25" and 25 alike, but not 25.0 or True: JSON numbers the server would reject.
    length = _LENGTHS.get(raw_len) if isinstance(raw_len, str) else (
        raw_len if type(raw_len) is int and raw_len in protocol.BOOK_LENGTHS else None)
    if length is None:
        raise SubscribeError("length: invalid")
    params = {"symbol": symbol, "prec": prec, "freq": freq, "len": str(length)}
    return Subscription("book", params, symbol=symbol, prec=prec, freq=freq, length=length)


def parse_subscribe(request: Mapping[str, Any], symbols: Container[str],
                    derivatives: Container[str]) -> Subscription:
    """Validate a ``subscribe`` request; raises :class:`SubscribeError` or :class:`NoReply`.

    The duplicate and limit checks need the connection's state and are done by the caller.
    """
    channel = request.get("channel")
    if channel in (protocol.TICKER, protocol.TRADES):
        symbol = _symbol(request, symbols)
        return Subscription(channel, {"symbol": symbol}, symbol=symbol)
    if channel == protocol.BOOK:
        return _book(request, _symbol(request, symbols))
    if channel == protocol.CANDLES:
        try:
            candle = parse_candle_key(request.get("key"), symbols)
        except CandleKeyError as exc:
            raise SubscribeError(exc.msg) from None
        return Subscription(channel, {"key": candle.key}, symbol=candle.symbol, candle=candle)
    if channel == protocol.STATUS:
        key = request.get("key")
        if key == "liq:global":
            return Subscription(channel, {"key": key})
        if isinstance(key, str) and key.startswith("deriv:"):
            if key[6:] not in derivatives:
                raise NoReply(key)
            return Subscription(channel, {"key": key}, symbol=key[6:])
        raise SubscribeError("key: invalid")
    raise SubscribeError("channel: unknown")


def pair_field(symbol: str | None) -> dict[str, str]:
    """``{"pair": "BTCUSD"}`` for trading symbols, ``{"currency": "USD"}`` for funding ones."""
    if not symbol:
        return {}
    return {"currency" if protocol.is_funding(symbol) else "pair": symbol[1:]}


def ack_frame(sub: Subscription, request: Mapping[str, Any]) -> dict[str, Any]:
    """The ``subscribed`` event (docs: ws-general); ``subId`` is echoed only when the request had one."""
    ack: dict[str, Any] = {"event": "subscribed", "channel": sub.channel, "chanId": sub.chan_id}
    has_sub_id = "subId" in request
    if sub.channel in (protocol.CANDLES, protocol.STATUS):
        ack["key"] = sub.params["key"]
        if has_sub_id:
            ack["subId"] = request["subId"]
        return ack
    ack["symbol"] = sub.symbol
    if sub.channel == protocol.BOOK:
        ack.update(prec=sub.prec, freq=sub.freq, len=str(sub.length))
        if has_sub_id:
            ack["subId"] = request["subId"]
        ack.update(sub.pair_field())
    else:
        ack.update(sub.pair_field())
        if has_sub_id:
            ack["subId"] = request["subId"]
    return ack


def error_frame(request: Mapping[str, Any], msg: str, code: int, **extra: Any) -> dict[str, Any]:
    """An error echo: the request's own fields (bar ``event``), then event/msg/code, then ``extra``."""
    frame = {k: v for k, v in request.items() if k != "event"}
    frame.update(event="error", msg=msg, code=code)
    frame.update(extra)
    return frame
