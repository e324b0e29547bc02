"""AccountLink: a link that authenticates and carries channel 0 (account streams and inputs).

It dials the authenticated endpoint (``api.``; public data stays on ``api-pub``), sends
``auth`` right after ``conf`` on every connection (docs: ws-auth), and hands channel-0
frames to the client's :class:`~bfxsync._engine.account_session.AccountSession`. Inputs
(orders, cancels, ...) leave paced, only while authenticated and after the wallet
snapshot; they are never queued across a reconnect, so an order is never replayed.
"""
from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Deque, List, Mapping, Optional

from .. import protocol
from ..errors import NotAuthenticatedError, NotConnectedError, ProtocolError
from ..protocol import codec
from .account_session import AccountSession
from .link import Link
from .pacing import ConnectPacer, SendPacer
from .runtime import Runtime
from .transport import TransportFactory

logger = logging.getLogger("bfxsync")

#: Error codes that answer an ``auth`` event as a plain ``error`` event (docs: ws-auth).
_AUTH_ERROR_CODES = range(10100, 10200)


class AccountLink(Link):
    """The authenticated connection of a client."""

    def __init__(self, url: str, runtime: Runtime, pacer: ConnectPacer, send_pacer: SendPacer,
                 wake: Callable[[float], None], transport_factory: TransportFactory, session: AccountSession,
                 input_pacer: SendPacer) -> None:
        super().__init__(url, runtime, pacer, send_pacer, wake, transport_factory)
        self.session = session
        session.repair.backoff = runtime.config.backoff  # re-authentications for damaged state pace like redials
        self._input_pacer = input_pacer
        self._inputs: Deque[str] = collections.deque()
        self._auth_pending = False

    # -- authentication ------------------------------------------------------------------

    def _after_handshake(self) -> None:
        frame = codec.encode(self.session.auth_frame())
        self._auth_pending = True
        try:
            self.connection.send(frame)  # never logged: it carries the signature
        except NotConnectedError:
            pass  # the connection ended; the next one authenticates again

    def _on_auth(self, event: Mapping[str, Any]) -> None:
        self._auth_pending = False
        refusal = self.session.on_auth(event, self.number)
        if refusal is not None:
            self.connection.stop()  # a refused authentication is not retried in a loop

    def _on_error(self, event: Mapping[str, Any]) -> None:
        code = event.get("code")
        if self._auth_pending and (code in _AUTH_ERROR_CODES or str(event.get("msg", "")).startswith("auth")):
            self._auth_pending = False
            self.session.refuse(code, str(event.get("msg", "authentication failed")))
            self.connection.stop()
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
        self._auth_pending = False
        self._inputs.clear()
        self.session.connection_lost(reason)
        super().on_closed(reason, code, will_reconnect)

    # -- inputs ------------------------------------------------------------------------------------

    def send_input(self, frame: List[Any]) -> None:
        """Queue one input; it leaves paced once authenticated with the wallet snapshot in.

        Raises NotAuthenticatedError when the connection is not authenticated now: inputs
        never wait across a reconnect.
        """
        if self.session.refused is not None:
            raise self.session.refused
        if not self.session.authenticated.is_set():
            raise NotAuthenticatedError("not authenticated (the account connection is down or still authenticating; "
                                        "wait_authenticated() waits for it)")
        self._inputs.append(codec.encode(frame))
        self.drain_inputs()

    def drain_inputs(self) -> None:
        """Send queued inputs while the pacer allows and the account is ready; the scheduler retries."""
        while self._inputs and self.session.ready.is_set():
            wait = self._input_pacer.take()
            if wait:
                self.wake(wait)
                return
            try:
                text = self._inputs.popleft()
            except IndexError:
                return
            try:
                self.connection.send(text)
            except NotConnectedError:
                return  # never re-sent: connection_lost() fails its request as outcome-unknown

    def sweep(self, now: float) -> None:
        super().sweep(now)
        reauth = self.session.settle_late_snapshots(now)
        if reauth is not None:
            self.connection.drop(reauth)  # the fresh snapshots come with the next authentication
        if self._inputs:
            self.drain_inputs()
