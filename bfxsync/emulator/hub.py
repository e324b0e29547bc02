"""The emulator's shared state: the market, the connections, and the request handlers.

Locks, always taken in this order (never the reverse):

1. ``market_lock`` — the market and every subscription's feed state. Held for a whole tick
   (mutation plus fan-out to every connection) and for subscribe (ack plus snapshot), so
   the first update a subscriber gets applies on top of its snapshot.
2. ``trading.lock`` (``account_streams.py``) — accounts, orders and authenticated connections.
3. a connection's ``Session.lock`` — its flags, sequence counter, subscriptions and queue.
4. ``_registry`` (a Condition) — the set of connections; held briefly, nothing is acquired
   under it. Waiters of the control API sleep on it.

No lock is ever held while writing to a socket: sessions queue frames for their writer.
"""
from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Container, Mapping
from typing import TYPE_CHECKING, Any

from bfxsync import protocol

from . import feed
from .account_streams import AccountStreams
from .channels import (
    NoReply,
    SubscribeError,
    ack_frame,
    error_frame,
    pair_field,
    parse_subscribe,
)
from .config import (
    EmulatorConfig,
    SubscribeReply,
    UnsubscribeReply,
    is_well_formed_symbol,
)
from .market import Market
from .session import Session, Transport, now_ms

if TYPE_CHECKING:
    from .replay import Replay

__all__ = ["Hub"]

logger = logging.getLogger(__name__)


class _SymbolFilter:
    """The symbols a subscribe may name: the market's, and with ``any_symbol`` any well-formed one.

    ``perpetual`` narrows the well-formed ones to perpetuals (``deriv:`` status keys).
    """

    def __init__(self, known: Container[str], any_symbol: bool, perpetual: bool = False) -> None:
        self._known, self._any, self._perpetual = known, any_symbol, perpetual

    def __contains__(self, symbol: object) -> bool:
        if symbol in self._known:
            return True
        if not self._any or not isinstance(symbol, str) or not is_well_formed_symbol(symbol):
            return False
        return not self._perpetual or (symbol.startswith("t") and "F0:" in symbol)


class Hub:
    """Everything behind the sockets; ``server.py`` feeds it connections, text and ticks.

    The fault switches (``silent``, ``muted``, ``hold_info``, the reply modes and
    ``corrupt_checksums``) are plain attributes set by the control API; each is read once
    per frame or request, so a change applies from the next one.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.market_lock = threading.Lock()
        self.market = Market(config.symbols, config.seed, config.book_depth, now_ms())
        self.paused = False  # guarded by market_lock
        self.platform_status = config.platform_status
        self.silent = False  # default for new connections
        self.muted = False  # default for new connections
        self.hold_info = False  # connections opened meanwhile get no info frame
        self.subscribe_reply: SubscribeReply = "ok"
        self.unsubscribe_reply: UnsubscribeReply = "ok"
        self.corrupt_checksums: set[tuple[str, str]] = set()  # (symbol, prec); guarded by market_lock
        self.replay: Replay | None = None  # Emulator.replay: subscriptions answered from a recording
        server_bits = random.Random(f"server:{config.seed}").getrandbits(128)
        self.server_id = str(uuid.UUID(int=server_bits, version=4))
        self._registry = threading.Condition()
        self._visible: dict[int, Session] = {}  # counted by the control API
        self._live: dict[int, Session] = {}  # every connection whose handler still runs
        self._conn_ids = itertools.count(1)
        # chanIds are unique across the emulator and large, like the real ones (docs: ws-general).
        self._chan_rng = random.Random(f"chan:{config.seed}")
        self._chan_id = 10_000 + self._chan_rng.randrange(90_000)
        rate = config.rate if config.rate > 0 else 10.0
        self._status_every = max(1, round(config.status_interval * rate))
        # Set when an order gets a tif, so the clock thread re-plans its next wake-up.
        self.clock_wake = threading.Event()
        self.trading = AccountStreams(config, self.market_lock, self.market, self._drop, self.clock_wake.set)
        self._handlers: dict[str, Callable[[Session, dict[str, Any]], None]] = {
            "conf": self._on_conf,
            "ping": self._on_ping,
            "subscribe": self._on_subscribe,
            "unsubscribe": self._on_unsubscribe,
            "auth": self._on_auth,
        }

    # -- connections ---------------------------------------------------------------------
    def open_session(self, transport: Transport) -> Session:
        """Register a new connection, queue its ``info`` frame and start its writer."""
        session = Session(next(self._conn_ids), transport, self.config.max_pending_frames)
        session.silent = self.silent
        session.muted = self.muted
        session.held = self.hold_info
        if not session.held:
            session.send_event({"event": "info", "version": self.config.version, "serverId": self.server_id,
                                "platform": {"status": self.platform_status}})
        with self._registry:
            self._visible[session.id] = session
            self._live[session.id] = session
            self._registry.notify_all()
        session.start()
        logger.debug("connection %d opened", session.id)
        return session

    def detach(self, session: Session) -> None:
        """Stop counting ``session`` (it is being closed); frames are no longer produced for it."""
        with self._registry:
            self._visible.pop(session.id, None)
            self._registry.notify_all()

    def _drop(self, session: Session) -> None:
        # Fault injection from the trading side (drop_after_next_input): end it abruptly.
        self.detach(session)
        session.abort()

    def close_session(self, session: Session) -> None:
        """The connection's handler is ending: forget it and join its writer.

        The account streams hear of it first, so a dead-man switch cancels the account's
        orders before the connection is forgotten.
        """
        self.trading.session_closed(session)
        if self.replay is not None:
            self.replay.session_closed(session)
        self.detach(session)
        session.finish()
        with self._registry:
            self._live.pop(session.id, None)
            self._registry.notify_all()
        logger.debug("connection %d closed", session.id)

    def sessions(self) -> list[Session]:
        """The connections still counted (not yet detached); a snapshot, safe to iterate."""
        with self._registry:
            return list(self._visible.values())

    def live_sessions(self) -> list[Session]:
        """Every connection whose handler still runs, detached ones included (for shutdown)."""
        with self._registry:
            return list(self._live.values())

    def find(self, conn_id: int) -> Session:
        """The open connection numbered ``conn_id`` (control API); KeyError if there is none."""
        with self._registry:
            try:
                return self._visible[conn_id]
            except KeyError:
                raise KeyError(f"no open connection {conn_id}") from None

    def notify(self) -> None:
        """Wake the control API's waiters to re-check their predicates (after a (un)subscribe)."""
        with self._registry:
            self._registry.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``predicate()``, re-checked on every registry change."""
        with self._registry:
            return self._registry.wait_for(predicate, timeout)

    def connection_count(self) -> int:
        """Number of counted connections (read by ``wait_until`` predicates)."""
        return len(self._visible)

    def subscription_count(self) -> int:
        """Active subscriptions across all counted connections."""
        # Reads dict sizes without the connection locks: atomic in CPython, and waiters
        # re-check on every change anyway.
        return sum(len(s.subs) for s in list(self._visible.values()))

    def live_count(self) -> int:
        """Number of connections whose handler still runs, detached ones included."""
        return len(self._live)

    def wait_flushed(self, timeout: float) -> bool:
        """Wait until every connection's queued frames are written (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        return all(s.wait_flushed(max(0.0, deadline - time.monotonic())) for s in self.sessions())

    # -- market ticks --------------------------------------------------------------------
    def tick(self, automatic: bool = True) -> bool:
        """Advance the market one tick and queue every subscriber's frames.

        An automatic tick (from the market thread) is skipped while paused; the check is
        under the market lock, so no tick starts after ``pause()`` acquired it.
        """
        with self.market_lock:
            if automatic and self.paused:
                return False
            self._tick_locked()
            return True

    def step(self, count: int) -> None:
        """Run ``count`` ticks now, even while paused (control API thread)."""
        with self.market_lock:
            for _ in range(count):
                self._tick_locked()

    def _tick_locked(self) -> None:
        mts = now_ms()
        status_fresh = (self.market.ticks + 1) % self._status_every == 0
        self.market.tick(mts, status_fresh)
        self.trading.on_tick(mts)
        tickers: dict[str, list[Any]] = {}
        for session in self.sessions():
            feed.publish_tick(session, self.market, mts, self.config.f1_interval, status_fresh, tickers,
                              self.corrupt_checksums)

    def heartbeats(self, now: float) -> float:
        """Send due heartbeats on every connection; return when the next one is due."""
        interval = self.config.heartbeat_interval
        due = now + interval
        for session in self.sessions():
            due = min(due, session.send_heartbeats(now, interval))
        return due

    def run_timers(self, now: float) -> float:
        """Send due heartbeats and cancel orders whose ``tif`` is due; return (monotonic) when to run again."""
        due = self.heartbeats(now)
        expiry = self.trading.expire_orders()
        return due if expiry is None else min(due, now + expiry)

    # -- requests ------------------------------------------------------------------------
    def handle(self, session: Session, text: str) -> None:
        """Answer one text frame from a client. Errors are replies; they never close the socket."""
        try:
            request = json.loads(text)
        except ValueError:
            session.send_event({"event": "error", "msg": "event: invalid",
                                "code": protocol.ERR_UNKNOWN_EVENT})
            return
        if isinstance(request, list):
            self.trading.handle_input(session, request)  # channel-0 inputs (account_streams.py)
            return
        if not isinstance(request, dict):
            logger.debug("connection %d: ignoring non-event frame %.80s", session.id, text)
            return
        if self.replay is not None and self.replay.handle(session, request):
            return
        event = request.get("event")
        handler = self._handlers.get(event) if isinstance(event, str) else None
        if handler is None:
            msg = f"event: invalid ({event})" if isinstance(event, str) else "event: invalid"
            session.send_event({"event": "error", "msg": msg, "code": protocol.ERR_UNKNOWN_EVENT})
            return
        handler(session, request)

    def _on_conf(self, session: Session, request: dict[str, Any]) -> None:
        flags = request.get("flags")
        if type(flags) is not int or flags < 0:
            session.send_event(error_frame(request, "conf: invalid", protocol.ERR_CONF_FAIL))
            return
        with session.lock:
            # TIME_S (32) is accepted and has no effect, as a third party observed live.
            session.set_flags(flags)
            session.send_event({"event": "conf", "status": "OK", "flags": flags})

    def _on_ping(self, session: Session, request: dict[str, Any]) -> None:
        pong: dict[str, Any] = {"event": "pong", "ts": now_ms()}
        if "cid" in request:
            pong["cid"] = request["cid"]
        session.send_event(pong)

    def _on_auth(self, session: Session, request: dict[str, Any]) -> None:
        self.trading.authenticate(session, request)

    def _known_pair(self, request: Mapping[str, Any]) -> dict[str, str]:
        # Only symbol channels echo pair/currency (candles and status are keyed differently).
        symbol = request.get("symbol")
        symbol_channel = request.get("channel") in (protocol.TICKER, protocol.TRADES, protocol.BOOK)
        if symbol_channel and isinstance(symbol, str):
            for candidate in (symbol, "t" + symbol):
                if candidate in self.market.symbols:
                    return pair_field(candidate)
        return {}

    def _on_subscribe(self, session: Session, request: dict[str, Any]) -> None:
        if session.held or self.subscribe_reply == "none":
            logger.debug("connection %d: ignoring subscribe (fault injection)", session.id)
            return
        with self.market_lock:
            any_symbol = self.config.any_symbol
            symbols = _SymbolFilter(self.market.symbols, any_symbol)
            derivatives = _SymbolFilter(self.market.derivatives(), any_symbol, perpetual=True)
            try:
                sub = parse_subscribe(request, symbols, derivatives)
            except NoReply:
                logger.debug("connection %d: no reply to %s (as observed live)",
                             session.id, request.get("key"))
                return
            except SubscribeError as exc:
                session.send_event(error_frame(request, exc.msg, exc.code, **self._known_pair(request)))
                return
            if sub.symbol is not None and sub.symbol not in self.market.symbols:
                self.market.add_symbol(sub.symbol, now_ms())  # any_symbol
                logger.debug("created market %s on the fly", sub.symbol)
            with session.lock:
                existing = next((s for s in session.subs.values() if s.identity == sub.identity), None)
                if existing is not None:
                    session.send_event(error_frame(request, "subscribe: dup", protocol.ERR_SUB_MULTI,
                                                   chanId=existing.chan_id, **sub.pair_field()))
                    return
                if len(session.subs) >= self.config.max_subscriptions:
                    session.send_event(error_frame(request, "subscribe: limit", protocol.ERR_SUB_LIMIT,
                                                   **sub.pair_field()))
                    return
                self._chan_id += self._chan_rng.randint(1, 997)
                sub.chan_id = self._chan_id
                session.subs[sub.chan_id] = sub
                session.send_event(ack_frame(sub, request))
                feed.send_snapshot(session, sub, self.market, now_ms())
        self.notify()

    def _on_unsubscribe(self, session: Session, request: dict[str, Any]) -> None:
        chan_id = request.get("chanId")
        mode = self.unsubscribe_reply
        if mode == "error_no_chanid":
            # A refusal the client cannot match to its request (no echo, so no chanId);
            # nothing is unsubscribed, so the channel's data keeps coming.
            session.send_event({"event": "error", "msg": "unsubscribe: invalid", "code": protocol.ERR_UNSUB_FAIL})
            return
        with session.lock:
            if type(chan_id) is int and chan_id in session.subs:
                del session.subs[chan_id]  # data stops in both modes, under the lock (feed.py)
                if mode == "ok":
                    session.send_event({"event": "unsubscribed", "status": "OK", "chanId": chan_id})
            else:
                session.send_event(error_frame(request, "unsubscribe: invalid", protocol.ERR_UNSUB_FAIL))
                return
        self.notify()
