"""What the engine keeps beside the book: expiry times, OCO pairs, trailing stops (pure).

Docs: ws-auth-input-order-new names ``tif`` (an auto-cancel time), ``price_oco_stop`` with
flag 16384 (one-cancels-other) and ``price_trailing`` (a TRAILING STOP's distance);
ws-auth-orders shows them as MTS_TIF, PLACED_ID and PRICE_TRAILING. The exchange's exact
conduct is not documented; the emulator's is in ``matching.py``. This module only tracks:
the caller (``Exchange``, under the trading lock) cancels what it reports.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from .accounts import AccountLedger, WorkingOrder

__all__ = ["Contingent", "oco_leg", "trail_stop"]


def trail_stop(order: WorkingOrder) -> Decimal:
    """A trailing stop's stop price: its anchor (best price seen) less the distance for a sell, plus for a buy."""
    if order.trail_anchor is None or order.price_trailing is None:
        raise ValueError(f"order {order.id} is not a trailing stop")
    distance = order.price_trailing
    return order.trail_anchor + distance if order.buy else order.trail_anchor - distance


def oco_leg(order: WorkingOrder, leg_id: int, stop_price: Decimal, cid: int | None) -> WorkingOrder:
    """The stop leg of OCO ``order`` (same side, amount, group, flags and tif), linked both ways by PLACED_ID."""
    prefix = "EXCHANGE " if order.exchange else ""
    leg = WorkingOrder(id=leg_id, owner=order.owner, symbol=order.symbol, type=prefix + "STOP",
                       amount=order.amount, amount_orig=order.amount, price=stop_price,
                       mts_create=order.mts_create, gid=order.gid, cid=cid, flags=order.flags, lev=order.lev,
                       meta=dict(order.meta), mts_tif=order.mts_tif, placed_id=order.id)
    order.placed_id = leg.id
    return leg


class Contingent:
    """Open orders with a tif and open OCO legs, by ID, so neither check walks every order.

    Entries of orders closed meanwhile are dropped lazily. ``on_timer`` is called whenever
    an expiry time is set, so the clock that calls :meth:`due` can plan its next wake-up.
    """

    def __init__(self, accounts: dict[str, AccountLedger], on_timer: Callable[[], None] | None) -> None:
        self._accounts = accounts
        self._expiring: dict[int, WorkingOrder] = {}
        self._oco: dict[int, WorkingOrder] = {}
        self._on_timer = on_timer

    def _open(self, order: WorkingOrder) -> bool:
        return order.id in self._accounts[order.owner].orders

    def track(self, order: WorkingOrder) -> None:
        """Watch a new or updated order if it has a tif or is an OCO leg."""
        if order.placed_id is not None:
            self._oco[order.id] = order
        if order.mts_tif is not None:
            self._expiring[order.id] = order
            if self._on_timer is not None:
                self._on_timer()

    @property
    def has_expiries(self) -> bool:
        """Whether any watched order (maybe closed since) has a tif; safe to read without the lock."""
        return bool(self._expiring)

    def next_expiry(self) -> int | None:
        """The earliest tif (ms) among open orders, or None."""
        times = [o.mts_tif for o in self._expiring.values() if o.mts_tif is not None and self._open(o)]
        return min(times) if times else None

    def due(self, mts: int) -> list[WorkingOrder]:
        """The open orders whose tif is ``mts`` or earlier, earliest first; they stop being watched."""
        due: list[WorkingOrder] = []
        for order in sorted(self._expiring.values(), key=lambda o: (o.mts_tif or 0, o.id)):
            if not self._open(order):
                del self._expiring[order.id]
            elif order.mts_tif is not None and order.mts_tif <= mts:
                del self._expiring[order.id]
                due.append(order)
        return due

    def orphaned(self) -> list[WorkingOrder]:
        """Open OCO legs whose other leg closed or filled (even partly); such a pair stops being watched.

        The leg that filled stays open (a partly filled limit keeps resting); only the
        other one is returned, to be cancelled.
        """
        orphans: list[WorkingOrder] = []
        for leg in list(self._oco.values()):
            if leg.id not in self._oco or (self._open(leg) and not leg.filled):
                continue  # already settled with its pair in this pass, or still undecided
            del self._oco[leg.id]
            other = self._oco.pop(leg.placed_id, None) if leg.placed_id is not None else None
            if other is not None and self._open(other):
                orphans.append(other)
        return orphans
