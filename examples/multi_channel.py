"""Ticker, trades, book and candles of two symbols on one connection, with client-level handlers.

    python examples/multi_channel.py                          # live Bitfinex, until Ctrl-C
    python examples/multi_channel.py --emulator --seconds 5   # offline, local emulator
"""
import argparse
import contextlib
import logging
import sys

import bfxsync
from bfxsync.numbers import plain  # exact text, no exponent: plain(-8.2e-06) == '-0.0000082'


def main() -> int:
    parser = argparse.ArgumentParser(description="Four channels of two symbols on one connection.")
    parser.add_argument("symbols", nargs="*", default=["tBTCUSD", "tETHUSD"], help="(default: tBTCUSD tETHUSD)")
    parser.add_argument("--emulator", action="store_true", help="run against a local emulator (offline)")
    parser.add_argument("--seconds", type=float, help="stop after N seconds (default: until Ctrl-C)")
    args = parser.parse_args()
    # bfxsync logs connects, reconnects and connection problems at INFO: without this a
    # network problem would look like a silent hang. WARNING and up from other libraries.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bfxsync").setLevel(logging.INFO)

    with contextlib.ExitStack() as stack:
        where = {}
        if args.emulator:
            try:
                from bfxsync.emulator import Emulator  # the optional extra
            except ImportError as err:
                parser.exit(2, f'{parser.prog}: --emulator needs websockets 15 or newer: pip install "websockets>=15" ({err})\n')
            logging.getLogger("bfxsync.emulator").setLevel(logging.WARNING)
            where["url"] = stack.enter_context(Emulator(symbols=args.symbols)).url  # serves any symbol
        client = bfxsync.Client(**where)
        books = {}  # symbol -> BookSubscription, read by the trades handler

        # Client-level handlers get every subscription of their channel (message.subscription says
        # which). Registered before start(), so no snapshot is missed; all run on the reader thread.
        @client.on_ticker
        def ticker(message: bfxsync.ChannelMessage) -> None:
            print(f"[ticker ] {message.subscription.spec.symbol:8} last {plain(message.item.last_price)}", flush=True)

        @client.on_trades
        def trades(message: bfxsync.ChannelMessage) -> None:
            book = books.get(message.subscription.spec.symbol)
            mid = f"  (book mid {plain(book.mid())})" if book is not None and book.synced else ""
            for trade in message.items[-1:] if message.snapshot else message.items:
                amount = ("+" if trade.amount > 0 else "") + plain(trade.amount)
                print(f"[trade  ] {message.subscription.spec.symbol:8} {amount} @ {plain(trade.price)}{mid}", flush=True)

        @client.on_candles
        def candles(message: bfxsync.ChannelMessage) -> None:
            c = message.items[-1]
            print(f"[candle ] {message.subscription.spec.symbol:8} close {plain(c.close)} volume {plain(c.volume)}", flush=True)

        client.on_book_synced(lambda event: print(f"[book   ] {event.subscription.spec.symbol:8} synced", flush=True))
        client.on_error(lambda event: print(f"[error  ] {event.error}", flush=True))
        client.on_disconnected(lambda event: print(f"[network] disconnected: {event.reason}", flush=True))

        stack.enter_context(client)  # start() now, close() when the block ends
        for symbol in args.symbols:
            client.subscribe_ticker(symbol)
            client.subscribe_trades(symbol)
            client.subscribe_candles(symbol, "1m")
            books[symbol] = client.subscribe_book(symbol)
        return 130 if client.run_forever(args.seconds) else 0  # blocks until Ctrl-C (130) or --seconds (0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before run_forever() took over
        sys.exit(130)
