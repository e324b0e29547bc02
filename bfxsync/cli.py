"""The ``bfxsync`` command: watch a book, ticker, trades or candles from a terminal.

    bfxsync book tBTCUSD                  # live top-of-book table, verified by checksum
    bfxsync ticker tETHUSD --seconds 10   # one line per ticker frame; stop after 10 s
    bfxsync trades tBTCUSD --emulator     # offline, against the embedded emulator

Exit status: 0 done (``--seconds`` elapsed), 1 cannot connect (or no usable server),
2 invalid arguments (a symbol the server rejects included), 130 interrupted by Ctrl-C.

Callbacks run on the client's reader thread; here they only queue messages and count.
All printing happens on the main thread, so a slow terminal or a closed pipe never
stalls the reader (and with it the heartbeats that keep the connection alive).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import decimal
import itertools
import logging
import os
import queue
import sys
import time
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import bfxsync
from bfxsync import protocol

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: How often the main thread wakes when idle, so Ctrl-C and ``--seconds`` are seen promptly.
_TICK = 0.25


class CliError(Exception):
    """A failure reported as one line on stderr, with the exit status to use."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# -- arguments ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands ``book``, ``ticker``, ``trades``, ``candles``)."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--url", default=protocol.PUBLIC_URL, help="WebSocket endpoint (default: %(default)s)")
    where.add_argument("--emulator", action="store_true", help="start the embedded emulator and use it (offline)")
    common.add_argument("--seconds", type=float, metavar="N", help="exit (status 0) after N seconds")
    common.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                        help="give up (status 1) if not connected within S seconds (default: %(default)s)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")

    parser = argparse.ArgumentParser(prog="bfxsync", description="Watch Bitfinex public market data (WebSocket API v2).")
    parser.add_argument("--version", action="version", version=f"bfxsync {bfxsync.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    book = commands.add_parser("book", parents=[common], help="live top-of-book table, checksum-verified")
    book.add_argument("symbol", help="tBTCUSD, fUSD, ...")
    # prec/len stay strings: the library validates them and names the valid choices.
    book.add_argument("--prec", default="P0", help="P0-P4 aggregated, R0 raw (default: %(default)s)")
    book.add_argument("--len", default="25", help="levels subscribed per side: 1, 25, 100, 250 (default: %(default)s)")
    book.add_argument("--depth", type=_positive_int, default=10, help="rows shown per side (default: %(default)s)")
    book.add_argument("--display", choices=("auto", "rich", "ansi", "lines"), default="auto",
                      help="auto: rich table (or ANSI redraw without rich) on a terminal, a line a second otherwise")

    commands.add_parser("ticker", parents=[common], help="one line per ticker update").add_argument("symbol")
    commands.add_parser("trades", parents=[common], help="one line per trade (times in UTC)").add_argument("symbol")
    candles = commands.add_parser("candles", parents=[common], help="one line per candle update (times in UTC)")
    candles.add_argument("symbol")
    candles.add_argument("--timeframe", default="1m", help=f"{' '.join(protocol.CANDLE_TIMEFRAMES)} (default: %(default)s)")
    candles.add_argument("--period", type=int, help="funding period in days (funding symbols only, e.g. 30)")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _spec(args: argparse.Namespace) -> Any:
    """The subscription the command wants; the spec classes raise ValueError on bad input."""
    if args.command == "book":
        return bfxsync.BookSpec(args.symbol, args.prec, "F0", args.len)
    if args.command == "ticker":
        return bfxsync.TickerSpec(args.symbol)
    if args.command == "trades":
        return bfxsync.TradesSpec(args.symbol)
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
    try:
        spec = _spec(args)
        display = _choose_display(args.display) if args.command == "book" else None
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    # Closed in reverse order: the client before the emulator it talks to.
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_start_emulator()).url if args.emulator else args.url
        client = _connect(stack, url, args.connect_timeout)
        inbox: "queue.Queue[Any]" = queue.Queue()
        _report_connection_changes(client, inbox)
        if display is None:
            _subscribe(client, spec, inbox.put, args.connect_timeout)
            _print_lines(inbox, _formatter(spec, args), deadline)
        else:
            counter = _UpdateCounter()
            subscription = _subscribe(client, spec, counter, args.connect_timeout)
            _watch_book(client, subscription, display, inbox, counter, args.depth, deadline)
    return EXIT_OK


def _start_emulator() -> Any:
    try:
        from bfxsync.emulator import Emulator
    except ImportError as err:
        raise CliError(f"--emulator needs the emulator extra (pip install 'bfxsync[emulator]'): {err}", EXIT_FAILURE) from None
    return Emulator()


def _connect(stack: contextlib.ExitStack, url: str, timeout: float) -> bfxsync.Client:
    """Start a client and wait for the handshake; on failure, say why in one line.

    The client redials forever by itself, so "unreachable" can only mean "not connected
    within ``timeout``"; the reason comes from the last failed attempt.
    """
    try:
        client = bfxsync.Client(url, connect_timeout=timeout)
    except ValueError as err:  # bad URL, non-positive timeout
        raise CliError(str(err), EXIT_USAGE) from None
    reasons: List[str] = []
    client.on_disconnected(lambda event: reasons.append(event.reason))
    client.start()
    stack.callback(client.close, 2.0)
    try:
        client.wait_connected(timeout)
    except bfxsync.BfxTimeoutError:
        reason = reasons[-1] if reasons else f"no answer within {timeout:g} s"
        if reason.startswith("connect to ") and " failed: " in reason:
            reason = reason.split(" failed: ", 1)[1]  # the URL already names host and port
        raise CliError(f"cannot connect to {url}: {reason}", EXIT_FAILURE) from None
    except bfxsync.BfxError as err:  # e.g. VersionMismatchError: retrying cannot help
        raise CliError(f"cannot use {url}: {err}", EXIT_FAILURE) from None
    return client


def _report_connection_changes(client: bfxsync.Client, inbox: "queue.Queue[Any]") -> None:
    """Registered after the first handshake, so failed first attempts are not reported twice."""
    client.on_disconnected(lambda event: inbox.put(_Notice(f"disconnected: {event.reason}"
                                                           + ("; reconnecting" if event.will_reconnect else ""))))
    client.on_connected(lambda event: inbox.put(_Notice("reconnected")) if event.reconnect else None)


def _subscribe(client: bfxsync.Client, spec: Any, on_data: Callable[[Any], Any], timeout: float) -> Any:
    subscription = client.subscribe(spec, on_data)
    try:
        subscription.wait_subscribed(timeout)
    except bfxsync.SubscriptionError as err:
        what = getattr(spec, "key", None) or spec.symbol
        raise CliError(f"the server rejected the {spec.channel} subscription to {what}: {err.msg} (code {err.code})", EXIT_USAGE) from None
    except bfxsync.BfxTimeoutError:
        logger.warning("bfxsync: %r not acknowledged yet; still waiting", spec)
    return subscription


class _Notice(str):
    """A connection event for stderr, queued among the data so the order is kept."""


# -- line commands: ticker, trades, candles --------------------------------------------------

def _print_lines(inbox: "queue.Queue[Any]", format_message: Callable[[Any], Iterator[str]], deadline: Optional[float]) -> None:
    while True:
        wait = _TICK if deadline is None else min(_TICK, deadline - time.monotonic())
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
    change = f"24h {t.daily_change_relative * 100:+.2f}% ({'+' if t.daily_change > 0 else ''}{_num(t.daily_change)})"
    if isinstance(t, bfxsync.FundingTicker):
        return (f"{now} {symbol}  frr {_num(t.frr)}  bid {_num(t.bid)} {t.bid_period}d x {_num(t.bid_size)}  "
                f"ask {_num(t.ask)} {t.ask_period}d x {_num(t.ask_size)}  last {_num(t.last_price)}  {change}  "
                f"vol {_num(t.volume)}")
    return (f"{now} {symbol}  bid {_num(t.bid)} x {_num(t.bid_size)}  ask {_num(t.ask)} x {_num(t.ask_size)}  "
            f"last {_num(t.last_price)}  {change}  vol {_num(t.volume)}  high {_num(t.high)}  low {_num(t.low)}")


def _trade_line(symbol: str, trade: Any, snapshot: bool) -> str:
    when = _utc(trade.mts, "%H:%M:%S.%f")[:-3]
    tail = "  (snapshot)" if snapshot else ""
    if isinstance(trade, bfxsync.FundingTrade):
        side = "lend  " if trade.amount > 0 else "borrow"
        return f"{when} {symbol} {side} {_num(abs(trade.amount))} @ {_num(trade.rate)} for {trade.period}d  id {trade.id}{tail}"
    side = "buy " if trade.amount > 0 else "sell"
    return f"{when} {symbol} {side} {_num(abs(trade.amount))} @ {_num(trade.price)}  id {trade.id}{tail}"


def _candle_lines(label: str, message: Any) -> Iterator[str]:
    candles = message.items
    if message.snapshot and len(candles) > 1:
        first, last = _utc(candles[0].mts, "%Y-%m-%d %H:%M"), _utc(candles[-1].mts, "%Y-%m-%d %H:%M")
        yield f"{label} snapshot: {len(candles)} candles from {first} to {last}; latest:"
        candles = candles[-1:]
    for c in candles:
        yield (f"{_utc(c.mts, '%Y-%m-%d %H:%M')} {label}  open {_num(c.open)}  high {_num(c.high)}  "
               f"low {_num(c.low)}  close {_num(c.close)}  volume {_num(c.volume)}")


def _utc(mts: int, pattern: str) -> str:
    return datetime.datetime.fromtimestamp(mts / 1000, datetime.timezone.utc).strftime(pattern)


def _num(value: float) -> str:
    """Shortest exact text of a float, never in exponent notation (8.2013e-06 -> 0.0000082013)."""
    text = format(decimal.Decimal(repr(value)), "f")
    return text[:-2] if text.endswith(".0") else text


# -- book ----------------------------------------------------------------------------------

class _UpdateCounter:
    """The book's ``on_data`` handler: counts update rows (one writer, the reader thread)."""

    def __init__(self) -> None:
        self.rows = 0
        self._seen, self._since, self.per_second = 0, time.monotonic(), 0.0

    def __call__(self, message: Any) -> None:
        if not message.snapshot:
            self.rows += len(message.items)

    def sample(self) -> float:
        """Updates per second, re-measured at most once a second so the figure does not jitter."""
        now = time.monotonic()
        if now - self._since >= 1.0:
            rows = self.rows
            self.per_second = (rows - self._seen) / (now - self._since)
            self._seen, self._since = rows, now
        return self.per_second


class _BookView:
    """What one refresh shows: the top rows of both sides and the status line."""

    def __init__(self, client: bfxsync.Client, sub: Any, counter: _UpdateCounter, depth: int) -> None:
        spec = sub.spec
        self.title = f"{spec.symbol} {spec.prec} len {spec.len}"
        funding, raw = spec.symbol.startswith("f"), spec.prec == "R0"
        self.headers = ("Rate" if funding else "Price", "Amount", "Id" if raw else "Count")
        bids, asks = sub.top(depth)
        self.bids = [_cells(level) for level in bids]
        self.asks = [_cells(level) for level in asks]
        self.synced = sub.synced
        spread = sub.spread()
        self.best = (f"bid {self.bids[0][0]} x {self.bids[0][1]} | ask {self.asks[0][0]} x {self.asks[0][1]} | "
                     f"spread {_num(round(spread, 12))}" if self.bids and self.asks and spread is not None else "empty book")
        self.status = (f"{'synced' if self.synced else 'NOT SYNCED'} | checksums {sub.checks_passed} ok, "
                       f"{sub.checks_failed} failed | resyncs {sub.resyncs} | "
                       f"reconnects {client.stats().get('reconnects', 0)} | {counter.sample():.1f} updates/s")

    def rows(self) -> Iterator[Tuple[Tuple[str, str, str], Tuple[str, str, str]]]:
        blank = ("", "", "")
        return itertools.zip_longest(self.bids, self.asks, fillvalue=blank)


def _cells(level: Any) -> Tuple[str, str, str]:
    """(price or rate, amount, count or id) of any level kind; amounts unsigned, the column gives the side."""
    price = getattr(level, "price", None)
    first = _num(price) if price is not None else f"{_num(level.rate)} {level.period}d"
    count = getattr(level, "count", None)
    third = count if count is not None else getattr(level, "order_id", None) or getattr(level, "offer_id", "")
    return first, _num(abs(level.amount)), str(third)


def _choose_display(name: str) -> Callable[[], Any]:
    """The display factory. rich's Live draws only the final frame on a non-terminal,
    so ``auto`` prints lines to pipes and files even when rich is installed."""
    has_rich = _rich_available()
    if name == "rich" and not has_rich:
        raise ValueError("the rich display needs rich (pip install 'bfxsync[cli]')")
    if name == "auto":
        name = ("rich" if has_rich else "ansi") if sys.stdout.isatty() else "lines"
    return {"rich": _RichDisplay, "ansi": _AnsiDisplay, "lines": _LineDisplay}[name]


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401 - only probing for the optional extra
    except ImportError:
        return False
    return True


def _watch_book(client: bfxsync.Client, sub: Any, display_class: Callable[[], Any], inbox: "queue.Queue[Any]",
                counter: _UpdateCounter, depth: int, deadline: Optional[float]) -> None:
    with display_class() as display:
        next_draw = 0.0
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                display.draw(_BookView(client, sub, counter, depth))  # the final state, for logs and scripts
                return
            if now >= next_draw:
                display.draw(_BookView(client, sub, counter, depth))
                next_draw = now + display.interval
            until = next_draw if deadline is None else min(next_draw, deadline)
            try:  # sleep until the next frame, showing connection notices meanwhile
                display.notice(inbox.get(timeout=max(0.0, min(_TICK, until - time.monotonic()))))
            except queue.Empty:
                pass


class _LineDisplay:
    """One snapshot line a second: for pipes, files and logs."""

    interval = 1.0

    def __enter__(self) -> "_LineDisplay":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        pass

    def draw(self, view: _BookView) -> None:
        print(f"{view.title} | {view.best} | {view.status}", flush=True)

    def notice(self, text: str) -> None:
        print(f"bfxsync: {text}", file=sys.stderr, flush=True)


class _AnsiDisplay(_LineDisplay):
    """A plain-text table redrawn in place with ANSI escapes (when rich is not installed)."""

    interval = 0.25

    def notice(self, text: str) -> None:
        # Text on stderr would scroll the table; the status line counts reconnects anyway.
        logger.info("bfxsync: %s", text)

    def draw(self, view: _BookView) -> None:
        width = 14
        head = " ".join(h.rjust(width) for h in view.headers)
        lines = [view.title, f"{'BIDS'.rjust(len(head))} | ASKS", f"{head} | {head}"]
        for bid, ask in view.rows():
            lines.append(" ".join(c.rjust(width) for c in bid) + " | " + " ".join(c.rjust(width) for c in ask))
        lines.append(view.status)
        # Home, clear to the end, draw: one write per frame so the terminal never shows half a table.
        sys.stdout.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
        sys.stdout.flush()


class _RichDisplay(_AnsiDisplay):
    """A rich table refreshed in place by ``rich.live.Live``."""

    interval = 0.25

    def __enter__(self) -> "_RichDisplay":
        from rich.live import Live

        self._live = Live(auto_refresh=False)  # we refresh after each draw; no extra rich thread
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._live.__exit__(*exc_info)

    def draw(self, view: _BookView) -> None:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=view.title)
        for header in view.headers:
            table.add_column(f"Bid {header.lower()}", justify="right", style="green" if header != "Amount" else None)
        for header in view.headers:
            table.add_column(f"Ask {header.lower()}", justify="right", style="red" if header != "Amount" else None)
        for bid, ask in view.rows():
            table.add_row(*bid, *ask)
        status = Text(view.status, style="bold" if view.synced else "bold red")
        self._live.update(Group(table, status), refresh=True)
