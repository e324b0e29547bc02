"""Channel 0: authentication, account snapshots, inputs and the dead-man switch.

``hub.py`` hands this class ``auth`` events, channel-0 input arrays, market ticks and
closing connections. Every account frame is produced and queued under the trading lock,
so the frames of one account reach each of its connections in the order they happened.
Lock order: market lock -> trading lock (``AccountStreams.lock``) -> connection lock.

Every authenticated connection of an account gets that account's frames (orders placed on
one connection show up on the others), filtered by its own ``filter``; ``calc`` answers
go only to the connection that asked.
"""
from __future__ import annotations

import collections
import copy
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import attrs

from . import funding
from .accounts import EmulatorAccountSnapshot, notification
from .auth import AUTH_MESSAGES, CAPS, AuthFailure, ChannelFilter, check_auth, failure_frame
from .config import EmulatorConfig
from .market import Market
from .matching import Exchange
from .session import Session, now_ms
from .settlement import Out

__all__ = ["AccountStreams", "MAX_MULTI_OPS", "ReceivedInput"]

logger = logging.getLogger(__name__)

#: Operations per ``ox_multi`` frame; node's client sends at most 15 (the WS limit is undocumented).
MAX_MULTI_OPS = 15
_ORDER_INPUTS = ("on", "ou", "oc", "oc_multi", "ox_multi", "fon", "foc")
_MULTI_OPS = ("on", "oc", "ou", "oc_multi")
#: How many received inputs ``AccountStreams.received`` keeps (the newest): bounded, so a
#: long-running emulator does not grow.
RECEIVED_KEPT = 10_000


class ReceivedInput(NamedTuple):
    """One channel-0 input array as it reached the server, before any delay or fault.

    ``key`` is the API key the connection had authenticated as, or None (an input before
    auth, which the server ignores). ``payload`` is a copy of the array's fourth element.
    ``at`` is ``time.monotonic()`` on arrival (comparable with a client's in the same process).
    """

    conn: int
    key: str | None
    tag: str
    payload: Any
    at: float


@attrs.define(eq=False)
class _Link:
    """An authenticated connection: its account, filter and dead-man switch."""

    session: Session
    key: str
    filter: ChannelFilter
    dms: bool


class AccountStreams:
    """The authenticated half of the protocol, behind ``Hub``. Thread-safe.

    The fault switches (``auth_rejection``, ``input_delay``, ``drop_next_input``) are
    plain attributes set by the control API and read once per request.
    """

    def __init__(self, config: EmulatorConfig, market_lock: threading.Lock, market: Market,
                 drop: Callable[[Session], None], on_timer: Callable[[], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.exchange = Exchange(config, market, on_timer)
        self._market_lock = market_lock
        self._drop = drop
        self._secrets = {a.key: a.secret for a in config.accounts}
        self._nonces: dict[str, int] = {}  # highest nonce accepted per key, across connections
        self._links: dict[int, _Link] = {}
        self._rng = random.Random(f"auth:{config.seed}")
        self.auth_rejection: tuple[int, str] | None = None
        self.input_delay = 0.0
        self.drop_next_input: tuple[bool, int | None] | None = None  # (applied first, connection)
        #: Every input received, newest last (under ``lock``): tests check that none arrived twice.
        self.received: collections.deque[ReceivedInput] = collections.deque(maxlen=RECEIVED_KEPT)

    # -- control API -----------------------------------------------------------------------
    def snapshot(self, key: str) -> EmulatorAccountSnapshot:
        """A copy of one account's state; KeyError for an unknown key."""
        with self.lock:
            account = self.exchange.accounts.get(key)
            if account is None:
                raise KeyError(f"no account with API key {key!r}")
            return account.snapshot()

    def linked(self, key: str | None = None) -> list[int]:
        """IDs of the authenticated connections (of account ``key``, or all)."""
        with self.lock:
            return sorted(i for i, link in self._links.items() if key is None or link.key == key)

    def skip_sequence(self, conn: int | None, count: int) -> None:
        """Make the next account sequence number of each authenticated target jump by ``count``."""
        with self.lock:
            links = [link for link in self._links.values() if conn is None or link.session.id == conn]
        for link in links:
            link.session.skip_auth_sequence(count)

    # -- auth ------------------------------------------------------------------------------
    def authenticate(self, session: Session, request: dict[str, Any]) -> None:
        """Answer an ``auth`` event; on success send the snapshots (docs: ws-auth)."""
        with self._market_lock, self.lock:
            if session.id in self._links:
                session.send_event({"event": "error", "msg": "auth: dup", "code": 10100})
                return
            rejection = self.auth_rejection
            if rejection is not None:
                session.send_event(failure_frame(*rejection))
                return
            try:
                key, nonce = check_auth(request, self._secrets, self._nonces)
            except AuthFailure as exc:
                logger.debug("connection %d: auth failed: %s", session.id, exc.msg)
                session.send_event(failure_frame(exc.code, exc.msg))
                return
            self._nonces[key] = nonce
            account = self.exchange.accounts[key]
            dms = request.get("dms")
            reply: dict[str, Any] = {"event": "auth", "status": "OK", "chanId": 0, "userId": account.user_id}
            if type(dms) is int:
                reply["dms"] = dms  # echoed only when sent, as on the wire
            reply["auth_id"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            reply["caps"] = CAPS
            link = _Link(session, key, ChannelFilter.parse(request.get("filter")), dms == 4)
            with session.lock:
                session.send_event(reply)
                session.open_account_channel()
                self._links[session.id] = link
                self._deliver(self._snapshots(key), only=link)
            logger.debug("connection %d: authenticated as %s", session.id, key)

    def _snapshots(self, key: str) -> list[Out]:
        # The order seen after auth OK: ps, ws, os, fos, fcs, fls, then balance and margin updates.
        account = self.exchange.accounts[key]
        settler = self.exchange.settler
        return [
            Out(key, "ps", [p.wire() for p in account.positions.values()]),
            Out(key, "ws", [account.wallet_wire(w) for w in account.wallets]),
            Out(key, "os", [o.wire() for o in account.orders.values()]),
            Out(key, "fos", [o.wire() for o in account.offers.values()]),
            Out(key, "fcs", []),
            Out(key, "fls", []),
            Out(key, "bu", settler.balance(key)),
            Out(key, "miu", settler.margin_base(key)),
        ]

    # -- inputs ------------------------------------------------------------------------------
    def handle_input(self, session: Session, frame: list[Any]) -> None:
        """One channel-0 input ``[0, TAG, null, PAYLOAD]`` (docs: ws-auth-input)."""
        with self.lock:
            link = self._links.get(session.id)
            if len(frame) >= 4 and isinstance(frame[1], str):
                self.received.append(ReceivedInput(session.id, link.key if link is not None else None, frame[1],
                                                   copy.deepcopy(frame[3]), time.monotonic()))
        if link is None or len(frame) < 4 or frame[0] != 0 or not isinstance(frame[1], str):
            # The live server ignores inputs before auth; so do malformed envelopes here.
            logger.debug("connection %d: ignoring input %.80r", session.id, frame)
            return
        tag, payload = frame[1], frame[3]
        delay = self.input_delay
        if delay > 0 and session.wait_gone(delay):
            return
        drop = self._claim_drop(session, tag)
        if drop is False:  # dropped before the input is applied
            self._drop(session)
            return
        with self._market_lock, self.lock:
            out = self._carry_out(link, tag, payload, now_ms())
            if drop:
                # Applied, then the connection ends: the frames go to the account's other
                # connections only (the dropped one stops accepting frames first).
                self._drop(session)
            self._deliver(out)

    def _claim_drop(self, session: Session, tag: str) -> bool | None:
        """Consume ``drop_next_input`` if it targets this input: its ``applied`` flag, else None."""
        with self.lock:
            pending = self.drop_next_input
            if pending is None or tag not in _ORDER_INPUTS or pending[1] not in (None, session.id):
                return None
            self.drop_next_input = None
            return pending[0]

    def _carry_out(self, link: _Link, tag: str, payload: Any, mts: int) -> list[Out]:
        """Have the exchange carry out one input (``on``, ``ou``, ``oc``, ...); the frames it answers with."""
        exchange, key = self.exchange, link.key
        if tag == "on":
            return exchange.place(key, payload, mts)
        if tag == "ou":
            return exchange.update(key, payload, mts)
        if tag == "oc":
            return exchange.cancel(key, payload, mts)
        if tag == "oc_multi":
            return exchange.cancel_multi(key, payload, mts)
        if tag == "ox_multi":
            return self._multi(link, payload, mts)
        if tag == "fon":
            return funding.new_offer(exchange, key, payload, mts)
        if tag == "foc":
            return funding.cancel_offer(exchange, key, payload, mts)
        if tag == "calc":
            return funding.calc(exchange, key, payload, link.session.id)
        if tag == "n":
            return self._custom_notification(link, payload, mts)
        logger.debug("connection %d: ignoring unknown input %r", link.session.id, tag)
        return []

    def _multi(self, link: _Link, payload: Any, mts: int) -> list[Out]:
        """``ox_multi``: up to 15 of on/oc/ou/oc_multi, each answered as if sent alone.

        They are preceded by one ``ox_multi-req`` SUCCESS notification (NOTIFY_INFO null);
        a malformed or oversized batch gets only ``ox_multi-req`` ERROR ``input: invalid``
        (seen live) and nothing of it is applied.
        """
        valid = (isinstance(payload, list) and 0 < len(payload) <= MAX_MULTI_OPS
                 and all(isinstance(op, list) and len(op) == 2 and op[0] in _MULTI_OPS
                         and isinstance(op[1], dict) for op in payload))
        if not valid:
            return [Out(link.key, "n", notification(mts, "ox_multi-req", None, "ERROR", "input: invalid"),
                        "current")]
        text = f"Submitting {len(payload)} order operations."
        out = [Out(link.key, "n", notification(mts, "ox_multi-req", None, "SUCCESS", text), "current")]
        for tag, body in payload:
            out.extend(self._carry_out(link, tag, body, mts))
        return out

    def _custom_notification(self, link: _Link, payload: Any, mts: int) -> list[Out]:
        """``n`` with a ``ucm-*`` type: echoed to every connection of the account (docs: ws-auth-notifications).

        The echo's exact shape is undocumented; we send ``info`` as NOTIFY_INFO, STATUS
        ``SUCCESS`` and ``info.message`` (if any) as TEXT, which is what the official
        clients read.
        """
        kind = payload.get("type") if isinstance(payload, dict) else None
        if not isinstance(kind, str) or not kind.startswith("ucm"):
            return [Out(link.key, "n", notification(mts, str(kind), None, "ERROR", "type: invalid"),
                        "current", link.session.id)]
        info = payload.get("info")
        message = info.get("message") if isinstance(info, dict) else None
        text = message if isinstance(message, str) else None
        return [Out(link.key, "n", notification(mts, kind, info, "SUCCESS", text), "current")]

    # -- market and connections ------------------------------------------------------------
    def on_tick(self, mts: int) -> None:
        """The market moved (called with the market lock held): stops and resting fills."""
        with self.lock:
            self._deliver(self.exchange.on_tick(mts))

    def expire_orders(self) -> float | None:
        """Cancel the orders whose ``tif`` is due; seconds until the next one is (None: none is set).

        Called by the emulator's clock thread; takes the market lock, then the trading lock,
        but only while some order has a tif (one placed meanwhile wakes the clock).
        """
        if not self.exchange.has_expiries:
            return None
        with self._market_lock, self.lock:
            mts = now_ms()
            self._deliver(self.exchange.expire(mts))
            due = self.exchange.next_expiry()
        return None if due is None else max(0.0, (due - mts) / 1000)

    def session_closed(self, session: Session) -> None:
        """A connection ended; with ``dms: 4`` its account's open orders are cancelled (docs: ws-auth)."""
        with self._market_lock, self.lock:
            link = self._links.pop(session.id, None)
            if link is not None and link.dms:
                cancelled = self.exchange.cancel_all(link.key, now_ms())
                logger.debug("connection %d closed: dead-man switch cancelled %d orders",
                             session.id, len(cancelled))
                self._deliver(cancelled)

    def _deliver(self, frames: Iterable[Out], only: _Link | None = None) -> None:
        # Called with the trading lock held, so the account's frames keep their order.
        links = list(self._links.values()) if only is None else [only]
        for out in frames:
            for link in links:
                if link.key != out.key or (out.only is not None and link.session.id != out.only):
                    continue
                payload = link.filter.apply(out.tag, out.payload)
                if payload is not None:
                    link.session.send_array(0, [out.tag, payload], auth=out.seq)

    @staticmethod
    def rejection(code: int, msg: str | None) -> tuple[int, str]:
        """The ``(code, msg)`` of a forced auth failure; a known code gets its usual message."""
        return code, msg if msg is not None else AUTH_MESSAGES.get(code, "auth: invalid")
