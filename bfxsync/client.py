"""Client: the facade scripts use. Start it, subscribe, register callbacks, close it.

Threading model: one reader thread per connection runs every callback, in frame order.
Callbacks must be quick and must not call the blocking helpers (``wait_*``, ``ping``),
which raise ``RuntimeError`` there instead of deadlocking. Everything else (subscribing,
unsubscribing, reading books) is safe from any thread, callbacks included.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, TypeVar, Union

import attrs

from . import protocol
from ._dispatch import Handlers
from .config import Config
from .errors import NotConnectedError
from .session import Session
from .specs import BookSpec, CandlesSpec, Spec, StatusSpec, TickerSpec, TradesSpec, candle_key
from .book_subscription import BookSubscription
from .subscriptions import (
    CandlesSubscription, StatusSubscription, Subscription, TickerSubscription, TradesSubscription,
)

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
DataHandler = Optional[Callable[[Any], Any]]


class Client:
    """A synchronous client for the public Bitfinex WebSocket API v2.

    Args:
        url: endpoint; the public one by default (``bfxsync.emulator`` serves a local one).
        config: options; keyword arguments override single fields (``Client(checksums=False)``).

    Example::

        with bfxsync.Client() as bfx:
            book = bfx.subscribe_book("tBTCUSD").wait_synced(10)
            print(book.best_bid(), book.best_ask())
    """

    def __init__(self, url: str = protocol.PUBLIC_URL, config: Optional[Config] = None, **options: Any) -> None:
        config = config or Config()
        if options:
            config = attrs.evolve(config, **options)
        self.config = config
        self._handlers = Handlers()
        self._session = Session(url, config, self._handlers)
        self._started = False
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        """The endpoint."""
        return self._session.url

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "connected" if self.connected else "started" if self._started else "new"
        return f"<bfxsync.Client {self.url} {state}>"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "Client":
        """Connect in the background (returns at once; see :meth:`wait_connected`)."""
        if self._closed.is_set():
            raise RuntimeError("a closed client cannot be started again; create a new one")
        if not self._started:
            self._started = True
            self._session.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect, stop reconnecting and join every thread the client started. Idempotent."""
        self._closed.set()
        self._session.close(timeout)

    def __enter__(self) -> "Client":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def wait_connected(self, timeout: float = 10.0) -> "Client":
        """Block until connected (the server's ``info`` arrived, flags and subscriptions were sent).

        Raises:
            BfxTimeoutError: not connected within ``timeout`` seconds (the client keeps trying).
            VersionMismatchError: the server speaks another API version.
        """
        self._require_started()
        self._session.wait_connected(timeout)
        return self

    def run_forever(self, timeout: Optional[float] = None) -> None:
        """Block the calling thread until :meth:`close` is called (from a callback or another thread), Ctrl-C,
        or ``timeout`` seconds have passed; the client is closed when it returns."""
        self._require_started()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # A timed wait keeps Ctrl-C responsive on every platform.
            while not self._closed.wait(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))):
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            logger.info("bfxsync: interrupted; closing")
        finally:
            self.close()

    @property
    def connected(self) -> bool:
        """True while connected and past the handshake."""
        return self._session.connected

    @property
    def maintenance(self) -> bool:
        """True while the exchange announces maintenance (info 20060 until 20061); books are unsynced meanwhile."""
        return self._session.maintenance

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed.is_set()

    def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time of an application ``ping`` in seconds."""
        self._require_started()
        return self._session.ping(timeout)

    def stats(self) -> Dict[str, Any]:
        """Counters: bad frames by kind, reconnects, sequence gaps, callback errors, subscriptions by state."""
        return self._session.stats()

    def threads(self) -> List[threading.Thread]:
        """The threads the client runs (reader and watchdog)."""
        return list(self._session.connection.threads())

    def _require_started(self) -> None:
        if not self._started:
            raise NotConnectedError("call start() first, or use the client as a context manager")
        if self._closed.is_set():
            raise NotConnectedError("the client is closed")

    # -- subscribing --------------------------------------------------------------------

    def subscribe(self, spec: Spec, on_data: DataHandler = None, **options: Any) -> Subscription:
        """Subscribe to ``spec``; subscribing twice to the same thing returns the same handle.

        Returns at once; the handle's ``wait_subscribed()`` waits for the server's answer.
        ``on_data(message)`` runs on the reader thread for every snapshot and update.
        """
        self._require_started()
        subscription = self._session.subscribe(spec, **options)
        if on_data is not None:
            subscription.on_data(on_data)
        return subscription

    def subscribe_ticker(self, symbol: str, on_data: DataHandler = None) -> TickerSubscription:
        """Subscribe to the ticker of ``symbol`` (``tBTCUSD`` or ``fUSD``)."""
        return self.subscribe(TickerSpec(symbol), on_data)  # type: ignore[return-value]

    def subscribe_trades(self, symbol: str, on_data: DataHandler = None, execution_updates: bool = False) -> TradesSubscription:
        """Subscribe to the trades of ``symbol``; ``execution_updates`` also delivers the ``tu`` duplicates."""
        return self.subscribe(TradesSpec(symbol), on_data, execution_updates=execution_updates)  # type: ignore[return-value]

    def subscribe_book(
        self, symbol: str, prec: str = "P0", freq: str = "F0", length: Union[int, str] = 25, on_data: DataHandler = None,
    ) -> BookSubscription:
        """Subscribe to a verified local order book (``prec`` ``P0``-``P4``, or ``R0`` for the raw book)."""
        return self.subscribe(BookSpec(symbol, prec, freq, length), on_data)  # type: ignore[return-value]

    def subscribe_raw_book(self, symbol: str, length: Union[int, str] = 25, on_data: DataHandler = None) -> BookSubscription:
        """Subscribe to the raw (order-by-order, ``R0``) book of ``symbol``."""
        return self.subscribe_book(symbol, "R0", "F0", length, on_data)

    def subscribe_candles(
        self, symbol_or_key: str, timeframe: str = "1m", period: Optional[int] = None, on_data: DataHandler = None,
    ) -> CandlesSubscription:
        """Subscribe to candles by key (``trade:1m:tBTCUSD``) or by symbol, time frame and funding period."""
        key = symbol_or_key if symbol_or_key.startswith("trade:") else candle_key(timeframe, symbol_or_key, period)
        return self.subscribe(CandlesSpec(key), on_data)  # type: ignore[return-value]

    def subscribe_status(self, key: str, on_data: DataHandler = None) -> StatusSubscription:
        """Subscribe to ``deriv:SYMBOL`` derivatives status or ``liq:global`` liquidations."""
        return self.subscribe(StatusSpec(key), on_data)  # type: ignore[return-value]

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop ``subscription`` (same as ``subscription.unsubscribe()``)."""
        subscription.unsubscribe()

    @property
    def subscriptions(self) -> List[Subscription]:
        """Every subscription the client holds (active or waiting for a connection)."""
        return self._session.subscriptions()

    # -- client-wide callbacks (each works as a decorator; all run on the reader thread) --

    def on_ticker(self, handler: F) -> F:
        """Call ``handler(ChannelMessage)`` for every ticker subscription."""
        return self._handlers.add(protocol.TICKER, handler)

    def on_trades(self, handler: F) -> F:
        """Call ``handler(ChannelMessage)`` for every trades subscription."""
        return self._handlers.add(protocol.TRADES, handler)

    def on_book(self, handler: F) -> F:
        """Call ``handler(ChannelMessage)`` for every book subscription (snapshots and updates)."""
        return self._handlers.add(protocol.BOOK, handler)

    def on_candles(self, handler: F) -> F:
        """Call ``handler(ChannelMessage)`` for every candles subscription."""
        return self._handlers.add(protocol.CANDLES, handler)

    def on_status(self, handler: F) -> F:
        """Call ``handler(ChannelMessage)`` for every status subscription."""
        return self._handlers.add(protocol.STATUS, handler)

    def on_connected(self, handler: F) -> F:
        """Call ``handler(Connected)`` after each (re)connection handshake."""
        return self._handlers.add("connected", handler)

    def on_disconnected(self, handler: F) -> F:
        """Call ``handler(Disconnected)`` when a connection ends, with the reason."""
        return self._handlers.add("disconnected", handler)

    def on_reconnecting(self, handler: F) -> F:
        """Call ``handler(Reconnecting)`` before each back-off pause."""
        return self._handlers.add("reconnecting", handler)

    def on_info(self, handler: F) -> F:
        """Call ``handler(Info)`` for coded ``info`` events (20051, 20060, 20061, ...)."""
        return self._handlers.add("info", handler)

    def on_error(self, handler: F) -> F:
        """Call ``handler(ErrorEvent)`` for server errors, bad frames, checksum mismatches and raising callbacks."""
        return self._handlers.add("error", handler)

    def on_subscribed(self, handler: F) -> F:
        """Call ``handler(Subscribed)`` for every acknowledgement (also after reconnects and resyncs)."""
        return self._handlers.add("subscribed", handler)

    def on_unsubscribed(self, handler: F) -> F:
        """Call ``handler(Unsubscribed)`` when a subscription ends at the user's request.

        Runs on the reader thread once the server confirms; a subscription that never
        reached the server (unsubscribed while disconnected) is reported at once, on the
        thread that called ``unsubscribe()``.
        """
        return self._handlers.add("unsubscribed", handler)

    def on_book_synced(self, handler: F) -> F:
        """Call ``handler(BookSynced)`` whenever a book applies a fresh snapshot."""
        return self._handlers.add("book_synced", handler)

    def on_checksum_mismatch(self, handler: F) -> F:
        """Call ``handler(ChecksumMismatch)`` when a book disagrees with the server's checksum."""
        return self._handlers.add("checksum", handler)
