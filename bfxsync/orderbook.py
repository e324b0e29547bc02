"""Local order books kept from snapshots and updates, verified by checksum.

Shapes and checksum: https://docs.bitfinex.com/reference/ws-public-books,
ws-public-raw-books and https://docs.bitfinex.com/docs/ws-websocket-checksum.

One :class:`OrderBook` covers the four kinds a ``book`` subscription can have:

============  ========================  ===============  ================================
kind          entry on the wire         identity         removed when
============  ========================  ===============  ================================
P0-P4 trade   [PRICE, COUNT, AMOUNT]    price            COUNT == 0 (AMOUNT 1 bid, -1 ask)
P0-P4 fund    [RATE, PERIOD, COUNT, AM] (rate, period)   COUNT == 0 (AMOUNT 1 ask, -1 bid)
R0 trade      [ORDER_ID, PRICE, AMOUNT] order id         PRICE == 0
R0 fund       [OFFER_ID, PERIOD, RATE,  offer id         RATE == 0
              AMOUNT]
============  ========================  ===============  ================================

Trading bids have positive amounts; funding books invert the sign (bids are negative).
Rows are stored exactly as decoded from the frame, floats still as their wire text, so
the checksum is built from the server's own number text.

Threading: the book has one writer at a time and may be read from any thread. The book
itself takes no lock (it never sees a thread); whoever writes it must let only one
writer in at a time: bfxsync writes a subscription's book only under the lock of the
link that carries it (the reader's updates, and invalidations from the scheduler or a
user thread alike). Every write bumps a version counter before and after it, and
readers retry until they saw an even, unchanged version around their copy (a sequence
lock). Two unsynchronised writers would lose increments of that counter (``+=`` is not
atomic) and leave the book unreadable for good. Under the GIL a read of a few dozen
levels usually finishes within one thread switch, so retries are rare; but a busy writer
on a loaded machine can interrupt every attempt (seen on Python 3.9: 10,000 attempts in a
row failed). A reader that failed a few times therefore asks the writer: it queues the
read, and the writer runs it between two of its writes (when the version is even) and
hands the copy back. The writer checks that queue after each write, one truth test.
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Callable, Deque, Dict, Generic, List, Optional, Sequence, Tuple, TypeVar, Union, cast

from attrs import frozen

from .errors import ProtocolError
from .models import BookLevel, FundingBookLevel, RawBookOrder, RawFundingOffer
from .protocol.checksum import CHECKSUM_DEPTH, signed_crc32
from .protocol.constants import INT_LIMIT, is_funding

Level = Union[BookLevel, FundingBookLevel, RawBookOrder, RawFundingOffer]
_T = TypeVar("_T")
#: Optimistic reads before a reader asks the writer for its copy.
_OPTIMISTIC_READS = 20
#: How long a reader waits for the writer before it tries on its own again (a writer that
#: stopped writing leaves the book readable), and how long it tries in all.
_WRITER_WAIT = 0.05
_READ_DEADLINE = 10.0
_INT_LOW = -INT_LIMIT  # precomputed: negating a big int allocates one
#: What a book number may be once decoded: an int, a float's wire text, or a float
#: (NaN/Infinity literals; rejected as non-finite). ``bool`` is deliberately absent.
_NUMBER_TYPES = frozenset((int, str, float))

#: The context of :meth:`OrderBook.spread` and :meth:`OrderBook.mid`: its own, so a caller's
#: ``decimal.getcontext()`` changes nothing. 34 digits hold exactly the sum or difference of
#: two prices of at most 17 significant digits (a double's text) within 16 orders of magnitude
#: of each other; anything else rounds at the 34th digit, far finer than the float it becomes.
_EXACT = Context(prec=34, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _exact(token: Any) -> Decimal:
    """The exact value of a stored price token: an int, a float's wire text, or (a book fed
    by hand with ``json.loads`` floats) a finite float, taken by its shortest repr."""
    return Decimal(repr(token)) if type(token) is float else Decimal(token)


#: A validated book row: ``(row, sort key, is bid, is removal, price or rate, amount)``,
#: the last two already converted to float. The sort key makes ascending mean best first:
#: the signed price for aggregated trading books, else ``(signed price or rate, tie-breaker)``.
Entry = Tuple[List[Any], Any, bool, bool, float, float]


# Level models of validated entries (the values were checked by OrderBook._parse; tests
# compare every builder with the model's from_wire). attrs' frozen __init__ sets each field
# through object.__setattr__; trading books, the busiest, build a level for every update
# they deliver, so their builders set the slots through the descriptors instead (about
# 100 ns less per level).
_new = object.__new__


def _slot_setters(cls: type, *names: str) -> Tuple[Callable[[Any, Any], None], ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


_LEVEL = _slot_setters(BookLevel, "price", "count", "amount")
_RAW_ORDER = _slot_setters(RawBookOrder, "order_id", "price", "amount")


def _book_level(entry: Entry) -> BookLevel:
    set_price, set_count, set_amount = _LEVEL
    level = _new(BookLevel)
    set_price(level, entry[4])
    set_count(level, entry[0][1])
    set_amount(level, entry[5])
    return level


def _raw_book_order(entry: Entry) -> RawBookOrder:
    set_id, set_price, set_amount = _RAW_ORDER
    order = _new(RawBookOrder)
    set_id(order, entry[0][0])
    set_price(order, entry[4])
    set_amount(order, entry[5])
    return order


def _funding_book_level(entry: Entry) -> FundingBookLevel:
    row = entry[0]
    return FundingBookLevel(entry[4], row[1], row[2], entry[5])


def _raw_funding_offer(entry: Entry) -> RawFundingOffer:
    row = entry[0]
    return RawFundingOffer(row[0], row[1], entry[4], entry[5])


@frozen
class BookSnapshot:
    """A consistent copy of a book: both sides best-first, taken at one ``version``."""

    symbol: str
    precision: str
    bids: Tuple[Level, ...]
    asks: Tuple[Level, ...]
    checksum: int
    synced: bool
    version: int


class _Side:
    """One side of a book: rows by sort key, the sort keys in best-first order, and each row's checksum text.

    ``texts[i]`` is the ``"KEY:AMOUNT"`` text of the row at ``order[i]``, built from the
    row's wire tokens, or None until a checksum first needs it: a change to the row resets
    it. The texts are kept in book order beside the keys, so a checksum takes the best 25
    with one slice, joins ready-made strings for every level that did not change since the
    last one, and formats a level that changed many times between two checksums once at most.

    ``top_changed`` turns True when a change reaches the best :data:`CHECKSUM_DEPTH` rows (a
    row there replaced, inserted or removed); a change deeper in the book leaves the checksum
    as it was, which spares recomputing it (see OrderBook._checksum).
    """

    __slots__ = ("rows", "order", "texts", "_amount", "top_changed")

    def __init__(self, amount_index: int) -> None:
        self.rows: Dict[Any, List[Any]] = {}
        self.order: List[Any] = []
        self.texts: List[Optional[str]] = []
        self._amount = amount_index
        self.top_changed = True

    def put(self, key: Any, row: List[Any]) -> None:
        at = bisect_left(self.order, key)
        if key in self.rows:
            self.texts[at] = None
        else:
            self.order.insert(at, key)
            self.texts.insert(at, None)
        self.rows[key] = row
        if at < CHECKSUM_DEPTH:
            self.top_changed = True

    def pop(self, key: Any) -> Optional[List[Any]]:
        row = self.rows.pop(key, None)
        if row is not None:
            # Keys are finite (checked by OrderBook._parse), so ``order`` is totally ordered
            # and bisect finds exactly this key.
            at = bisect_left(self.order, key)
            del self.order[at]
            del self.texts[at]
            if at < CHECKSUM_DEPTH:
                self.top_changed = True
        return row

    def best(self, n: Optional[int]) -> List[List[Any]]:
        rows = self.rows
        return [rows[k] for k in (self.order if n is None else self.order[:n])]

    def best_text(self, n: int, keep: bool) -> List[str]:
        """The checksum texts of the best ``n`` rows; ``keep`` stores the ones it had to make.

        Only the writing thread may keep them: a reader on another thread could otherwise
        store the text of a row that the writer replaced meanwhile.
        """
        texts: List[Any] = self.texts[:n]  # None where a text is still to be made
        if None in texts:
            rows, order, amount = self.rows, self.order, self._amount
            store = self.texts
            for at, text in enumerate(texts):
                if text is None:
                    row = rows[order[at]]
                    # Tokens are a float's wire text (str) or an int: the server's own number text.
                    texts[at] = text = f"{row[0]}:{row[amount]}"
                    if keep:
                        store[at] = text
        return texts

    def clear(self) -> None:
        self.rows.clear()
        self.order.clear()
        self.texts.clear()
        self.top_changed = True


class _ReadRequest(Generic[_T]):
    """A read a reader thread asked the book's writer to run (see OrderBook._read)."""

    __slots__ = ("read", "done", "cancelled", "_result", "_error")

    def __init__(self, read: Callable[[], _T]) -> None:
        self.read = read
        self.done = threading.Event()
        self.cancelled = False
        self._result: Optional[_T] = None
        self._error: Optional[BaseException] = None

    def run(self) -> None:
        """Writer thread: run the read (no write can happen meanwhile) and wake the reader."""
        try:
            self._result = self.read()
        except Exception as error:  # the reader's to see, not the writer's
            self._error = error
        self.done.set()

    def outcome(self) -> _T:
        """Reader thread, after ``done``: the copy, or the read's own error."""
        if self._error is not None:
            raise self._error
        return cast(_T, self._result)


class OrderBook:
    """The local state of one book subscription.

    Args:
        symbol: ``tBTCUSD`` (trading) or ``fUSD`` (funding).
        precision: ``P0``-``P4`` (aggregated) or ``R0`` (raw).

    Sort keys make "ascending" mean "best first" on both sides: bids are keyed by the
    negated price/rate. Within one price, raw books order by id (the server's order,
    docs); funding levels at one rate order by period ascending (observed on the live
    server; the server's tie-break is undocumented).
    """

    def __init__(self, symbol: str, precision: str = "P0") -> None:
        self.symbol = symbol
        self.precision = precision
        self.is_funding = is_funding(symbol)
        self.is_raw = precision == "R0"
        self._width = 4 if self.is_funding else 3
        self._amount_index = self._width - 1
        #: Index of the field that orders the book (price or rate).
        self._price_index = (2 if self.is_funding else 1) if self.is_raw else 0
        self._positive_is_bid = not self.is_funding
        #: Aggregated trading books are keyed by the signed price alone; funding levels (rate,
        #: period) and raw entries (price, id) need a tie-breaker, so their keys are pairs.
        self._plain_keys = not self.is_funding and not self.is_raw
        self._model: Callable[[Sequence[Any]], Level] = (
            (RawFundingOffer if self.is_funding else RawBookOrder) if self.is_raw
            else (FundingBookLevel if self.is_funding else BookLevel)
        ).from_wire
        #: Builds the model of a validated entry from its already converted numbers.
        self.level: Callable[[Entry], Level] = (
            (_raw_funding_offer if self.is_funding else _raw_book_order) if self.is_raw
            else (_funding_book_level if self.is_funding else _book_level)
        )
        self._bids = _Side(self._amount_index)
        self._asks = _Side(self._amount_index)
        self._where: Dict[Any, Tuple[_Side, Any]] = {}  # raw books: id -> (side, sort key)
        self._version = 0
        self._synced = False
        #: The writer's last checksum, still right while neither side's top_changed (writer only).
        self._last_checksum = 0
        #: Reads the writer runs for readers its writes kept interrupting: readers append,
        #: the writer pops (both atomic deque operations; see _read).
        self._read_requests: Deque[_ReadRequest[Any]] = deque()

    # -- writing (one writer at a time) ----------------------------------------------

    def apply_snapshot(self, rows: Sequence[Any]) -> List[Entry]:
        """Replace the whole book with a snapshot; returns its validated entries (see :attr:`level`).

        Nothing changes if any row is malformed (ProtocolError).
        """
        if not isinstance(rows, list):
            raise ProtocolError(f"book snapshot is not a list: {rows!r:.200}")
        entries = [self._parse(row) for row in rows]
        self._version += 1
        try:
            self._clear()
            for entry in entries:
                self._place(entry)
            self._synced = True
        finally:
            self._version += 1
        if self._read_requests:
            self._serve_reads()
        return entries

    def apply_update(self, row: Any) -> Entry:
        """Apply one update row and return its validated entry; a malformed row raises ProtocolError and changes nothing.

        Deleting an entry the book does not hold is a no-op: it happens legitimately
        when a level leaves the subscribed window (node-models does the same).
        """
        entry = self._parse(row)
        self._version += 1
        try:
            self._place(entry)
        finally:
            self._version += 1
        if self._read_requests:
            self._serve_reads()
        return entry

    def apply_updates(self, rows: Sequence[Any]) -> List[Entry]:
        """Apply a batch of update rows (``BULK_UPDATES``) all or nothing; returns their entries.

        Every row is validated before the first one is applied, so a batch with one
        malformed row raises ProtocolError and leaves the book exactly as it was.
        """
        if type(rows) is not list:
            raise ProtocolError(f"book update batch is not a list: {rows!r:.200}")
        entries = [self._parse(row) for row in rows]
        self._version += 1
        try:
            for entry in entries:
                self._place(entry)
        finally:
            self._version += 1
        if self._read_requests:
            self._serve_reads()
        return entries

    def invalidate(self, clear: bool = False) -> None:
        """Mark the book unsynced (disconnect, checksum mismatch); ``clear`` also drops its rows."""
        self._version += 1
        try:
            self._synced = False
            if clear:
                self._clear()
        finally:
            self._version += 1
        if self._read_requests:
            self._serve_reads()

    def _clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._where.clear()

    def _parse(self, row: Any) -> Entry:
        """Validate a row and work out its :data:`Entry` before touching state.

        Nothing hostile reaches the book: the price/rate and amount must be finite numbers
        (an int, or a float's wire text; NaN, Infinity, ``1e999``, ints too large for a
        float, JSON booleans and anything else are rejected), and ids, counts and periods
        must be integers below ``INT_LIMIT`` (JSON integers, so never an exponent; the bound
        is two comparisons). A NaN or infinite sort key would break a side's order for good.
        Number texts need no length check: ``float()`` reads even a megabyte of digits in
        about a millisecond, linear in the frame's size like the JSON parse before it.
        """
        if type(row) is not list or len(row) < self._width:
            raise self._bad(row, "has the wrong shape")
        raw_price = row[self._price_index]
        raw_amount = row[self._amount_index]
        # bool is not in the set (type(True) is bool), so JSON true/false never pass as 1/0.
        if type(raw_price) not in _NUMBER_TYPES or type(raw_amount) not in _NUMBER_TYPES:
            raise self._bad(row, "is not numeric")
        try:
            price = float(raw_price)
            amount = float(raw_amount)
        except (ValueError, OverflowError):
            raise self._bad(row, "is not numeric") from None
        if price - price or amount - amount:  # nan for NaN and +-inf, 0.0 for every finite value
            raise self._bad(row, "is not finite")
        if self.is_raw:
            tie = row[0]  # order/offer id
            if type(tie) is not int or not _INT_LOW < tie < INT_LIMIT or (
                    self.is_funding and (type(row[1]) is not int or not _INT_LOW < row[1] < INT_LIMIT)):
                raise self._bad(row, "has a non-integer or out-of-range id or period")
            removal = price == 0
        else:
            count = row[self._width - 2]
            tie = row[1] if self.is_funding else 0  # funding period
            # Trading books: tie is 0, so ``tie and`` skips the period's range at once.
            if type(count) is not int or not 0 <= count < INT_LIMIT or type(tie) is not int or (
                    tie and not _INT_LOW < tie < INT_LIMIT):
                raise self._bad(row, "has a non-integer, negative or out-of-range count or period")
            removal = count == 0
        if not amount and not (removal and self.is_raw):
            raise self._bad(row, "has a zero amount, which names no side")
        is_bid = (amount > 0) == self._positive_is_bid
        signed = -price if is_bid else price
        return row, signed if self._plain_keys else (signed, tie), is_bid, removal, price, amount

    def _bad(self, row: Any, why: str) -> ProtocolError:
        return ProtocolError(f"book entry for {self.symbol} {self.precision} {why}: {row!r:.200}")

    def _place(self, entry: Entry) -> None:
        row, key, is_bid, removal, _, _ = entry
        if self.is_raw:
            where = self._where.pop(row[0], None)
            if where is not None:
                where[0].pop(where[1])
            if not removal:
                side = self._bids if is_bid else self._asks
                side.put(key, row)
                self._where[row[0]] = (side, key)
            return
        # Aggregated books: a delete carries AMOUNT +-1 only to name the side.
        side, other = (self._bids, self._asks) if is_bid else (self._asks, self._bids)
        if removal:
            side.pop(key)
            return
        # A price can only be on one side; drop a stale entry left on the other one (rare:
        # tested here so that the common case costs no call).
        mirror = -key if self._plain_keys else (-key[0], key[1])
        if mirror in other.rows:
            other.pop(mirror)
        side.put(key, row)

    # -- reading (any thread) -------------------------------------------------------

    def _read(self, read: Callable[[], _T]) -> _T:
        """Run ``read`` without a concurrent write: optimistically (sequence lock), then by the writer."""
        for _ in range(_OPTIMISTIC_READS):
            done, result = self._try_read(read)
            if done:
                return cast(_T, result)
            time.sleep(0)  # let the writer finish its step
        request: _ReadRequest[_T] = _ReadRequest(read)
        deadline = time.monotonic() + _READ_DEADLINE
        while True:
            self._read_requests.append(request)
            if request.done.wait(_WRITER_WAIT):
                return request.outcome()
            request.cancelled = True  # the writer skips it if it comes to it late
            # No write within the wait: the writer is idle, so an optimistic read succeeds now.
            done, result = self._try_read(read)
            if done:
                return cast(_T, result)
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read a consistent copy of book {self.symbol}")
            request = _ReadRequest(read)

    def _try_read(self, read: Callable[[], _T]) -> Tuple[bool, Any]:
        """(True, the result) when ``read`` ran with no write meanwhile, else (False, None)."""
        before = self._version
        if before & 1:
            return False, None
        try:
            result = read()
        except (RuntimeError, KeyError, IndexError):  # the writer changed a dict/list under us
            if self._version == before:
                raise  # no write happened meanwhile: not a race, so retrying cannot help
            return False, None
        return self._version == before, result

    def _serve_reads(self) -> None:
        """Writer, between two writes: run the reads queued by readers that kept being interrupted."""
        requests = self._read_requests
        while requests:
            request = requests.popleft()
            if not request.cancelled:
                request.run()

    @property
    def synced(self) -> bool:
        """True once a snapshot was applied and nothing has invalidated it since."""
        return self._synced

    @property
    def version(self) -> int:
        """A counter that grows with every change (even when the book is stable)."""
        return self._version

    def __len__(self) -> int:
        return self._read(lambda: len(self._bids.rows) + len(self._asks.rows))

    def bids(self, n: Optional[int] = None) -> Tuple[Level, ...]:
        """The best ``n`` bids (all if ``None``), best first."""
        rows = self._read(lambda: self._bids.best(n))
        return tuple(map(self._model, rows))

    def asks(self, n: Optional[int] = None) -> Tuple[Level, ...]:
        """The best ``n`` asks (all if ``None``), best first."""
        rows = self._read(lambda: self._asks.best(n))
        return tuple(map(self._model, rows))

    def top(self, n: int = 10) -> Tuple[Tuple[Level, ...], Tuple[Level, ...]]:
        """``(bids, asks)``, the best ``n`` of each side, read consistently together."""
        bids, asks = self._read(lambda: (self._bids.best(n), self._asks.best(n)))
        return tuple(map(self._model, bids)), tuple(map(self._model, asks))

    def best_bid(self) -> Optional[Level]:
        """The best bid, or ``None`` if the side is empty."""
        bids = self.bids(1)
        return bids[0] if bids else None

    def best_ask(self) -> Optional[Level]:
        """The best ask, or ``None`` if the side is empty."""
        asks = self.asks(1)
        return asks[0] if asks else None

    def _best_prices(self) -> Optional[Tuple[Decimal, Decimal]]:
        """The best bid's and best ask's price (or rate) as exact Decimals of their wire text."""
        bids, asks = self._read(lambda: (self._bids.best(1), self._asks.best(1)))
        if not bids or not asks:
            return None
        i = self._price_index
        return _exact(bids[0][i]), _exact(asks[0][i])

    def spread(self) -> Optional[float]:
        """Best ask minus best bid (price, or rate for funding), or ``None`` if a side is empty.

        Computed in decimal from the server's text of both prices, then returned as the
        nearest float, so it carries no binary artefact: 30000.3 - 30000.1 is ``0.2``
        (float arithmetic would give ``0.1999999999998181``). See :mod:`bfxsync.numbers`.
        """
        best = self._best_prices()
        return None if best is None else float(_EXACT.subtract(best[1], best[0]))

    def mid(self) -> Optional[float]:
        """The midpoint of best bid and best ask, or ``None`` if a side is empty.

        Exact like :meth:`spread`: the mid of 30000.1 and 30000.4 is ``30000.25``.
        """
        best = self._best_prices()
        return None if best is None else float(_EXACT.divide(_EXACT.add(best[0], best[1]), 2))

    def checksum(self) -> int:
        """The signed CRC-32 the server would send for the current state (docs: ws-websocket-checksum)."""
        return self._read(self._checksum)

    def checksum_from_writer(self) -> int:
        """:meth:`checksum` for the one thread that applies updates (it needs no read retries).

        Only that thread may call it: it also keeps the level texts it makes, for the next checksum.
        """
        return self._checksum(keep=True)

    def _checksum(self, keep: bool = False) -> int:
        # The text of protocol.checksum.checksum_text: the sides' "KEY:AMOUNT" texts of the best 25,
        # bid and ask interleaved, then the rest of the longer side. This runs on the reader thread
        # for every cs frame, so it is slicing and joins only, no call per token.
        # The writer (keep) remembers its last value: with no change among the best 25 of
        # either side since then (most updates of a deep book land further down), it stands.
        bid_side, ask_side = self._bids, self._asks
        if keep and not (bid_side.top_changed or ask_side.top_changed):
            return self._last_checksum
        bids = bid_side.best_text(CHECKSUM_DEPTH, keep)
        asks = ask_side.best_text(CHECKSUM_DEPTH, keep)
        both = min(len(bids), len(asks))
        parts: List[str] = [""] * (2 * both)
        parts[0::2] = bids[:both]
        parts[1::2] = asks[:both]
        parts += bids[both:] or asks[both:]
        value = signed_crc32(":".join(parts))
        if keep:
            self._last_checksum = value
            bid_side.top_changed = ask_side.top_changed = False
        return value

    def snapshot(self) -> BookSnapshot:
        """A consistent copy of the whole book with its checksum."""
        def read() -> Tuple[List[List[Any]], List[List[Any]], int, bool, int]:
            return (self._bids.best(None), self._asks.best(None), self._checksum(),
                    self._synced, self._version)
        bids, asks, checksum, synced, version = self._read(read)
        return BookSnapshot(self.symbol, self.precision, tuple(map(self._model, bids)),
                            tuple(map(self._model, asks)), checksum, synced, version)

    def __repr__(self) -> str:
        return f"<OrderBook {self.symbol} {self.precision} synced={self._synced} levels={len(self)}>"
