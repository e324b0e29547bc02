"""Keep a verified local order book and print its top once a second.

The client checks the book against the server's checksum on every ``cs`` frame and
rebuilds it from a fresh snapshot on a mismatch, so the numbers below stay trustworthy.

    python examples/order_book.py tBTCUSD                  # live Bitfinex, until Ctrl-C
    python examples/order_book.py --emulator --seconds 5   # offline, local emulator
"""
import argparse
import contextlib
import logging
import sys
import time

import bfxsync
from bfxsync.numbers import plain  # exact text, no exponent: plain(-8.2e-06) == '-0.0000082'


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the top of a verified order book once a second.")
    parser.add_argument("symbol", nargs="?", default="tBTCUSD", help="a trading pair (default: %(default)s)")
    parser.add_argument("--emulator", action="store_true", help="run against a local emulator (offline)")
    parser.add_argument("--seconds", type=float, help="stop after N seconds (default: until Ctrl-C)")
    args = parser.parse_args()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
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
            where["url"] = stack.enter_context(Emulator(symbols=(args.symbol,))).url  # serves any symbol
        client = stack.enter_context(bfxsync.Client(**where))
        client.on_checksum_mismatch(lambda event: print(f"checksum mismatch (server {event.server}, "
                                                        f"local {event.local}); rebuilding the book"))
        book = client.subscribe_book(args.symbol, prec="P0", length=25).wait_synced(timeout=15)
        # Ctrl-C raises KeyboardInterrupt here: leaving the with block closes the client.
        while deadline is None or time.monotonic() < deadline:
            bid, ask = book.best_bid(), book.best_ask()  # safe to read from any thread
            if bid and ask:
                print(f"{args.symbol}  bid {plain(bid.price)} x {plain(bid.amount)}  "
                      f"ask {plain(ask.price)} x {plain(-ask.amount)}  spread {plain(book.spread())}  "
                      f"{'synced' if book.synced else 'RESYNCING'}  "
                      f"checksums ok {book.checks_passed} failed {book.checks_failed}  resyncs {book.resyncs}",
                      flush=True)
            time.sleep(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: 130, the shell's convention for SIGINT
        sys.exit(130)
