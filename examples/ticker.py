"""Print every ticker update of one symbol.

    python examples/ticker.py tETHUSD                  # live Bitfinex, until Ctrl-C
    python examples/ticker.py --emulator --seconds 5   # offline, local emulator
"""
import argparse
import contextlib
import logging
import sys

import bfxsync
from bfxsync.numbers import plain  # exact text, no exponent: plain(-8.2e-06) == '-0.0000082'


def main() -> int:
    parser = argparse.ArgumentParser(description="Print every ticker update of one symbol.")
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
        client = stack.enter_context(bfxsync.Client(**where))  # starts connecting; closed on exit

        def show(message: bfxsync.ChannelMessage) -> None:
            # Runs on the client's reader thread, like every callback: keep it quick.
            t = message.item
            print(f"{args.symbol}  bid {plain(t.bid):<10} ask {plain(t.ask):<10} last {plain(t.last_price):<10} "
                  f"24h {t.daily_change_relative:+.2%}  volume {plain(t.volume)}", flush=True)

        client.subscribe_ticker(args.symbol, on_data=show)
        return 130 if client.run_forever(args.seconds) else 0  # blocks until Ctrl-C (130) or --seconds (0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before run_forever() took over
        sys.exit(130)
