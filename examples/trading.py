"""Trade: wallets, then a limit order placed away from the market, modified and cancelled, then a small market order.

    BFX_API_KEY=... BFX_API_SECRET=... python examples/trading.py   # live: REAL orders on your account
    python examples/trading.py --emulator --seconds 3               # offline, the emulator's demo account
"""
import argparse
import contextlib
import logging
import sys
import threading

import bfxsync
from bfxsync.numbers import plain, to_decimal  # exact text of any number; text -> Decimal


def main() -> int:
    parser = argparse.ArgumentParser(description="Place, modify and cancel an order, then buy at market.")
    parser.add_argument("symbol", nargs="?", default="tBTCUSD", help="a trading pair (default: %(default)s)")
    parser.add_argument("--amount", type=to_decimal, default="0.0002", help="amount to buy (default: %(default)s)")
    parser.add_argument("--emulator", action="store_true", help="run against a local emulator (offline)")
    parser.add_argument("--seconds", type=float, help="then follow the account N seconds (default: until Ctrl-C)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bfxsync").setLevel(logging.INFO)  # connects, authentication, reconnects

    with contextlib.ExitStack() as stack:
        if args.emulator:
            try:
                from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator  # the optional extra
            except ImportError as err:
                parser.exit(2, f'{parser.prog}: --emulator needs websockets 15 or newer: pip install "websockets>=15" ({err})\n')
            logging.getLogger("bfxsync.emulator").setLevel(logging.WARNING)
            url = stack.enter_context(Emulator()).url
            client = bfxsync.Client(url, api_key=DEMO_KEY, api_secret=DEMO_SECRET)
        else:
            try:
                credentials = bfxsync.Credentials.from_env()  # BFX_API_KEY, BFX_API_SECRET
            except ValueError as err:
                parser.exit(2, f"{parser.prog}: {err} (or use --emulator)\n")
            client = bfxsync.Client(credentials=credentials)  # the account connection goes to api.bitfinex.com
        stack.enter_context(client)
        try:
            account = client.wait_authenticated(15).account
        except bfxsync.AuthenticationError as err:  # a wrong key or secret: the server's reason and a hint
            parser.exit(1, f"{parser.prog}: authentication refused: {err}\n")
        for wallet in account.snapshot().wallets.values():
            print(f"wallet {wallet.wallet_type} {wallet.currency} {plain(wallet.balance)}")

        filled = threading.Event()

        @account.on_trades  # runs on the reader thread: print and signal only
        def on_fill(message: bfxsync.AccountMessage) -> None:
            for trade in message.items:
                if message.tag == "te":  # "tu" repeats the trade with its fee
                    print(f"fill {trade.symbol} {plain(trade.exec_amount)} @ {plain(trade.exec_price)} (order {trade.order_id})")
                    filled.set()

        @account.on_wallets
        def on_wallet(message: bfxsync.AccountMessage) -> None:
            if not message.snapshot:
                print(f"wallet {message.item.wallet_type} {message.item.currency} now {plain(message.item.balance)}")

        bid = client.subscribe_book(args.symbol).wait_synced(10).best_bid().price  # a float: could go in as it is
        away = f"{bid * 0.8:.5g}"  # 20% under the best bid, to 5 digits (any number type goes): it rests, unfilled
        try:
            order = account.submit_order(args.symbol, args.amount, away).result(10)
            print(f"placed {order.id}: {order.status} {plain(order.amount)} @ {plain(order.price)}")
            order = account.update_order(order.id, price=f"{bid * 0.79:.5g}").result(10)
            print(f"modified {order.id}: {order.status} {plain(order.amount)} @ {plain(order.price)}")
            order = account.cancel_order(order.id).result(10)
            print(f"cancelled {order.id}: {order.status}")
            # Answered as soon as it is accepted; the fill and the wallet changes follow on the callbacks.
            account.submit_order(args.symbol, args.amount, type="EXCHANGE MARKET").result(10)
        except bfxsync.BfxError as err:  # refused (the server's reason), or no answer: stop here
            parser.exit(1, f"{parser.prog}: {err}\n")
        if not filled.wait(10):
            print("no fill within 10 s")
        return 130 if client.run_forever(args.seconds) else 0  # blocks until Ctrl-C (130) or --seconds (0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before run_forever() took over
        sys.exit(130)
