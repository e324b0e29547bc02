"""``Emulator``: a local Bitfinex WebSocket v2 server with a control API for tests.

Built on ``websockets.sync.server`` (optional: ``pip install "websockets>=15"``).
Threads, all joined by :meth:`Emulator.stop`:

* ``bfxsync-emulator-server`` accepts connections; websockets runs one handler thread per
  connection, which reads requests and answers them, and one that receives its frames: the
  emulator names them ``bfxsync-emulator-connection-<n>`` and ``bfxsync-emulator-receiver-<n>``;
* ``bfxsync-emulator-writer-<n>`` writes one connection's queued frames (``session.py``);
* ``bfxsync-emulator-market`` ticks the market ``rate`` times per second;
* ``bfxsync-emulator-heartbeat`` sends ``hb`` on idle channels and cancels orders whose
  ``tif`` is due (wall-clock time, as on the exchange, whether or not the market ticks).

Every control method is thread-safe and every wait takes a timeout.
"""
from __future__ import annotations

import inspect
import itertools
import logging
import os
import threading
import time
from typing import Any

import attrs
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from .config import EmulatorConfig
from .faults import FaultControls
from .feed import book_entries, checksum_of
from .hub import Hub
from .ratelimit import ConnectLimiter
from .replay import Replay
from .session import shutdown_socket
from .trading_faults import TradingControls

__all__ = ["Emulator"]

logger = logging.getLogger(__name__)

_FLUSH_TIMEOUT = 5.0

# The real server sends no protocol pings (docs: ws-general). websockets 15 added keepalive pings to its
# sync server, on by default, and the ``ping_interval`` option to turn them off; before 15 the
# sync server never pings and rejects the option.
_NO_KEEPALIVE: dict[str, Any] = (
    {"ping_interval": None} if "ping_interval" in inspect.signature(serve).parameters else {})


_connection_numbers = itertools.count(1)


def _name_connection_threads(connection: ServerConnection) -> None:
    """Give websockets' threads for one connection names that say whose they are.

    websockets leaves them unnamed, and before Python 3.10 an unnamed thread's name does not
    even say its function: thread dumps (and the test suite's check for leftover threads)
    could not tell a connection's threads from anyone else's.
    """
    number = next(_connection_numbers)
    threading.current_thread().name = f"bfxsync-emulator-connection-{number}"  # the handler thread
    receiver = getattr(connection, "recv_events_thread", None)
    if isinstance(receiver, threading.Thread):
        receiver.name = f"bfxsync-emulator-receiver-{number}"


class _WebSocketTransport:
    """Adapts a websockets connection to what a :class:`Session` writes to."""

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection

    def send(self, text: str) -> None:
        self._connection.send(text)

    def close(self, code: int, reason: str) -> None:
        self._connection.close(code, reason)

    def abort(self) -> None:
        # websockets notices the EOF on its reader thread and closes the socket itself.
        shutdown_socket(self._connection.socket)


class Emulator(FaultControls, TradingControls):
    """A local Bitfinex v2 server serving seeded synthetic market data.

    Use it as a context manager (starts on enter, stops and joins on exit)::

        with Emulator(seed=1, rate=20.0, heartbeat_interval=1.0) as emu:
            client = connect(emu.url)

    Control methods may be called from any thread (tests call them from the test thread
    while clients read on theirs); none blocks longer than its timeout. Methods taking
    ``conn`` act on one connection (an ID from :meth:`connection_ids`) or, with None, on all.
    The fault-injection methods are documented on :class:`~bfxsync.emulator.faults.FaultControls`,
    account inspection and trading faults on :class:`~bfxsync.emulator.trading_faults.TradingControls`.

    Accounts (``EmulatorConfig.accounts``; by default key ``demo-key``, secret
    ``demo-secret``) authenticate with real signatures and trade against the market's
    books: see ``matching.py`` for what the engine does.

    Args:
        config: an :class:`EmulatorConfig`; keyword arguments override its fields.
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        self.config = attrs.evolve(config or EmulatorConfig(), **overrides)
        self._ssl_context = self.config.make_ssl_context()  # fails early on a bad cert/key
        self._hub = Hub(self.config)
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._refuse_status: int | None = None
        self._port: int | None = None
        self._limiter = ConnectLimiter(self.config.connect_limit, self.config.connect_window)
        self._count_lock = threading.Lock()
        self._handshakes = 0
        self._rate_limited = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind, then start serving and ticking. Returns self."""
        with self._state_lock:
            if self._started:
                raise RuntimeError("an Emulator can be started only once")
            self._started = True
        config = self.config
        try:
            self._server = serve(
                self._handle, config.host, config.port, ssl=self._ssl_context,
                compression=None,  # keeps frames cheap; websocket-client does not negotiate it anyway
                open_timeout=5, close_timeout=config.close_timeout,
                process_request=self._process_request,
                logger=logging.getLogger(__name__ + ".websockets"),
                **_NO_KEEPALIVE,
            )
        except BaseException:
            self._stopped = True  # nothing to stop: the port could not be bound
            raise
        self._port = self._server.socket.getsockname()[1]
        self._spawn("server", self._server.serve_forever)
        if config.rate > 0:
            self._spawn("market", self._market_loop)
        self._spawn("heartbeat", self._heartbeat_loop)
        logger.info("emulator serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Close every connection (1001, then abruptly after ``close_timeout``), join all threads.

        Idempotent.
        """
        with self._state_lock:
            if not self._started or self._stopped or self._server is None:
                self._stopped = True
                return
            self._stopped = True
        self._stop.set()
        self._hub.clock_wake.set()
        for thread in self._threads:
            if thread.name != "bfxsync-emulator-server":
                thread.join(_FLUSH_TIMEOUT)
        hub = self._hub
        for session in hub.live_sessions():
            hub.detach(session)
            session.close(1001, "")
        if not hub.wait_until(lambda: hub.live_count() == 0, self.config.close_timeout + 0.5):
            for session in hub.live_sessions():
                session.abort()
        self._server.shutdown()
        for thread in self._threads:
            thread.join(_FLUSH_TIMEOUT)
            if thread.is_alive():
                logger.warning("%s did not stop", thread.name)
        logger.info("emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port served on (the one picked when the config says 0).

        Raises:
            RuntimeError: before :meth:`start` (there is no port yet).
        """
        if self._port is None:
            raise RuntimeError("Emulator not started; call start() or use it as a context manager")
        return self._port

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/ws/2`` (``wss://`` with TLS); RuntimeError before :meth:`start`."""
        scheme = "wss" if self._ssl_context is not None else "ws"
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}{self.config.path}"

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"bfxsync-emulator-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- threads -------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        """Refuse the upgrade (:meth:`refuse_connections`, then the rate limit); None lets it through."""
        _name_connection_threads(connection)
        status = self._refuse_status
        if status is None:
            address = connection.remote_address
            client = str(address[0]) if isinstance(address, tuple) else str(address)
            if self._limiter.admit(client):
                return None
            status = 429
            with self._count_lock:
                self._rate_limited += 1
            logger.info("refusing a handshake from %s: over %s per %.0f s", client,
                        self.config.connect_limit, self.config.connect_window)
        return connection.respond(status, "Too Many Requests\n" if status == 429 else "Refused\n")

    def refuse_connections(self, status: int | None = 429) -> None:
        """Answer new handshakes with HTTP ``status`` (429: the connection-rate ban, docs: ws-public); None accepts again.

        These refusals are not counted in :attr:`rate_limited`.
        """
        self._refuse_status = status

    @property
    def handshakes(self) -> int:
        """WebSocket upgrades completed since :meth:`start` (refused ones not included)."""
        with self._count_lock:
            return self._handshakes

    @property
    def rate_limited(self) -> int:
        """Handshakes refused with 429 by the ``connect_limit`` rate limit since :meth:`start`."""
        with self._count_lock:
            return self._rate_limited

    def _handle(self, connection: ServerConnection) -> None:
        # Runs on a websockets handler thread, one per connection.
        with self._count_lock:
            self._handshakes += 1
        if self._stop.is_set():
            return
        session = self._hub.open_session(_WebSocketTransport(connection))
        try:
            for message in connection:
                if not isinstance(message, str):
                    continue  # the real server speaks text only
                try:
                    self._hub.handle(session, message)
                except Exception:  # an emulator bug: keep serving this connection
                    logger.exception("connection %d: failed to handle %.200s", session.id, message)
        except ConnectionClosed:
            pass
        finally:
            self._hub.close_session(session)

    def _market_loop(self) -> None:
        interval = 1.0 / self.config.rate
        next_at = time.monotonic()
        while True:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -interval:  # fell behind (slow machine): skip ticks rather than burst
                next_at, delay = time.monotonic(), 0.0
            if self._stop.wait(max(0.0, delay)):
                return
            try:
                self._hub.tick()
            except Exception:  # keep ticking; a bug in one tick must not silence the server
                logger.exception("market tick failed")

    def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval
        wake = self._hub.clock_wake
        while True:
            wake.clear()  # before looking: a tif or a stop() from now on ends the wait below at once
            if self._stop.is_set():
                return
            now = time.monotonic()
            try:
                due = self._hub.run_timers(now)
            except Exception:  # keep the clock going, as the market loop does
                logger.exception("heartbeats or order expiry failed")
                due = now + interval
            # A channel subscribed meanwhile is due only a full interval later: never missed.
            wake.wait(min(max(due - time.monotonic(), 0.005), interval))

    # -- control API: observation ----------------------------------------------------------
    def connection_count(self) -> int:
        """Open connections (those closed or dropped through this API no longer count)."""
        return self._hub.connection_count()

    def connection_ids(self) -> list[int]:
        """IDs of the open connections, oldest first."""
        return sorted(s.id for s in self._hub.sessions())

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until exactly ``n`` connections are open; False on timeout."""
        return self._hub.wait_until(lambda: self._hub.connection_count() == n, timeout)

    def wait_for_subscriptions(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until exactly ``n`` subscriptions are active across all connections."""
        return self._hub.wait_until(lambda: self._hub.subscription_count() == n, timeout)

    def subscriptions(self) -> list[tuple[int, int, str, dict[str, Any]]]:
        """``(connection_id, chan_id, channel, params)`` of every active subscription."""
        result: list[tuple[int, int, str, dict[str, Any]]] = []
        for session in self._hub.sessions():
            with session.lock:
                result.extend((session.id, sub.chan_id, sub.channel, dict(sub.params))
                              for sub in session.subs.values())
        return result

    def book_view(self, symbol: str, prec: str = "P0", length: int = 25) -> tuple[list[list[Any]], list[list[Any]]]:
        """``(bids, asks)``: the book as an F0 subscriber of ``symbol``/``prec``/``len`` has it.

        Entries are wire arrays, best first. Read it while paused for a stable answer.
        """
        with self._hub.market_lock:
            return book_entries(self._hub.market, symbol, prec, length)

    def book_checksum(self, symbol: str, prec: str = "P0", length: int = 25) -> int:
        """The signed checksum a ``cs`` frame for that book would carry now."""
        with self._hub.market_lock:
            return checksum_of(self._hub.market, symbol, prec, length)

    # -- control API: the market -----------------------------------------------------------
    def pause(self, timeout: float = _FLUSH_TIMEOUT) -> bool:
        """Stop ticking; returns once the current tick's frames are written to the sockets."""
        with self._hub.market_lock:
            self._hub.paused = True
        return self._hub.wait_flushed(timeout)

    def resume(self) -> None:
        """Tick again at ``rate``."""
        with self._hub.market_lock:
            self._hub.paused = False

    def step(self, n: int = 1, timeout: float = _FLUSH_TIMEOUT) -> bool:
        """Run ``n`` ticks now (meant for a paused emulator or ``rate=0``); waits until written."""
        self._hub.step(n)
        return self._hub.wait_flushed(timeout)

    # -- control API: replay -------------------------------------------------------------
    def replay(self, path: str | os.PathLike[str], speed: float = 1.0) -> Replay:
        """Serve the recording at ``path`` (``Client(record=...)``, ``bfxsync record``) from now on.

        Every client's subscribe is answered with the matching recorded ack and frames, in
        recorded order, at ``speed`` times the recorded pace (0: as fast as possible); a
        resubscribe gets the next recorded one (see :mod:`bfxsync.emulator.replay`). Use
        ``rate=0`` so the market does not tick for nothing. Returns the :class:`Replay`
        (``wait_finished(timeout)``, ``sent``).

        Raises:
            OSError: the file cannot be read.
            ValueError: it is not a recording.
        """
        replay = Replay.from_file(path, speed, self.config.heartbeat_interval)
        self._hub.replay = replay
        logger.info("replaying %s: %d recorded subscriptions", os.fspath(path), replay.episode_count)
        return replay
