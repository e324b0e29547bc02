"""Account: the authenticated half of a :class:`~bfxsync.Client` (``client.account``).

Live account state (orders, positions, wallets, funding, balance, margin) readable from
any thread as one consistent snapshot; callbacks per account stream; and order entry
whose calls return a :class:`~bfxsync.Request` at once, with ``.result(timeout)`` to block
for the outcome (docs: ws-auth, ws-auth-input, ws-auth-notifications).
"""
from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, Tuple, TypeVar
from urllib.parse import urlsplit

import attrs

from ._engine import queues
from ._engine.callback_runner import Handlers
from ._engine.queues import QueueStats
from ._engine.requests import KINDS, Request
from ._engine.threads import poll
from .account import AccountSnapshot, inputs as build
from .account.models import ClosedOrder
from .auth import Credentials
from .errors import BfxTimeoutError, MaintenanceError, NotConnectedError

if TYPE_CHECKING:  # pragma: no cover
    from ._engine.account_session import AccountSession
    from ._engine.pool import Pool
    from ._engine.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])

#: The account streams a callback can be registered for.
STREAMS = ("orders", "positions", "trades", "funding_trades", "wallets", "balance", "margin", "funding_info",
           "funding_offers", "funding_credits", "funding_loans", "notifications")

#: Streams whose messages are events a program acts on (an order placed, filled or cancelled, a
#: trade, a position closed, a request's answer), and ``all`` (the on_message handlers, which see
#: them too). A lossy client-wide ``queue_overflow`` (``drop_oldest``, ``latest``) does not apply
#: to them: queued, they ``block`` unless ``set_dispatch(stream, overflow=...)`` names a lossy
#: policy for that stream. The other streams (wallets, balance, margin, funding_info) are
#: state that :meth:`Account.snapshot` always holds whole, so conflating them loses nothing.
EVENT_STREAMS = ("all", "orders", "positions", "trades", "funding_trades", "funding_offers", "funding_credits",
                 "funding_loans", "notifications")


class Account:
    """The account of an authenticated client. Created by ``Client(api_key=..., api_secret=...)``."""

    def __init__(self, session: "AccountSession", pool: "Pool", runtime: "Runtime", handlers: Handlers) -> None:
        self._session = session
        self._pool = pool
        self._runtime = runtime
        self._handlers = handlers
        if runtime.config.dispatch == "queued":  # the client-wide default covers the account streams too
            for stream in ("all", *STREAMS):
                self.set_dispatch(stream)  # the event streams keep "block" (see EVENT_STREAMS)

    def __repr__(self) -> str:
        state = "authenticated" if self.authenticated else "refused" if self._session.refused else "not authenticated"
        return f"<bfxsync.Account {self._session.credentials!r} {state}>"

    # -- state -----------------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        """True while the account connection is authenticated."""
        return self._session.authenticated.is_set()

    def snapshot(self) -> AccountSnapshot:
        """A consistent copy of the live account state (orders, positions, wallets, funding, balance, margin)."""
        return self._session.state.snapshot()

    def closed_order(self, order_id: Optional[int] = None, *, cid: Optional[int] = None,
                     cid_date: Any = None) -> Optional[ClosedOrder]:
        """How a recently closed order ended, by id or by ``cid`` and ``cid_date``; None if not among them.

        The account keeps the last ``Config.max_closed_orders`` closes (default 1000) with the
        exchange's final status (``EXECUTED @ ...``, ``CANCELED``, ``POSTONLY CANCELED``, ...), or
        None as status when the order vanished unseen (see
        :class:`~bfxsync.account.models.ClosedOrder`). Same as ``snapshot().closed_order(...)``
        without building a snapshot. ``cid_date`` is the order's UTC creation date (a ``date``
        or ``"YYYY-MM-DD"``; ``Order.cid_date``, ``Request.cid_date``).

        Raises:
            ValueError: neither an id nor both cid and cid_date, or both.
        """
        return self._session.state.find_closed(order_id, cid=cid, cid_date=cid_date)

    def wait_order_closed(self, order_id: Optional[int] = None, *, cid: Optional[int] = None,
                          cid_date: Any = None, timeout: float = 10.0) -> ClosedOrder:
        """Block until the order (by id, or by ``cid`` and ``cid_date``) closed, and return how it ended.

        Returns at once when the close is already among the closed orders, so it never misses an
        ``oc`` that arrived before the call. ``Request.closed()`` does the same for an order you
        submitted, updated or cancelled in this client.

        Raises:
            BfxTimeoutError: not closed within ``timeout`` (it may still be open; safe to call again).
            NotConnectedError: the account connection is down, or dropped while waiting (a close
                then would go unseen); after re-authentication, the open orders and
                :meth:`closed_order` tell the order's state.
            AuthenticationError: the server refused to authenticate.
            ValueError: neither an id nor both cid and cid_date, or both.
            CallbackThreadError: called from a callback.
        """
        return self._session.wait_closed(order_id, cid, cid_date, timeout)

    def wait_authenticated(self, timeout: float = 10.0) -> "Account":
        """Block until authenticated and the account snapshots are in, and return ``self``.

        Raises:
            AuthenticationError: the server refused (``code``, ``msg`` and a ``hint``); not retried.
            BfxTimeoutError: not authenticated within ``timeout`` (the message names the last failure).
            NotConnectedError: the client ended.
            CallbackThreadError: called from a callback.
        """
        self._pool.refuse_wait("wait_authenticated")
        session = self._session
        done = poll(lambda: session.synced.is_set() or session.refused is not None or self._runtime.ended.is_set(),
                    timeout)
        if session.refused is not None:
            raise session.refused
        ended = self._pool.end_error()
        if ended is not None:
            raise ended
        if not done:
            raise BfxTimeoutError(f"not authenticated within {timeout:g} s{self._pool.failure_hint()}")
        return self

    # -- callbacks (each works as a decorator; all run on the account connection's reader thread
    #    unless their stream was made queued with set_dispatch) ----------------------------------

    def set_dispatch(self, stream: str, dispatch: str = "queued", *, overflow: Optional[str] = None,
                     queue_size: Optional[int] = None) -> None:
        """Run one stream's callbacks ``inline`` (on the reader thread) or ``queued`` (on a callback thread).

        ``stream`` is one of :data:`STREAMS`, or ``"all"`` for the :meth:`on_message`
        handlers. Queued handlers run in order on a callback thread from a queue of at
        most ``queue_size`` messages with the ``overflow`` policy (``block``,
        ``drop_oldest`` or ``latest``; under ``latest`` a handler sees the newest message
        and reads the rest from :meth:`snapshot`). Unset, ``overflow`` is the client's
        ``Config.queue_overflow``, except for the order, trade and other event streams
        (:data:`EVENT_STREAMS`): they ``block`` unless a lossy policy is named here.
        Requests settle and the account state updates on the reader thread whatever the
        mode. Set it before ``start()`` so that every message of the stream keeps one order.
        """
        kind = self._kind(stream)
        default = queues.default_delivery(self._runtime.config)
        if stream in EVENT_STREAMS:  # a lossy client-wide default is for market data, never for orders
            default = attrs.evolve(default, overflow="block")
        self._runtime.callbacks.route(kind, queues.resolve(default, dispatch, overflow, queue_size))

    def queue(self, stream: str) -> Optional[QueueStats]:
        """The queue of a queued stream (``"all"``: of the on_message handlers), or ``None`` if inline."""
        lane = self._runtime.callbacks.routed(self._kind(stream))
        return lane.stats() if lane is not None else None

    @staticmethod
    def _kind(stream: str) -> str:
        if stream == "all":
            return "account"
        if stream not in STREAMS:
            raise ValueError(f"unknown account stream {stream!r}: expected all or one of {', '.join(STREAMS)}")
        return f"account:{stream}"

    def on_message(self, handler: F) -> F:
        """Call ``handler(AccountMessage)`` for every account frame, whatever the stream."""
        return self._handlers.add("account", handler)

    def on_stream(self, stream: str) -> Callable[[F], F]:
        """Decorator: call ``handler(AccountMessage)`` for one stream (see :data:`STREAMS`)."""
        if stream not in STREAMS:
            raise ValueError(f"unknown account stream {stream!r}: expected one of {', '.join(STREAMS)}")
        return lambda handler: self._handlers.add(f"account:{stream}", handler)

    def on_orders(self, handler: F) -> F:
        """Order snapshots and events (``os``/``on``/``ou``/``oc``)."""
        return self.on_stream("orders")(handler)

    def on_positions(self, handler: F) -> F:
        """Position snapshots and events (``ps``/``pn``/``pu``/``pc``)."""
        return self.on_stream("positions")(handler)

    def on_trades(self, handler: F) -> F:
        """Your executed trades (``te``, and ``tu`` with the fee)."""
        return self.on_stream("trades")(handler)

    def on_wallets(self, handler: F) -> F:
        """Wallet snapshots and updates (``ws``/``wu``)."""
        return self.on_stream("wallets")(handler)

    def on_notifications(self, handler: F) -> F:
        """Notifications (``n``): request results and custom notifications."""
        return self.on_stream("notifications")(handler)

    # -- order entry -----------------------------------------------------------------------------

    def submit_order(self, symbol: str, amount: Any, price: Any = None, type: str = "EXCHANGE LIMIT", *,
                     timeout: Optional[float] = None, **options: Any) -> Request:
        """Place an order (``on``, docs: ws-auth-input, order-new); returns a :class:`~bfxsync.Request` at once.

        ``.result(timeout)`` returns the order model. With no answer within ``timeout``
        (default ``Config.request_timeout``) the request ends as outcome-unknown.

        Args:
            symbol: a trading symbol (``tBTCUSD``, ``tBTCF0:USTF0``).
            amount: > 0 buys, < 0 sells. Numbers (``amount`` and every price) are ``int``,
                ``float`` (taken by its shortest repr), ``str`` or ``Decimal``: the number
                policy of :mod:`bfxsync.numbers`.
            price: required except for MARKET and TRAILING STOP types; the stop price of
                STOP and STOP LIMIT orders.
            type: one of :data:`bfxsync.account.inputs.ORDER_TYPES` (``EXCHANGE ...``
                types trade the exchange wallet, the others margin).
            timeout: seconds to wait for the exchange's answer.

        Options (keyword-only; anything else raises ``TypeError`` listing these):
            cid: client order id; a unique one is generated when not given, and a cid
                already in flight in this client is refused (``ValueError``).
            gid: group id, 1 to 2**31-1.
            flags: a sum of flag values (:data:`~bfxsync.account.inputs.HIDDEN`,
                ``CLOSE``, ``REDUCE_ONLY``, ``POST_ONLY``, ``OCO``, ``NO_VAR_RATES``); the
                booleans below add their flag.
            hidden: do not show the order in the book.
            post_only: cancel the order rather than let it take liquidity (not for MARKET).
            reduce_only: only reduce a position (margin and derivatives).
            close: close the position.
            no_var_rates: do not use variable-rate funding for this margin order.
            oco_stop_price: the stop price of a one-cancels-other pair (sets ``OCO``).
            lev: leverage 1-100, derivatives (``F0:`` symbols) only.
            tif: auto-cancel time, a ``datetime`` (naive means UTC) or a
                ``"YYYY-MM-DD HH:MM:SS"`` UTC string in the future.
            price_trailing: the distance of a TRAILING STOP (required for those only).
            price_aux_limit: the limit price of a STOP LIMIT (required for those only).
            meta: extra fields for the exchange (``{"aff_code": "..."}``).

        Raises:
            TypeError: an unknown option (the message suggests the nearest one).
            ValueError: a bad argument, before anything is sent.
            NotConnectedError: the client is closed. MaintenanceError: the exchange is in maintenance.
        """
        _check_options("submit_order", options, ORDER_OPTIONS)
        frame, ref = build.new_order(symbol, amount, price, type, **options)
        return self._send(frame, ref, timeout)

    def update_order(self, order_id: int, *, timeout: Optional[float] = None, **changes: Any) -> Request:
        """Change an open order in place (``ou``); ``.result()`` returns the updated order.

        Changes (keyword-only; anything else raises ``TypeError`` listing these): ``price``,
        ``amount`` (the new remaining amount) or ``delta`` (added to it, not both),
        ``cid`` with ``cid_date``, ``gid``, ``lev``, ``price_aux_limit``,
        ``price_trailing``, ``flags``, ``tif`` (as in :meth:`submit_order`). Several
        updates of one order may be in flight; each settles with its own answer.
        """
        _check_options("update_order", changes, UPDATE_OPTIONS)
        frame, ref = build.update_order(order_id, **changes)
        return self._send(frame, ref, timeout)

    def cancel_order(self, order_id: Optional[int] = None, *, cid: Optional[int] = None,
                     cid_date: Optional[str] = None, timeout: Optional[float] = None) -> Request:
        """Cancel by id, or by cid and cid date; ``.result()`` returns the cancelled order.

        To cancel an order whose id you do not have yet, use its submit request's ``cid`` and
        ``cid_date`` (taken from the order's creation time once the exchange reported it).
        """
        frame, ref = build.cancel_order(order_id, cid=cid, cid_date=cid_date)
        return self._send(frame, ref, timeout)

    def cancel_orders(self, ids: Optional[Sequence[int]] = None, cids: Optional[Sequence[Tuple[int, str]]] = None,
                      gids: Optional[Sequence[int]] = None, all: bool = False) -> Request:
        """Cancel several orders at once (``oc_multi``); ``.result()`` returns the notification."""
        frame, ref = build.cancel_orders(ids, cids, gids, all)
        return self._send(frame, ref, None)

    def order_multi_op(self, ops: Sequence[Any]) -> Request:
        """Several inputs in one frame (``ox_multi``, at most 15); ``.result()`` returns the notification."""
        frame, ref = build.order_multi_op(ops)
        return self._send(frame, ref, None)

    def submit_funding_offer(self, symbol: str, amount: Any, rate: Any, period: int, type: str = "LIMIT",
                             hidden: bool = False) -> Request:
        """Offer funding (``fon``); ``.result()`` returns the notification."""
        frame, ref = build.new_funding_offer(symbol, amount, rate, period, type, hidden)
        return self._send(frame, ref, None)

    def cancel_funding_offer(self, offer_id: int) -> Request:
        """Cancel a funding offer (``foc``)."""
        frame, ref = build.cancel_funding_offer(offer_id)
        return self._send(frame, ref, None)

    def calc(self, requests: Sequence[str]) -> None:
        """Ask the server to compute values (``margin_sym_tBTCUSD``, ``wallet_exchange_USD``, ``balance``...);
        the answers arrive as wallet, position, margin, funding and balance updates."""
        frame, _ = build.calc(requests)
        self._link().send_input(frame)

    def _link(self) -> Any:
        self._runtime.check_process()  # in a fork the account connection is the parent's
        link = self._pool.account_link()
        if link is None or self._runtime.ended.is_set():
            raise NotConnectedError("the client is closed")
        return link

    def _send(self, frame: List[Any], ref: build.RequestRef, timeout: Optional[float]) -> Request:
        link = self._link()
        if link.maintenance:
            raise MaintenanceError("the exchange is in maintenance (info 20060): orders are refused until it ends")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        request = Request(KINDS[ref.tag], ref, frame[3] if isinstance(frame[3], dict) else None,
                          timeout if timeout is not None else self._runtime.config.request_timeout)
        link.send_input(frame, request)  # registers it before queuing: an answer can come at once
        return request


def _keyword_options(builder: Callable[..., Any]) -> Tuple[str, ...]:
    # The builder's keyword-only parameters are the options; now_ms is the builders' test clock.
    return tuple(name for name, parameter in inspect.signature(builder).parameters.items()
                 if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "now_ms")


#: The options of :meth:`Account.submit_order` and :meth:`Account.update_order`.
ORDER_OPTIONS = _keyword_options(build.new_order)
UPDATE_OPTIONS = _keyword_options(build.update_order)


def _check_options(method: str, given: Mapping[str, Any], valid: Sequence[str]) -> None:
    """Refuse options ``method`` does not take, naming the method (not the internal builder) and the valid ones."""
    unknown = [name for name in given if name not in valid]
    if unknown:
        near = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise TypeError(f"{method}() got an unexpected option {unknown[0]!r}{hint}; "
                        f"its options are: {', '.join(valid)}")


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_url(url: str, authenticated: bool = False) -> None:
    """Refuse a URL that is not ws:// or wss://, and authentication over plain ws:// beyond loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"invalid WebSocket URL {url!r}: expected ws://host[:port]/path or wss://...")
    if authenticated and parts.scheme == "ws" and parts.hostname not in _LOOPBACK:
        raise ValueError(f"refusing to authenticate over plain ws:// to {parts.hostname}: use wss:// "
                         "(plain ws:// is accepted for loopback only, e.g. the emulator)")


def resolve_credentials(api_key: Optional[str], api_secret: Optional[str],
                        credentials: Optional[Credentials]) -> Optional[Credentials]:
    """The credentials of ``Client(api_key=..., api_secret=...)`` or ``Client(credentials=...)``, if any."""
    if credentials is not None:
        if api_key is not None or api_secret is not None:
            raise ValueError("give either credentials= or api_key=/api_secret=, not both")
        return credentials
    if (api_key is None) != (api_secret is None):
        raise ValueError("api_key and api_secret go together")
    return Credentials(api_key, api_secret) if api_key is not None and api_secret is not None else None


__all__ = ["Account", "EVENT_STREAMS", "ORDER_OPTIONS", "STREAMS", "UPDATE_OPTIONS", "check_url", "resolve_credentials"]
