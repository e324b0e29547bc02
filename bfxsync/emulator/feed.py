"""What each subscription is sent: its snapshot on subscribe and its updates after a tick.

Both run with the market lock held (so a snapshot and the updates after it describe the
same sequence of market states) and take the connection lock for the whole batch of one
connection (so an ``unsubscribed`` ack is never followed by data for that chanId).
"""
from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from bfxsync import protocol

from .books import EMPTY_VIEW, diff_views, view_checksum
from .channels import Subscription
from .market import Market
from .session import Session

__all__ = ["publish_tick", "send_snapshot"]


def send_snapshot(session: Session, sub: Subscription, market: Market, mts: int) -> None:
    """Queue the first payload of a new subscription (channels without a snapshot send none).

    The ticker and a derivative status have no separate snapshot, but the current row is
    sent at once, so a subscriber does not wait for the next tick.
    """
    chan_id, channel = sub.chan_id, sub.channel
    sub.last_traffic = time.monotonic()
    if channel == protocol.TICKER:
        session.send_array(chan_id, [market.symbols[sub.market_symbol()].ticker()], mts)
    elif channel == protocol.TRADES:
        session.send_array(chan_id, [market.symbols[sub.market_symbol()].trades_snapshot()], mts)
    elif channel == protocol.BOOK:
        symbol = market.symbols[sub.market_symbol()]
        sub.view = symbol.view(*sub.book_shape())
        sub.view_version = symbol.version
        sub.last_flush = time.monotonic()
        session.send_array(chan_id, [sub.view.snapshot()], mts)
    elif channel == protocol.CANDLES:
        series = market.candle_series(sub.candle_key(), mts)
        sub.candle_version = series.version
        session.send_array(chan_id, [series.snapshot()], mts)
    elif channel == protocol.STATUS and sub.symbol is not None:
        session.send_array(chan_id, [market.statuses[sub.symbol]], mts)


def publish_tick(session: Session, market: Market, mts: int, f1_interval: float, status_fresh: bool,
                 tickers: dict[str, list[Any]] | None = None,
                 corrupt: Collection[tuple[str, str]] = ()) -> None:
    """Queue one tick's frames for every subscription of ``session``.

    ``tickers`` caches ticker rows across connections within the tick. Books whose
    ``(symbol, prec)`` is in ``corrupt`` get a wrong checksum (fault injection).
    """
    tickers = {} if tickers is None else tickers
    now = time.monotonic()
    with session.lock:
        for sub in list(session.subs.values()):
            channel = sub.channel
            if channel == protocol.BOOK:
                _publish_book(session, sub, market, mts, now, f1_interval, corrupt)
            elif channel == protocol.TICKER:
                name = sub.market_symbol()
                row = tickers.get(name)
                if row is None:
                    row = tickers[name] = market.symbols[name].ticker()
                session.send_array(sub.chan_id, [row], mts)
            elif channel == protocol.TRADES:
                symbol = market.symbols[sub.market_symbol()]
                executed, updated = ("fte", "ftu") if symbol.funding else ("te", "tu")
                # Each trade goes out twice, at execution (te) and as an update (tu), docs: ws-public-trades.
                for trade in symbol.new_trades:
                    entry = trade.wire()
                    session.send_array(sub.chan_id, [executed, entry], mts)
                    session.send_array(sub.chan_id, [updated, entry], mts)
            elif channel == protocol.CANDLES:
                series = market.candles[sub.candle_key().key]
                if series.version != sub.candle_version:
                    sub.candle_version = series.version
                    session.send_array(sub.chan_id, [series.latest()], mts)
            elif channel == protocol.STATUS:
                if sub.symbol is not None:
                    if status_fresh:
                        session.send_array(sub.chan_id, [market.statuses[sub.symbol]], mts)
                elif market.liquidations:
                    session.send_array(sub.chan_id, [market.liquidations], mts)


def _publish_book(session: Session, sub: Subscription, market: Market, mts: int, now: float,
                  f1_interval: float, corrupt: Collection[tuple[str, str]]) -> None:
    symbol = market.symbols[sub.market_symbol()]
    if symbol.version == sub.view_version:
        return
    # F1 books get the accumulated difference at most once per f1_interval.
    if sub.freq == "F1" and now - sub.last_flush < f1_interval:
        return
    view = symbol.view(*sub.book_shape())
    updates = diff_views(sub.view or EMPTY_VIEW, view, symbol.funding)
    sub.view, sub.view_version = view, symbol.version
    if not updates:
        return
    sub.last_flush = now
    flags = session.flags
    if flags & protocol.FLAG_BULK_UPDATES:
        session.send_array(sub.chan_id, [updates], mts)
    else:
        for update in updates:
            session.send_array(sub.chan_id, [update], mts)
    if flags & protocol.FLAG_CHECKSUM:
        checksum = view_checksum(view)
        if (sub.symbol, sub.prec) in corrupt:
            # Flipping the lowest bit keeps it a valid signed 32-bit value, and always wrong.
            checksum ^= 1
        session.send_array(sub.chan_id, [protocol.CHECKSUM, checksum], mts)


def checksum_of(market: Market, symbol: str, prec: str, length: int) -> int:
    """The checksum a book channel would send now (for the control API)."""
    return view_checksum(market.symbols[symbol].view(prec, length))


def book_entries(market: Market, symbol: str, prec: str, length: int) -> tuple[list[list[Any]], list[list[Any]]]:
    """``(bids, asks)`` wire entries, best first (for the control API)."""
    return market.symbols[symbol].view(prec, length).entries()
