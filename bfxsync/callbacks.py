"""The client-wide callback registrations of :class:`bfxsync.Client` (each works as a decorator).

Handlers run on the reader thread of the connection concerned (or on a callback thread for
queued subscriptions); see the callbacks table of docs/market-data.md for what each payload carries.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from . import protocol
from ._engine.callback_runner import Handlers

F = TypeVar("F", bound=Callable[..., Any])


class ClientCallbacks:
    """Mixed into :class:`bfxsync.Client`: ``on_*`` registration and removal."""

    _handlers: Handlers

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
        """Call ``handler(Unsubscribed)`` when a subscription ends at the user's request (only then:
        reconnects and resyncs do not unsubscribe anything).

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

    def on_authenticated(self, handler: F) -> F:
        """Call ``handler(Authenticated)`` after each authentication (``reauthenticated`` after a reconnect)."""
        return self._handlers.add("authenticated", handler)

    def on_order_reconciled(self, handler: F) -> F:
        """Call ``handler(OrderReconciled)`` when an order whose outcome was unknown (the connection dropped
        with it in flight) shows up in the fresh orders snapshot: it was placed."""
        return self._handlers.add("order_reconciled", handler)

    def on_recovery(self, handler: F) -> F:
        """Call ``handler(Recovery)`` when the client repairs something by itself (a silent channel
        resubscribed, an unanswered request or handshake redialled, an unconfirmed unsubscribe given up)."""
        return self._handlers.add("recovery", handler)

    def remove_callback(self, handler: Callable[[Any], Any]) -> bool:
        """Unregister ``handler`` from every client-wide callback it was registered for; True if it was.

        Per-subscription handlers are removed with ``subscription.remove_callback(handler)``.
        """
        return self._handlers.remove(handler)
