"""Print the recent trades of a symbol, then every new trade as it executes.

    python examples/trades.py tBTCUSD                  # live Bitfinex, until Ctrl-C
    python examples/trades.py --emulator --seconds 5   # offline, local emulator
"""
import argparse
import contextlib
import datetime
import logging
import sys

import bfxsync
from bfxsync.numbers import plain  # exact text, no exponent: plain(-8.2e-06) == '-0.0000082'


def main() -> int:
    parser = argparse.ArgumentParser(description="Print the trades of one symbol.")
    parser.add_argument("symbol", nargs="?", default="tBTCUSD", help="a trading pair (default: %(default)s)")
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
            where["url"] = stack.enter_context(Emulator(symbols=(args.symbol,))).url  # serves any symbol
        client = stack.enter_context(bfxsync.Client(**where))

        def show(message: bfxsync.ChannelMessage) -> None:
            # The snapshot carries the recent trades (oldest first), each later message one new trade.
            if message.snapshot:
                print(f"--- {len(message.items)} recent trades of {args.symbol} ---")
            for trade in message.items:
                when = datetime.datetime.fromtimestamp(trade.mts / 1000, datetime.timezone.utc)
                side = "BUY " if trade.amount > 0 else "SELL"  # the taker's side
                amount = plain(abs(trade.amount))
                print(f"{when:%H:%M:%S}.{trade.mts % 1000:03d} {side} {amount:>14} @ {plain(trade.price)}", flush=True)

        client.subscribe_trades(args.symbol, on_data=show)
        return 130 if client.run_forever(args.seconds) else 0  # blocks until Ctrl-C (130) or --seconds (0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before run_forever() took over
        sys.exit(130)
