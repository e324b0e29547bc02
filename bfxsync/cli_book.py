"""The live book view of the ``bfxsync book`` command: rich table, ANSI redraw, or a line a second.

Everything here runs on the CLI's main thread; the only thing the reader thread touches
is :class:`UpdateCounter` (the book's ``on_data`` handler), so a slow terminal can never
stall the connection.
"""
from __future__ import annotations

import decimal
import itertools
import logging
import queue
import sys
import time
from typing import Any, Callable, Iterator, Optional, Tuple

import bfxsync
from bfxsync.protocol import is_funding

logger = logging.getLogger(__name__)

#: How often the main thread wakes when idle, so Ctrl-C and ``--seconds`` are seen promptly.
TICK = 0.25


def num_text(value: float) -> str:
    """Shortest exact text of a float, never in exponent notation (8.2013e-06 -> 0.0000082013)."""
    text = format(decimal.Decimal(repr(value)), "f")
    return text[:-2] if text.endswith(".0") else text


class UpdateCounter:
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

    def __init__(self, client: bfxsync.Client, sub: Any, counter: UpdateCounter, depth: int) -> None:
        spec = sub.spec
        self.title = f"{spec.symbol} {spec.prec} length {spec.length}"
        funding, raw = is_funding(spec.symbol), spec.prec == "R0"
        self.headers = ("Rate" if funding else "Price", "Amount", "Id" if raw else "Count")
        bids, asks = sub.top(depth)
        self.bids = [_cells(level) for level in bids]
        self.asks = [_cells(level) for level in asks]
        self.synced = sub.synced
        spread = sub.spread()
        self.best = (f"bid {self.bids[0][0]} x {self.bids[0][1]} | ask {self.asks[0][0]} x {self.asks[0][1]} | "
                     f"spread {num_text(round(spread, 12))}" if self.bids and self.asks and spread is not None else "empty book")
        self.status = (f"{'synced' if self.synced else 'NOT SYNCED'} | checksums {sub.checks_passed} ok, "
                       f"{sub.checks_failed} failed | resyncs {sub.resyncs} | "
                       f"reconnects {client.stats().get('reconnects', 0)} | {counter.sample():.1f} updates/s")

    def rows(self) -> Iterator[Tuple[Tuple[str, str, str], Tuple[str, str, str]]]:
        blank = ("", "", "")
        return itertools.zip_longest(self.bids, self.asks, fillvalue=blank)


def _cells(level: Any) -> Tuple[str, str, str]:
    """(price or rate, amount, count or id) of any level kind; amounts unsigned, the column gives the side."""
    price = getattr(level, "price", None)
    first = num_text(price) if price is not None else f"{num_text(level.rate)} {level.period}d"
    count = getattr(level, "count", None)
    third = count if count is not None else getattr(level, "order_id", None) or getattr(level, "offer_id", "")
    return first, num_text(abs(level.amount)), str(third)


def choose_display(name: str) -> Callable[[], Any]:
    """The display factory. rich's Live draws only the final frame on a non-terminal,
    so ``auto`` prints lines to pipes and files even when rich is installed."""
    has_rich = _rich_available()
    if name == "rich" and not has_rich:
        raise ValueError("the rich display needs rich (pip install 'rich>=13')")
    if name == "auto":
        name = ("rich" if has_rich else "ansi") if sys.stdout.isatty() else "lines"
    return {"rich": _RichDisplay, "ansi": _AnsiDisplay, "lines": _LineDisplay}[name]


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401 - only probing for the optional extra
    except ImportError:
        return False
    return True


def watch_book(client: bfxsync.Client, sub: Any, display_class: Callable[[], Any], inbox: "queue.Queue[Any]",
                counter: UpdateCounter, depth: int, deadline: Optional[float]) -> None:
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
                display.notice(inbox.get(timeout=max(0.0, min(TICK, until - time.monotonic()))))
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
        logger.info("%s", text)

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
