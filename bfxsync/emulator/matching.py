"""The matching engine: order inputs in, channel-0 frames out (pure; the caller holds the locks).

An incoming order takes liquidity from the symbol's public book (at its prices; the public
book itself is not changed) and from resting orders of every account, best price first
(resting account orders before public ones at one price). What is left of a limit order
rests; as the market moves, resting orders fill against public orders that cross them (as
makers) and stops trigger. Frames per input (docs: ws-auth-input; orders as seen live):

* accepted: ``n`` (``on-req`` SUCCESS, NOTIFY_INFO the order with its CID at index 2),
  ``on`` (ACTIVE), then the fills (see ``settlement.py``) and ``oc`` (``EXECUTED @ ...``,
  ``IOC CANCELED``, ...) or ``ou`` (``PARTIALLY FILLED @ ...``) when it rests;
* refused by the engine: ``n`` SUCCESS then ``oc`` with ``POSTONLY CANCELED``,
  ``FILLORKILL CANCELED`` or ``RSN_POS_NOTFOUND`` / ``RSN_POS_REDUCE_INCR`` (no ``on``);
* invalid or not enough balance: ``n`` ERROR only (``amount: invalid``, ``symbol: invalid``,
  ``Invalid order: not enough exchange balance for 1 BTCUSD at 30000``).

Stops wait without matching and trigger into a market order (STOP, TRAILING STOP) or a
limit order (STOP LIMIT) once the best price on their side reaches them. A trailing stop's
PRICE is its current stop: the best price seen since placement less (sells) or plus (buys)
PRICE_TRAILING; each move is an ``ou``. An OCO order (flag 16384) is its limit order plus a
stop leg at ``price_oco_stop``, each with the other's ID as PLACED_ID; a fill of either
(even partial), its cancellation or its expiry cancels the other. An order with ``tif`` shows
it as MTS_TIF and is cancelled (``oc`` CANCELED) at that time by :meth:`Exchange.expire`
(the emulator's clock thread calls it). ``contingent.py`` keeps track of both.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .accounts import (
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    ZERO,
    AccountLedger,
    WorkingOrder,
    notification,
    number_label,
    request_wire,
    split_pair,
    utc_date,
)
from .config import EmulatorConfig
from .contingent import Contingent, oco_leg, trail_stop
from .inputs import InputError, NewOrder, apply_update, parse_cid_date, parse_new_order, parse_update
from .market import Market
from .settlement import MARGIN_LEVERAGE, Batch, Out, Settler, is_derivative

__all__ = ["Exchange"]

# (price, amount available, the resting account order or None for the public book)
Liquidity = tuple[Decimal, Decimal, "WorkingOrder | None"]
_TAKE_ONCE = ("MARKET", "IOC", "FOK", "STOP")  # never rest: what is not filled at once is cancelled
_CLOSE_REASON = {"IOC": "IOC CANCELED", "FOK": "FILLORKILL CANCELED"}


def _user_id(key: str) -> int:
    return 1_000_000 + sum(key.encode()) * 97 % 8_999_999


class Exchange:
    """All accounts and their orders; every method returns the frames to deliver, in order."""

    def __init__(self, config: EmulatorConfig, market: Market,
                 on_timer: Callable[[], None] | None = None) -> None:
        self.market = market
        self.accounts = {a.key: AccountLedger(a, a.user_id or _user_id(a.key)) for a in config.accounts}
        rng = random.Random(f"trading:{config.seed}")
        self._order_ids = itertools.count(160_000_000_000 + rng.randrange(10_000_000))
        trade_ids = itertools.count(1_500_000_000 + rng.randrange(1_000_000))
        position_ids = itertools.count(170_000_000 + rng.randrange(1_000_000))
        self.offer_ids = itertools.count(3_000_000_000 + rng.randrange(1_000_000))
        # ``on_timer`` is told when an order gets a tif, so the clock calling expire() wakes for it.
        self._links = Contingent(self.accounts, on_timer)
        self.settler = Settler(self.accounts, market, config.maker_fee, config.taker_fee,
                               lambda: next(trade_ids), lambda: next(position_ids))

    # -- new orders ----------------------------------------------------------------------
    def place(self, key: str, payload: Any, mts: int) -> list[Out]:
        """``on``: validate, check the balance, then match (docs: ws-auth-input-order-new)."""
        account = self.accounts[key]
        try:
            request = parse_new_order(payload)
            self._check_symbol(request)
            if request.mts_tif is not None and request.mts_tif <= mts:
                # Unconfirmed: an expiry in the past is refused rather than placed and
                # cancelled at once (bfxsync's client refuses it before sending, too).
                raise InputError("tif: invalid")
            order = self._order(key, request, mts)
            self._check_balance(account, order)
        except InputError as exc:
            info = request_wire(payload if isinstance(payload, Mapping) else {})
            return [Out(key, "n", notification(mts, "on-req", info, "ERROR", str(exc)), "current")]
        base = split_pair(order.symbol)[0]
        side = "buy" if order.buy else "sell"
        text = f"Submitting {order.type.lower()} {side} order for {number_label(abs(order.amount))} {base}."
        refusal = self._refusal(account, order)
        # The leg exists (and is the PLACED_ID) before the notification is written.
        stop_leg = None
        if request.price_oco_stop is not None and refusal is None:
            stop_leg = oco_leg(order, next(self._order_ids), request.price_oco_stop, request.cid_oco)
        out = [Out(key, "n", notification(mts, "on-req", order.wire(), "SUCCESS", text), "current")]
        if refusal is not None:
            order.close(refusal)
            out.append(Out(key, "oc", order.wire()))
            return out
        for placed in (order, stop_leg):
            if placed is not None:
                account.orders[placed.id] = placed
                self._links.track(placed)
                out.append(Out(key, "on", placed.wire()))
        out.extend(self._start(order, mts))
        out.extend(self._oco_sweep(mts))  # this order may have filled an OCO leg, or be one
        if stop_leg is not None and stop_leg.id in account.orders:
            out.extend(self._start(stop_leg, mts))
            out.extend(self._oco_sweep(mts))
        return out

    def _start(self, order: WorkingOrder, mts: int) -> list[Out]:
        """A just-placed order: a stop waits (or triggers at once), anything else takes liquidity."""
        if order.waiting_stop:
            return self._trigger(order, mts) if self._stop_reached(order) else []
        return self._take(order, mts)

    def _check_symbol(self, request: NewOrder) -> None:
        market = self.market.symbols.get(request.symbol)
        if market is None or market.funding:
            raise InputError("symbol: invalid")
        if request.type.startswith("EXCHANGE ") and is_derivative(request.symbol):
            raise InputError("Invalid order: derivatives cannot be traded on exchange wallets")

    def _order(self, key: str, request: NewOrder, mts: int) -> WorkingOrder:
        lev = (request.lev or 10) if is_derivative(request.symbol) else None
        price = request.price
        if price is None:  # a market order shows the price it was estimated at
            book = self._liquidity_for(request.symbol, request.amount > 0)
            price = book[0][0] if book else self.settler.mid(request.symbol)
        order = WorkingOrder(id=next(self._order_ids), owner=key, symbol=request.symbol, type=request.type,
                             amount=request.amount, amount_orig=request.amount, price=price,
                             mts_create=mts, gid=request.gid, cid=request.cid, flags=request.flags,
                             price_aux_limit=request.price_aux_limit, lev=lev, meta=request.meta,
                             price_trailing=request.price_trailing, mts_tif=request.mts_tif)
        if order.price_trailing is not None:
            order.trail_anchor = self._best(order)
            if order.trail_anchor is None:
                raise InputError("Invalid order: no market price to trail")
            order.price = trail_stop(order)
        if request.price_oco_stop is not None:
            # The limit leg shows the pair's stop as PRICE_AUX_LIMIT (node-models reads it
            # there) and holds the balance for both legs (WorkingOrder.hold_price).
            order.price_aux_limit = request.price_oco_stop
        return order

    def _check_balance(self, account: AccountLedger, order: WorkingOrder, skip: int | None = None) -> None:
        """Exchange orders need the wallet; opening margin orders need tradable balance."""
        base, quote = split_pair(order.symbol)
        pair = order.symbol[1:]
        amount = abs(order.amount)
        if order.exchange:
            if order.amount > 0:
                need = self._cost(order) if order.kind == "MARKET" else amount * self._hold_price(order)
                short = need > account.available("exchange", quote, skip)
            else:
                short = amount > account.available("exchange", base, skip)
            if short:
                raise InputError(f"Invalid order: not enough exchange balance for {number_label(order.amount)} "
                                 f"{pair} at {number_label(self._hold_price(order))}")
            return
        position = account.positions.get(order.symbol)
        reducing = position is not None and (position.amount > 0) != (order.amount > 0) \
            and amount <= abs(position.amount)
        if reducing or order.flag(FLAG_REDUCE_ONLY):
            return
        lev = order.lev or MARGIN_LEVERAGE
        if amount * self._hold_price(order) > self.settler.tradable(account, quote, lev, skip):
            raise InputError(f"Invalid order: not enough tradable balance for {number_label(order.amount)} "
                             f"{pair} at {number_label(self._hold_price(order))}")

    @staticmethod
    def _hold_price(order: WorkingOrder) -> Decimal:
        return order.hold_price

    def _cost(self, order: WorkingOrder) -> Decimal:
        """What a market buy would pay, walking the book."""
        left, cost = abs(order.amount), ZERO
        for price, available, _ in self._liquidity(order):
            take = min(left, available)
            cost, left = cost + take * price, left - take
            if not left:
                break
        return cost + left * (order.price or ZERO)

    def _refusal(self, account: AccountLedger, order: WorkingOrder) -> str | None:
        """Why an accepted order is cancelled before it enters the book, if it is."""
        if order.flag(FLAG_REDUCE_ONLY) and not order.exchange:
            position = account.positions.get(order.symbol)
            if position is None:
                return "RSN_POS_NOTFOUND"
            if (position.amount > 0) == (order.amount > 0):
                return "RSN_POS_REDUCE_INCR"
        if order.waiting_stop:
            return None
        book = self._liquidity(order)
        if order.flag(FLAG_POST_ONLY) and book:
            return "POSTONLY CANCELED"
        if order.kind == "FOK":
            fillable = min(sum((a for _, a, _ in book), ZERO), self._cap(order))
            if fillable < abs(order.amount):
                return "FILLORKILL CANCELED"
        return None

    # -- matching ------------------------------------------------------------------------
    def _liquidity_for(self, symbol: str, buy: bool, exclude: int | None = None,
                       public_only: bool = False) -> list[Liquidity]:
        """Opposite liquidity for a buyer (``buy``) or a seller, best first."""
        entries: list[tuple[Decimal, int, int, Decimal, WorkingOrder | None]] = []
        market = self.market.symbols.get(symbol)
        if market is not None:
            for public in market.orders.values():
                if (public.amount < 0) == buy:
                    entries.append((public.price, 1, public.id, abs(public.amount), None))
        if not public_only:
            for account in self.accounts.values():
                for resting in account.orders.values():
                    if (resting.symbol == symbol and resting.buy != buy and resting.id != exclude
                            and resting.kind == "LIMIT" and resting.amount):
                        entries.append((resting.price or ZERO, 0, resting.id, abs(resting.amount), resting))
        entries.sort(key=lambda e: ((e[0] if buy else -e[0]), e[1], e[2]))
        return [(price, amount, resting) for price, _, _, amount, resting in entries]

    def _liquidity(self, order: WorkingOrder, public_only: bool = False) -> list[Liquidity]:
        """Liquidity ``order`` may take now: opposite side, within its limit."""
        limit = order.limit
        book = self._liquidity_for(order.symbol, order.buy, order.id, public_only)
        if limit is None:
            return book
        return [e for e in book if (e[0] <= limit if order.buy else e[0] >= limit)]

    def _cap(self, order: WorkingOrder) -> Decimal:
        """How much ``order`` may still fill: a reduce-only order stops at the position's size."""
        if not order.flag(FLAG_REDUCE_ONLY) or order.exchange:
            return abs(order.amount)
        position = self.accounts[order.owner].positions.get(order.symbol)
        if position is None or (position.amount > 0) == (order.amount > 0):
            return ZERO
        return min(abs(order.amount), abs(position.amount))

    def _take(self, order: WorkingOrder, mts: int) -> list[Out]:
        """Match ``order`` as a taker, then cancel, close or leave it resting."""
        batch = Batch()
        for price, available, resting in self._liquidity(order):
            quantity = min(available, self._cap(order))
            if resting is not None:
                quantity = min(quantity, self._cap(resting))
            if quantity <= 0:
                if not self._cap(order):
                    break
                continue
            sign = 1 if order.buy else -1
            self.settler.fill(order, price, sign * quantity, False, mts, batch, resting)
            if resting is not None:
                self.settler.fill(resting, price, -sign * quantity, True, mts, batch, order)
                self._settle_state(resting, batch)
        account = self.accounts[order.owner]
        if order.amount and order.kind in _TAKE_ONCE:
            order.close(_CLOSE_REASON.get(order.kind, "CANCELED"))
        if order.amount == 0 or order.kind in _TAKE_ONCE:
            account.orders.pop(order.id, None)
            batch.phase(order.owner, 1).append(Out(order.owner, "oc", order.wire()))
        elif order.history and batch.touched():
            batch.phase(order.owner, 1).append(Out(order.owner, "ou", order.wire()))
        return list(batch.flush(self.settler))

    def _settle_state(self, order: WorkingOrder, batch: Batch) -> None:
        """The ``ou``/``oc`` of a resting order that just filled."""
        tag = "ou"
        if order.amount == 0:
            self.accounts[order.owner].orders.pop(order.id, None)
            tag = "oc"
        batch.phase(order.owner, 1).append(Out(order.owner, tag, order.wire()))

    def _best(self, order: WorkingOrder) -> Decimal | None:
        """The best public price a stop of ``order``'s side watches: the ask for a buy, the bid for a sell."""
        book = self._liquidity_for(order.symbol, order.buy, public_only=True)
        return book[0][0] if book else None

    def _stop_reached(self, order: WorkingOrder) -> bool:
        """A buy stop triggers once the best ask reaches its price, a sell stop the best bid."""
        best = self._best(order)
        if best is None or order.price is None:
            return False
        return best >= order.price if order.buy else best <= order.price

    def _trail(self, order: WorkingOrder, mts: int) -> list[Out]:
        """Move a trailing stop after the market: a sell's stop rises with the best bid, a buy's falls with the ask.

        Each move is an ``ou`` with the new stop as PRICE (that the exchange announces every
        move is not documented; the official clients take PRICE from whatever ``ou`` comes).
        """
        best = self._best(order)
        if best is None or order.trail_anchor is None:
            return []
        if (best < order.trail_anchor) if order.buy else (best > order.trail_anchor):
            order.trail_anchor = best
            order.price, order.mts_update = trail_stop(order), mts
            return [Out(order.owner, "ou", order.wire())]
        return []

    def _watch_stop(self, order: WorkingOrder, mts: int) -> list[Out]:
        """A waiting stop after the market moved: trail it, then trigger it if reached."""
        out = self._trail(order, mts) if order.price_trailing is not None else []
        if self._stop_reached(order):
            out.extend(self._trigger(order, mts))
        return out

    def _trigger(self, order: WorkingOrder, mts: int) -> list[Out]:
        """A stop became a market order (STOP, TRAILING STOP) or a limit order at ``price_aux_limit`` (STOP LIMIT)."""
        prefix = "EXCHANGE " if order.exchange else ""
        order.type_prev, order.triggered, order.mts_update = order.type, True, mts
        if order.kind in ("STOP", "TRAILING STOP"):
            order.type = prefix + "MARKET"
        else:
            order.type, order.price = prefix + "LIMIT", order.price_aux_limit
        out = [Out(order.owner, "ou", order.wire())]
        out.extend(self._take(order, mts))
        return out

    # -- the market moved ----------------------------------------------------------------
    def on_tick(self, mts: int) -> list[Out]:
        """Trigger stops the market reached and fill resting orders public orders now cross."""
        out: list[Out] = []
        for account in self.accounts.values():
            for order in list(account.orders.values()):
                if order.id not in account.orders:
                    continue
                if order.waiting_stop:
                    out.extend(self._watch_stop(order, mts))
                else:
                    out.extend(self._fill_resting(order, mts))
                if order.placed_id is not None:
                    # Before the other leg's turn in this loop: the two never both execute.
                    out.extend(self._oco_sweep(mts))
        return out

    def _fill_resting(self, order: WorkingOrder, mts: int) -> list[Out]:
        """A resting limit order fills, as the maker at its own price, against crossing public orders."""
        if order.limit is None:
            return []
        batch = Batch()
        for _, available, _ in self._liquidity(order, public_only=True):
            quantity = min(available, self._cap(order))
            if quantity <= 0:
                break
            self.settler.fill(order, order.limit, quantity if order.buy else -quantity, True, mts, batch)
        if not batch.touched():
            return []
        self._settle_state(order, batch)
        return list(batch.flush(self.settler))

    # -- time in force and OCO pairs -------------------------------------------------------
    def expire(self, mts: int) -> list[Out]:
        """Cancel the orders whose ``tif`` is due by ``mts`` (``oc`` CANCELED).

        The docs give no status of its own for an expired order; the emulator writes the
        plain cancel status (``CANCELED``, or ``CANCELED was: PARTIALLY FILLED @ ...``).
        """
        out: list[Out] = []
        for order in self._links.due(mts):
            order.mts_update = mts
            out.extend(self._cancel(order, "CANCELED"))
        return out + self._oco_sweep(mts)

    @property
    def has_expiries(self) -> bool:
        """Whether any order (maybe closed since) has a tif; safe to read without the lock."""
        return self._links.has_expiries

    def next_expiry(self) -> int | None:
        """The earliest ``tif`` (ms) among open orders, or None."""
        return self._links.next_expiry()

    def _oco_sweep(self, mts: int) -> list[Out]:
        """Cancel every open OCO leg whose other leg closed or filled (even partly)."""
        out: list[Out] = []
        for leg in self._links.orphaned():
            leg.mts_update = mts
            out.extend(self._cancel(leg, "CANCELED"))
        return out

    # -- updates and cancels -------------------------------------------------------------
    def update(self, key: str, payload: Any, mts: int) -> list[Out]:
        """``ou``: change price, amount (or ``delta``), flags, ... in place (docs: ws-auth-input-order-update)."""
        account = self.accounts[key]
        info = request_wire(payload if isinstance(payload, Mapping) else {})
        try:
            request = parse_update(payload)
            order = account.orders.get(request.id)
            if order is None:
                raise InputError("Order not found.")
            if request.mts_tif is not None and request.mts_tif <= mts:
                raise InputError("tif: invalid")  # as for a new order
            changed = apply_update(order, request)
            self._check_balance(account, changed, skip=order.id)
        except InputError as exc:
            return [Out(key, "n", notification(mts, "ou-req", info, "ERROR", str(exc)), "current")]
        for name in ("price", "price_aux_limit", "amount", "amount_orig", "flags", "gid", "lev", "price_trailing",
                     "mts_tif"):
            setattr(order, name, getattr(changed, name))
        if order.price_trailing is not None and order.trail_anchor is not None:
            order.price = trail_stop(order)
        self._links.track(order)
        order.mts_update = mts
        side = "buy" if order.buy else "sell"
        text = f"Submitting update to {order.type.lower()} {side} order for {number_label(abs(order.amount))}."
        out = [Out(key, "n", notification(mts, "ou-req", order.wire(), "SUCCESS", text), "current"),
               Out(key, "ou", order.wire())]
        if order.waiting_stop:
            out.extend(self._watch_stop(order, mts))
        elif order.flag(FLAG_POST_ONLY) and self._liquidity(order):
            out.extend(self._cancel(order, "POSTONLY CANCELED"))
        else:
            out.extend(self._take(order, mts))
        return out + self._oco_sweep(mts)

    def cancel(self, key: str, payload: Any, mts: int) -> list[Out]:
        """``oc`` by ``id`` or by ``cid`` + ``cid_date`` (docs: ws-auth-input-order-cancel)."""
        info = request_wire(payload if isinstance(payload, Mapping) else {})
        try:
            orders = self._select(key, payload, single=True)
            if not orders:
                raise InputError("Order not found.")
        except InputError as exc:
            return [Out(key, "n", notification(mts, "oc-req", info, "ERROR", str(exc)), "current")]
        order = orders[0]
        text = f"Submitted for cancellation; waiting for confirmation (ID: {order.id})."
        out = [Out(key, "n", notification(mts, "oc-req", order.wire(), "SUCCESS", text), "current")]
        order.mts_update = mts
        return out + self._cancel(order, "CANCELED") + self._oco_sweep(mts)

    def cancel_multi(self, key: str, payload: Any, mts: int) -> list[Out]:
        """``oc_multi`` by ``id``, ``cid`` pairs, ``gid`` or ``all`` (docs: ws-auth-input-order-cancel-multi)."""
        try:
            orders = self._select(key, payload, single=False)
        except InputError as exc:
            return [Out(key, "n", notification(mts, "oc_multi-req", None, "ERROR", str(exc)), "current")]
        text = f"Submitting {len(orders)} order cancellations."
        out = [Out(key, "n", notification(mts, "oc_multi-req", [o.wire() for o in orders], "SUCCESS", text),
                   "current")]
        for order in orders:
            if order.id in self.accounts[key].orders:  # not already gone with its OCO leg
                order.mts_update = mts
                out.extend(self._cancel(order, "CANCELED"))
                out.extend(self._oco_sweep(mts))
        return out

    def cancel_all(self, key: str, mts: int) -> list[Out]:
        """The dead-man switch: every open order of the account, ``oc`` only (no notification)."""
        out: list[Out] = []
        for order in list(self.accounts[key].orders.values()):
            order.mts_update = mts
            out.extend(self._cancel(order, "CANCELED"))
        return out + self._oco_sweep(mts)

    def _cancel(self, order: WorkingOrder, reason: str) -> list[Out]:
        order.close(reason)
        self.accounts[order.owner].orders.pop(order.id, None)
        return [Out(order.owner, "oc", order.wire())]

    def _select(self, key: str, payload: Any, single: bool) -> list[WorkingOrder]:
        """The open orders an ``oc`` / ``oc_multi`` payload names (InputError if malformed)."""
        if not isinstance(payload, Mapping):
            raise InputError("input: invalid")
        orders = list(self.accounts[key].orders.values())
        if single:
            if "id" in payload:
                return [o for o in orders if o.id == payload["id"]]
            if "cid" in payload:
                day = parse_cid_date(payload.get("cid_date"))
                return [o for o in orders if o.cid == payload["cid"] and utc_date(o.mts_create) == day]
            raise InputError("id: invalid")
        if payload.get("all") == 1:
            return orders
        ids, gids, cids = payload.get("id"), payload.get("gid"), payload.get("cid")
        if isinstance(ids, list):
            return [o for o in orders if o.id in ids]
        if isinstance(gids, list):
            return [o for o in orders if o.gid is not None and o.gid in gids]
        if isinstance(cids, list):
            wanted = set()
            for pair in cids:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise InputError("cid: invalid")
                wanted.add((pair[0], parse_cid_date(pair[1])))
            return [o for o in orders if (o.cid, utc_date(o.mts_create)) in wanted]
        raise InputError("input: invalid")

