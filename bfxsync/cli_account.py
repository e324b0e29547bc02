"""The account commands of ``bfxsync``: ``account`` (live wallets, positions, orders) and ``order``.

    bfxsync account --emulator --once                  # the emulator's demo account, one snapshot
    BFX_API_KEY=... BFX_API_SECRET=... bfxsync account  # live, redrawn in place on a terminal
    bfxsync order tBTCUSD 0.001 --price 20000 --emulator

Credentials come from ``BFX_API_KEY`` / ``BFX_API_SECRET``; ``--emulator`` starts the embedded
emulator and uses its demo account. Exit status: 0 done; 1 cannot connect, or refused (the server's
reason is printed), also an order accepted and cancelled at once unfilled (``POSTONLY CANCELED``);
2 invalid arguments or missing credentials; 130 Ctrl-C (:func:`bfxsync.cli.main`). As in ``bfxsync
book``, callbacks (on the reader thread) only record and queue; all printing is on the main thread.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import decimal
import queue
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import bfxsync
from bfxsync import protocol
from bfxsync.account import ORDER_TYPES, inputs

from .cli_book import TICK, _rich_available

COMMANDS = ("account", "order")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
ENV_KEY, ENV_SECRET = "BFX_API_KEY", "BFX_API_SECRET"
#: The end of ``account --help`` and ``order --help``.
_CREDENTIALS = (f"The API key and secret are read from the environment variables {ENV_KEY} and {ENV_SECRET}; "
                "with --emulator, the emulator's demo account is used instead.")
#: How long ``order`` waits, after the answer, for the order to close (a market order fills at once).
SETTLE_GRACE = 0.5
#: The account snapshots ``account`` waits for before showing anything.
_SNAPSHOTS = frozenset({"ws", "ps", "os"})


class _Failure(Exception):
    """One line for stderr and the exit status to use."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# -- arguments ----------------------------------------------------------------------------

def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``account`` (with the shared ``common`` options) and ``order`` to the subcommands."""
    account = commands.add_parser("account", parents=[common], help="live wallets, positions and open orders",
                                  description="Your wallets, positions and open orders, live.", epilog=_CREDENTIALS)
    account.add_argument("--once", action="store_true", help="print one snapshot and exit")
    account.add_argument("--display", choices=("auto", "rich", "ansi", "lines"), default="auto",
                         help="auto: a table redrawn in place on a terminal, a summary line a second otherwise "
                              "(default: %(default)s)")

    order = commands.add_parser("order", help="place one order and print its outcome",
                                description="Place one order and print its outcome.", epilog=_CREDENTIALS)
    where = order.add_mutually_exclusive_group()
    where.add_argument("--url", default=protocol.PUBLIC_URL,
                       help=f"WebSocket endpoint (default: the exchange, whose account endpoint is {protocol.AUTH_URL})")
    where.add_argument("--emulator", action="store_true", help="place it on a fresh emulator's demo account (offline)")
    order.add_argument("symbol", help="a trading symbol: tBTCUSD, tBTCF0:USTF0, ...")
    order.add_argument("amount", type=_decimal, help="> 0 buys, < 0 sells (decimal text, e.g. 0.001 or -0.5)")
    order.add_argument("--price", type=_decimal, help="limit (or stop) price; MARKET orders go without")
    order.add_argument("--type", type=str.upper, choices=ORDER_TYPES, default="EXCHANGE LIMIT", metavar="TYPE",
                       help="order type, quoted when it has a space (default: %(default)s)")
    order.add_argument("--hidden", action="store_true", help="hide the order from the public book")
    order.add_argument("--post-only", action="store_true", help="cancel instead of taking liquidity")
    order.add_argument("--reduce-only", action="store_true", help="only reduce a margin position")
    order.add_argument("--cid", type=int, help="client order id (default: a unique millisecond timestamp)")
    order.add_argument("--timeout", type=float, default=10.0, metavar="S",
                       help="give up (status 1) after S seconds to authenticate, and again for the answer "
                            "(default: %(default)s)")
    order.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")


def _decimal(text: str) -> decimal.Decimal:
    """Money from the command line as exact decimal text, never through a float (NaN: the library refuses it)."""
    try:
        return decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None


# -- entry point --------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    """Run ``account`` or ``order``; failures become one line on stderr and their status."""
    try:
        with contextlib.ExitStack() as stack:  # closes the client, then the emulator it talks to
            return _order(stack, args) if args.command == "order" else _account(stack, args)
    except _Failure as err:
        print(f"bfxsync: {err}", file=sys.stderr)
        return err.status


def _env_credentials() -> bfxsync.Credentials:
    try:
        return bfxsync.Credentials.from_env(ENV_KEY, ENV_SECRET)
    except ValueError:
        raise _Failure(f"no API credentials: set {ENV_KEY} and {ENV_SECRET} "
                       "(or use --emulator for the emulator's demo account)", EXIT_USAGE) from None


def _start_emulator(stack: contextlib.ExitStack, symbol: Optional[str]) -> Tuple[str, bfxsync.Credentials]:
    """A fresh emulator (also serving ``symbol``) and its demo account's credentials."""
    try:
        from bfxsync.emulator import DEFAULT_SYMBOLS, DEMO_KEY, DEMO_SECRET, Emulator
    except ImportError as err:
        raise _Failure(f'--emulator needs websockets 15 or newer: pip install "websockets>=15" ({err})', EXIT_USAGE) from None
    symbols = DEFAULT_SYMBOLS if symbol is None or symbol in DEFAULT_SYMBOLS else DEFAULT_SYMBOLS + (symbol,)
    return str(stack.enter_context(Emulator(symbols=symbols)).url), bfxsync.Credentials(DEMO_KEY, DEMO_SECRET)


class _Seen:
    """What the connection callbacks recorded (written on the reader thread, read on the main one)."""

    user_id: Optional[int] = None

    def __init__(self) -> None:
        self.reasons: List[str] = []


def _open(stack: contextlib.ExitStack, args: argparse.Namespace, timeout: float,
          symbol: Optional[str] = None) -> Tuple[bfxsync.Client, _Seen]:
    """An authenticated client with its account snapshots in, or a one-line failure."""
    url, credentials = _start_emulator(stack, symbol) if args.emulator else (args.url, _env_credentials())
    try:
        client = bfxsync.Client(url, credentials=credentials, connect_timeout=timeout)
    except ValueError as err:  # a bad URL, or plain ws:// off loopback
        raise _Failure(str(err), EXIT_USAGE) from None
    seen = _Seen()
    client.on_disconnected(lambda event: seen.reasons.append(event.reason))
    client.on_authenticated(lambda event: setattr(seen, "user_id", event.user_id))
    snapshots_in = threading.Event()
    account = _account_of(client)

    @account.on_message
    def _seen(message: bfxsync.AccountMessage) -> None:
        if message.snapshot and _SNAPSHOTS <= account.snapshot().snapshots_received:
            snapshots_in.set()

    client.start()
    stack.callback(client.close, 2.0)
    deadline = time.monotonic() + timeout
    # In short slices: Account.wait_authenticated() notices a refusal that arrives while it
    # waits only when its timeout ends, so one long wait would delay the refusal that long.
    while True:
        try:
            account.wait_authenticated(min(TICK, max(0.0, deadline - time.monotonic())))
            break
        except bfxsync.AuthenticationError as err:
            raise _Failure(f"authentication refused: {_refusal(err)}", EXIT_FAILURE) from None
        except bfxsync.BfxTimeoutError:
            if time.monotonic() >= deadline:
                reason = f": {seen.reasons[-1]}" if seen.reasons else ""
                raise _Failure(f"not authenticated at {url} within {timeout:g} s{reason}", EXIT_FAILURE) from None
        except bfxsync.BfxError as err:
            raise _Failure(f"cannot use {url}: {err}", EXIT_FAILURE) from None
    # The wallet snapshot lets inputs go out; the order and position snapshots may still be on the way.
    snapshots_in.wait(max(0.0, deadline - time.monotonic()))
    return client, seen


def _account_of(client: bfxsync.Client) -> bfxsync.Account:
    assert client.account is not None  # the client was given credentials
    return client.account


def _refusal(err: bfxsync.AuthenticationError) -> str:
    code = f" (code {err.code})" if err.code is not None else ""
    return f"{err.msg}{code}: {err.hint}" if err.hint else f"{err.msg}{code}"


def _num(value: Optional[decimal.Decimal]) -> str:
    """Exact text of a Decimal without exponent (``1E+1`` -> ``10``); ``-`` when unknown."""
    return "-" if value is None else format(value, "f")


# -- order --------------------------------------------------------------------------------

def _settle(account: bfxsync.Account, request: bfxsync.Request, order: bfxsync.Order, grace: float) -> bfxsync.Order:
    """The order's final row if it closes within ``grace`` seconds, else its latest open state.

    The request settles at acceptance, which for an order that fills at once still says
    ACTIVE; its ``oc`` (EXECUTED, or cancelled by the engine) follows in the same burst.
    """
    try:
        closed = request.closed(grace)
    except bfxsync.BfxError:  # still open (a resting limit order), or the connection dropped meanwhile
        return account.snapshot().orders.get(order.id, order)
    return closed.order if closed.known else order


def _order(stack: contextlib.ExitStack, args: argparse.Namespace) -> int:
    options: Dict[str, Any] = {"hidden": args.hidden, "post_only": args.post_only, "reduce_only": args.reduce_only}
    if args.cid is not None:
        options["cid"] = args.cid
    try:  # checked before connecting: the same checks submit_order() makes
        inputs.new_order(args.symbol, args.amount, args.price, args.type, **options)
    except ValueError as err:
        raise _Failure(str(err), EXIT_USAGE) from None
    client, _ = _open(stack, args, args.timeout, args.symbol)
    account = _account_of(client)
    try:
        request = account.submit_order(args.symbol, args.amount, args.price, args.type, **options)
        order = request.result(args.timeout)
    except bfxsync.OrderError as err:
        raise _Failure(f"order refused: {err.msg}", EXIT_FAILURE) from None
    except bfxsync.BfxTimeoutError:
        raise _Failure(f"no answer within {args.timeout:g} s: the order may or may not have been placed "
                       "(bfxsync account shows the open orders)", EXIT_FAILURE) from None
    except bfxsync.BfxError as err:  # OutcomeUnknownError, MaintenanceError, NotAuthenticatedError
        raise _Failure(str(err), EXIT_FAILURE) from None
    final = _settle(account, request, order, SETTLE_GRACE)
    print(order_line(final), flush=True)
    # Accepted, then cancelled by the exchange without any fill (POSTONLY CANCELED, FILLORKILL
    # CANCELED, ...): the line says why; the status tells scripts that nothing was done.
    cancelled_unfilled = not final.is_open and "CANCELED" in final.status and final.amount == final.amount_orig
    return EXIT_FAILURE if cancelled_unfilled else EXIT_OK


def order_line(order: bfxsync.Order) -> str:
    """``order ID STATUS | SYMBOL TYPE buy|sell AMOUNT @ PRICE | remaining R | avg A | cid C``."""
    side = "buy" if order.amount_orig > 0 else "sell"
    avg = f" | avg {_num(order.price_avg)}" if order.price_avg else ""
    return (f"order {order.id} {order.status} | {order.symbol} {order.order_type} {side} {_num(abs(order.amount_orig))}"
            f" @ {_num(order.price)} | remaining {_num(abs(order.amount))}{avg} | cid {order.cid}")


# -- account ------------------------------------------------------------------------------

Table = Tuple[str, Tuple[str, ...], List[Tuple[str, ...]]]
#: Columns aligned left; the numbers are aligned right.
_TEXT_COLUMNS = frozenset({"Wallet", "Currency", "Symbol", "Type", "Status"})


class _AccountView:
    """What one refresh shows: wallets, positions and open orders, and a status line."""

    def __init__(self, client: bfxsync.Client, user: Optional[int]) -> None:
        account = _account_of(client)
        snap = account.snapshot()
        wallets = [snap.wallets[key] for key in sorted(snap.wallets)]
        positions = [snap.positions[symbol] for symbol in sorted(snap.positions)]
        orders = snap.open_orders()
        self.authenticated = account.authenticated
        self.tables: List[Table] = [
            ("Wallets", ("Wallet", "Currency", "Balance", "Available"),
             [(w.wallet_type, w.currency, _num(w.balance), _num(w.balance_available)) for w in wallets]),
            ("Positions", ("Symbol", "Amount", "Base price", "P/L", "Liq. price", "Status"),
             [(p.symbol, _num(p.amount), _num(p.base_price), _num(p.pl), _num(p.price_liq), p.status) for p in positions]),
            ("Open orders", ("Id", "Symbol", "Type", "Amount", "Original", "Price", "Status"),
             [(str(o.id), o.symbol, o.order_type, _num(o.amount), _num(o.amount_orig), _num(o.price), o.status)
              for o in orders]),
        ]
        self.status = (f"user {user if user is not None else '?'} | "
                       f"{'authenticated' if self.authenticated else 'NOT AUTHENTICATED'} | "
                       f"{len(wallets)} wallets, {len(positions)} positions, {len(orders)} open orders | "
                       f"reconnects {client.stats().get('reconnects', 0)}")
        self.summary = " ".join(f"{w.wallet_type}:{w.currency} {_num(w.balance)}" for w in wallets) or "no wallets"
        self.summary += f" | positions {' '.join(f'{p.symbol} {_num(p.amount)}' for p in positions) or 'none'}"
        self.summary += f" | open orders {len(orders)}"

    def lines(self) -> List[str]:
        """The tables as plain text, columns aligned."""
        out: List[str] = []
        for title, headers, rows in self.tables:
            widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
            out.append(f"{title}:")
            for row in (headers, *rows):
                out.append("  " + "  ".join(cell.ljust(w) if header in _TEXT_COLUMNS else cell.rjust(w)
                                            for header, cell, w in zip(headers, row, widths)).rstrip())
            if not rows:
                out.append("  (none)")
        out.append(self.status)
        return out


def _account(stack: contextlib.ExitStack, args: argparse.Namespace) -> int:
    display = None if args.once else _choose_display(args.display)
    client, seen = _open(stack, args, args.connect_timeout)
    inbox: "queue.Queue[Any]" = queue.Queue()
    client.on_authenticated(lambda event: inbox.put("re-authenticated") if event.reauthenticated else None)
    client.on_disconnected(lambda event: inbox.put(f"disconnected: {event.reason}"
                                                   + ("; reconnecting" if event.will_reconnect else "")))
    client.on_error(lambda event: inbox.put(event.error) if isinstance(event.error, bfxsync.AuthenticationError) else None)

    def view() -> _AccountView:
        return _AccountView(client, seen.user_id)

    if display is None:
        print("\n".join(view().lines()), flush=True)
        return EXIT_OK
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    _watch(view, display, inbox, deadline)
    return EXIT_OK


def _watch(view: Callable[[], _AccountView], display_class: Callable[[], Any], inbox: "queue.Queue[Any]",
           deadline: Optional[float]) -> None:
    with display_class() as display:
        next_draw = 0.0
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                display.draw(view())  # the final state, for logs and scripts
                return
            if now >= next_draw:
                display.draw(view())
                next_draw = now + display.interval
            until = next_draw if deadline is None else min(next_draw, deadline)
            try:
                item = inbox.get(timeout=max(0.0, min(TICK, until - time.monotonic())))
            except queue.Empty:
                continue
            if isinstance(item, bfxsync.AuthenticationError):  # refused on re-authentication: not retried
                raise _Failure(f"authentication refused: {_refusal(item)}", EXIT_FAILURE)
            display.notice(item)


def _choose_display(name: str) -> Callable[[], Any]:
    """As ``bfxsync book``: rich (or ANSI without rich) on a terminal, a line a second otherwise."""
    has_rich = _rich_available()
    if name == "rich" and not has_rich:
        raise _Failure("the rich display needs rich (pip install 'rich>=13')", EXIT_USAGE)
    if name == "auto":
        name = ("rich" if has_rich else "ansi") if sys.stdout.isatty() else "lines"
    return {"rich": _RichDisplay, "ansi": _AnsiDisplay, "lines": _LineDisplay}[name]


class _LineDisplay:
    """One summary line a second: for pipes, files and logs."""

    interval = 1.0

    def __enter__(self) -> "_LineDisplay":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        pass

    def draw(self, view: _AccountView) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
        print(f"{now} {view.summary} | {'authenticated' if view.authenticated else 'NOT AUTHENTICATED'}", flush=True)

    def notice(self, text: str) -> None:
        print(f"bfxsync: {text}", file=sys.stderr, flush=True)


class _AnsiDisplay(_LineDisplay):
    """The plain-text tables redrawn in place with ANSI escapes (when rich is not installed)."""

    interval = 0.5

    def notice(self, text: str) -> None:
        pass  # text on stderr would scroll the tables; the status line shows the state and reconnects

    def draw(self, view: _AccountView) -> None:
        # Home, clear to the end, draw: one write per frame so the terminal never shows half a table.
        sys.stdout.write("\x1b[H\x1b[J" + "\n".join(view.lines()) + "\n")
        sys.stdout.flush()


class _RichDisplay(_AnsiDisplay):
    """rich tables refreshed in place by ``rich.live.Live``."""

    def __enter__(self) -> "_RichDisplay":
        from rich.live import Live

        self._live = Live(auto_refresh=False)  # refreshed after each draw; no extra rich thread
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._live.__exit__(*exc_info)

    def draw(self, view: _AccountView) -> None:
        from rich.console import Group
        from rich.table import Table as RichTable
        from rich.text import Text

        parts: List[Any] = []
        for title, headers, rows in view.tables:
            table = RichTable(title=title, title_justify="left")
            for header in headers:
                table.add_column(header, justify="left" if header in _TEXT_COLUMNS else "right")
            for row in rows:
                table.add_row(*row)
            parts.append(table)
        parts.append(Text(view.status, style="bold" if view.authenticated else "bold red"))
        self._live.update(Group(*parts), refresh=True)
