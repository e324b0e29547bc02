"""The account as channel 0 describes it (pure; docs: ws-auth-orders ... ws-auth-notifications).

Threading: :class:`AccountState` has a single writer, the connection's reader thread, which
calls :meth:`AccountState.apply` (and :meth:`~AccountState.reset`). Readers on any thread call
:meth:`AccountState.snapshot`. The writer changes its own dicts in place, one key per update
under a short lock, so an order event costs the same whatever the account's size. A reader
gets a frozen :class:`AccountSnapshot`, built under the same lock from copies of the maps
that changed since the last one and cached until the next change (copy on read): readers pay
for the copies, at most once per change, and never see half an update.

Bad input never throws good data away. A snapshot row that cannot be read is skipped and
counted, the other rows are kept, and the snapshot's tag is recorded in
:attr:`AccountSnapshot.damaged`; so is the tag of an update that cannot be read (its order,
position, ... may now be stale). Damaged state is the cue to re-authenticate for fresh
snapshots (:mod:`bfxsync.account.repair`).

Orders that leave the open set are kept, newest last, in a bounded list of closed orders
(:attr:`AccountSnapshot.closed_orders`) with their final status: the ``oc`` says how each
ended. An order that was open before a reconnect and is missing from the fresh ``os``
snapshot closed unseen: it is listed with its status unknown (None), never a guessed one.
The closed orders are history: a reset (re-authentication) keeps them.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Hashable,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from attrs import frozen

from ..errors import ProtocolError
from ._checks import _cid_date, _int
from .models import (
    AccountFundingTrade,
    BalanceInfo,
    ClosedOrder,
    FundingCredit,
    FundingInfo,
    FundingLoan,
    FundingOffer,
    MarginInfo,
    Notification,
    Order,
    Position,
    SymbolMarginInfo,
    UserTrade,
    Wallet,
)

__all__ = ["BAD_ROWS", "MAX_CLOSED_ORDERS", "SNAPSHOT_TAGS", "STREAMS", "AccountSnapshot", "AccountState"]

logger = logging.getLogger("bfxsync")

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")
_EMPTY: Mapping[Any, Any] = MappingProxyType({})

#: Tags whose payload is a list of rows that replaces the stream's state (an empty list clears it).
SNAPSHOT_TAGS = frozenset({"os", "ps", "ws", "fos", "fcs", "fls"})

#: The counter of unreadable snapshot rows, in :attr:`AccountState.counts` (and ``Client.stats()``).
BAD_ROWS = "account_bad_rows"

#: How many closed orders the account keeps by default (``Config.max_closed_orders``); older ones are forgotten.
MAX_CLOSED_ORDERS = 1000

#: Stream names :meth:`AccountState.apply` returns, besides ``"unknown"``.
STREAMS = (
    "orders", "positions", "trades", "funding_trades", "wallets", "balance", "margin", "funding_info",
    "funding_offers", "funding_credits", "funding_loans", "notifications",
)


@frozen
class AccountSnapshot:
    """A consistent, read-only view of the account at one moment.

    Attributes:
        orders: open orders by id.
        positions: open positions by symbol.
        wallets: wallets by ``(wallet_type, currency)``.
        funding_offers / funding_credits / funding_loans: by id.
        balance: the last ``bu``; margin: the last base ``miu``; None until received.
        symbol_margin: the last ``miu`` sym per trading symbol; funding_info: the last ``fiu`` per currency.
        snapshots_received: the snapshot tags (``os``, ``ps``, ``ws``, ``fos``, ``fcs``, ``fls``) received
            since the last reset; inputs should wait for ``ws`` (docs: ws-auth-input).
        damaged: tags of the frames since the last reset that had rows that could not be read
            (``os`` when one row of the orders snapshot was bad, ``ou`` for an unreadable order
            update, ...). The readable rows are here; the others are missing or stale until fresh
            snapshots replace them. Empty when the state is whole.
        closed_orders: the most recently closed orders by id, oldest close first
            (:class:`~bfxsync.account.models.ClosedOrder`: the final row, the exchange's final
            status or None when it is unknown, the close time). At most
            ``Config.max_closed_orders`` (default :data:`MAX_CLOSED_ORDERS`); kept across
            reconnects. :meth:`closed_order` finds one by id or by cid.
    """

    orders: Mapping[int, Order] = _EMPTY
    positions: Mapping[str, Position] = _EMPTY
    wallets: Mapping[Tuple[str, str], Wallet] = _EMPTY
    funding_offers: Mapping[int, FundingOffer] = _EMPTY
    funding_credits: Mapping[int, FundingCredit] = _EMPTY
    funding_loans: Mapping[int, FundingLoan] = _EMPTY
    balance: Optional[BalanceInfo] = None
    margin: Optional[MarginInfo] = None
    symbol_margin: Mapping[str, SymbolMarginInfo] = _EMPTY
    funding_info: Mapping[str, FundingInfo] = _EMPTY
    snapshots_received: FrozenSet[str] = frozenset()
    damaged: FrozenSet[str] = frozenset()
    closed_orders: Mapping[int, ClosedOrder] = _EMPTY

    def open_orders(self, symbol: Optional[str] = None) -> Tuple[Order, ...]:
        """Open orders (of ``symbol`` when given), oldest first."""
        found = [o for o in self.orders.values() if symbol is None or o.symbol == symbol]
        return tuple(sorted(found, key=lambda o: (o.mts_create, o.id)))

    def wallet(self, wallet_type: str, currency: str) -> Optional[Wallet]:
        """The wallet ``(wallet_type, currency)``, or None."""
        return self.wallets.get((wallet_type, currency))

    def closed_order(self, order_id: Optional[int] = None, *, cid: Optional[int] = None,
                     cid_date: Any = None) -> Optional[ClosedOrder]:
        """The recently closed order with id ``order_id``, or with ``cid`` and ``cid_date`` (its UTC creation
        date, a ``date`` or ``"YYYY-MM-DD"``); None when it is not among :attr:`closed_orders`.

        By cid, the newest close matching both wins (a cid is unique per day on the exchange).

        Raises:
            ValueError: neither an id nor both cid and cid_date, or both.
        """
        key = closed_key(order_id, cid, cid_date)
        if isinstance(key, int):
            return self.closed_orders.get(key)
        return next((c for c in reversed(tuple(self.closed_orders.values())) if _cid_key(c) == key), None)


def closed_key(order_id: Optional[int], cid: Optional[int], cid_date: Any) -> Union[int, Tuple[int, str]]:
    """How a closed order is looked up: its id, or ``(cid, cid_date)``; ValueError for anything else."""
    if order_id is not None:
        if cid is not None or cid_date is not None:
            raise ValueError("look an order up by id or by cid + cid_date, not both")
        return _int(order_id, "order_id")
    if cid is None or cid_date is None:
        raise ValueError("give the order id, or both cid and cid_date")
    return (_int(cid, "cid"), _cid_date(cid_date))


def _cid_key(closed: ClosedOrder) -> Optional[Tuple[int, str]]:
    """``(cid, cid_date)`` of a closed order; None without a cid or with a creation time no date has."""
    if closed.cid is None:
        return None
    try:
        return (closed.cid, closed.cid_date)
    except (ValueError, OverflowError):
        return None


def _one(tag: str, payload: Any) -> Sequence[Any]:
    if not isinstance(payload, (list, tuple)):
        raise ProtocolError(f"'{tag}' payload must be a list, got {payload!r:.200}", raw=repr(payload)[:500])
    return payload


#: Keyed streams: tag prefix -> (stream name, which is also the AccountSnapshot attribute; parser; key).
_KEYED: Dict[str, Tuple[str, Callable[[Any], Any], Callable[[Any], Hashable]]] = {
    "o": ("orders", Order.from_wire, lambda m: m.id),
    "p": ("positions", Position.from_wire, lambda m: m.symbol),
    "fo": ("funding_offers", FundingOffer.from_wire, lambda m: m.id),
    "fc": ("funding_credits", FundingCredit.from_wire, lambda m: m.id),
    "fl": ("funding_loans", FundingLoan.from_wire, lambda m: m.id),
}
#: tag -> (prefix, action): "s" snapshot, "n"/"u" upsert, "c" remove.
_KEYED_TAGS = {
    prefix + action: (prefix, action)
    for prefix in _KEYED
    for action in ("s", "n", "u", "c")
}
#: The AccountSnapshot attributes that are mappings, kept as dicts by the writer (reset empties them).
_MAPS = ("orders", "positions", "wallets", "funding_offers", "funding_credits", "funding_loans", "symbol_margin",
         "funding_info")
#: The other AccountSnapshot attributes, with their values after a reset.
_EMPTY_VALUES: Mapping[str, Any] = MappingProxyType(
    {"balance": None, "margin": None, "snapshots_received": frozenset(), "damaged": frozenset()})


class AccountState:
    """Channel-0 state: orders, positions, wallets, funding, balance and margin.

    Not thread-safe for writers: exactly one thread (the reader) calls :meth:`apply` and
    :meth:`reset`. Any thread may call :meth:`snapshot`.

    Args:
        counts: where to count unreadable snapshot rows (key :data:`BAD_ROWS`); the client
            passes the dict behind ``Client.stats()``.
        max_closed: how many closed orders to keep (the oldest close is forgotten first).
    """

    def __init__(self, counts: Optional[Dict[str, int]] = None, max_closed: int = MAX_CLOSED_ORDERS) -> None:
        #: Counters; written by the writer only.
        self.counts: Dict[str, int] = counts if counts is not None else {}
        self.counts.setdefault(BAD_ROWS, 0)
        #: The bound of the closed orders (set before the writer starts; read by the writer).
        self.max_closed = _int(max_closed, "max_closed")
        #: Called by the writer, outside the lock, with each close it records (the engine wakes
        #: the waits for it); never user code.
        self.on_close: Optional[Callable[[ClosedOrder], None]] = None
        # Guards the writer's dicts against a reader copying them, and the cached snapshot.
        # Held for one dict operation by the writer, for the copies by a reader: each copy is
        # one C call that holds the GIL throughout, so the lock makes the writer wait no longer
        # than the GIL already would. ``_snap`` is also read without it (one attribute read:
        # a snapshot, possibly one write old, never a torn one).
        self._lock = threading.Lock()
        self._maps: Dict[str, Dict[Any, Any]] = {name: {} for name in _MAPS}
        self._values: Dict[str, Any] = dict(_EMPTY_VALUES)
        self._frozen: Dict[str, Mapping[Any, Any]] = dict.fromkeys(_MAPS, _EMPTY)  # the last copies readers got
        self._dirty: Set[str] = set()  # maps changed since their last copy
        self._snap: Optional[AccountSnapshot] = AccountSnapshot()  # None once something changed
        # The closed orders, oldest close first, and their (cid, cid_date) index: written by the
        # writer under the lock, outlive resets. Their snapshot copy is made like the maps'.
        self._closed: "collections.OrderedDict[int, ClosedOrder]" = collections.OrderedDict()
        self._closed_by_cid: Dict[Tuple[int, str], int] = {}
        self._closed_copy: Mapping[int, ClosedOrder] = _EMPTY
        self._closed_dirty = False
        # Orders open when the state was last reset, whose fate the next ``os`` tells (writer only).
        self._orphans: Dict[int, Order] = {}

    def snapshot(self) -> AccountSnapshot:
        """The current view; immutable, so it stays consistent while the writer moves on.

        Costs one copy of each mapping that changed since the previous call (about 1 ms for
        50,000 orders); nothing when nothing changed.
        """
        snap = self._snap
        if snap is not None:
            return snap
        with self._lock:
            snap = self._snap
            if snap is None:
                for name in self._dirty:
                    self._frozen[name] = MappingProxyType(dict(self._maps[name]))
                self._dirty.clear()
                if self._closed_dirty:
                    self._closed_copy = MappingProxyType(dict(self._closed))
                    self._closed_dirty = False
                fields: Dict[str, Any] = {**self._frozen, **self._values, "closed_orders": self._closed_copy}
                snap = self._snap = AccountSnapshot(**fields)
            return snap

    @property
    def snapshots_received(self) -> FrozenSet[str]:
        """:attr:`AccountSnapshot.snapshots_received` now, without building a snapshot."""
        return self._values["snapshots_received"]  # type: ignore[no-any-return]

    @property
    def damaged(self) -> FrozenSet[str]:
        """:attr:`AccountSnapshot.damaged` now, without building a snapshot (any thread)."""
        return self._values["damaged"]  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Forget the live state (before re-authenticating: the fresh snapshots rebuild it).

        The closed orders stay. The open orders are remembered until the next ``os``: those
        it no longer holds closed meanwhile, with an unknown status.
        """
        with self._lock:
            self._orphans.update(self._maps["orders"])
            self._maps = {name: {} for name in _MAPS}
            self._values = dict(_EMPTY_VALUES)
            self._frozen = dict.fromkeys(_MAPS, _EMPTY)
            self._dirty.clear()
            self._snap = None

    def find_closed(self, order_id: Optional[int] = None, *, cid: Optional[int] = None,
                    cid_date: Any = None) -> Optional[ClosedOrder]:
        """As :meth:`AccountSnapshot.closed_order`, on the live state without building a snapshot (any thread)."""
        key = closed_key(order_id, cid, cid_date)
        with self._lock:
            if not isinstance(key, int):
                found = self._closed_by_cid.get(key)
                if found is None:
                    return None
                key = found
            return self._closed.get(key)

    def apply(self, tag: str, payload: Any) -> Tuple[str, Tuple[Any, ...], bool]:
        """Apply one channel-0 message ``[0, tag, payload]``.

        Returns:
            ``(stream, models, is_snapshot)``: the stream name (one of :data:`STREAMS`), the parsed
            models (every readable row of a snapshot, else one) and whether the message was a snapshot.
            Unknown tags (``hos``, ``mis``, ``uac``, ...) give ``("unknown", (), False)`` and change nothing.
            ``te``/``tu``, ``fte``/``ftu`` and ``n`` are parsed and returned but not stored.

        A snapshot's unreadable rows are skipped, counted (:data:`BAD_ROWS`, the first one
        logged) and its tag added to :attr:`AccountSnapshot.damaged`; the readable rows replace
        the stream as usual.

        Raises:
            ProtocolError: a malformed payload (an update, or a snapshot that is not a list).
                Nothing else changes, but a stored stream's tag is added to ``damaged``: the
                row it should have changed may now be stale.
        """
        keyed = _KEYED_TAGS.get(tag)
        if keyed is not None:
            prefix, action = keyed
            stream, parse, key = _KEYED[prefix]
            if action == "s":
                models = self._snapshot_rows(tag, payload, parse)
                items = {key(model): model for model in models}
                gone = self._gone(payload, items) if tag == "os" else []
                self._replace(tag, stream, items, gone)
                return stream, models, True
            model = self._parse(tag, parse, payload)
            if tag == "oc":
                self._close(ClosedOrder.from_oc(model))
            else:
                self._put(stream, key(model), None if action == "c" else model)
            return stream, (model,), False
        if tag == "ws":
            wallets = self._snapshot_rows(tag, payload, Wallet.from_wire)
            self._replace(tag, "wallets", {wallet.key: wallet for wallet in wallets})
            return "wallets", wallets, True
        if tag == "wu":
            wallet = self._parse(tag, Wallet.from_wire, payload)
            self._put("wallets", wallet.key, wallet)
            return "wallets", (wallet,), False
        if tag in ("te", "tu"):
            return "trades", (UserTrade.from_wire(payload),), False
        if tag in ("fte", "ftu"):
            return "funding_trades", (AccountFundingTrade.from_wire(payload),), False
        if tag == "n":
            return "notifications", (Notification.from_wire(payload),), False
        if tag == "bu":
            balance = BalanceInfo.from_wire(payload)
            self._set("balance", balance)
            return "balance", (balance,), False
        if tag == "miu":
            return self._margin(payload)
        if tag == "fiu":
            info = FundingInfo.from_wire(payload)
            self._put("funding_info", info.symbol, info)
            return "funding_info", (info,), False
        return "unknown", (), False

    # -- the writer's steps ------------------------------------------------------------------

    def _snapshot_rows(self, tag: str, payload: Any, parse: Callable[[Any], _V]) -> Tuple[_V, ...]:
        """The readable rows of a snapshot; the others are counted and mark the tag damaged."""
        try:
            rows = _one(tag, payload)
        except ProtocolError:
            self._damage(tag)
            raise
        models: List[_V] = []
        first: Optional[ProtocolError] = None
        for row in rows:
            try:
                models.append(parse(row))
            except ProtocolError as err:
                first = first or err
        bad = len(rows) - len(models)
        if first is not None:
            self.counts[BAD_ROWS] += bad
            if self.counts[BAD_ROWS] == bad:  # the first bad rows of this client: logged, later ones counted
                logger.warning("bfxsync: account snapshot '%s': %d of %d rows unreadable, kept the others and "
                               "asking for fresh snapshots (later ones are counted in Client.stats()[%r]): %s",
                               tag, bad, len(rows), BAD_ROWS, first)
            self._damage(tag)
        return tuple(models)

    def _parse(self, tag: str, parse: Callable[[Any], _V], payload: Any) -> _V:
        """An update of a stored stream; an unreadable one marks the tag damaged and raises."""
        try:
            return parse(payload)
        except ProtocolError:
            self._damage(tag)
            raise

    def _damage(self, tag: str) -> None:
        with self._lock:
            self._values["damaged"] = self._values["damaged"] | {tag}
            self._snap = None

    def _replace(self, tag: str, name: str, items: Dict[Any, Any], gone: Sequence[ClosedOrder] = ()) -> None:
        """Replace a stream with a snapshot's rows; the orders it closed are listed in the same step."""
        with self._lock:
            self._maps[name] = items
            self._values["snapshots_received"] = self._values["snapshots_received"] | {tag}
            self._dirty.add(name)
            self._snap = None
            recorded = [closed for closed in gone if self._record(closed)]
        self._tell(recorded)

    def _put(self, name: str, key: Any, value: Any) -> None:
        """Set (or, for None, remove) one entry of a map."""
        with self._lock:
            items = self._maps[name]
            if value is not None:
                items[key] = value
            elif items.pop(key, None) is None:
                return  # removing what was never there changes nothing
            self._dirty.add(name)
            self._snap = None

    def _gone(self, rows: Iterable[Any], items: Mapping[Any, Any]) -> List[ClosedOrder]:
        """The orders open before this ``os`` (or before the reset that preceded it) that it no longer
        holds, as closes of unknown status. A row too bad to read still keeps its id's order open."""
        before, self._orphans = {**self._orphans, **self._maps["orders"]}, {}
        if not before:
            return []
        present = {row[0] for row in rows if isinstance(row, list) and row and type(row[0]) is int} | items.keys()
        noticed = int(time.time() * 1000)
        return [ClosedOrder.unseen(order, noticed) for oid, order in before.items()
                if oid not in present and oid not in self._closed]

    def _close(self, closed: ClosedOrder) -> None:
        """An ``oc``: the order leaves the open orders and joins the closed ones, in one step for readers.

        It may never have been open here (filled at once, with no ``on``; or placed by
        another connection before this one's snapshot): it is listed all the same.
        """
        with self._lock:
            if self._maps["orders"].pop(closed.id, None) is not None:
                self._dirty.add("orders")
                self._snap = None
            recorded = self._record(closed)
        self._tell([closed] if recorded else [])

    def _record(self, closed: ClosedOrder) -> bool:
        """Under the lock: list one close, forgetting the oldest beyond the bound; False if nothing changed.

        A repeated ``oc`` changes nothing (the first report stands); an ``oc`` for an order
        listed with an unknown status replaces that entry where it is.
        """
        held = self._closed.get(closed.id)
        if held is not None and (held.known or not closed.known):
            return False
        self._closed[closed.id] = closed
        key = _cid_key(closed)
        if key is not None:
            self._closed_by_cid[key] = closed.id
        while len(self._closed) > self.max_closed:
            old_id, old = self._closed.popitem(last=False)
            old_key = _cid_key(old)
            if old_key is not None and self._closed_by_cid.get(old_key) == old_id:
                del self._closed_by_cid[old_key]
        self._closed_dirty = True
        self._snap = None
        return True

    def _tell(self, closes: Sequence[ClosedOrder]) -> None:
        """Hand the recorded closes to :attr:`on_close` (outside the lock)."""
        hook = self.on_close
        if hook is not None:
            for closed in closes:
                hook(closed)

    def _set(self, name: str, value: Any) -> None:
        with self._lock:
            self._values[name] = value
            self._snap = None

    def _margin(self, payload: Any) -> Tuple[str, Tuple[Any, ...], bool]:
        """``miu`` is either ``["base", [...]]`` or ``["sym", SYMBOL, [...]]``."""
        rows = _one("miu", payload)
        kind = rows[0] if rows else None
        if kind == "base":
            margin = MarginInfo.from_wire(payload)
            self._set("margin", margin)
            return "margin", (margin,), False
        if kind == "sym":
            info = SymbolMarginInfo.from_wire(payload)
            self._put("symbol_margin", info.symbol, info)
            return "margin", (info,), False
        raise ProtocolError(f"'miu' payload must start with 'base' or 'sym', got {payload!r:.200}", raw=repr(payload)[:500])
