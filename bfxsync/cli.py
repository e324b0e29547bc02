"""The ``bfxsync`` command: watch a book, ticker, trades or candles from a terminal; see the account, place orders.

    bfxsync book tBTCUSD                  # live top-of-book table, verified by checksum
    bfxsync ticker tETHUSD --seconds 10   # one line per ticker frame; stop after 10 s
    bfxsync trades tBTCUSD --emulator     # offline, against the embedded emulator
    bfxsync account --emulator --once     # wallets, positions, open orders (cli_account.py)
    bfxsync record --out s.jsonl book:tBTCUSD trades:tBTCUSD   # every frame to a file
    bfxsync replay s.jsonl --speed 10     # serve that recording (cli_record.py)

Exit status: 0 done (``--seconds`` elapsed), 1 cannot connect (or no usable server),
2 invalid arguments (a symbol the server rejects included) or a missing optional extra,
130 interrupted by Ctrl-C. ``--emulator`` serves whatever symbol is asked for.

Callbacks run on the client's reader thread; here they only queue messages and count.
All printing happens on the main thread, so a slow terminal or a closed pipe never
stalls the reader (and with it the heartbeats that keep the connection alive).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import queue
import sys
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import bfxsync
from bfxsync import protocol

from . import cli_account, cli_record
from .cli_book import TICK, UpdateCounter, choose_display, num_text, watch_book
from .cli_common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, connect, subscribe

# -- arguments ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser: ``book``, ``ticker``, ``trades``, ``candles``, ``account``, ``order``, ``record``, ``replay``."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--url", default=protocol.PUBLIC_URL, help="WebSocket endpoint (default: %(default)s)")
    where.add_argument("--emulator", action="store_true", help="start the embedded emulator and use it (offline)")
    common.add_argument("--seconds", type=float, metavar="N", help="exit (status 0) after N seconds (default: until Ctrl-C)")
    common.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                        help="give up (status 1) if not connected within S seconds (default: %(default)s)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")

    parser = argparse.ArgumentParser(prog="bfxsync", description="Watch Bitfinex market data, see your account and "
                                     "place orders (WebSocket API v2).")
    parser.add_argument("--version", action="version", version=f"bfxsync {bfxsync.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    book = commands.add_parser("book", parents=[common], help="live top-of-book table, checksum-verified")
    book.add_argument("symbol", help="tBTCUSD, fUSD, ...")
    # prec/length stay strings: the library validates them and names the valid choices.
    book.add_argument("--prec", default="P0", help="P0-P4 aggregated, R0 raw (default: %(default)s)")
    book.add_argument("--length", default="25", help="levels subscribed per side: 1, 25, 100, 250 (default: %(default)s)")
    book.add_argument("--depth", type=_positive_int, default=10, help="rows shown per side (default: %(default)s)")
    book.add_argument("--display", choices=("auto", "rich", "ansi", "lines"), default="auto",
                      help="auto: rich table (or ANSI redraw without rich) on a terminal, a line a second otherwise "
                           "(default: %(default)s)")

    commands.add_parser("ticker", parents=[common], help="one line per ticker update").add_argument("symbol")
    commands.add_parser("trades", parents=[common], help="one line per trade (times in UTC)").add_argument("symbol")
    candles = commands.add_parser("candles", parents=[common], help="one line per candle update (times in UTC)")
    candles.add_argument("symbol")
    candles.add_argument("--timeframe", default="1m", help=f"{' '.join(protocol.CANDLE_TIMEFRAMES)} (default: %(default)s)")
    candles.add_argument("--period", type=int, help="funding period in days (funding symbols only, e.g. 30; "
                                                     "required for them)")
    cli_account.add_commands(commands, common)
    cli_record.add_commands(commands, common)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _spec(args: argparse.Namespace) -> Any:
    """The subscription the command wants; the spec classes raise ValueError on bad input."""
    if args.command == "book":
        return bfxsync.BookSpec(args.symbol, args.prec, "F0", args.length)
    if args.command == "ticker":
        return bfxsync.TickerSpec(args.symbol)
    if args.command == "trades":
        return bfxsync.TradesSpec(args.symbol)
    if protocol.is_funding(args.symbol) and args.period is None:
        # candle_key() would suggest the key syntax; on the command line the answer is an option.
        raise ValueError(f"funding candles need a period in days, e.g. --period 30: bfxsync candles {args.symbol} --period 30")
    return bfxsync.CandlesSpec(bfxsync.candle_key(args.timeframe, args.symbol, args.period))


# -- entry point --------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except CliError as err:
        print(f"bfxsync: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `bfxsync trades tBTCUSD | head`: the reader left, which is not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.command in cli_account.COMMANDS:
        return cli_account.run(args)
    if args.command in cli_record.COMMANDS:
        return cli_record.run(args)
    try:
        spec = _spec(args)
        display = choose_display(args.display) if args.command == "book" else None
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    # Closed in reverse order: the client before the emulator it talks to.
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_start_emulator(spec.symbol)).url if args.emulator else args.url
        client = connect(stack, url, args.connect_timeout)
        inbox: "queue.Queue[Any]" = queue.Queue()
        _report_connection_changes(client, inbox)
        if display is None:
            subscribe(client, spec, inbox.put, args.connect_timeout)
            _print_lines(inbox, _formatter(spec, args), deadline)
        else:
            counter = UpdateCounter()
            subscription = subscribe(client, spec, counter, args.connect_timeout)
            watch_book(client, subscription, display, inbox, counter, args.depth, deadline)
    return EXIT_OK


def _start_emulator(symbol: str) -> Any:
    """An emulator serving ``symbol`` (any well-formed one, not only its eight defaults)."""
    try:
        from bfxsync.emulator import Emulator
    except ImportError as err:
        raise CliError(f'--emulator needs websockets 15 or newer: pip install "websockets>=15" ({err})', EXIT_USAGE) from None
    return Emulator(symbols=(symbol,))


def _report_connection_changes(client: bfxsync.Client, inbox: "queue.Queue[Any]") -> None:
    """Registered after the first handshake, so failed first attempts are not reported twice."""
    client.on_disconnected(lambda event: inbox.put(_Notice(f"disconnected: {event.reason}"
                                                           + ("; reconnecting" if event.will_reconnect else ""))))
    client.on_connected(lambda event: inbox.put(_Notice("reconnected")) if event.reconnect else None)


class _Notice(str):
    """A connection event for stderr, queued among the data so the order is kept."""


# -- line commands: ticker, trades, candles --------------------------------------------------

def _print_lines(inbox: "queue.Queue[Any]", format_message: Callable[[Any], Iterator[str]], deadline: Optional[float]) -> None:
    while True:
        wait = TICK if deadline is None else min(TICK, deadline - time.monotonic())
        if wait <= 0:
            return
        try:
            item = inbox.get(timeout=wait)
        except queue.Empty:
            continue
        if isinstance(item, _Notice):
            print(f"bfxsync: {item}", file=sys.stderr, flush=True)
            continue
        for line in format_message(item):
            print(line)
        sys.stdout.flush()  # a pipe is block-buffered; a watcher wants each line now


def _formatter(spec: Any, args: argparse.Namespace) -> Callable[[Any], Iterator[str]]:
    if args.command == "ticker":
        return lambda message: iter((_ticker_line(spec.symbol, message.item),))
    if args.command == "trades":
        return lambda message: (_trade_line(spec.symbol, trade, message.snapshot) for trade in message.items)
    label = f"{spec.symbol} {args.timeframe}"
    return lambda message: _candle_lines(label, message)


def _ticker_line(symbol: str, t: Any) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
    change = f"24h {t.daily_change_relative * 100:+.2f}% ({'+' if t.daily_change > 0 else ''}{num_text(t.daily_change)})"
    if isinstance(t, bfxsync.FundingTicker):
        return (f"{now} {symbol}  frr {num_text(t.frr)}  bid {num_text(t.bid)} {t.bid_period}d x {num_text(t.bid_size)}  "
                f"ask {num_text(t.ask)} {t.ask_period}d x {num_text(t.ask_size)}  last {num_text(t.last_price)}  {change}  "
                f"vol {num_text(t.volume)}")
    return (f"{now} {symbol}  bid {num_text(t.bid)} x {num_text(t.bid_size)}  ask {num_text(t.ask)} x {num_text(t.ask_size)}  "
            f"last {num_text(t.last_price)}  {change}  vol {num_text(t.volume)}  high {num_text(t.high)}  low {num_text(t.low)}")


def _trade_line(symbol: str, trade: Any, snapshot: bool) -> str:
    when = _utc(trade.mts, "%H:%M:%S.%f")[:-3]
    tail = "  (snapshot)" if snapshot else ""
    if isinstance(trade, bfxsync.FundingTrade):
        side = "lend  " if trade.amount > 0 else "borrow"
        return (f"{when} {symbol} {side} {num_text(abs(trade.amount))} @ {num_text(trade.rate)} for {trade.period}d"
                f"  id {trade.id}{tail}")
    side = "buy " if trade.amount > 0 else "sell"
    return f"{when} {symbol} {side} {num_text(abs(trade.amount))} @ {num_text(trade.price)}  id {trade.id}{tail}"


def _candle_lines(label: str, message: Any) -> Iterator[str]:
    candles = message.items
    if message.snapshot and len(candles) > 1:
        first, last = _utc(candles[0].mts, "%Y-%m-%d %H:%M"), _utc(candles[-1].mts, "%Y-%m-%d %H:%M")
        yield f"{label} snapshot: {len(candles)} candles from {first} to {last}; latest:"
        candles = candles[-1:]
    for c in candles:
        yield (f"{_utc(c.mts, '%Y-%m-%d %H:%M')} {label}  open {num_text(c.open)}  high {num_text(c.high)}  "
               f"low {num_text(c.low)}  close {num_text(c.close)}  volume {num_text(c.volume)}")


def _utc(mts: int, pattern: str) -> str:
    return datetime.datetime.fromtimestamp(mts / 1000, datetime.timezone.utc).strftime(pattern)



