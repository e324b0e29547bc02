"""The account side of a client: credentials, authentication state, live account state, requests.

It outlives connections: the account link re-authenticates after every reconnect with the
same options, and the state is rebuilt from the fresh snapshots (``Authenticated`` with
``reauthenticated=True`` says so). Channel-0 frames are applied to
:class:`~bfxsync.account.AccountState` (readable from any thread as consistent
snapshots) and delivered to the per-stream callbacks.

Waits for an order's close (:meth:`AccountSession.wait_closed`) look in the closed orders
and register under ``_close_lock`` in one step; the reader, after recording a close in the
state, wakes the matching waits under the same lock, so a close is never missed between the
look and the wait. A drop (or the client's end) fails every wait at once.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

from ..account import AccountState
from ..account.models import ClosedOrder
from ..account.repair import SnapshotRepair
from ..account.state import closed_key
from ..auth import Credentials, NonceSource, auth_error_hint, auth_event
from ..errors import AuthenticationError, BfxTimeoutError, NotConnectedError, ProtocolError
from ..events import AccountMessage, Authenticated, OrderReconciled
from .callback_runner import CallbackRunner
from .requests import Callback, Request, RequestTracker
from .threads import refuse_on_bfxsync_thread, wait_event

logger = logging.getLogger("bfxsync")

#: Order tags whose payload settles requests.
_ORDER_EVENTS = ("on", "ou", "oc")
#: Seconds after authentication after which missing snapshots are no longer waited for.
SNAPSHOT_GRACE = 5.0


class _CloseWait:
    """One thread waiting for one order's close; settled once by the reader or a drop (under ``_close_lock``)."""

    def __init__(self, key: Union[int, Tuple[int, str]]) -> None:
        self.key = key
        self.done = threading.Event()
        self.closed: Optional[ClosedOrder] = None
        self.error: Optional[Exception] = None

    def matches(self, closed: ClosedOrder) -> bool:
        if isinstance(self.key, int):
            return closed.id == self.key
        return closed.cid == self.key[0] and _cid_date(closed) == self.key[1]


def _cid_date(closed: ClosedOrder) -> Optional[str]:
    """The cid date, or None for a creation time that no date has."""
    try:
        return closed.cid_date
    except (ValueError, OverflowError):
        return None


def _describe(key: Union[int, Tuple[int, str]]) -> str:
    return f"order {key}" if isinstance(key, int) else f"the order with cid {key[0]} of {key[1]}"


def _expected_snapshots(filters: Optional[Sequence[str]]) -> FrozenSet[str]:
    """The snapshot tags the server sends after auth for these filters (docs: ws-auth, channel filters)."""
    if filters is None:
        return frozenset({"ps", "ws", "os", "fos", "fcs", "fls"})
    expected = set()
    for name in filters:
        if name.startswith("trading"):
            expected |= {"os", "ps"}
        elif name.startswith("wallet"):
            expected.add("ws")
        elif name.startswith("funding"):
            expected |= {"fos", "fcs", "fls"}
    return frozenset(expected)


class AccountSession:
    """Authentication and account state of one client (thread-safe where it says so)."""

    def __init__(self, credentials: Credentials, nonce: NonceSource, dms: bool, filters: Optional[Sequence[str]],
                 callbacks: CallbackRunner) -> None:
        self.credentials = credentials
        self._nonce = nonce
        self._dms = 4 if dms else None
        self._filters = list(filters) if filters is not None else None
        # Check dms and filters now, on the caller's thread, rather than in the reader at each auth.
        auth_event(credentials, 1, self._dms, self._filters)
        self._callbacks = callbacks
        self.counts: Dict[str, int] = {"authentications": 0, "account_sequence_gaps": 0, "account_frames": 0,
                                       "auth_retries": 0, "auth_timeouts": 0, "account_frames_before_auth": 0}
        self.state = AccountState(self.counts)  # counts unreadable snapshot rows
        self.state.on_close = self._order_closed
        # Waits for a close; the list and every wait's fields are written under _close_lock only.
        self._close_lock = threading.Lock()
        self._close_waits: List[_CloseWait] = []
        #: When to re-authenticate for damaged state (the account link's sweep asks; it sets the back-off).
        self.repair = SnapshotRepair(self.counts)
        self.requests = RequestTracker(self._run_callbacks, self.wait_closed)
        #: Set while authenticated and the wallet snapshot is in (inputs may go out).
        self.ready = threading.Event()
        #: Set once every snapshot the filters ask for arrived (or SNAPSHOT_GRACE passed after auth).
        self.synced = threading.Event()
        #: ``time.monotonic()`` of the last successful authentication.
        self.authenticated_at: Optional[float] = None
        self._expected = _expected_snapshots(filters)
        self.authenticated = threading.Event()
        #: The refusal, when the server refused to authenticate (not retried).
        self.refused: Optional[AuthenticationError] = None
        self.auth_count = 0
        self.user_id: Optional[int] = None
        self._last_auth_seq: Optional[int] = None

    # -- authentication (reader thread of the account link) ------------------------------

    def auth_frame(self) -> Dict[str, Any]:
        """A fresh ``auth`` event (new nonce); the state starts over until the snapshots arrive."""
        self.authenticated.clear()
        self.ready.clear()
        self.synced.clear()
        self.state.reset()
        self._last_auth_seq = None
        return auth_event(self.credentials, self._nonce(), self._dms, self._filters)

    def on_auth(self, event: Mapping[str, Any], connection: int) -> Optional[AuthenticationError]:
        """The server's answer; returns the refusal (the link retries or stops) or None."""
        if event.get("status") == "OK":
            self.auth_count += 1
            self.counts["authentications"] += 1
            user_id = event.get("userId")
            self.user_id = user_id if type(user_id) is int else None
            caps = event.get("caps")
            self.authenticated_at = time.monotonic()
            self.authenticated.set()
            if self._filters is not None and not any(f.startswith("wallet") for f in self._filters):
                self.ready.set()  # no wallet snapshot will come to wait for
            logger.info("authenticated on connection %d (user %s)", connection, self.user_id)
            self._callbacks.emit("authenticated", Authenticated(
                self.user_id, caps if isinstance(caps, Mapping) else {}, self.auth_count > 1, connection))
            return None
        return self.refusal(event.get("code"), event.get("msg"))

    @staticmethod
    def refusal(code: Any, msg: Any) -> AuthenticationError:
        """The error for a refused ``auth`` (a hint for every code, a generic one when missing or unknown)."""
        code = code if type(code) is int else None
        text = msg if isinstance(msg, str) and msg else "authentication failed"
        return AuthenticationError(code, text, auth_error_hint(code))

    def refuse(self, error: AuthenticationError) -> None:
        """A final refusal (not retried): waits and account calls raise it from now on.

        The account state is empty: ``auth_frame()`` cleared it, and the link applies no frame
        before a successful answer.
        """
        self.refused = error
        self.authenticated.clear()
        self.ready.clear()
        self.synced.clear()
        logger.error("authentication refused: %s", error)
        self._callbacks.report(error)

    def settle_late_snapshots(self, now: float) -> Optional[str]:
        """Scheduler: a snapshot the server never sends must not hold waits and inputs for ever.

        Returns why to re-authenticate when the account state is damaged (the link then drops
        the connection for fresh snapshots), else None. Damaged state is not called synced
        while re-authenticating may still repair it.
        """
        at = self.authenticated_at
        if not self.authenticated.is_set() or at is None:
            return None
        damaged = self.state.damaged
        reauth = self.repair.verdict(now, self.auth_count, damaged)
        if reauth is not None or (damaged and not self.repair.given_up(self.auth_count)):
            return reauth
        missing = sorted(self._expected - self.state.snapshots_received)
        if not self.synced.is_set() and (not missing or now - at >= SNAPSHOT_GRACE):
            if missing:
                logger.warning("account snapshots %s did not arrive within %g s of authentication; "
                               "going on without them", ", ".join(missing), SNAPSHOT_GRACE)
            self.ready.set()
            self.synced.set()
        return None

    def connection_lost(self, reason: str = "the connection dropped") -> None:
        """The account connection ended: inputs may no longer leave (the link holds its input lock),
        and waits for a close fail now (a close while disconnected would go unseen)."""
        self.authenticated.clear()
        self.ready.clear()
        self.synced.clear()
        with self._close_lock:
            waits, self._close_waits = self._close_waits, []
            for wait in waits:
                wait.error = NotConnectedError(
                    f"the account connection ended while waiting for {_describe(wait.key)} to close ({reason}); "
                    "after re-authentication, the open orders and closed_order() tell its state (a close "
                    "missed meanwhile is listed with an unknown status)")
                wait.done.set()

    # -- closes (reader thread: _order_closed; any other thread: wait_closed) --------------------

    def _order_closed(self, closed: ClosedOrder) -> None:
        """The state recorded a close: wake the waits for that order."""
        with self._close_lock:
            if not self._close_waits:
                return
            still = []
            for wait in self._close_waits:
                if wait.matches(closed):
                    wait.closed = closed
                    wait.done.set()
                else:
                    still.append(wait)
            self._close_waits = still

    def wait_closed(self, order_id: Optional[int] = None, cid: Optional[int] = None, cid_date: Any = None,
                    timeout: float = 10.0) -> ClosedOrder:
        """Block until the order (by id, or by cid and cid date) closed, and return how it ended.

        Returns at once when it is already among the closed orders. See ``Account.wait_order_closed``.
        """
        key = closed_key(order_id, cid, cid_date)  # ValueError first, whatever the thread
        refuse_on_bfxsync_thread("wait_order_closed")
        wait = _CloseWait(key)
        with self._close_lock:  # then the state's lock (the reader never takes them the other way round)
            found = self.state.find_closed(order_id, cid=cid, cid_date=cid_date)
            if found is not None:
                return found
            if self.refused is not None:
                raise self.refused
            if not self.authenticated.is_set():
                raise NotConnectedError(f"cannot wait for {_describe(key)} to close: the account connection is "
                                        "down or not authenticated yet (wait_authenticated() waits for it)")
            self._close_waits.append(wait)
        if not wait_event(wait.done, timeout):
            with self._close_lock:
                if wait in self._close_waits:
                    self._close_waits.remove(wait)
        with self._close_lock:  # settled under this lock: read the outcome under it too
            closed, error = wait.closed, wait.error
        if closed is not None:
            return closed
        if error is not None:
            raise error
        raise BfxTimeoutError(f"{_describe(key)} did not close within {timeout:g} s (it may still be open: "
                              "snapshot().orders has its state)")

    # -- channel 0 (reader thread) ----------------------------------------------------------

    def check_auth_seq(self, auth_seq: Any) -> bool:
        """SEQ_ALL's account number; False on a gap (the link then re-authenticates)."""
        if type(auth_seq) is not int:
            raise ProtocolError(f"account sequence number is not an integer: {auth_seq!r:.50}")
        last = self._last_auth_seq
        if auth_seq == 0 or auth_seq == last:
            return True  # calc answers carry 0; notifications were seen repeating the current number
        self._last_auth_seq = auth_seq
        if last is not None and auth_seq != last + 1:
            self.counts["account_sequence_gaps"] += 1
            return False
        return True

    def on_frame(self, tag: str, payload: Any, seq: Optional[int], auth_seq: Optional[int]) -> None:
        """Apply one account frame, settle requests, reach the callbacks."""
        self.counts["account_frames"] += 1
        stream, items, snapshot = self.state.apply(tag, payload)
        if stream == "unknown":
            return
        if stream == "notifications":
            for notification in items:
                self.requests.on_notification(notification)
        elif stream == "orders":
            if snapshot:
                for order in self.requests.reconcile(items):
                    self._callbacks.emit("order_reconciled", OrderReconciled(order, order.cid, order.cid_date))
            elif tag in _ORDER_EVENTS:
                for order in items:
                    self.requests.on_order(tag, order)
        if snapshot:
            if stream == "wallets":
                self.ready.set()  # the docs: inputs before the wallet snapshot may fail on balance
            if self._expected <= self.state.snapshots_received and not self.state.damaged:
                self.synced.set()
        message = AccountMessage(stream, items, snapshot, tag, seq, auth_seq)
        self._callbacks.emit("account", message)
        self._callbacks.emit(f"account:{stream}", message)

    # -- requests ------------------------------------------------------------------------------

    def _run_callbacks(self, callbacks: List[Callback], request: Request) -> None:
        for callback in callbacks:
            self._callbacks.call((callback,), request)

