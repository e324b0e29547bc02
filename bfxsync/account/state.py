"""The account as channel 0 describes it (pure; docs: ws-auth-orders ... ws-auth-notifications).

:class:`AccountState` has a single writer, the connection's reader thread, which calls
:meth:`AccountState.apply` for every channel-0 message. Readers on any thread call
:meth:`AccountState.snapshot`. Every ``apply`` builds new read-only mappings and rebinds one
attribute to a new frozen :class:`AccountSnapshot`, so one attribute read always gives a
consistent view without a lock (copy-on-write). Each update copies the mapping it changes,
which is cheap at account sizes (tens to hundreds of orders).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Dict, FrozenSet, Hashable, Mapping, Optional, Sequence, Tuple, TypeVar

import attrs
from attrs import frozen

from ..errors import ProtocolError
from .models import (
    AccountFundingTrade,
    BalanceInfo,
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

__all__ = ["SNAPSHOT_TAGS", "STREAMS", "AccountSnapshot", "AccountState"]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")
_EMPTY: Mapping[Any, Any] = MappingProxyType({})

#: Tags whose payload is a list of rows that replaces the stream's state (an empty list clears it).
SNAPSHOT_TAGS = frozenset({"os", "ps", "ws", "fos", "fcs", "fls"})

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

    def open_orders(self, symbol: Optional[str] = None) -> Tuple[Order, ...]:
        """Open orders (of ``symbol`` when given), oldest first."""
        found = [o for o in self.orders.values() if symbol is None or o.symbol == symbol]
        return tuple(sorted(found, key=lambda o: (o.mts_create, o.id)))

    def wallet(self, wallet_type: str, currency: str) -> Optional[Wallet]:
        """The wallet ``(wallet_type, currency)``, or None."""
        return self.wallets.get((wallet_type, currency))


def _one(tag: str, payload: Any) -> Sequence[Any]:
    if not isinstance(payload, (list, tuple)):
        raise ProtocolError(f"'{tag}' payload must be a list, got {payload!r:.200}", raw=repr(payload)[:500])
    return payload


def _rows(tag: str, payload: Any, parse: Callable[[Any], _V]) -> Tuple[_V, ...]:
    """Parse a snapshot: a list (possibly empty) of rows."""
    return tuple(parse(row) for row in _one(tag, payload))


def _replace(items: Sequence[_V], key: Callable[[_V], _K]) -> Mapping[_K, _V]:
    return MappingProxyType({key(item): item for item in items})


def _put(mapping: Mapping[_K, _V], k: _K, value: _V) -> Mapping[_K, _V]:
    copy: Dict[_K, _V] = dict(mapping)
    copy[k] = value
    return MappingProxyType(copy)


def _drop(mapping: Mapping[_K, _V], k: _K) -> Mapping[_K, _V]:
    if k not in mapping:
        return mapping
    copy: Dict[_K, _V] = dict(mapping)
    del copy[k]
    return MappingProxyType(copy)


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


class AccountState:
    """Channel-0 state: orders, positions, wallets, funding, balance and margin.

    Not thread-safe for writers: exactly one thread (the reader) calls :meth:`apply` and
    :meth:`reset`. Any thread may call :meth:`snapshot`.
    """

    def __init__(self) -> None:
        self._snap = AccountSnapshot()

    def snapshot(self) -> AccountSnapshot:
        """The current view; immutable, so it stays consistent while the writer moves on."""
        return self._snap

    def reset(self) -> None:
        """Forget everything (before re-authenticating: the fresh snapshots rebuild it)."""
        self._snap = AccountSnapshot()

    def apply(self, tag: str, payload: Any) -> Tuple[str, Tuple[Any, ...], bool]:
        """Apply one channel-0 message ``[0, tag, payload]``.

        Returns:
            ``(stream, models, is_snapshot)``: the stream name (one of :data:`STREAMS`), the parsed
            models (every row of a snapshot, else one) and whether the message was a snapshot.
            Unknown tags (``hos``, ``mis``, ``uac``, ...) give ``("unknown", (), False)`` and change nothing.
            ``te``/``tu``, ``fte``/``ftu`` and ``n`` are parsed and returned but not stored.

        Raises:
            ProtocolError: a malformed payload; the state is left unchanged.
        """
        snap = self._snap
        keyed = _KEYED_TAGS.get(tag)
        if keyed is not None:
            prefix, action = keyed
            stream, parse, key = _KEYED[prefix]
            current: Mapping[Any, Any] = getattr(snap, stream)
            if action == "s":
                models = _rows(tag, payload, parse)
                changes: Dict[str, Any] = {stream: _replace(models, key), "snapshots_received": snap.snapshots_received | {tag}}
                self._snap = attrs.evolve(snap, **changes)
                return stream, models, True
            model = parse(payload)
            updated = _drop(current, key(model)) if action == "c" else _put(current, key(model), model)
            update: Dict[str, Any] = {stream: updated}
            self._snap = attrs.evolve(snap, **update)
            return stream, (model,), False
        if tag == "ws":
            wallets = _rows(tag, payload, Wallet.from_wire)
            self._snap = attrs.evolve(
                snap, wallets=_replace(wallets, lambda w: w.key), snapshots_received=snap.snapshots_received | {tag})
            return "wallets", wallets, True
        if tag == "wu":
            wallet = Wallet.from_wire(payload)
            self._snap = attrs.evolve(snap, wallets=_put(snap.wallets, wallet.key, wallet))
            return "wallets", (wallet,), False
        if tag in ("te", "tu"):
            return "trades", (UserTrade.from_wire(payload),), False
        if tag in ("fte", "ftu"):
            return "funding_trades", (AccountFundingTrade.from_wire(payload),), False
        if tag == "n":
            return "notifications", (Notification.from_wire(payload),), False
        if tag == "bu":
            balance = BalanceInfo.from_wire(payload)
            self._snap = attrs.evolve(snap, balance=balance)
            return "balance", (balance,), False
        if tag == "miu":
            return self._margin(snap, payload)
        if tag == "fiu":
            info = FundingInfo.from_wire(payload)
            self._snap = attrs.evolve(snap, funding_info=_put(snap.funding_info, info.symbol, info))
            return "funding_info", (info,), False
        return "unknown", (), False

    def _margin(self, snap: AccountSnapshot, payload: Any) -> Tuple[str, Tuple[Any, ...], bool]:
        """``miu`` is either ``["base", [...]]`` or ``["sym", SYMBOL, [...]]``."""
        rows = _one("miu", payload)
        kind = rows[0] if rows else None
        if kind == "base":
            margin = MarginInfo.from_wire(payload)
            self._snap = attrs.evolve(snap, margin=margin)
            return "margin", (margin,), False
        if kind == "sym":
            info = SymbolMarginInfo.from_wire(payload)
            self._snap = attrs.evolve(snap, symbol_margin=_put(snap.symbol_margin, info.symbol, info))
            return "margin", (info,), False
        raise ProtocolError(f"'miu' payload must start with 'base' or 'sym', got {payload!r:.200}", raw=repr(payload)[:500])
