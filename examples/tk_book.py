"""A tkinter window showing a live, checksum-verified order book.

Tk may only be touched from its main loop's thread: the window polls the book with ``root.after()``.

    python examples/tk_book.py tBTCUSD                  # live Bitfinex, until the window is closed
    python examples/tk_book.py --emulator --seconds 10  # offline; closes itself after 10 s
"""
import argparse
import contextlib
import itertools
import logging
import signal

import bfxsync
from bfxsync.numbers import plain  # exact text, no exponent: plain(-8.2e-06) == '-0.0000082'


def main() -> int:
    parser = argparse.ArgumentParser(description="A live order book in a tkinter window.")
    parser.add_argument("symbol", nargs="?", default="tBTCUSD", help="a trading pair (default: %(default)s)")
    parser.add_argument("--emulator", action="store_true", help="run against a local emulator (offline)")
    parser.add_argument("--seconds", type=float, help="close the window after N seconds")
    parser.add_argument("--depth", type=int, default=12, help="rows per side (default: %(default)s)")
    args = parser.parse_args()
    try:  # after the arguments: --help works without tkinter
        from tkinter import TclError, Tk, ttk
    except ImportError as err:  # Debian's python3 has no tkinter without python3-tk
        parser.exit(1, f"{parser.prog} needs tkinter (Debian, Ubuntu: apt install python3-tk): {err}\n")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bfxsync").setLevel(logging.INFO)  # connects, reconnects, connection problems

    with contextlib.ExitStack() as stack:
        where = {}
        if args.emulator:
            try:
                from bfxsync.emulator import Emulator  # the optional extra
            except ImportError as err:
                parser.exit(2, f'{parser.prog}: --emulator needs websockets 15 or newer: pip install "websockets>=15" ({err})\n')
            logging.getLogger("bfxsync.emulator").setLevel(logging.WARNING)
            where["url"] = stack.enter_context(Emulator(symbols=(args.symbol,))).url  # serves any symbol
        try:
            root = Tk()
        except TclError as err:  # no $DISPLAY, or no X server there
            parser.exit(1, f"{parser.prog}: cannot open a window: {err}\n")
        book = stack.enter_context(bfxsync.Client(**where)).subscribe_book(args.symbol, prec="P0", length=25)
        root.title(f"bfxsync {args.symbol} order book")
        best = ttk.Label(root, font=("TkFixedFont", 14, "bold"), padding=6)
        table = ttk.Treeview(root, columns=("bid size", "bid", "ask", "ask size"), show="headings", height=args.depth)
        for name in table["columns"]:
            table.heading(name, text=name.title())
            table.column(name, width=120, anchor="e")
        status = ttk.Label(root, padding=6)
        for widget in (best, table, status):
            widget.pack(fill="x")
        interrupted = []  # Ctrl-C closes the window; the exit status is then 130
        signal.signal(signal.SIGINT, lambda *_: interrupted.append(root.after_idle(root.destroy)))
        frames = itertools.count()

        def refresh() -> None:  # runs on the Tk main loop, 4 times a second
            bids, asks = book.top(args.depth)
            table.delete(*table.get_children())
            for bid, ask in itertools.zip_longest(bids, asks):
                table.insert("", "end", values=(plain(bid.amount) if bid else "", plain(bid.price) if bid else "",
                                                 plain(ask.price) if ask else "", plain(-ask.amount) if ask else ""))
            top = (f"bid {plain(bids[0].price)}   ask {plain(asks[0].price)}   spread {plain(book.spread())}"
                   if bids and asks else "waiting")
            state = "synced" if book.synced else "waiting for a snapshot"
            best["text"] = f"{args.symbol}   {top}"
            status["text"] = f"{state} | checksums ok {book.checks_passed}, failed {book.checks_failed}, resyncs {book.resyncs}"
            if next(frames) % 4 == 0:  # what the window shows, once a second, for logs and tests
                print(f"[window] {args.symbol} {top} | {len(bids)}x{len(asks)} rows | {state} | "
                      f"checksums ok {book.checks_passed}", flush=True)
            root.after(250, refresh)
        refresh()
        if args.seconds is not None:
            root.after(int(args.seconds * 1000), root.destroy)
        root.mainloop()  # returns once the window is closed; leaving the with block closes the client
    return 130 if interrupted else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # Ctrl-C before the window opened
        raise SystemExit(130) from None
