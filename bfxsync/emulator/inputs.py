"""Channel-0 input payloads: parsing and validation (pure; docs: ws-auth-input).

Decimals should arrive as decimal strings (``"0.001"``); JSON numbers are accepted too (the
official clients send strings; a lenient emulator helps hand-written tests). Exponent
strings (``"1e-4"``) are refused with ``amount: invalid``, as the live server does. Every
refusal raises :class:`InputError`, whose text becomes the ERROR notification's TEXT.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from .accounts import WorkingOrder

__all__ = ["ORDER_TYPES", "InputError", "apply_update", "NewOffer", "NewOrder", "OrderUpdate", "parse_decimal",
           "parse_new_offer", "parse_new_order", "parse_update"]

#: Order types the engine executes (docs: ws-auth-input-order-new). Trailing stops are not emulated.
ORDER_TYPES = frozenset(prefix + kind for prefix in ("", "EXCHANGE ")
                        for kind in ("LIMIT", "MARKET", "STOP", "STOP LIMIT", "IOC", "FOK"))
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


def _int(payload: Mapping[str, Any], name: str, maximum: int, default: int | None = None) -> int | None:
    value = payload.get(name, default)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= maximum:
        raise InputError(f"{name}: invalid")
    return value


@attrs.frozen
class NewOrder:
    """A validated ``on`` payload. ``price`` is the stop price of STOP / STOP LIMIT."""

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


def parse_new_order(payload: Any) -> NewOrder:
    """Validate an ``on`` payload (symbol existence and balances are checked by the engine)."""
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
    if bare != "MARKET" and (price is None or price <= 0):
        raise InputError("price: invalid")
    aux = _optional_decimal(payload, "price_aux_limit")
    if bare == "STOP LIMIT" and (aux is None or aux <= 0):
        raise InputError("price_aux_limit: invalid")
    lev = _int(payload, "lev", 100)
    if lev is not None and lev < 1:
        raise InputError("lev: invalid")
    meta = payload.get("meta")
    return NewOrder(type=kind, symbol=symbol, amount=amount, price=price if bare != "MARKET" else None,
                    price_aux_limit=aux if bare == "STOP LIMIT" else None,
                    gid=_int(payload, "gid", _MAX_INT32), cid=_int(payload, "cid", _MAX_CID),
                    flags=_int(payload, "flags", _MAX_INT32, 0) or 0, lev=lev,
                    meta=dict(meta) if isinstance(meta, Mapping) else {})


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
    return OrderUpdate(id=order_id, price=price, amount=amount, delta=_optional_decimal(payload, "delta"),
                       price_aux_limit=_optional_decimal(payload, "price_aux_limit"),
                       flags=_int(payload, "flags", _MAX_INT32), gid=_int(payload, "gid", _MAX_INT32),
                       lev=_int(payload, "lev", 100))


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
    copy = attrs.evolve(order)
    copy.amount, copy.amount_orig = remaining, order.filled + remaining
    if request.price is not None and order.kind != "MARKET":
        copy.price = request.price
    for name in ("price_aux_limit", "flags", "gid", "lev"):
        value = getattr(request, name)
        if value is not None:
            setattr(copy, name, value)
    return copy
