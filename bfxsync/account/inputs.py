"""Builders of channel-0 inputs (pure; docs: ws-auth-input, order-new, flag-values).

Each builder checks its arguments *before* anything is sent and raises ``ValueError`` saying
what is wrong; on success it returns ``(frame, ref)``: the whole input ``[0, tag, None, payload]``
(ready for ``json.dumps``) and a :class:`RequestRef` describing how to recognise the answer
(the ``<tag>-req`` notification, then ``on``/``ou``/``oc``/``te``...).

Money arguments (amounts, prices, rates) accept ``int``, ``float``, ``str`` or ``Decimal`` and go
on the wire as plain decimal strings (``"0.001"``, ``"30000"``): the server refuses JSON numbers
and exponents. A float is taken by its shortest ``repr``, so a price read from a book, a ticker
or a trade is sent exactly as the server wrote it; NaN, infinities and ``bool`` are refused.
The whole policy, with its bounds, is in :mod:`bfxsync.numbers`.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from attrs import frozen

from ..numbers import Number
from ._checks import (
    MAX_GID,
    _cid_date,
    _cids,
    _clean,
    _decimal,
    _int,
    _ints,
    _lev,
    _meta,
    _money,
    _now_ms,
    _plain,
    _symbol,
    _tif,
)
from ._wire import date_of_ms

__all__ = [
    "CLOSE", "FUNDING_OFFER_TYPES", "HIDDEN", "MAX_CALC_REQUESTS", "MAX_MULTI_OPS", "NO_VAR_RATES", "OCO",
    "ORDER_TYPES", "POST_ONLY", "REDUCE_ONLY", "Frame", "Money", "RequestRef", "calc", "cancel_funding_offer",
    "cancel_order", "cancel_orders", "cid_date_of", "new_funding_offer", "new_order", "order_multi_op",
    "update_order",
]

#: The order types (docs: order-new). ``EXCHANGE ...`` trade the exchange (spot) wallet; the others margin.
ORDER_TYPES = (
    "LIMIT", "EXCHANGE LIMIT", "MARKET", "EXCHANGE MARKET", "STOP", "EXCHANGE STOP", "STOP LIMIT",
    "EXCHANGE STOP LIMIT", "TRAILING STOP", "EXCHANGE TRAILING STOP", "FOK", "EXCHANGE FOK", "IOC", "EXCHANGE IOC",
)
FUNDING_OFFER_TYPES = ("LIMIT", "FRRDELTAVAR", "FRRDELTAFIX")

# Order flags (docs: flag-values); sum them.
HIDDEN = 64
CLOSE = 512
REDUCE_ONLY = 1024
POST_ONLY = 4096
OCO = 16384
NO_VAR_RATES = 524288
_KNOWN_FLAGS = HIDDEN | CLOSE | REDUCE_ONLY | POST_ONLY | OCO | NO_VAR_RATES

#: Operations per ``ox_multi`` frame (the official node client's batch size; the WS limit is not documented).
MAX_MULTI_OPS = 15
#: Requests per ``calc`` frame (docs: calc).
MAX_CALC_REQUESTS = 30
_MULTI_OP_TAGS = ("on", "oc", "ou", "oc_multi")

Frame = List[Any]
#: An amount, price or rate: ``int``, ``float`` (by its shortest repr), ``str`` or ``Decimal``.
Money = Number

_TRADING = re.compile(r"t[A-Z0-9]+(?::[A-Z0-9]+)?")
_FUNDING = re.compile(r"f[A-Z0-9]+")
_CALC = re.compile(
    r"balance|margin_base|margin_sym_t[A-Z0-9]+(?::[A-Z0-9]+)?|position_t[A-Z0-9]+(?::[A-Z0-9]+)?"
    r"|funding_sym_f[A-Z0-9]+|wallet_(?:exchange|margin|funding)_[A-Z0-9]+"
)


@frozen
class RequestRef:
    """How to recognise the answers to one input.

    Attributes:
        tag: the input tag (``on``, ``ou``, ``oc``, ``oc_multi``, ``ox_multi``, ``calc``, ``fon``, ``foc``);
            its notification has type ``<tag>-req``.
        cid, cid_date: the client id and its UTC date (new orders, cancel by cid).
        ids: the order or offer ids the input names. gids: the group ids.
        cids: ``(cid, cid_date)`` pairs of a cancel-by-cid ``oc_multi``.
        symbol: the symbol of a new order or offer. all: ``oc_multi`` with ``all``.
        ops: the references of the operations of an ``ox_multi``, in order.
    """

    tag: str
    cid: Optional[int] = None
    cid_date: Optional[str] = None
    ids: Tuple[int, ...] = ()
    gids: Tuple[int, ...] = ()
    cids: Tuple[Tuple[int, str], ...] = ()
    symbol: Optional[str] = None
    all: bool = False
    ops: Tuple["RequestRef", ...] = ()

    @property
    def notification_type(self) -> str:
        """The TYPE of the notification that answers this input (``on-req``, ...)."""
        return f"{self.tag}-req"

    @property
    def id(self) -> Optional[int]:
        """The one id this input names, or None."""
        return self.ids[0] if len(self.ids) == 1 else None

    @property
    def gid(self) -> Optional[int]:
        """The one group id this input names, or None."""
        return self.gids[0] if len(self.gids) == 1 else None


def _flags(flags: Any) -> int:
    checked = _int(flags, "flags", low=0)
    if checked & ~_KNOWN_FLAGS:
        raise ValueError(f"flags {checked} has unknown bits {checked & ~_KNOWN_FLAGS}; use the documented flag values")
    return checked


def cid_date_of(cid_ms: int) -> str:
    """The UTC date ``YYYY-MM-DD`` of a millisecond cid (or any ms timestamp)."""
    return date_of_ms(_int(cid_ms, "cid_ms", low=0))


def new_order(
    symbol: str, amount: Money, price: Optional[Money] = None, type: str = "EXCHANGE LIMIT", *,
    cid: Optional[int] = None, gid: Optional[int] = None, flags: int = 0, hidden: bool = False,
    post_only: bool = False, reduce_only: bool = False, close: bool = False, oco_stop_price: Optional[Money] = None,
    no_var_rates: bool = False, lev: Optional[int] = None, tif: Union[datetime, str, None] = None,
    price_trailing: Optional[Money] = None, price_aux_limit: Optional[Money] = None,
    meta: Optional[Mapping[str, Any]] = None, now_ms: Optional[int] = None,
) -> Tuple[Frame, RequestRef]:
    """A new order ``on`` (docs: order-new).

    Args:
        symbol: a trading symbol (``tBTCUSD``, ``tBTCF0:USTF0``). amount: > 0 buys, < 0 sells.
        price: required except for MARKET and TRAILING STOP types; the stop price of STOP and STOP LIMIT.
        type: one of :data:`ORDER_TYPES`.
        cid: client id; when None, one unique in this process and, with overwhelming probability, across
            processes on one key (see ``_CidSource``).
        gid: group id (1 to 2**31-1). flags: sum of flag values; the booleans add their flag.
        oco_stop_price: the stop price of a one-cancels-other pair (sets :data:`OCO`).
        lev: leverage 1-100, derivatives (``F0:``) only. tif: auto-cancel time (datetime or UTC string).
        price_trailing: TRAILING STOP distance. price_aux_limit: STOP LIMIT limit price.
        meta: extra object (``{"aff_code": ...}``, ``{"make_visible": 1}``).
        now_ms: the current time in ms (default: the clock), for the cid and its date.
    """
    _symbol(symbol, _TRADING, "trading")
    if type not in ORDER_TYPES:
        raise ValueError(f"type must be one of {', '.join(ORDER_TYPES)}; got {type!r}")
    now = _now_ms(now_ms)
    is_market = type.endswith("MARKET")
    payload: Dict[str, Any] = {}
    if gid is not None:
        payload["gid"] = _int(gid, "gid", high=MAX_GID)
    payload["cid"] = None if cid is None else _int(cid, "cid")  # generated last: a refused order uses no cid
    payload.update(type=type, symbol=symbol, amount=_money(amount, "amount"))
    if price is not None:
        payload["price"] = _money(price, "price", positive=True)
    elif not is_market and not type.endswith("TRAILING STOP"):  # a trailing stop's price follows the market
        raise ValueError(f"price is required for {type} orders (only MARKET and TRAILING STOP orders go without)")
    if lev is not None:
        if "F0:" not in symbol:
            raise ValueError(f"lev applies to derivatives only (symbols with F0:), not {symbol}")
        payload["lev"] = _lev(lev)
    if (price_trailing is not None) != type.endswith("TRAILING STOP"):
        raise ValueError("price_trailing is required for, and only for, TRAILING STOP orders")
    if price_trailing is not None:
        payload["price_trailing"] = _money(price_trailing, "price_trailing", positive=True)
    if (price_aux_limit is not None) != type.endswith("STOP LIMIT"):
        raise ValueError("price_aux_limit is required for, and only for, STOP LIMIT orders")
    if price_aux_limit is not None:
        payload["price_aux_limit"] = _money(price_aux_limit, "price_aux_limit", positive=True)
    all_flags = _flags(flags)
    for wanted, bit in ((hidden, HIDDEN), (post_only, POST_ONLY), (reduce_only, REDUCE_ONLY), (close, CLOSE),
                        (oco_stop_price is not None, OCO), (no_var_rates, NO_VAR_RATES)):
        all_flags |= bit if wanted else 0
    if all_flags & POST_ONLY and is_market:
        raise ValueError("post_only cannot apply to a MARKET order (it always takes)")
    if all_flags & OCO and oco_stop_price is None:
        raise ValueError("an OCO order needs oco_stop_price")
    if oco_stop_price is not None:
        payload["price_oco_stop"] = _money(oco_stop_price, "oco_stop_price", positive=True)
    if all_flags:
        payload["flags"] = all_flags
    if tif is not None:
        payload["tif"] = _tif(tif, now)
    if meta is not None:
        payload["meta"] = _meta(meta)
    if cid is None:
        payload["cid"] = _cids.next()
    ref = RequestRef("on", cid=payload["cid"], cid_date=date_of_ms(now), gids=(gid,) if gid is not None else (),
                     symbol=symbol)
    return [0, "on", None, payload], ref


def update_order(
    id: int, *, price: Optional[Money] = None, amount: Optional[Money] = None, delta: Optional[Money] = None,
    cid: Optional[int] = None, cid_date: Union[str, date, None] = None, gid: Optional[int] = None,
    lev: Optional[int] = None, price_aux_limit: Optional[Money] = None, price_trailing: Optional[Money] = None,
    flags: Optional[int] = None, tif: Union[datetime, str, None] = None,
) -> Tuple[Frame, RequestRef]:
    """Change an order in place ``ou``: ``amount`` is the new remaining amount, ``delta`` adds to it (not both)."""
    payload: Dict[str, Any] = {"id": _int(id, "id")}
    if (cid is None) != (cid_date is None):
        raise ValueError("cid and cid_date go together")
    if cid is not None:
        payload["cid"] = _int(cid, "cid")
        payload["cid_date"] = _cid_date(cid_date)
    if gid is not None:
        payload["gid"] = _int(gid, "gid", high=MAX_GID)
    if amount is not None and delta is not None:
        raise ValueError("give amount (the new remaining amount) or delta (added to it), not both")
    for name, value in (("amount", amount), ("delta", delta)):
        if value is not None:
            payload[name] = _money(value, name)
    for name, value in (("price", price), ("price_aux_limit", price_aux_limit), ("price_trailing", price_trailing)):
        if value is not None:
            payload[name] = _money(value, name, positive=True)
    if lev is not None:
        payload["lev"] = _lev(lev)
    if flags is not None:
        payload["flags"] = _flags(flags)
    if tif is not None:
        payload["tif"] = _tif(tif, _now_ms(None))
    if len(payload) == 1:
        raise ValueError("nothing to update: give at least one of price, amount, delta, lev, flags, tif, ...")
    ref = RequestRef("ou", cid=payload.get("cid"), cid_date=payload.get("cid_date"), ids=(payload["id"],),
                     gids=(gid,) if gid is not None else ())
    return [0, "ou", None, payload], ref


def cancel_order(id: Optional[int] = None, *, cid: Optional[int] = None,
                 cid_date: Union[str, date, None] = None) -> Tuple[Frame, RequestRef]:
    """Cancel one order ``oc``, by ``id`` or by ``cid`` with its UTC creation date ``cid_date``."""
    if id is not None:
        if cid is not None or cid_date is not None:
            raise ValueError("cancel by id or by cid + cid_date, not both")
        payload: Dict[str, Any] = {"id": _int(id, "id")}
        return [0, "oc", None, payload], RequestRef("oc", ids=(payload["id"],))
    if cid is None or cid_date is None:
        raise ValueError("give the order id, or both cid and cid_date")
    payload = {"cid": _int(cid, "cid"), "cid_date": _cid_date(cid_date)}
    return [0, "oc", None, payload], RequestRef("oc", cid=payload["cid"], cid_date=payload["cid_date"])


def cancel_orders(ids: Optional[Sequence[int]] = None, cids: Optional[Sequence[Any]] = None,
                  gids: Optional[Sequence[int]] = None, all: bool = False) -> Tuple[Frame, RequestRef]:
    """Cancel several orders ``oc_multi``: by ``ids``, ``cids`` ((cid, cid_date) pairs), ``gids``, or ``all``.

    ``all=True`` cancels every trading and derivatives order of the account.
    """
    given = [name for name, value in (("ids", ids), ("cids", cids), ("gids", gids)) if value is not None]
    if all:
        given.append("all")
    if len(given) != 1:
        raise ValueError(f"give exactly one of ids, cids, gids or all=True (got {', '.join(given) or 'none'})")
    if ids is not None:
        checked = _ints(ids, "ids")
        return [0, "oc_multi", None, {"id": checked}], RequestRef("oc_multi", ids=tuple(checked))
    if gids is not None:
        checked = _ints(gids, "gids", high=MAX_GID)
        return [0, "oc_multi", None, {"gid": checked}], RequestRef("oc_multi", gids=tuple(checked))
    if cids is not None:
        if isinstance(cids, (str, bytes)) or not isinstance(cids, Sequence) or not cids:
            raise ValueError(f"cids must be a non-empty list of (cid, cid_date) pairs, got {cids!r}")
        pairs = []
        for i, pair in enumerate(cids):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"cids[{i}] must be a (cid, cid_date) pair, got {pair!r}")
            pairs.append((_int(pair[0], f"cids[{i}] cid"), _cid_date(pair[1])))
        return [0, "oc_multi", None, {"cid": [list(p) for p in pairs]}], RequestRef("oc_multi", cids=tuple(pairs))
    return [0, "oc_multi", None, {"all": 1}], RequestRef("oc_multi", all=True)


def _ref_of(tag: str, payload: Mapping[str, Any]) -> RequestRef:
    """A best-effort reference for a raw ``(tag, payload)`` operation."""
    def many(key: str) -> Tuple[int, ...]:
        value = payload.get(key)
        items = value if isinstance(value, list) else [value] if value is not None else []
        return tuple(v for v in items if isinstance(v, int) and not isinstance(v, bool))
    cid = payload.get("cid") if isinstance(payload.get("cid"), int) else None
    cid_date = payload.get("cid_date") if isinstance(payload.get("cid_date"), str) else None
    return RequestRef(tag, cid=cid, cid_date=cid_date, ids=many("id"), gids=many("gid"), all=bool(payload.get("all")))


def order_multi_op(ops: Sequence[Any]) -> Tuple[Frame, RequestRef]:
    """Several order operations in one ``ox_multi`` frame (at most :data:`MAX_MULTI_OPS`).

    Each op is a ``(tag, payload)`` pair with tag ``on``, ``oc``, ``ou`` or ``oc_multi``, or what
    :func:`new_order`, :func:`update_order`, :func:`cancel_order` or :func:`cancel_orders` returned
    (the ``(frame, ref)`` pair, or the frame alone). The result's ``ref.ops`` lists each op's reference.
    """
    if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence) or not ops:
        raise ValueError("ops must be a non-empty list of operations")
    if len(ops) > MAX_MULTI_OPS:
        raise ValueError(f"at most {MAX_MULTI_OPS} operations per ox_multi, got {len(ops)}; split them")
    wire: List[List[Any]] = []
    refs: List[RequestRef] = []
    for i, op in enumerate(ops):
        ref: Optional[RequestRef] = None
        if isinstance(op, tuple) and len(op) == 2 and isinstance(op[1], RequestRef):
            op, ref = op
        if isinstance(op, list) and len(op) == 4 and op[0] == 0 and op[2] is None:
            tag, payload = op[1], op[3]
        elif isinstance(op, (tuple, list)) and len(op) == 2:
            tag, payload = op
        else:
            raise ValueError(f"ops[{i}] must be a (tag, payload) pair or a builder's result, got {op!r:.200}")
        if tag not in _MULTI_OP_TAGS:
            raise ValueError(f"ops[{i}]: tag must be one of {', '.join(_MULTI_OP_TAGS)}, got {tag!r}")
        if not isinstance(payload, Mapping) or not payload:
            raise ValueError(f"ops[{i}]: payload must be a non-empty mapping, got {payload!r:.200}")
        clean = _clean(payload, f"ops[{i}]")
        wire.append([tag, clean])
        refs.append(ref if ref is not None else _ref_of(tag, clean))
    return [0, "ox_multi", None, wire], RequestRef("ox_multi", ops=tuple(refs))


def calc(requests: Sequence[str]) -> Tuple[Frame, RequestRef]:
    """Ask the server to compute values ``calc`` (docs: calc); answers come as ``wu``, ``pu``, ``miu``, ``fiu``, ``bu``.

    Each request is ``balance``, ``margin_base``, ``margin_sym_<tSYMBOL>``, ``funding_sym_<fSYMBOL>``,
    ``position_<tSYMBOL>`` or ``wallet_<exchange|margin|funding>_<CCY>``; at most
    :data:`MAX_CALC_REQUESTS`. The server computes at most 8 a second per client.
    """
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence) or not requests:
        raise ValueError("requests must be a non-empty list of strings")
    if len(requests) > MAX_CALC_REQUESTS:
        raise ValueError(f"at most {MAX_CALC_REQUESTS} calc requests per frame, got {len(requests)}")
    for i, request in enumerate(requests):
        if not isinstance(request, str) or not _CALC.fullmatch(request):
            raise ValueError(
                f"requests[{i}] {request!r} is not a calc request: use balance, margin_base, margin_sym_<tSYMBOL>, "
                "funding_sym_<fSYMBOL>, position_<tSYMBOL> or wallet_<exchange|margin|funding>_<CCY>")
    return [0, "calc", None, [[r] for r in requests]], RequestRef("calc")


def new_funding_offer(symbol: str, amount: Money, rate: Money, period: int, type: str = "LIMIT",
                      hidden: bool = False) -> Tuple[Frame, RequestRef]:
    """A new funding offer ``fon`` (docs: ws-auth-input): ``period`` 2-30 days.

    ``rate`` is the daily rate for LIMIT, the delta from FRR for FRRDELTAVAR/FRRDELTAFIX. The docs
    say ``amount`` > 0 lends ("buy") and < 0 borrows.
    """
    if type not in FUNDING_OFFER_TYPES:
        raise ValueError(f"type must be one of {', '.join(FUNDING_OFFER_TYPES)}; got {type!r}")
    payload: Dict[str, Any] = {
        "type": type, "symbol": _symbol(symbol, _FUNDING, "funding"), "amount": _money(amount, "amount"),
        "rate": _money(rate, "rate", positive=True) if type == "LIMIT" else _plain(_decimal(rate, "rate")),
        "period": _int(period, "period", low=2, high=30),
        "flags": HIDDEN if hidden else 0,
    }
    return [0, "fon", None, payload], RequestRef("fon", symbol=symbol)


def cancel_funding_offer(id: int) -> Tuple[Frame, RequestRef]:
    """Cancel a funding offer ``foc``."""
    checked = _int(id, "id")
    return [0, "foc", None, {"id": checked}], RequestRef("foc", ids=(checked,))
