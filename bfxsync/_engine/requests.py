"""Account requests in flight: each order input gets a handle that its own answer resolves.

The waiter is registered before the input is sent (docs: ws-auth-input, ws-auth-notifications).
A request settles once its ``SUCCESS`` notification (``n``, type ``<tag>-req``) and its first
order event (``on``, ``ou`` or ``oc``: an order that fills at once may get ``oc`` without
``on``) arrived, in either order; an ``ERROR`` or ``FAILURE`` notification fails it at once
with the server's text.

Correlation, strictest first:

- A new order by its ``cid``, and only by an answer that matches what was sent: the cid, the
  creation date, the symbol, the amount, the type and the price where the type has one. Two
  clients on one key may send the same cid in the same millisecond; each takes only its own
  order. A cid already pending in this client is refused before sending.
- Updates and cancels by the order id, cancels by cid by the cid and its date. Several
  requests about one order may be in flight: each notification answers the oldest
  unanswered request of its kind for that order (the server answers inputs in order), and an
  update that sets a price takes only an order event carrying that price (a partial fill's
  ``ou`` does not answer it).
- A notification with nothing to correlate on (an ``ou-req`` or ``oc-req`` ERROR whose order
  array is all null, real frames) answers the oldest unanswered request of its kind; funding
  offers and multi-operations are answered in order.

A request settles at acceptance, so a new order's result says ``ACTIVE`` even when it filled
at once (the exchange sends ``n``, ``on`` and ``oc`` in one burst, and the answer is the
first order event). :meth:`Request.closed` then waits for how the order ended, from the
account's closed orders.

Nothing stays in flight for ever: a request not answered within its deadline fails with
:class:`OutcomeUnknownError` and joins reconciliation. When the connection drops, a request
whose input was sent fails with :class:`OutcomeUnknownError`, one whose input never left
with :class:`NotSentError` (a retry is safe). Nothing is ever sent again.

Threads: user threads register requests, the account link's reader answers them, the
scheduler expires them, and the link marks them sent; the tracker's lock guards every table
and every per-request flag below (never held while a callback runs).
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..account._wire import date_of_ms
from ..account.inputs import RequestRef
from ..account.models import ClosedOrder
from ..errors import BfxTimeoutError, NotSentError, OrderError, OutcomeUnknownError
from .threads import refuse_on_bfxsync_thread, wait_event

Callback = Callable[["Request"], Any]
#: Waits for an order's close: ``(order_id, cid, cid_date, timeout) -> ClosedOrder`` (the account session's).
CloseWaiter = Callable[[Optional[int], Optional[int], Optional[str], float], ClosedOrder]

#: The request kind of each input tag.
KINDS = {"on": "submit", "ou": "update", "oc": "cancel", "oc_multi": "cancel_multi", "ox_multi": "multi",
         "fon": "funding_offer", "foc": "cancel_funding_offer", "calc": "calc"}
#: Notification type -> the request kind it answers.
_ANSWERS = {"on-req": "submit", "ou-req": "update", "oc-req": "cancel", "oc_multi-req": "cancel_multi",
            "ox_multi-req": "multi", "fon-req": "funding_offer", "foc-req": "cancel_funding_offer"}
#: Kinds that concern one order, whose close :meth:`Request.closed` can wait for.
_ORDER_KINDS = ("submit", "update", "cancel")
#: Kinds whose notification carries nothing to correlate on reliably: answered first in, first out.
_ANSWERED_IN_ORDER = ("funding_offer", "cancel_funding_offer", "cancel_multi", "multi")
#: An order created this close (ms) to the moment its submit was made answers it even when the
#: UTC dates differ (a submit a moment before midnight, or a local clock a little off).
_DATE_SLACK_MS = 5 * 60 * 1000


class Request:
    """The outcome of one account input; ``result()`` blocks until it is known.

    Attributes:
        kind: ``submit``, ``update``, ``cancel``, ``cancel_multi``, ``multi``, ``funding_offer``
            or ``cancel_funding_offer``.
        cid, cid_date: the client order id and its UTC date (new orders, cancels by cid). For a new
            order, ``cid_date`` is taken from the order's creation time once the exchange reports
            it, so a cancel by cid made with it names the order the exchange created.
        order_id: the order the request is about (updates, cancels by id; a new order's id once known).
        deadline: ``time.monotonic()`` after which an unanswered request ends as outcome-unknown.
    """

    def __init__(self, kind: str, ref: RequestRef, sent: Optional[Mapping[str, Any]] = None,
                 timeout: float = 15.0) -> None:
        self.kind = kind
        self.cid = ref.cid
        self.cid_date = ref.cid_date
        self.order_id = ref.id
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._ref = ref
        #: What went on the wire (the input's payload), to check that an answer is this request's.
        self._sent: Mapping[str, Any] = sent or {}
        self._made_ms = int(time.time() * 1000)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._result: Any = None
        self._error: Optional[BaseException] = None
        self._callbacks: List[Callback] = []
        #: Set when the tracker registers the request (before it is sent).
        self._wait_closed: Optional[CloseWaiter] = None
        # Written under the tracker's lock only.
        self._on_wire = False  # the link handed the input to the socket
        self._expired = False  # ended at its deadline; kept to take its own late answers
        self._notified = False  # its SUCCESS notification arrived
        self._answer: Any = None  # its first order event

    def __repr__(self) -> str:
        state = "failed" if self._error is not None else "done" if self._done.is_set() else "pending"
        return f"<Request {self.kind} cid={self.cid} id={self.order_id} {state}>"

    @property
    def done(self) -> bool:
        """True once the outcome is known (success or failure)."""
        return self._done.is_set()

    def result(self, timeout: float = 10.0) -> Any:
        """Block until the outcome is known and return it (the order model, for orders).

        For a new order, the model is the order as the exchange accepted it: ``ACTIVE`` even when
        it filled or was cancelled right away (a market order, a post-only that would take), as the
        first order event settles the request. :meth:`closed` waits for how it ended.

        Raises:
            OrderError: the server refused the request (its text in the message).
            OutcomeUnknownError: no answer within the request's deadline, or the connection dropped
                after the input was sent; it may or may not have been executed.
            NotSentError: the input never left (the connection dropped first): nothing happened.
            BfxTimeoutError: no answer within ``timeout`` (the request may still be answered).
            CallbackThreadError: called from a callback.
        """
        refuse_on_bfxsync_thread("Request.result")
        if not wait_event(self._done, timeout):
            raise BfxTimeoutError(f"no answer to {self!r} within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._result

    def closed(self, timeout: float = 10.0) -> ClosedOrder:
        """Block until the order this request is about closed, and return how it ended.

        For ``submit``, ``update`` and ``cancel`` requests: first waits for the request's own
        outcome (as :meth:`result`), then for the order's ``oc``. Returns at once when the close
        already arrived: a market order's ``EXECUTED @ ...``, a post-only's ``POSTONLY CANCELED``,
        a cancel's ``CANCELED`` are usually in by the time ``result()`` returns. The
        :class:`~bfxsync.account.models.ClosedOrder` has the final row and the exchange's status
        text (docs: ws-auth-orders).

        Args:
            timeout: seconds for both waits together.

        Raises:
            BfxTimeoutError: not closed within ``timeout`` (the order may still be open; this
                request and the order are unchanged, so calling again is safe).
            NotConnectedError: the account connection dropped while waiting (or was down): a close
                then would go unseen. After re-authentication, ``Account.closed_order()`` and the
                open orders tell the order's state.
            OrderError, OutcomeUnknownError, NotSentError: the request itself failed (see :meth:`result`).
            ValueError: the request is not about one order (multi-op, funding, ...).
            CallbackThreadError: called from a callback.
        """
        if self.kind not in _ORDER_KINDS:
            raise ValueError(f"closed() waits for one order's close; a {self.kind} request is not about one order")
        deadline = time.monotonic() + timeout
        order = self.result(timeout)
        waiter = self._wait_closed
        if waiter is None:
            raise ValueError(f"{self!r} was never sent, so no order to wait for")
        try:
            return waiter(order.id, None, None, max(0.0, deadline - time.monotonic()))
        except BfxTimeoutError:
            raise BfxTimeoutError(f"order {order.id} did not close within {timeout:g} s (it may still be open: "
                                  "snapshot().orders has its state)") from None

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


def _field(row: Any, index: int) -> Any:
    return row[index] if isinstance(row, list) and len(row) > index else None


def _int_field(row: Any, index: int) -> Optional[int]:
    value = _field(row, index)
    return value if type(value) is int else None


def _same_number(sent: Any, got: Any) -> bool:
    """True when the wire text we sent and the number in the answer are the same amount."""
    try:
        return Decimal(str(sent)) == Decimal(str(got))
    except (InvalidOperation, ValueError):
        return False


class RequestTracker:
    """Requests awaiting their answer, in send order (own lock; see the module's thread notes)."""

    def __init__(self, run_callbacks: Callable[[List[Callback], Request], None],
                 wait_closed: Optional[CloseWaiter] = None) -> None:
        self._lock = threading.Lock()
        self._wait_closed = wait_closed
        self._pending: List[Request] = []  # in registration order, which is send order
        self._submits: Dict[int, Request] = {}  # cid -> the pending new order with that cid
        self._run = run_callbacks
        #: cid -> cid date of new orders whose outcome became unknown (for reconciliation).
        self.unknown: Dict[int, str] = {}

    # -- user threads and the link ------------------------------------------------------------

    def register(self, request: Request) -> None:
        """Before sending: make the request findable by its answer.

        Raises ValueError for a new order whose cid is already pending in this client (its answers
        could not be told apart).
        """
        with self._lock:
            if request.kind == "submit" and request.cid is not None:
                if request.cid in self._submits:
                    raise ValueError(f"cid {request.cid} is already in flight in this client (an order with that cid "
                                     "was submitted and is not answered yet): give each order its own cid")
                self._submits[request.cid] = request
            self._pending.append(request)
            request._wait_closed = self._wait_closed

    def forget(self, request: Request) -> None:
        """Drop a request that was never sent (refused before it was queued)."""
        with self._lock:
            self._remove(request)

    def mark_sent(self, request: Request) -> None:
        """The link handed the request's input to the socket (from here on its outcome can be unknown)."""
        with self._lock:
            request._on_wire = True

    def pending(self) -> int:
        """Requests still in flight (not those that already ended at their deadline)."""
        with self._lock:
            return sum(1 for r in self._pending if not r._expired)

    def not_sent(self, request: Request, reason: str) -> None:
        """The link dropped a request's input before it left: it fails as never sent."""
        with self._lock:
            self._remove(request)
        self._settle(request, None, NotSentError(f"{request!r} was never sent ({reason}); nothing happened, sending "
                                                 "it again is safe", request.cid, request.cid_date, request.order_id))

    # -- the account link's reader: answers -----------------------------------------------------

    def on_notification(self, notification: Any) -> None:
        """An ``n`` frame: a failure settles its request at once; a success waits for the order event."""
        kind = _ANSWERS.get(str(notification.type or ""))
        if kind is None:
            return
        in_order = kind in _ANSWERED_IN_ORDER
        with self._lock:
            request = self._answered_by(kind, notification.info)
            if request is None:
                return
            if notification.ok and not in_order:
                request._notified = True
                if request._answer is None:
                    return  # its order event settles it
            self._remove(request)
        if not notification.ok:
            text = notification.text if notification.text else "the server refused the request and gave no reason"
            self._settle(request, None, OrderError(str(text), request.cid, request.cid_date, request.order_id,
                                                   notification))
        else:
            self._settle(request, notification if in_order else request._answer)

    def on_order(self, tag: str, order: Any) -> None:
        """An ``on``/``ou``/``oc`` event: it settles each request it answers whose notification is in."""
        settled: List[Tuple[Request, Any]] = []
        with self._lock:
            for request in self._takers(tag, order):
                request._answer = order
                if request.kind == "submit":
                    request.order_id = order.id
                    request.cid_date = order.cid_date  # the exchange's creation date, for cancels by cid
                if request._notified:
                    self._remove(request)
                    settled.append((request, order))
        for request, result in settled:
            self._settle(request, result)

    # -- the scheduler and the link: ends ----------------------------------------------------

    def expire(self, now: float) -> None:
        """Sent requests past their deadline end as outcome-unknown (scheduler thread).

        The server still answers their input, later and in order, so each stays as a placeholder
        that takes its own late answers (never another request's) until they came or the
        connection ends. Requests whose input has not left are the link's to end as never sent.
        """
        with self._lock:
            late = [r for r in self._pending if r._on_wire and not r._expired and r.deadline <= now]
            for request in late:
                request._expired = True
                self._note_unknown(request)
        for request in late:
            self._settle(request, None, OutcomeUnknownError(
                f"no answer to {request!r} within {request.timeout:g} s; it was not sent again and may or may not "
                "have been executed", request.cid, request.cid_date, request.order_id))

    def fail_all(self, reason: str) -> None:
        """The connection dropped (or the client closed): every request in flight ends now."""
        with self._lock:
            requests, self._pending = self._pending, []
            self._submits.clear()
            for request in requests:
                if request._on_wire:
                    self._note_unknown(request)
        for request in requests:
            if request._on_wire:
                error: Exception = OutcomeUnknownError(
                    f"the connection dropped with {request!r} in flight ({reason}); it was not sent again and may "
                    "or may not have been executed", request.cid, request.cid_date, request.order_id)
            else:
                error = NotSentError(f"{request!r} was never sent: the connection dropped first ({reason}); nothing "
                                     "happened, sending it again is safe", request.cid, request.cid_date,
                                     request.order_id)
            self._settle(request, None, error)

    def reconcile(self, orders: Any) -> List[Any]:
        """The fresh orders snapshot after re-authentication: the unknown-outcome orders it holds."""
        with self._lock:
            found = [order for order in orders if order.cid in self.unknown]
            for order in found:
                del self.unknown[order.cid]
        return found

    # -- correlation (under the lock) ----------------------------------------------------------

    def _answered_by(self, kind: str, row: Any) -> Optional[Request]:
        """The request a notification of ``kind`` with order array ``row`` answers, or None."""
        unanswered = [r for r in self._pending if r.kind == kind and not r._notified]
        if not unanswered:
            return None
        if kind in _ANSWERED_IN_ORDER:
            return unanswered[0]
        order_id, cid = _int_field(row, 0), _int_field(row, 2)
        if kind == "submit":
            request = self._submits.get(cid) if cid is not None else None
            return request if request is not None and not request._notified and _answers_submit(request, row) \
                else None
        for request in unanswered:
            if order_id is not None and request.order_id == order_id:
                return request
            if order_id is None and cid is not None and request.order_id is None and request.cid == cid:
                return request
        if order_id is None and (kind == "update" or cid is None):
            return unanswered[0]  # an all-null ERROR: the server answers inputs in order
        if kind == "cancel" and cid is not None:
            # A cancel by cid answered with the resolved order: match the cid and its date.
            mts = _int_field(row, 4)
            for request in unanswered:
                if request.order_id is None and request.cid == cid and (
                        mts is None or request.cid_date is None or _date_matches(request, mts)):
                    return request
        return None

    def _takers(self, tag: str, order: Any) -> List[Request]:
        """The requests an order event answers: at most one of each kind, the oldest unanswered."""
        takers = []
        submit = self._submits.get(order.cid) if order.cid is not None else None
        if submit is not None and submit._answer is None and _answers_submit(submit, order):
            takers.append(submit)
        if tag in ("ou", "oc"):
            update = next((r for r in self._pending if r.kind == "update" and r._answer is None
                           and r.order_id == order.id and _answers_update(r, order)), None)
            if update is not None:
                takers.append(update)
        if tag == "oc":
            cancel = next((r for r in self._pending if r.kind == "cancel" and r._answer is None and (
                r.order_id == order.id or (r.order_id is None and r.cid == order.cid and r.cid_date == order.cid_date))),
                None)
            if cancel is not None:
                takers.append(cancel)
        return takers

    def _remove(self, request: Request) -> None:
        if request in self._pending:
            self._pending.remove(request)
        if request.kind == "submit" and self._submits.get(request.cid or -1) is request:
            del self._submits[request.cid or -1]

    def _note_unknown(self, request: Request) -> None:
        if request.kind == "submit" and request.cid is not None and request.cid_date is not None:
            self.unknown[request.cid] = request.cid_date

    def _settle(self, request: Request, result: Any, error: Optional[BaseException] = None) -> None:
        callbacks = request._finish(result, error)
        if callbacks:
            self._run(callbacks, request)


def _date_matches(request: Request, mts_create: int) -> bool:
    """The order was created on the request's cid date (or within minutes of the request)."""
    try:
        if date_of_ms(mts_create) == request.cid_date:
            return True
    except ValueError:
        return False
    return abs(mts_create - request._made_ms) <= _DATE_SLACK_MS


def _answers_submit(request: Request, answer: Any) -> bool:
    """True when an order (model) or a notification's order array is the order this submit sent."""
    sent = request._sent
    if isinstance(answer, list):  # a notification's array; an ERROR echo has no id and few fields
        fields: Sequence[Tuple[str, Any]] = (
            ("symbol", _field(answer, 3)), ("mts", _field(answer, 4)),
            ("amount", _field(answer, 7) if _field(answer, 7) is not None else _field(answer, 6)),
            ("type", _field(answer, 8)), ("type_prev", _field(answer, 9)), ("price", _field(answer, 16)))
    else:
        fields = (("symbol", answer.symbol), ("mts", answer.mts_create), ("amount", answer.amount_orig),
                  ("type", answer.order_type), ("type_prev", answer.type_prev), ("price", answer.price))
    got = dict(fields)
    if got["symbol"] is not None and got["symbol"] != sent.get("symbol"):
        return False
    if type(got["mts"]) is int and not _date_matches(request, got["mts"]):
        return False
    if got["amount"] is not None and "amount" in sent and not _same_number(sent["amount"], got["amount"]):
        return False
    sent_type = sent.get("type")
    if got["type"] is not None and sent_type is not None and sent_type not in (got["type"], got["type_prev"]):
        return False
    # The price of a type that has one; a stop that became a market or limit order changed it.
    if (got["price"] is not None and "price" in sent and got["type"] == sent_type
            and not str(sent_type).endswith(("MARKET", "TRAILING STOP"))
            and not _same_number(sent["price"], got["price"])):
        return False
    return True


def _answers_update(request: Request, order: Any) -> bool:
    """An update that set a price is answered only by the order carrying that price."""
    price = request._sent.get("price")
    return price is None or order.price is None or _same_number(price, order.price)


__all__ = ["KINDS", "CloseWaiter", "Request", "RequestTracker"]
