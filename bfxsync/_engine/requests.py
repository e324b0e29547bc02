"""Account requests in flight: each order input gets a handle that the answer resolves.

The waiter is registered before the input is sent. Answers are correlated on exact ids
(docs: ws-auth-input, ws-auth-notifications): a new order by its ``cid`` (the ``on-req``
notification carries the order, whose index 2 is the cid; the ``on``/``ou``/``oc`` events
carry it too), an update or a cancel by the order ``id``. A request settles once both its
``SUCCESS`` notification and its first order event (``on``, ``ou`` or ``oc``: an order that
fills at once may get ``oc`` without ``on``) arrived, in either order, with that order. An
``ERROR`` or ``FAILURE`` notification fails the request at once with the server's text. When the connection
drops, every request in flight fails at once with :class:`OutcomeUnknownError`; it is never
sent again.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import BfxTimeoutError, OrderError, OutcomeUnknownError
from .threads import refuse_on_bfxsync_thread, wait_event

Callback = Callable[["Request"], Any]

#: Requests whose notification carries nothing to correlate on reliably: answered first in, first out.
_ANSWERED_IN_ORDER = ("funding_offer", "cancel_funding_offer", "cancel_multi", "multi")


class Request:
    """The outcome of one account input; ``result()`` blocks until it is known.

    Attributes:
        kind: ``submit``, ``update``, ``cancel``, ``cancel_multi``, ``multi``, ``funding_offer``,
            ``cancel_funding_offer`` or ``calc``.
        cid, cid_date: the client order id (new orders, cancels by cid).
        order_id: the order the request is about (updates, cancels by id).
    """

    def __init__(self, kind: str, cid: Optional[int] = None, cid_date: Optional[str] = None,
                 order_id: Optional[int] = None) -> None:
        self.kind = kind
        self.cid = cid
        self.cid_date = cid_date
        self.order_id = order_id
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._result: Any = None
        self._error: Optional[BaseException] = None
        self._callbacks: List[Callback] = []
        #: What has arrived for it so far (a new order settles once it has both).
        self.notified = False
        self.last_order: Any = None

    def __repr__(self) -> str:
        state = "failed" if self._error is not None else "done" if self._done.is_set() else "pending"
        return f"<Request {self.kind} cid={self.cid} id={self.order_id} {state}>"

    @property
    def done(self) -> bool:
        """True once the outcome is known (success or failure)."""
        return self._done.is_set()

    def result(self, timeout: float = 10.0) -> Any:
        """Block until the outcome is known and return it (the order model, for orders).

        Raises:
            OrderError: the server refused the request (its text in the message).
            OutcomeUnknownError: the connection dropped with the request in flight.
            BfxTimeoutError: no answer within ``timeout`` (the request may still be answered).
            CallbackThreadError: called from a callback.
        """
        refuse_on_bfxsync_thread("Request.result")
        if not wait_event(self._done, timeout):
            raise BfxTimeoutError(f"no answer to {self!r} within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._result

    def add_done_callback(self, callback: Callback) -> None:
        """Call ``callback(request)`` once the outcome is known (at once if it already is)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def exception(self) -> Optional[BaseException]:
        """The failure, once done (None for a success or while pending)."""
        return self._error

    def _finish(self, result: Any, error: Optional[BaseException]) -> List[Callback]:
        """Settle once; returns the callbacks to run (outside any lock)."""
        with self._lock:
            if self._done.is_set():
                return []
            self._result, self._error = result, error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        return callbacks


class RequestTracker:
    """Requests awaiting their answer, indexed by cid and by order id (own lock)."""

    def __init__(self, run_callbacks: Callable[[List[Callback], Request], None]) -> None:
        self._lock = threading.Lock()
        self._by_cid: Dict[int, Request] = {}
        self._by_id: Dict[int, Request] = {}
        self._other: List[Request] = []  # answered in order (funding offers, multi-ops)
        self._run = run_callbacks
        #: cid -> cid date of new orders whose outcome became unknown (for reconciliation).
        self.unknown: Dict[int, str] = {}

    def register(self, request: Request) -> None:
        """Before sending: make the request findable by its answer."""
        with self._lock:
            if request.kind in _ANSWERED_IN_ORDER:
                self._other.append(request)
            elif request.kind == "submit" and request.cid is not None:
                self._by_cid[request.cid] = request
            elif request.order_id is not None:
                self._by_id[request.order_id] = request
            elif request.cid is not None:
                self._by_cid[request.cid] = request
            else:
                self._other.append(request)

    def forget(self, request: Request) -> None:
        """Drop a request that was never sent."""
        with self._lock:
            for table in (self._by_cid, self._by_id):
                for key, value in list(table.items()):
                    if value is request:
                        del table[key]
            if request in self._other:
                self._other.remove(request)

    def pending(self) -> int:
        """Requests still in flight."""
        with self._lock:
            return len(self._by_cid) + len(self._by_id) + len(self._other)

    def _settle(self, request: Optional[Request], result: Any, error: Optional[BaseException] = None) -> None:
        if request is not None:
            callbacks = request._finish(result, error)
            if callbacks:
                self._run(callbacks, request)

    def on_notification(self, notification: Any) -> None:
        """An ``n`` frame: a failure settles its request at once; a success waits for the order event."""
        kind = str(notification.type or "")
        order = notification.order
        info = notification.info if isinstance(notification.info, list) else []
        cid = order.cid if order is not None else (info[2] if len(info) > 2 and type(info[2]) is int else None)
        order_id = order.id if order is not None else (info[0] if info and type(info[0]) is int else None)
        multi = {"fon-req": "funding_offer", "foc-req": "cancel_funding_offer",
                 "oc_multi-req": "cancel_multi", "ox_multi-req": "multi"}
        if kind in multi:
            with self._lock:
                request = next((r for r in self._other if r.kind == multi[kind]), None)
                if request is not None:
                    self._other.remove(request)
            error = None if notification.ok else OrderError(str(notification.text), notification=notification)
            self._settle(request, notification, error)
            return
        kinds = {"on-req": ("submit",), "ou-req": ("update",), "oc-req": ("cancel",)}.get(kind)
        if kinds is None:
            return
        request = self._find(cid if kind != "ou-req" else None, order_id if kind != "on-req" else None, kinds)
        if request is None:
            return
        if not notification.ok:
            self._forget(request)
            self._settle(request, None, OrderError(str(notification.text), request.cid, request.cid_date,
                                                   request.order_id, notification))
            return
        request.notified = True
        if request.last_order is not None:  # the order event came first
            self._forget(request)
            self._settle(request, request.last_order)

    def on_order(self, tag: str, order: Any) -> None:
        """An ``on``/``ou``/``oc`` event: with the request's success notification in, it settles the request."""
        request = self._find(order.cid, None, ("submit",))
        if request is None and tag == "ou":
            request = self._find(None, order.id, ("update",))
        if request is None and tag == "oc":
            request = self._find(order.cid, order.id, ("cancel",))
        if request is None:
            return
        request.last_order = order
        if request.notified:
            self._forget(request)
            self._settle(request, order)

    def _find(self, cid: Optional[int], order_id: Optional[int], kinds: Tuple[str, ...]) -> Optional[Request]:
        with self._lock:
            for table, key in ((self._by_id, order_id), (self._by_cid, cid)):
                request = table.get(key) if key is not None else None
                if request is not None and request.kind in kinds:
                    return request
            return None

    def _forget(self, request: Request) -> None:
        self.forget(request)

    def fail_all(self, reason: str) -> None:
        """The connection dropped: every request in flight has an unknown outcome."""
        with self._lock:
            requests = list(self._by_cid.values()) + list(self._by_id.values()) + self._other
            self._by_cid.clear()
            self._by_id.clear()
            self._other = []
            for request in requests:
                if request.kind == "submit" and request.cid is not None and request.cid_date is not None:
                    self.unknown[request.cid] = request.cid_date
        for request in requests:
            self._settle(request, None, OutcomeUnknownError(
                f"the connection dropped with {request!r} in flight ({reason}); it was not sent again and may "
                "or may not have been executed", request.cid, request.cid_date, request.order_id))

    def reconcile(self, orders: Any) -> List[Any]:
        """The fresh orders snapshot after re-authentication: the unknown-outcome orders it holds."""
        with self._lock:
            found = [order for order in orders if order.cid in self.unknown]
            for order in found:
                del self.unknown[order.cid]
        return found
