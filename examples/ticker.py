"""Print every ticker update of one symbol.

    python examples/ticker.py tETHUSD                  # live Bitfinex, until Ctrl-C
    python examples/ticker.py --emulator --seconds 5   # offline, local emulator
"""
import argparse
import contextlib

import bfxsync


def main() -> None:
    parser = argparse.ArgumentParser(description="Print every ticker update of one symbol.")
    parser.add_argument("symbol", nargs="?", default="tBTCUSD", help="a trading pair (default: %(default)s)")
    parser.add_argument("--emulator", action="store_true", help="run against a local emulator (offline)")
    parser.add_argument("--seconds", type=float, help="stop after N seconds (default: until Ctrl-C)")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        where = {}
        if args.emulator:
            from bfxsync.emulator import Emulator  # the optional extra: pip install 'bfxsync[emulator]'
            where["url"] = stack.enter_context(Emulator()).url
        client = stack.enter_context(bfxsync.Client(**where))  # starts connecting; closed on exit

        def show(message: bfxsync.ChannelMessage) -> None:
            # Runs on the client's reader thread, like every callback: keep it quick.
            t = message.item
            print(f"{args.symbol}  bid {t.bid:<10g} ask {t.ask:<10g} last {t.last_price:<10g} "
                  f"24h {t.daily_change_relative:+.2%}  volume {t.volume:.2f}", flush=True)

        client.subscribe_ticker(args.symbol, on_data=show)
        client.run_forever(args.seconds)  # blocks until Ctrl-C (or --seconds)


if __name__ == "__main__":
    main()
