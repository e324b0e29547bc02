"""Client: the facade scripts use. Start it, subscribe, register callbacks, close it.

Threading model: each connection has one reader thread that runs the callbacks of the
subscriptions it carries, in frame order; one scheduler thread does the housekeeping
for all of them. A subscription made with ``dispatch="queued"`` has its callbacks run
by a callback thread instead (at most ``Config.dispatch_threads``, started on demand),
so a slow one holds back nobody else. Callbacks must not call the blocking helpers
(``wait_*``, ``ping``, ``run_forever``), which raise ``CallbackThreadError`` there
instead of deadlocking. Everything else (subscribing, unsubscribing, reading books,
``close()``) is safe from any thread, callbacks included.

A client belongs to the process that created it: in a process forked from it every call
raises ``ForkedClientError`` at once, and ``close()`` there only releases the child's
copies of the sockets (the parent's connections go on undisturbed).
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union, cast

import attrs

from . import protocol
from ._engine import queues
from ._engine.account_session import AccountSession
from ._engine.callback_runner import Handlers
from ._engine.pool import Pool
from ._engine.recording import recorder_for
from ._engine.runtime import Runtime
from ._engine.scheduler import Scheduler
from ._engine.threads import InterruptsAsFlag, on_bfxsync_thread, poll
from .auth import Credentials, NonceSource, default_nonce
from .callbacks import ClientCallbacks
from .config import Config
from .errors import AuthenticationError, BfxTimeoutError, NotAuthenticatedError, NotConnectedError
from .events import ConnectionInfo
from .specs import BookSpec, CandlesSpec, Spec, StatusSpec, TickerSpec, TradesSpec, candle_key
from .subscriptions import (
    BookSubscription,
    CandlesSubscription,
    StatusSubscription,
    Subscription,
    TickerSubscription,
    TradesSubscription,
)
from .trading import Account, check_url, resolve_credentials

logger = logging.getLogger("bfxsync")

F = TypeVar("F", bound=Callable[..., Any])
DataHandler = Optional[Callable[[Any], Any]]


def _callback_by_keyword(method: F) -> F:
    """Refuse a callback passed by position to a ``subscribe*`` method, naming the call to write.

    Without it ``subscribe_book("tBTCUSD", cb)`` would fail as "invalid prec <function cb>"
    and ``subscribe_ticker("tBTCUSD", cb)`` as "takes 2 positional arguments". Nothing in
    a channel's key is callable, so a callable after the symbol (or spec) is a misplaced
    callback; one in the symbol's own place is left to the symbol check ("invalid symbol").
    ``functools.wraps`` keeps the real signature for ``help()`` and ``inspect``.
    """
    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        for position, arg in enumerate(args[1:], 1):
            if callable(arg):
                shown = [repr(a) for a in args[:position]] + [f"on_data={getattr(arg, '__name__', 'handler')}"]
                raise TypeError(f"{method.__name__}() takes its callback as a keyword argument: "
                                f"{method.__name__}({', '.join(shown)}) (argument {position + 1} is callable)")
        return method(self, *args, **kwargs)
    return cast(F, checked)


class Client(ClientCallbacks):
    """A synchronous client for the public Bitfinex WebSocket API v2.

    Subscriptions are spread over as many connections as they need
    (``max_subscriptions`` each); the client hides them.

    Args:
        url: endpoint; the public one by default (``bfxsync.emulator`` serves a local one).
        config: options; keyword arguments override single fields (``Client(checksums=False)``).

    Example::

        with bfxsync.Client() as bfx:
            book = bfx.subscribe_book("tBTCUSD").wait_synced(10)
            print(book.best_bid(), book.best_ask())
    """

    def __init__(self, url: str = protocol.PUBLIC_URL, config: Optional[Config] = None, *,
                 api_key: Optional[str] = None, api_secret: Optional[str] = None,
                 credentials: Optional[Credentials] = None, auth_url: Optional[str] = None,
                 nonce: Optional[NonceSource] = None, dms: bool = False, filters: Optional[Sequence[str]] = None,
                 **options: Any) -> None:
        config = config or Config()
        if options:
            config = attrs.evolve(config, **options)
        check_url(url)
        self.config = config
        self._handlers = Handlers()
        self._runtime = Runtime(config, self._handlers, on_end=self._stop_engine)
        self._scheduler = Scheduler(lambda now: self._pool.sweep(now))
        credentials = resolve_credentials(api_key, api_secret, credentials)
        session = None
        if credentials is not None:
            auth_url = auth_url or (protocol.AUTH_URL if url == protocol.PUBLIC_URL else url)
            check_url(auth_url, authenticated=True)
            session = AccountSession(credentials, nonce or default_nonce, dms, filters, self._runtime.callbacks)
        self._session = session
        self._recorder, factory = recorder_for(config)  # record=PATH wraps every transport; None wraps nothing
        self._pool = Pool(url, self._runtime, self._scheduler.wake, factory, account=session, auth_url=auth_url or "")
        #: The authenticated half (live account state and order entry), or None without credentials.
        self.account: Optional[Account] = (
            Account(session, self._pool, self._runtime, self._handlers) if session is not None else None)
        self._start_lock = threading.Lock()
        self._started = False

    @property
    def url(self) -> str:
        """The endpoint."""
        return self._pool.url

    def __repr__(self) -> str:
        if self._runtime.forked():
            return f"<bfxsync.Client {self.url} of process {self._runtime.pid} (unusable in this fork)>"
        state = "closed" if self.closed else "connected" if self.connected else "started" if self._started else "new"
        return f"<bfxsync.Client {self.url} {state}>"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "Client":
        """Connect in the background (returns at once; see :meth:`wait_connected`)."""
        self._runtime.check_process()
        with self._start_lock:
            if self._runtime.ended.is_set():
                raise NotConnectedError("a closed client cannot be started again; create a new one")
            if self._started:
                return self
            self._started = True
        if self._recorder is not None:
            self._recorder.start()  # first: it opens the file, and an OSError is best raised now
        self._scheduler.start()
        self._pool.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect, stop reconnecting and join every thread the client started. Idempotent.

        Safe from any thread. From a callback it cannot join the thread it runs on: the
        threads then end as soon as the callback returns (and ``run_forever`` returns
        only after they have).

        In a process forked from the one that created the client, it closes only that
        process's copies of the sockets: no close frame, no shutdown, nothing sent.
        """
        if self._runtime.forked():
            self._pool.release_in_child()
            return
        self._runtime.end()
        self._stop_engine()  # again: an interrupted earlier close() may have ended before stopping anything
        if on_bfxsync_thread():
            if self._recorder is not None:
                self._recorder.close(0.0)  # no waiting here; the writer writes what is queued and ends
            return
        deadline = time.monotonic() + timeout
        self._pool.join(deadline)
        self._scheduler.join(max(0.0, deadline - time.monotonic()))
        self._runtime.callbacks.workers.join(max(0.0, deadline - time.monotonic()))
        if self._recorder is not None:  # after the readers: their last frames and close lines are in the file
            self._recorder.close(max(1.0, deadline - time.monotonic()))

    def _stop_engine(self) -> None:
        """Called once when the client ends, on whichever thread ended it."""
        self._pool.stop()
        self._scheduler.stop()
        self._runtime.callbacks.workers.stop()  # queued messages not yet delivered are discarded (counted)

    def __enter__(self) -> "Client":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def wait_connected(self, timeout: float = 10.0) -> "Client":
        """Block until every connection is connected (the server's ``info`` arrived, flags and subscriptions went out).

        Raises:
            BfxTimeoutError: not connected within ``timeout`` seconds (the client keeps
                trying; the message names the last connection failure).
            VersionMismatchError: the server speaks another API version (the client has ended).
            AuthenticationError: the server refused to authenticate (final; public data goes on).
            NotConnectedError: the client has ended.
            CallbackThreadError: called from a callback.
        """
        self._pool.refuse_wait("wait_connected")  # raises ForkedClientError in a fork
        refusal = self._auth_refusal
        ready = poll(lambda: self._runtime.ended.is_set() or self._pool.connected() or refusal() is not None, timeout)
        ended = self._pool.end_error()
        if ended is not None:
            raise ended
        refused = refusal()
        if refused is not None:
            raise refused
        if not ready:
            raise BfxTimeoutError(f"not connected to {self.url} within {timeout:g} s{self._pool.failure_hint()}")
        return self

    def run_forever(self, timeout: Optional[float] = None) -> bool:
        """Block until :meth:`close` (from a callback or another thread), Ctrl-C, or ``timeout`` seconds.

        The client is closed and its threads joined when this returns. Ctrl-C (even
        twice in a row) ends it quietly. If the client ended because of a fatal problem
        (another API version, a lost connection with ``reconnect=False``, a callback that
        raised ``SystemExit``), that error is raised.

        Returns:
            True if Ctrl-C ended it (a program then exits with status 130, the shell's
            convention for SIGINT), False after ``timeout`` or :meth:`close`.
        """
        self._pool.refuse_wait("run_forever")  # raises ForkedClientError in a fork
        deadline = None if timeout is None else time.monotonic() + timeout
        ended = self._runtime.ended
        with InterruptsAsFlag() as interrupts:
            try:
                poll(lambda: ended.is_set() or interrupts.seen or (deadline is not None and time.monotonic() >= deadline),
                     float("inf"))
            except KeyboardInterrupt:  # not on the main thread, or someone else's SIGINT handler raised it
                interrupts.seen = True
            finally:
                while True:
                    try:
                        self.close()
                        break
                    except KeyboardInterrupt:
                        interrupts.seen = True
        if interrupts.seen:
            logger.info("interrupted; closed")
            return True
        if self._runtime.fatal is not None:
            raise self._runtime.fatal
        return False

    def wait_authenticated(self, timeout: float = 10.0) -> "Client":
        """Block until the account connection authenticated and its wallet snapshot arrived.

        Raises:
            NotAuthenticatedError: the client has no credentials.
            AuthenticationError: the server refused (not retried); ``hint`` says what usually causes it.
            BfxTimeoutError: not within ``timeout``.
        """
        self._runtime.check_process()
        if self.account is None:
            raise NotAuthenticatedError("this client has no credentials: Client(api_key=..., api_secret=...)")
        self.account.wait_authenticated(timeout)
        return self

    @property
    def connected(self) -> bool:
        """True while every connection is connected and past the handshake."""
        self._runtime.check_process()
        return self._pool.connected()

    @property
    def maintenance(self) -> bool:
        """True while the exchange announces maintenance (info 20060 until 20061); books are unsynced meanwhile."""
        self._runtime.check_process()
        return self._pool.maintenance()

    @property
    def closed(self) -> bool:
        """True once the client has ended: :meth:`close` was called, or a fatal problem stopped it."""
        self._runtime.check_process()
        return self._runtime.ended.is_set()

    @property
    def fatal_error(self) -> Optional[Exception]:
        """What stopped the client, when it was not :meth:`close`."""
        return self._runtime.fatal

    def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time of an application ``ping`` on the first connection, in seconds.

        The first connection carries public data; with credentials it is dialled beside the
        account connection, so :meth:`wait_connected` (not :meth:`wait_authenticated`) says it is up.

        Raises:
            NotConnectedError: the first connection is not connected now, or ended before the ``pong``.
            BfxTimeoutError: no ``pong`` within ``timeout`` seconds.
        """
        self._pool.refuse_wait("ping")  # raises ForkedClientError in a fork
        ended = self._pool.end_error()
        if ended is not None:
            raise ended
        return self._pool.links()[0].ping(timeout)

    def stats(self) -> Dict[str, Any]:
        """Counters for the whole client: connection events, bad frames by kind, stalls and timeouts,
        book checksums, callback errors, subscriptions by state, and the number of connections.
        Every counter is there from the start, with 0 (a bad-input kind too, before its first case).
        With credentials: the account's counters (``authentications``, ``account_bad_rows``, ...).
        Queued callbacks: ``queues`` (each queue's figures by name), ``queue_depth``,
        ``queue_lag`` (the largest), ``queue_dropped``, ``queue_conflated``,
        ``queue_delivered``, ``queue_blocked`` and ``dispatch_threads``.
        Recording (``record=PATH``): ``record_written``, ``record_dropped``,
        ``record_errors``, ``record_queued`` and ``record_stopped``.

        Per-connection figures: :meth:`connections`.
        """
        self._runtime.check_process()
        stats = self._pool.stats()
        if self._recorder is not None:
            stats.update(self._recorder.stats())
        return stats

    def connections(self) -> List[ConnectionInfo]:
        """Every open connection: number, url, state, subscriptions, last frame age and its own counters."""
        self._runtime.check_process()
        return self._pool.connections()

    def threads(self) -> List[threading.Thread]:
        """The threads the client started: one reader per connection, the scheduler, the callback
        threads of queued callbacks (none unless something is queued) and the recorder (when recording)."""
        self._runtime.check_process()
        threads = self._pool.threads()
        scheduler = self._scheduler.thread()
        if scheduler is not None:
            threads.append(scheduler)
        threads += self._runtime.callbacks.workers.threads()
        recorder = self._recorder.thread() if self._recorder is not None else None
        return threads + ([recorder] if recorder is not None else [])

    def _auth_refusal(self) -> Optional[AuthenticationError]:
        """The server's final refusal to authenticate, if it refused."""
        return self._session.refused if self._session is not None else None

    def _require_started(self) -> None:
        self._runtime.check_process()
        if not self._started:
            raise NotConnectedError("call start() first, or use the client as a context manager")
        if self.closed:
            raise NotConnectedError("the client is closed")

    # -- subscribing --------------------------------------------------------------------
    #
    # One rule for every subscribe_*: what you subscribe to is positional (the symbol or key,
    # then a book's prec, freq and length, or the candles' timeframe and period: the parts of
    # the channel's own key), and everything about delivery is keyword-only (on_data,
    # execution_updates, dispatch, overflow, queue_size). A callback passed by position lands
    # in a key slot, so _callback_by_keyword refuses it with the call to write instead.

    @_callback_by_keyword
    def subscribe(self, spec: Spec, *, on_data: DataHandler = None, dispatch: Optional[str] = None,
                  overflow: Optional[str] = None, queue_size: Optional[int] = None, **options: Any) -> Subscription:
        """Subscribe to ``spec``; subscribing twice to the same thing returns the same handle.

        Returns at once; the handle's ``wait_subscribed()`` waits for the server's answer.

        Args:
            spec: what to subscribe to (:class:`~bfxsync.BookSpec`, :class:`~bfxsync.TickerSpec`, ...).
            on_data: ``on_data(message: ChannelMessage)``, keyword-only like every delivery
                option. It runs on the reader thread for every snapshot and update, or,
                with ``dispatch="queued"``, on a callback thread (with the client-level
                ``on_<channel>`` handlers for this subscription). Without it the handle
                still keeps what the channel holds (see each handle's class) for polling.
            dispatch: ``inline`` or ``queued``; unset takes ``Config.dispatch``.
            overflow: a queue's policy when full: ``block``, ``drop_oldest`` or ``latest``
                (unset: ``Config.queue_overflow``).
            queue_size: a queue's bound (unset: ``Config.queue_size``).
            options: channel options (``execution_updates`` for trades).

        Raises:
            TypeError: a callback passed by position.
            ValueError: asked again with different options (``execution_updates``, an
                explicit other dispatch).
        """
        self._require_started()
        delivery = queues.resolve(queues.default_delivery(self.config), dispatch, overflow, queue_size)
        with queues.reserve(delivery):  # a new handle takes it in its constructor, before any data
            subscription = self._pool.subscribe(spec, options, on_data)
        if (dispatch, overflow, queue_size) != (None, None, None):
            queues.check_same(subscription.delivery, delivery, repr(spec))
        return subscription

    # Every subscribe_* also takes the keyword-only dispatch, overflow and queue_size of subscribe().

    @_callback_by_keyword
    def subscribe_ticker(self, symbol: str, *, on_data: DataHandler = None, dispatch: Optional[str] = None,
                         overflow: Optional[str] = None, queue_size: Optional[int] = None) -> TickerSubscription:
        """Subscribe to the ticker of ``symbol`` (``tBTCUSD`` or ``fUSD``); ``.last`` holds the latest one."""
        return self.subscribe(TickerSpec(symbol), on_data=on_data, dispatch=dispatch,  # type: ignore[return-value]
                              overflow=overflow, queue_size=queue_size)

    @_callback_by_keyword
    def subscribe_trades(self, symbol: str, *, on_data: DataHandler = None, execution_updates: bool = False,
                         dispatch: Optional[str] = None, overflow: Optional[str] = None,
                         queue_size: Optional[int] = None) -> TradesSubscription:
        """Subscribe to the trades of ``symbol``; ``execution_updates`` also delivers the ``tu`` duplicates.

        ``.recent(n)`` and ``.last`` keep the latest trades for polling.
        """
        return self.subscribe(TradesSpec(symbol), on_data=on_data,  # type: ignore[return-value]
                              execution_updates=execution_updates, dispatch=dispatch, overflow=overflow,
                              queue_size=queue_size)

    @_callback_by_keyword
    def subscribe_book(
        self, symbol: str, prec: str = "P0", freq: str = "F0", length: Union[int, str] = 25, *,
        on_data: DataHandler = None, dispatch: Optional[str] = None, overflow: Optional[str] = None,
        queue_size: Optional[int] = None,
    ) -> BookSubscription:
        """Subscribe to a verified local order book (``prec`` ``P0``-``P4``, or ``R0`` for the raw book).

        ``freq`` is ``F0`` (real time) or ``F1`` (every two seconds); ``length`` the levels per
        side (1, 25, 100 or 250). The book is applied and verified on the reader thread
        whatever the dispatch mode.
        """
        return self.subscribe(BookSpec(symbol, prec, freq, length), on_data=on_data,  # type: ignore[return-value]
                              dispatch=dispatch, overflow=overflow, queue_size=queue_size)

    @_callback_by_keyword
    def subscribe_raw_book(self, symbol: str, length: Union[int, str] = 25, *, on_data: DataHandler = None,
                           dispatch: Optional[str] = None, overflow: Optional[str] = None,
                           queue_size: Optional[int] = None) -> BookSubscription:
        """Subscribe to the raw (order-by-order, ``R0``) book of ``symbol``."""
        return self.subscribe_book(symbol, "R0", "F0", length, on_data=on_data, dispatch=dispatch, overflow=overflow,
                                   queue_size=queue_size)

    @_callback_by_keyword
    def subscribe_candles(
        self, symbol_or_key: str, timeframe: str = "1m", period: Optional[int] = None, *,
        on_data: DataHandler = None, dispatch: Optional[str] = None, overflow: Optional[str] = None,
        queue_size: Optional[int] = None,
    ) -> CandlesSubscription:
        """Subscribe to candles by key (``trade:1m:tBTCUSD``) or by symbol, time frame and funding period.

        ``.candles(n)`` and ``.last`` keep the merged series for polling.
        """
        key = symbol_or_key if symbol_or_key.startswith("trade:") else candle_key(timeframe, symbol_or_key, period)
        return self.subscribe(CandlesSpec(key), on_data=on_data, dispatch=dispatch,  # type: ignore[return-value]
                              overflow=overflow, queue_size=queue_size)

    @_callback_by_keyword
    def subscribe_status(self, key: str, *, on_data: DataHandler = None, dispatch: Optional[str] = None,
                         overflow: Optional[str] = None, queue_size: Optional[int] = None) -> StatusSubscription:
        """Subscribe to ``deriv:SYMBOL`` derivatives status or ``liq:global`` liquidations.

        ``.last`` keeps the latest status (``liq:global``: the latest liquidation) and
        ``.recent(n)`` the latest liquidations, for polling.
        """
        return self.subscribe(StatusSpec(key), on_data=on_data, dispatch=dispatch,  # type: ignore[return-value]
                              overflow=overflow, queue_size=queue_size)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop ``subscription`` (same as ``subscription.unsubscribe()``)."""
        self._runtime.check_process()
        subscription.unsubscribe()

    @property
    def subscriptions(self) -> List[Subscription]:
        """Every subscription the client holds (active or waiting for a connection)."""
        self._runtime.check_process()
        return self._pool.subscriptions()

