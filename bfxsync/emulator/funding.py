"""Funding offers (``fon`` / ``foc``) and ``calc`` answers (pure; the caller holds the locks).

Offers are accepted, tracked and cancelled, but never matched: no funding trades, credits
or loans come of them (``fcs`` and ``fls`` snapshots stay empty). A lending offer (amount
> 0) holds that much of the funding wallet (docs: ws-auth-input-offer-new, -offer-cancel).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .accounts import ZERO, FundingOffer, notification, number_label
from .inputs import InputError, parse_new_offer
from .matching import Exchange
from .settlement import Out

__all__ = ["MAX_CALC", "calc", "cancel_offer", "new_offer"]

#: Requests answered per ``calc`` batch (docs: ws-auth-input-calc); the rest are ignored.
MAX_CALC = 30


def new_offer(exchange: Exchange, key: str, payload: Any, mts: int) -> list[Out]:
    """``fon``: ``n`` (``fon-req``) then ``fon`` (ACTIVE), or ``n`` ERROR."""
    account = exchange.accounts[key]
    try:
        request = parse_new_offer(payload)
        currency = request.symbol[1:]
        if request.amount > 0 and request.amount > account.available("funding", currency):
            raise InputError(f"Invalid offer: not enough funding balance for {number_label(request.amount)} "
                             f"{currency}")
    except InputError as exc:
        info = _offer_request_wire(payload)
        return [Out(key, "n", notification(mts, "fon-req", info, "ERROR", str(exc)), "current")]
    offer = FundingOffer(id=next(exchange.offer_ids), owner=key, symbol=request.symbol, type=request.type,
                         amount=request.amount, rate=request.rate, period=request.period, mts_create=mts,
                         flags=request.flags)
    account.offers[offer.id] = offer
    text = (f"Submitting funding offer of {number_label(abs(offer.amount))} {currency} at "
            f"{number_label(offer.rate)} for {offer.period} days.")
    return [Out(key, "n", notification(mts, "fon-req", offer.wire(), "SUCCESS", text), "current"),
            Out(key, "fon", offer.wire())]


def cancel_offer(exchange: Exchange, key: str, payload: Any, mts: int) -> list[Out]:
    """``foc`` by ``id``: ``n`` (``foc-req``) then ``foc`` (CANCELED), or ``n`` ERROR."""
    offers = exchange.accounts[key].offers
    offer_id = payload.get("id") if isinstance(payload, Mapping) else None
    offer = offers.pop(offer_id, None) if type(offer_id) is int else None
    if offer is None:
        info = _offer_request_wire(payload)
        return [Out(key, "n", notification(mts, "foc-req", info, "ERROR", "Offer not found."), "current")]
    text = f"Submitted for cancellation; waiting for confirmation (ID: {offer.id})."
    out = [Out(key, "n", notification(mts, "foc-req", offer.wire(), "SUCCESS", text), "current")]
    offer.status, offer.mts_update = "CANCELED", mts
    out.append(Out(key, "foc", offer.wire()))
    return out


def _offer_request_wire(payload: Any) -> list[Any]:
    fields = payload if isinstance(payload, Mapping) else {}
    wire: list[Any] = [None] * 21
    for index, name in ((0, "id"), (1, "symbol"), (4, "amount"), (6, "type"), (9, "flags"), (14, "rate"),
                        (15, "period")):
        wire[index] = fields.get(name)
    return wire


def calc(exchange: Exchange, key: str, payload: Any, conn: int) -> list[Out]:
    """``calc``: answers as ``bu``, ``miu``, ``fiu``, ``pu`` and ``wu`` to the asking connection.

    Requests (docs: ws-auth-input-calc): ``balance``, ``margin_base``, ``margin_sym_<SYMBOL>``,
    ``funding_sym_<SYMBOL>``, ``position_<SYMBOL>``, ``wallet_<TYPE>_<CURRENCY>``. Unknown
    ones, and positions or wallets the account does not have, get no answer. The answers
    carry account sequence 0, as observed live.
    """
    if not isinstance(payload, list):
        return []
    settler, account = exchange.settler, exchange.accounts[key]
    out: list[Out] = []

    def answer(tag: str, body: Any) -> None:
        out.append(Out(key, tag, body, "zero", conn))

    for item in payload[:MAX_CALC]:
        name = item[0] if isinstance(item, list) and item and isinstance(item[0], str) else ""
        if name == "balance":
            answer("bu", settler.balance(key))
        elif name == "margin_base":
            answer("miu", settler.margin_base(key))
        elif name.startswith("margin_sym_") and name[11:] in exchange.market.symbols and name[11] == "t":
            answer("miu", settler.margin_symbol(key, name[11:]))
        elif name.startswith("funding_sym_") and name[12:13] == "f":
            answer("fiu", ["sym", name[12:], [ZERO, ZERO, 0, 0]])
        elif name.startswith("position_") and name[9:] in account.positions:
            position = account.positions[name[9:]]
            answer("pu", position.wire(settler.mid(position.symbol)))
        elif name.startswith("wallet_") and name.count("_") >= 2:
            wallet_type, currency = name[7:].split("_", 1)
            if (wallet_type, currency) in account.wallets:
                answer("wu", account.wallet_wire((wallet_type, currency), available=True))
    return out
