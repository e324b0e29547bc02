"""Follow the candles of a symbol: the history first, then the current candle as it changes.

    python examples/candles.py tBTCUSD --timeframe 5m  # live Bitfinex, until Ctrl-C
    python examples/candles.py --emulator --seconds 5  # offline, local emulator
"""
import argparse
import contextlib
import datetime
import logging
import sys

import bfxsync
from bfxsync.numbers import plain  # exact text, no exponent: plain(-8.2e-06) == '-0.0000082'


def main() -> int:
    parser = argparse.ArgumentParser(description="Follow the candles of one symbol.")
    parser.add_argument("symbol", nargs="?", default="tBTCUSD", help="a trading pair (default: %(default)s)")
    parser.add_argument("--timeframe", default="1m", help="1m 5m 15m 30m 1h ... 1M (default: %(default)s)")
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
            if message.snapshot:
                print(f"--- {len(message.items)} {args.timeframe} candles of {args.symbol}; the last 3: ---")
            # An update repeats the open candle's time while it changes; a new time starts a candle.
            for c in message.items[-3:]:
                start = datetime.datetime.fromtimestamp(c.mts / 1000, datetime.timezone.utc)
                print(f"{start:%Y-%m-%d %H:%M}  open {plain(c.open)}  high {plain(c.high)}  low {plain(c.low)}  "
                      f"close {plain(c.close)}  volume {plain(c.volume)}", flush=True)

        client.subscribe_candles(args.symbol, args.timeframe, on_data=show)
        return 130 if client.run_forever(args.seconds) else 0  # blocks until Ctrl-C (130) or --seconds (0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before run_forever() took over
        sys.exit(130)
