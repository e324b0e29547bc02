"""Embed bfxsync in a plain ``while True`` application loop (no asyncio, no framework).

Callbacks run on bfxsync's reader thread and only ``put_nowait`` into a ``queue.Queue``; the
application's loop drains it and does its own work, so it can never stall the connection.

    python examples/legacy_loop.py tBTCUSD                  # live Bitfinex, until Ctrl-C
    python examples/legacy_loop.py --emulator --seconds 5   # offline, local emulator
"""
import argparse
import contextlib
import logging
import queue
import sys
import time

import bfxsync
from bfxsync.numbers import plain  # exact text, no exponent: plain(-8.2e-06) == '-0.0000082'


def main() -> None:
    parser = argparse.ArgumentParser(description="A plain application loop fed by bfxsync callbacks.")
    parser.add_argument("symbol", nargs="?", default="tBTCUSD", help="a trading pair (default: %(default)s)")
    parser.add_argument("--emulator", action="store_true", help="run against a local emulator (offline)")
    parser.add_argument("--seconds", type=float, help="stop after N seconds (default: until Ctrl-C)")
    args = parser.parse_args()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bfxsync").setLevel(logging.INFO)  # connects, reconnects, connection problems

    inbox: "queue.Queue[tuple]" = queue.Queue(maxsize=10_000)
    dropped = [0]

    def enqueue(kind: str):
        def handler(message) -> None:  # on the reader thread: never block it
            try:
                inbox.put_nowait((kind, message))
            except queue.Full:  # the loop is far behind: count and drop rather than stall the socket
                dropped[0] += 1
        return handler

    with contextlib.ExitStack() as stack:
        where = {}
        if args.emulator:
            try:
                from bfxsync.emulator import Emulator  # the optional extra
            except ImportError as err:
                parser.exit(2, f'{parser.prog}: --emulator needs websockets 15 or newer: pip install "websockets>=15" ({err})\n')
            logging.getLogger("bfxsync.emulator").setLevel(logging.WARNING)
            where["url"] = stack.enter_context(Emulator(symbols=(args.symbol,))).url  # serves any symbol
        client = stack.enter_context(bfxsync.Client(**where))
        client.subscribe_ticker(args.symbol, on_data=enqueue("ticker"))
        client.subscribe_trades(args.symbol, on_data=enqueue("trades"))
        book = client.subscribe_book(args.symbol, on_data=enqueue("book"))

        counts, next_report = {"ticker": 0, "trades": 0, "book": 0}, time.monotonic() + 1.0
        while deadline is None or time.monotonic() < deadline:
            while True:  # 1. drain everything that arrived, without waiting
                try:
                    kind, message = inbox.get_nowait()
                except queue.Empty:
                    break
                counts[kind] += 1
                if kind == "ticker":
                    print(f"[ticker] {args.symbol} last {plain(message.item.last_price)}", flush=True)
                elif kind == "trades" and not message.snapshot:
                    for trade in message.items:
                        amount = ("+" if trade.amount > 0 else "") + plain(trade.amount)
                        print(f"[trade ] {args.symbol} {amount} @ {plain(trade.price)}", flush=True)
            if time.monotonic() >= next_report:  # 2. the application's own periodic work
                bid, ask = book.best_bid(), book.best_ask()  # book reads are safe from any thread
                top = f"bid {plain(bid.price)} ask {plain(ask.price)}" if bid and ask else "book not synced yet"
                print(f"[loop  ] drained {counts['ticker']} ticker, {counts['trades']} trades, {counts['book']} book "
                      f"messages; {top}; checksums ok {book.checks_passed}; dropped {dropped[0]}", flush=True)
                next_report += 1.0
            time.sleep(0.05)  # 3. the rest of the application (here: idle until the next iteration)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C (leaving the with block closed the client): 130, as the shell does
        sys.exit(130)
