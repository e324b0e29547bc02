"""Account: the authenticated half of a :class:`~bfxsync.Client` (``client.account``).

Live account state (orders, positions, wallets, funding, balance, margin) readable from
any thread as one consistent snapshot; callbacks per account stream; and order entry
whose calls return a :class:`~bfxsync.Request` at once, with ``.result(timeout)`` to block
for the outcome (docs: ws-auth, ws-auth-input, ws-auth-notifications).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, TypeVar
from urllib.parse import urlsplit

from ._engine import queues
from ._engine.dispatch import Handlers
from ._engine.queues import QueueStats
from ._engine.requests import KINDS, Request
from ._engine.threads import poll
from .account import AccountSnapshot, inputs as build
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


class Account:
    """The account of an authenticated client. Created by ``Client(api_key=..., api_secret=...)``."""

    def __init__(self, session: "AccountSession", pool: "Pool", runtime: "Runtime", handlers: Handlers) -> None:
        self._session = session
        self._pool = pool
        self._runtime = runtime
        self._handlers = handlers
        if runtime.config.dispatch == "queued":  # the client-wide default covers the account streams too
            for stream in ("all", *STREAMS):
                self.set_dispatch(stream)

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
        """Run one stream's callbacks ``inline`` (on the reader thread) or ``queued`` (on a dispatcher thread).

        ``stream`` is one of :data:`STREAMS`, or ``"all"`` for the :meth:`on_message`
        handlers. Queued handlers run in order on a dispatcher thread from a queue of at
        most ``queue_size`` messages with the ``overflow`` policy (``block``,
        ``drop_oldest`` or ``latest``; under ``latest`` a handler sees the newest message
        and reads the rest from :meth:`snapshot`). Requests settle and the account state
        updates on the reader thread whatever the mode. Set it before ``start()`` so that
        every message of the stream keeps one order.
        """
        kind = self._kind(stream)
        default = queues.default_delivery(self._runtime.config)
        self._runtime.dispatcher.route(kind, queues.resolve(default, dispatch, overflow, queue_size))

    def queue(self, stream: str) -> Optional[QueueStats]:
        """The queue of a queued stream (``"all"``: of the on_message handlers), or ``None`` if inline."""
        lane = self._runtime.dispatcher.routed(self._kind(stream))
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
        """Place an order; amounts and prices as ``int``, ``float``, ``str`` or ``Decimal`` (see :mod:`bfxsync.numbers`).

        ``options`` are those of :func:`bfxsync.account.inputs.new_order` (``cid``, ``gid``,
        ``hidden``, ``post_only``, ``reduce_only``, ``close``, ``oco_stop_price``, ``lev``,
        ``tif``, ``price_trailing``, ``price_aux_limit``, ``meta`` ...). A cid is generated
        when none is given; a cid already in flight in this client is refused (``ValueError``).
        ``.result(timeout)`` returns the order model. With no answer within ``timeout``
        (default ``Config.request_timeout``) the request ends as outcome-unknown.
        """
        frame, ref = build.new_order(symbol, amount, price, type, **options)
        return self._send(frame, ref, timeout)

    def update_order(self, order_id: int, *, timeout: Optional[float] = None, **changes: Any) -> Request:
        """Change an open order in place (``price``, ``amount``, ``delta``, ``lev``, ...).

        Several updates of one order may be in flight; each settles with its own answer.
        """
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


__all__ = ["Account", "STREAMS", "check_url", "resolve_credentials"]
