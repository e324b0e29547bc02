"""AccountLink: a link that authenticates and carries channel 0 (account streams and inputs).

It dials the authenticated endpoint (``api.``; public data stays on ``api-pub``), sends
``auth`` right after ``conf`` on every connection (docs: ws-auth), and hands channel-0
frames to the client's :class:`~bfxsync._engine.account_session.AccountSession`.

Authentication never hangs and never pretends: an unanswered ``auth`` redials after
``request_timeout``; a ``nonce: small`` refusal (often passing: another process on the key
got ahead, or the clock stepped back) is retried on a fresh connection with a fresh nonce a
few times; any other refusal is final. Channel-0 frames before the answer never become
account state.

Inputs (orders, cancels, ...) leave paced, only while authenticated and after the wallet
snapshot. Each is bound to the connection it was accepted for: accepting (check and enqueue)
and the drop (clear and fail) take one lock, so an input never leaves on a later connection,
and one still queued when the connection drops fails as never sent. Nothing is re-sent.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, List, Mapping, Optional, Tuple

from .. import protocol
from ..errors import AuthenticationError, NotAuthenticatedError, NotConnectedError, ProtocolError
from ..protocol import codec
from .account_session import AccountSession
from .link import Link
from .pacing import ConnectPacer, SendPacer
from .requests import Request
from .runtime import Runtime
from .transport import TransportFactory

logger = logging.getLogger("bfxsync")

#: Error codes that answer an ``auth`` event as a plain ``error`` event (docs: ws-auth).
_AUTH_ERROR_CODES = range(10100, 10200)
#: ``nonce: small`` (docs: ws-auth): retried on a fresh connection with a fresh nonce.
_NONCE_TOO_SMALL = 10114
#: How many times a ``nonce: small`` refusal is retried before it is final: enough for a nonce
#: source running seconds behind another client's on the key.
NONCE_RETRIES = 5
#: Seconds before the first retry; each later one waits twice as long (0.5, 1, 2, 4, 8: 15.5 s in all).
NONCE_RETRY_DELAY = 0.5


class AccountLink(Link):
    """The authenticated connection of a client."""

    def __init__(self, url: str, runtime: Runtime, pacer: ConnectPacer, send_pacer: SendPacer,
                 wake: Callable[[float], None], transport_factory: TransportFactory, session: AccountSession,
                 input_pacer: SendPacer) -> None:
        super().__init__(url, runtime, pacer, send_pacer, wake, transport_factory)
        self.session = session
        session.repair.backoff = runtime.config.backoff  # re-authentications for damaged state pace like redials
        session.state.max_closed = runtime.config.max_closed_orders  # before the reader starts writing
        self._input_pacer = input_pacer
        # The input queue and the connection generation it belongs to: written under _input_lock
        # only (user threads enqueue, the reader and the scheduler send, the reader clears on a drop).
        self._input_lock = threading.Lock()
        self._inputs: Deque[Tuple[str, Optional[Request], int]] = collections.deque()
        self._generation = 0
        # Authentication progress: the reader thread writes it, the scheduler reads it.
        self._auth_sent_at: Optional[float] = None
        self._nonce_refusals = 0
        self._warned_early_frames = False

    # -- authentication ------------------------------------------------------------------

    def _after_handshake(self) -> None:
        frame = codec.encode(self.session.auth_frame())
        self._auth_sent_at = time.monotonic()
        try:
            self.connection.send(frame)  # never logged: it carries the signature
        except NotConnectedError:
            pass  # the connection ended; the next one authenticates again

    def _on_auth(self, event: Mapping[str, Any]) -> None:
        if self._auth_sent_at is None:
            return  # an answer to nothing we sent (a duplicate): the first answer stands
        self._auth_sent_at = None
        refusal = self.session.on_auth(event, self.number)
        if refusal is None:
            self._nonce_refusals = 0
        else:
            self._refused(refusal)

    def _refused(self, refusal: AuthenticationError) -> None:
        """Retry a passing refusal on a fresh connection; stop for good on a final one."""
        if refusal.code == _NONCE_TOO_SMALL and self._nonce_refusals < NONCE_RETRIES:
            self._nonce_refusals += 1
            self.session.counts["auth_retries"] += 1
            logger.warning("authentication refused on connection %d: %s; retrying with a fresh nonce on a new "
                           "connection (%d of %d)", self.number, refusal, self._nonce_refusals, NONCE_RETRIES)
            delay = NONCE_RETRY_DELAY * 2 ** (self._nonce_refusals - 1)
            self.recovered("reauthenticate", f"{refusal.msg}: retrying with a fresh nonce in {delay:g} s")
            self.connection.drop("authentication refused with nonce: small; retrying", redial_after=delay)
            return
        self.session.refuse(refusal)
        self.connection.stop()  # a final refusal is not retried in a loop

    def _on_error(self, event: Mapping[str, Any]) -> None:
        code = event.get("code")
        if self._auth_sent_at is not None and (
                code in _AUTH_ERROR_CODES or str(event.get("msg", "")).startswith("auth")):
            self._auth_sent_at = None
            self._refused(self.session.refusal(code, event.get("msg")))
            return
        super()._on_error(event)

    # -- channel 0 -----------------------------------------------------------------------------

    def _on_channel_zero(self, message: List[Any], text: str) -> None:
        if len(message) < 2 or type(message[1]) is not str:
            raise ProtocolError(f"account frame without a tag: {text[:100]!r}")
        tag = message[1]
        sequenced = self.flags & protocol.FLAG_SEQ_ALL
        if tag == protocol.HEARTBEAT:
            if sequenced and len(message) > 2:
                self._check_sequence(message[2])
            return
        if len(message) < 3:
            raise ProtocolError(f"account frame without payload: {text[:100]!r}")
        if not self.session.authenticated.is_set():
            # Account data is only the account's after the server said OK (docs: ws-auth).
            self.session.counts["account_frames_before_auth"] += 1
            if not self._warned_early_frames:
                self._warned_early_frames = True
                logger.warning("account frame %r before a successful authentication on connection %d: ignored "
                               "(counted in Client.stats()['account_frames_before_auth'])", tag, self.number)
            return
        seq = auth_seq = None
        if sequenced:
            # Channel-0 frames end with [seq, authSeq]: the connection's and the account's numbers.
            seq = message[3] if len(message) > 3 else None
            self._check_sequence(seq)
            if len(message) > 4:
                auth_seq = message[4]
                if not self.session.check_auth_seq(auth_seq):
                    self.connection.drop(f"account sequence gap at {auth_seq}: re-authenticating for fresh snapshots")
                    return
        self.session.on_frame(tag, message[2], seq, auth_seq)
        if self._inputs:
            self.drain_inputs()  # the wallet snapshot may just have opened the gate

    def on_closed(self, reason: str, code: Optional[int], will_reconnect: bool) -> None:
        self._auth_sent_at = None
        with self._input_lock:
            # One step with send_input's check: an input accepted for this connection is either
            # queued here (and fails as never sent) or was refused; none waits for the next one.
            self._generation += 1
            self._inputs.clear()
            self.session.connection_lost(reason)
        self.session.requests.fail_all(reason)  # outside the lock: callbacks may run
        super().on_closed(reason, code, will_reconnect)

    # -- inputs ------------------------------------------------------------------------------------

    def send_input(self, frame: List[Any], request: Optional[Request] = None) -> None:
        """Accept one input for this connection; it leaves paced once the wallet snapshot is in.

        ``request`` (None for ``calc``) is registered before the input is queued, so an answer
        can never come first.

        Raises:
            AuthenticationError: the server refused to authenticate (final).
            NotAuthenticatedError: not authenticated now: inputs never wait across a reconnect.
            ValueError: a new order whose cid is already in flight.
        """
        text = codec.encode(frame)
        with self._input_lock:
            if self.session.refused is not None:
                raise self.session.refused
            if not self.session.authenticated.is_set():
                raise NotAuthenticatedError("not authenticated (the account connection is down or still "
                                            "authenticating; wait_authenticated() waits for it)")
            if request is not None:
                self.session.requests.register(request)
            self._inputs.append((text, request, self._generation))
        self.drain_inputs()

    def drain_inputs(self) -> None:
        """Send queued inputs while the pacer allows and the account is ready; the scheduler retries."""
        with self._input_lock:  # held across the send: a drop cannot clear the queue mid-send
            while self._inputs and self.session.ready.is_set():
                wait = self._input_pacer.take()
                if wait:
                    self.wake(wait)
                    return
                text, request, generation = self._inputs.popleft()
                if generation != self._generation:
                    continue  # accepted for an earlier connection: its request already failed as never sent
                try:
                    self.connection.send(text)
                except NotConnectedError:
                    # Nothing complete reached the server. on_closed() fails the request as never sent.
                    return
                if request is not None:
                    self.session.requests.mark_sent(request)

    def _expire_queued(self, now: float) -> None:
        """Inputs still waiting for the pacer at their request's deadline never leave: not sent."""
        with self._input_lock:
            late = [entry for entry in self._inputs if entry[1] is not None and entry[1].deadline <= now]
            if late:
                self._inputs = collections.deque(entry for entry in self._inputs if entry not in late)
        for _, request, _ in late:
            if request is not None:
                self.session.requests.not_sent(request, f"its deadline of {request.timeout:g} s passed while it "
                                                        "waited for the input pacer")

    def sweep(self, now: float) -> None:
        super().sweep(now)
        reauth = self.session.settle_late_snapshots(now)
        if reauth is not None:
            self.connection.drop(reauth)  # the fresh snapshots come with the next authentication
        self._expire_queued(now)
        self.session.requests.expire(now)
        sent_at = self._auth_sent_at
        timeout = self.config.request_timeout
        if sent_at is not None and now - sent_at >= timeout and self.connection.is_open:
            self._auth_sent_at = None
            self.session.counts["auth_timeouts"] += 1
            reason = f"no answer to auth within {timeout:g} s"
            self.recovered("reauthenticate", reason)
            self.connection.drop(f"{reason}: redialling to authenticate again")
        if self._inputs:
            self.drain_inputs()
