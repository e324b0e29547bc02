"""The emulator's book views: aggregation, windowing, diffs and checksums (pure).

A *view* is what one book subscription shows: the best ``len`` entries per side of one
symbol at one precision, bids and asks best-first, each entry exactly the wire array
(docs: ws-public-books, ws-public-raw-books). Subscribers receive the difference between the view they were last sent
and the current one, so a level that leaves the window arrives as a delete and one that
enters it as an add, which is what the live server does.

This representation is deliberately naive (plain dicts, ``sorted()``) and independent of
the client's order book, so tests compare two implementations rather than one with itself.
"""
from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import attrs

from bfxsync.protocol.checksum import CHECKSUM_DEPTH, book_checksum

from .wire import number_text

__all__ = ["SIG_FIGS", "BookView", "Order", "build_view", "diff_views", "view_checksum"]

#: Significant figures of each aggregated precision (docs: ws-public-books).
SIG_FIGS = {"P0": 5, "P1": 4, "P2": 3, "P3": 2, "P4": 1}

Entry = tuple[Any, ...]  # the wire array of one level or order, as a tuple
Keyed = tuple[Hashable, Entry]
Ranked = tuple[tuple[Any, ...], Hashable, Entry]  # (sort rank, key, entry), before windowing


@attrs.frozen
class Order:
    """One resting order (trading) or offer (funding); ``amount`` has its wire sign.

    Trading: amount > 0 is a bid. Funding: amount < 0 is a bid (borrower), > 0 an ask
    (lender), and ``period`` is the offer's days (2-30).
    """

    id: int
    price: Decimal
    amount: Decimal
    period: int | None = None


@attrs.frozen
class BookView:
    """Best-first ``(key, entry)`` pairs per side; ``key`` identifies the level on the wire.

    The key is the price for trading P books, ``(rate, period)`` for funding P books and the
    order/offer ID for R0 books.
    """

    bids: tuple[Keyed, ...]
    asks: tuple[Keyed, ...]

    def entries(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """``(bids, asks)`` as lists of wire entries."""
        return [list(e) for _, e in self.bids], [list(e) for _, e in self.asks]

    def snapshot(self) -> list[Entry]:
        """The snapshot payload: bids best-first, then asks best-first (docs: ws-public-books)."""
        return [e for _, e in self.bids] + [e for _, e in self.asks]


EMPTY_VIEW = BookView((), ())


def is_bid(order: Order, funding: bool) -> bool:
    """Side rule of the books (docs: ws-public-books): funding books invert the amount sign."""
    return order.amount < 0 if funding else order.amount > 0


# Remembered: every aggregated view rounds every order of its book, every tick, and the prices
# come from a small grid around the mid. Equal Decimals (1.0, 1.00) round to the same result.
@functools.lru_cache(maxsize=1 << 16)
def round_sig(value: Decimal, figures: int, down: bool) -> Decimal:
    """``value`` rounded to ``figures`` significant figures, toward the book's inside.

    Bids round down and asks round up, so a bid and an ask never share a level as long as
    the raw book is not crossed. (Bitfinex does not document its rounding direction.)
    """
    quantum = Decimal(1).scaleb(value.adjusted() - figures + 1)
    return value.quantize(quantum, rounding=ROUND_FLOOR if down else ROUND_CEILING)


def build_view(orders: Iterable[Order], funding: bool, prec: str, length: int) -> BookView:
    """The view of a book at precision ``prec`` limited to ``length`` entries per side."""
    if prec == "R0":
        return _raw_view(orders, funding, length)
    return _aggregated_view(orders, funding, SIG_FIGS[prec], length)


def _raw_view(orders: Iterable[Order], funding: bool, length: int) -> BookView:
    # R0: one entry per order; equal prices are ordered by ID ascending (docs: ws-websocket-checksum), which is
    # what the checksum depends on.
    bids: list[Ranked] = []
    asks: list[Ranked] = []
    for order in orders:
        bid = is_bid(order, funding)
        price, amount = float(order.price), float(order.amount)
        entry = (order.id, order.period, price, amount) if funding else (order.id, price, amount)
        rank = (-order.price if bid else order.price, order.id)
        (bids if bid else asks).append((rank, order.id, entry))
    return BookView(_window(bids, length), _window(asks, length))


def _aggregated_view(orders: Iterable[Order], funding: bool, figures: int, length: int) -> BookView:
    # Funding levels are identified by (rate, period): one rate can carry several periods
    # (docs: ws-public-books). Within one rate they are ordered by period ascending, as in the one real
    # funding snapshot seen; the server's tie-break is undocumented.
    levels: dict[tuple[bool, Decimal, int | None], list[Any]] = {}
    for order in orders:
        bid = order.amount < 0 if funding else order.amount > 0  # is_bid(), inlined: per order, per tick
        price = round_sig(order.price, figures, bid)
        level = levels.setdefault((bid, price, order.period if funding else None), [0, Decimal(0)])
        level[0] += 1
        level[1] += order.amount
    bids: list[Ranked] = []
    asks: list[Ranked] = []
    for (bid, price, period), (count, total) in levels.items():
        p, amount = float(price), float(total)
        if funding:
            key: Hashable = (p, period)
            entry: Entry = (p, period, count, amount)
            rank: tuple[Any, ...] = (-price if bid else price, period)
        else:
            key, entry, rank = p, (p, count, amount), (-price if bid else price,)
        (bids if bid else asks).append((rank, key, entry))
    return BookView(_window(bids, length), _window(asks, length))


def _window(ranked: list[Ranked], length: int) -> tuple[Keyed, ...]:
    ranked.sort(key=lambda item: item[0])
    return tuple((key, entry) for _, key, entry in ranked[:length])


def delete_entry(entry: Entry, bid: bool, funding: bool) -> Entry:
    """The wire entry removing ``key`` (docs: ws-public-books, ws-public-raw-books).

    The trailing ±1 names the side: trading 1 = bids, funding 1 = asks (amount-sign rule).
    """
    # entry[0] is the ID on R0 books and the price/rate on P books; entry[1] the period
    # on funding books. R0 funding [ID, PERIOD, 0, ±1]; P funding [RATE, PERIOD, 0, ±1].
    if funding:
        return (entry[0], entry[1], 0, -1 if bid else 1)
    # R0 trading [ID, 0, ±1]; P trading [PRICE, 0, ±1].
    return (entry[0], 0, 1 if bid else -1)


def diff_views(old: BookView, new: BookView, funding: bool) -> list[Entry]:
    """Updates turning ``old`` into ``new``: all deletes first, then adds and changes.

    Deletes go first so a client that caps its book at ``len`` never drops an add because
    the level it replaces is still there.
    """
    deletes: list[Entry] = []
    changes: list[Entry] = []
    for bid, before, after in ((True, old.bids, new.bids), (False, old.asks, new.asks)):
        after_map = dict(after)
        for key, entry in before:
            if key not in after_map:
                deletes.append(delete_entry(entry, bid, funding))
        before_map = dict(before)
        for key, entry in after:
            if before_map.get(key) != entry:
                changes.append(entry)
    return deletes + changes


def checksum_pairs(side: Sequence[Keyed]) -> list[tuple[str, str]]:
    """``(key, amount)`` text of the best 25 entries, exactly as written on the wire.

    ``entry[0]`` is the key the checksum wants: the price/rate on P books, the order/offer
    ID on R0 books (docs: ws-websocket-checksum); the amount is the last element, with its wire sign.
    """
    return [(number_text(entry[0]), number_text(entry[-1])) for _, entry in side[:CHECKSUM_DEPTH]]


def view_checksum(view: BookView) -> int:
    """The signed CRC-32 the server would send for ``view`` (docs: ws-websocket-checksum)."""
    return book_checksum(checksum_pairs(view.bids), checksum_pairs(view.asks))
