"""Channel-0 input payloads: parsing and validation (pure; docs: ws-auth-input).

Decimals should arrive as decimal strings (``"0.001"``); JSON numbers are accepted too (the
official clients send strings; a lenient emulator helps hand-written tests). Exponent
strings (``"1e-4"``) are refused with ``amount: invalid``, as the live server does. Every
refusal raises :class:`InputError`, whose text becomes the ERROR notification's TEXT.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from .accounts import FLAG_OCO, WorkingOrder

__all__ = ["ORDER_TYPES", "TIF_FORMAT", "InputError", "apply_update", "NewOffer", "NewOrder", "OrderUpdate",
           "parse_decimal", "parse_new_offer", "parse_new_order", "parse_tif", "parse_update"]

#: Order types the engine executes: all of docs: ws-auth-input-order-new.
ORDER_TYPES = frozenset(prefix + kind for prefix in ("", "EXCHANGE ")
                        for kind in ("LIMIT", "MARKET", "STOP", "STOP LIMIT", "TRAILING STOP", "IOC", "FOK"))
#: ``tif`` as docs: ws-auth-input-order-new writes it (``2020-01-01 10:45:23``), taken as UTC.
TIF_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIF = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
OFFER_TYPES = frozenset(("LIMIT", "FRRDELTAVAR", "FRRDELTAFIX"))
_DECIMAL = re.compile(r"-?(\d+\.?\d*|\.\d+)")
_CID_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MAX_INT32 = 2**31 - 1
_MAX_CID = 2**53 - 1


class InputError(Exception):
    """A refused input; ``str(exc)`` is the notification text (``amount: invalid``)."""


def parse_decimal(value: Any, name: str) -> Decimal:
    """A decimal string (or JSON number) as a Decimal; InputError ``<name>: invalid`` otherwise."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return Decimal(value)
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except InvalidOperation:
            number = Decimal("NaN")
        if number.is_finite():
            return number
    raise InputError(f"{name}: invalid")


def _optional_decimal(payload: Mapping[str, Any], name: str) -> Decimal | None:
    value = payload.get(name)
    return None if value is None else parse_decimal(value, name)


def _positive(payload: Mapping[str, Any], name: str) -> Decimal:
    """A required decimal > 0; InputError ``<name>: invalid`` otherwise."""
    value = _optional_decimal(payload, name)
    if value is None or value <= 0:
        raise InputError(f"{name}: invalid")
    return value


def parse_tif(value: Any) -> int | None:
    """``tif`` (``YYYY-MM-DD HH:MM:SS``, UTC) as a millisecond timestamp; None when absent.

    The docs do not name the time zone; UTC is what the official clients assume.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not _TIF.fullmatch(value):
        raise InputError("tif: invalid")
    try:
        moment = datetime.datetime.strptime(value, TIF_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:  # 2030-02-30 and the like
        raise InputError("tif: invalid") from None
    return int(moment.timestamp()) * 1000


def _int(payload: Mapping[str, Any], name: str, maximum: int, default: int | None = None) -> int | None:
    value = payload.get(name, default)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= maximum:
        raise InputError(f"{name}: invalid")
    return value


@attrs.frozen
class NewOrder:
    """A validated ``on`` payload. ``price`` is the stop price of STOP / STOP LIMIT.

    ``price_trailing`` is the distance of a TRAILING STOP (which needs no ``price``);
    ``price_oco_stop`` and ``cid_oco`` are the stop leg of an OCO pair (flag 16384);
    ``mts_tif`` is ``tif`` in ms.
    """

    type: str
    symbol: str
    amount: Decimal
    price: Decimal | None
    price_aux_limit: Decimal | None
    gid: int | None
    cid: int | None
    flags: int
    lev: int | None
    meta: dict[str, Any]
    price_trailing: Decimal | None = None
    price_oco_stop: Decimal | None = None
    cid_oco: int | None = None
    mts_tif: int | None = None


def parse_new_order(payload: Any) -> NewOrder:
    """Validate an ``on`` payload (symbol existence and balances are checked by the engine).

    The checks follow docs: ws-auth-input-order-new, and the refusal texts the ``<field>:
    invalid`` pattern seen live (``price_oco_stop: invalid`` for an OCO without its stop).
    """
    if not isinstance(payload, Mapping):
        raise InputError("input: invalid")
    kind = payload.get("type")
    if not isinstance(kind, str) or kind not in ORDER_TYPES:
        raise InputError("type: invalid")
    symbol = payload.get("symbol")
    if not isinstance(symbol, str) or not symbol.startswith("t"):
        raise InputError("symbol: invalid")
    amount = parse_decimal(payload.get("amount"), "amount")
    if amount == 0:
        raise InputError("amount: invalid")
    bare = kind.removeprefix("EXCHANGE ")
    price = _optional_decimal(payload, "price")
    # A trailing stop's stop price follows the market: its ``price`` may be left out
    # (bitfinex-api-node #426, maintainer's answer) and is ignored when sent.
    if bare not in ("MARKET", "TRAILING STOP") and (price is None or price <= 0):
        raise InputError("price: invalid")
    trailing = _positive(payload, "price_trailing") if bare == "TRAILING STOP" else None
    aux = _positive(payload, "price_aux_limit") if bare == "STOP LIMIT" else None
    lev = _int(payload, "lev", 100)
    if lev is not None and lev < 1:
        raise InputError("lev: invalid")
    flags = _int(payload, "flags", _MAX_INT32, 0) or 0
    oco_stop = cid_oco = None
    if flags & FLAG_OCO:
        oco_stop = _positive(payload, "price_oco_stop")
        # The exchange pairs a limit order with a stop (docs: flag-values); what it answers
        # to OCO on other types is not documented, so the emulator refuses it.
        if bare != "LIMIT":
            raise InputError("Invalid order: OCO needs a LIMIT order")
        cid_oco = _int(payload, "cid_oco", _MAX_CID)
    meta = payload.get("meta")
    return NewOrder(type=kind, symbol=symbol, amount=amount,
                    price=price if bare not in ("MARKET", "TRAILING STOP") else None,
                    price_aux_limit=aux, gid=_int(payload, "gid", _MAX_INT32), cid=_int(payload, "cid", _MAX_CID),
                    flags=flags, lev=lev, meta=dict(meta) if isinstance(meta, Mapping) else {},
                    price_trailing=trailing, price_oco_stop=oco_stop, cid_oco=cid_oco,
                    mts_tif=parse_tif(payload.get("tif")))


@attrs.frozen
class OrderUpdate:
    """A validated ``ou`` payload (docs: ws-auth-input-order-update); None means unchanged."""

    id: int
    price: Decimal | None
    amount: Decimal | None
    delta: Decimal | None
    price_aux_limit: Decimal | None
    flags: int | None
    gid: int | None
    lev: int | None
    price_trailing: Decimal | None = None
    mts_tif: int | None = None


def parse_update(payload: Any) -> OrderUpdate:
    """Validate an ``ou`` payload; the order's existence is checked by the engine."""
    if not isinstance(payload, Mapping):
        raise InputError("input: invalid")
    order_id = payload.get("id")
    if type(order_id) is not int or order_id <= 0:
        raise InputError("id: invalid")
    amount = _optional_decimal(payload, "amount")
    if amount is not None and amount == 0:
        raise InputError("amount: invalid")
    price = _optional_decimal(payload, "price")
    if price is not None and price <= 0:
        raise InputError("price: invalid")
    trailing = _optional_decimal(payload, "price_trailing")
    if trailing is not None and trailing <= 0:
        raise InputError("price_trailing: invalid")
    return OrderUpdate(id=order_id, price=price, amount=amount, delta=_optional_decimal(payload, "delta"),
                       price_aux_limit=_optional_decimal(payload, "price_aux_limit"),
                       flags=_int(payload, "flags", _MAX_INT32), gid=_int(payload, "gid", _MAX_INT32),
                       lev=_int(payload, "lev", 100), price_trailing=trailing,
                       mts_tif=parse_tif(payload.get("tif")))


def parse_cid_date(value: Any) -> str:
    """A ``cid_date`` (``YYYY-MM-DD``, the UTC creation date of the order)."""
    if not isinstance(value, str) or not _CID_DATE.fullmatch(value):
        raise InputError("cid_date: invalid")
    return value


@attrs.frozen
class NewOffer:
    """A validated ``fon`` payload (docs: ws-auth-input-offer-new)."""

    type: str
    symbol: str
    amount: Decimal
    rate: Decimal
    period: int
    flags: int


def parse_new_offer(payload: Any) -> NewOffer:
    """Validate a ``fon`` payload; the funding balance is checked by the engine."""
    if not isinstance(payload, Mapping):
        raise InputError("input: invalid")
    kind = payload.get("type")
    if kind not in OFFER_TYPES:
        raise InputError("type: invalid")
    symbol = payload.get("symbol")
    if not isinstance(symbol, str) or not re.fullmatch(r"f[A-Z0-9]{2,}", symbol):
        raise InputError("symbol: invalid")
    amount = parse_decimal(payload.get("amount"), "amount")
    if amount == 0:
        raise InputError("amount: invalid")
    rate = parse_decimal(payload.get("rate", "0"), "rate")
    if kind == "LIMIT" and rate <= 0:
        raise InputError("rate: invalid")
    period = payload.get("period")
    if type(period) is not int or not 2 <= period <= 30:
        raise InputError("period: invalid")
    return NewOffer(type=str(kind), symbol=symbol, amount=amount, rate=rate, period=period,
                    flags=_int(payload, "flags", _MAX_INT32, 0) or 0)


def apply_update(order: WorkingOrder, request: OrderUpdate) -> WorkingOrder:
    """A copy of ``order`` with an ``ou`` request applied; InputError if the result is invalid."""
    remaining = order.amount
    if request.amount is not None:
        remaining = request.amount
    if request.delta is not None:
        remaining += request.delta
    if remaining == 0 or (remaining > 0) != order.buy:
        raise InputError("amount: invalid")
    if request.price_trailing is not None and order.kind != "TRAILING STOP":
        raise InputError("price_trailing: invalid")
    copy = attrs.evolve(order)
    copy.amount, copy.amount_orig = remaining, order.filled + remaining
    if request.price is not None and order.kind not in ("MARKET", "TRAILING STOP"):
        copy.price = request.price
    for name in ("price_aux_limit", "flags", "gid", "lev", "price_trailing", "mts_tif"):
        value = getattr(request, name)
        if value is not None:
            setattr(copy, name, value)
    return copy
