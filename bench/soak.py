#!/usr/bin/env python3
"""Fault soak: one client, many subscriptions, a seeded random series of faults, and a verdict.

A client with books, trades and tickers of every emulator symbol (24 subscriptions;
``max_subscriptions`` 10, so 3 connections; SEQ_ALL on, so a lost frame is visible) runs
against the emulator, served by a child process (see ``RemoteEmulator``), while this
script injects one fault at a time and, after
each, waits until the client has recovered: every subscription active again and every book
equal to the emulator's (the market paused, checksum and depth compared as in the test
suite's ``book_matches``, then resumed). Time to recover runs from the injection to that
state; the span is the fault's *window*.

The emulator numbers trades consecutively per symbol, so each trades subscription counts
the IDs it never received. A gap whose neighbours (the trades received just before and
after it) enclose part of a fault window is an outage loss, expected; any other gap is a
trade lost while nothing was wrong, and fails the soak.

Faults (``--faults`` picks a subset). The schedule comes from ``--seed``: rounds of every
kind once in a shuffled order, with targets (a connection or all, a symbol, a delay) drawn
from the same generator, and 1-3 quiet seconds between faults:

  drop            abrupt close (no close frame, 1006) of one connection or of all
  stall           half-open socket: the server goes silent (one connection or all) until
                  the client gives up on it and redials, then speaks again
  info_20051      "please reconnect" to every connection
  maintenance     20060, a pause of 0.5-2 s, 20061
  checksum        wrong ``cs`` values for one book until the client notices (resync)
  sequence_gap    one SEQ_ALL number skipped on one connection (the client redials it)
  malformed       a garbage frame on one subscription's chanId (bad JSON, wrong shapes)
  error_10305     an unsolicited ``{"event":"error","code":10305}`` on every connection.
                  The client never sends past its own limit, and a real 10305 (a server
                  whose limit is below the client's ``max_subscriptions``) fails that
                  subscription for good, which no client can recover from; so the soak
                  injects the frame and checks that nothing else breaks.
  refused_429     new handshakes answered with HTTP 429, one connection dropped, the ban
                  lifted after 2 s. The client then holds every dial off for 60 s, as the
                  exchange's ban demands, so each costs a minute: it is drawn at most
                  once per 5 minutes of run (a 10-minute run: at most twice), never in
                  runs shorter than 3 minutes.
  slow_server     every frame of one connection (or all) delayed 5-50 ms for 3 s
  slow_callback   one book's callback sleeps 50 ms per message for 3 s. Callbacks run
                  on the reader thread, so every subscription of that connection lags
                  (the table's "max trade lag" shows by how much) but nothing is lost
                  while the server's queue for it (10,000 frames) does not overflow.

At the end it prints a table (faults by kind, recoveries, time to recover p50/max, trades
lost, resources at start and end) and exits 1 if a target is missed: an unrecovered fault,
a trade lost outside a fault window, a book unequal after a recovery, RSS growth of
``--rss-limit-mb`` (5) or more, or thread / open-fd counts not back to their start values.

  python bench/soak.py --minutes 10 --seed 1234
  python bench/soak.py --seconds 60 --faults drop,stall,checksum
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import bfxsync
from bfxsync.emulator import Emulator  # run by serve_emulator() in the child process

KINDS: Tuple[str, ...] = (
    "drop", "stall", "info_20051", "maintenance", "checksum", "sequence_gap", "malformed",
    "error_10305", "refused_429", "slow_server", "slow_callback",
)
LABELS = {
    "drop": "abrupt close", "stall": "half-open stall", "info_20051": "20051 restart",
    "maintenance": "20060 -> 20061", "checksum": "corrupt checksum", "sequence_gap": "sequence gap",
    "malformed": "malformed frame", "error_10305": "10305 error", "refused_429": "429 refused",
    "slow_server": "slow server", "slow_callback": "slow callback",
}
#: Symbols served and subscribed (the emulator's defaults): book, trades and ticker of each.
SYMBOLS = ("tBTCUSD", "tETHUSD", "tLTCBTC", "tSHIB:USD", "tBTCF0:USTF0", "tETHF0:USTF0", "fUSD", "fBTC")
#: Quick detection, so a fault is noticed in seconds (the emulator's heartbeats come every 1 s).
CONFIG = bfxsync.Config(
    sequence=True,
    verify_funding_checksums=True,
    backoff=bfxsync.Backoff(initial=0.1, factor=2.0, maximum=2.0, jitter=0.2),
    heartbeat_timeout=4.0,
    keepalive_interval=1.0,
    channel_timeout=6.0,
    request_timeout=5.0,
    connect_timeout=5.0,
    max_connects_per_minute=120,
    max_subscriptions=10,
)
GARBAGE = ('[{chan},"garbage', '[{chan},[1,2]]', '[{chan},{{"a":1}}]', '[{chan},"te",[]]', '[{chan}]',
           '[{chan},[["x","y","z"]]]', '\x00\x01binary-ish', '{{"event":"subscribed"}}')
SLOW_CALLBACK_SLEEP = 0.05
OBSERVE_TIMEOUT = 30.0
RECOVER_TIMEOUT = 60.0
BAN_SECONDS = 60.0  # the client's hold-off after a 429


def mono() -> float:
    return time.monotonic()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    deadline = mono() + timeout
    while True:
        if predicate():
            return True
        if mono() >= deadline:
            return False
        time.sleep(interval)


# -- resources --------------------------------------------------------------------------

def rss_kb() -> int:
    """Resident set size of this process in KiB (VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def resources(client: bfxsync.Client) -> Dict[str, int]:
    gc.collect()
    return {"rss_kb": rss_kb(), "threads": threading.active_count(),
            "client_threads": sum(t.is_alive() for t in client.threads()), "fds": open_fds()}


# -- the emulator, in a child process ---------------------------------------------------

#: Emulator methods the soak calls, plus ``books`` (sizes and checksums of several books at once).
REMOTE_CALLS = frozenset((
    "connection_ids", "drop_connections", "set_silent", "broadcast_info", "start_maintenance", "end_maintenance",
    "corrupt_checksums", "skip_sequence", "inject", "refuse_connections", "set_send_delay", "pause", "resume",
))


def serve_emulator(seed: int) -> None:
    """Child process: run the emulator and answer one JSON call per stdin line until stdin closes."""
    with Emulator(seed=seed, rate=20.0, heartbeat_interval=1.0, connect_limit=None, symbols=SYMBOLS) as emu:
        print(json.dumps({"url": emu.url}), flush=True)
        for line in sys.stdin:
            name, args = json.loads(line)
            try:
                if name == "books":
                    result: Any = [[*map(len, emu.book_view(*book)), emu.book_checksum(*book)] for book in args]
                elif name in REMOTE_CALLS:
                    result = getattr(emu, name)(*args)
                else:
                    raise ValueError(f"not a soak call: {name}")
                reply = {"result": result}
            except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
                reply = {"error": repr(err)}
            print(json.dumps(reply), flush=True)


class RemoteEmulator:
    """The emulator's control API, served by a child process.

    The emulator runs in its own process so that the RSS, threads and open files measured
    are the client's alone: in-process, the emulator's number-text cache (65,536 entries)
    fills for minutes and its per-connection threads come and go with every redial.
    """

    def __init__(self, seed: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve-emulator", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()
        assert self._process.stdout is not None and self._process.stdin is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        hello = self._stdout.readline()
        if not hello:
            raise RuntimeError("the emulator process did not start")
        self.url: str = json.loads(hello)["url"]

    def call(self, name: str, *args: Any) -> Any:
        with self._lock:
            self._stdin.write(json.dumps([name, args]) + "\n")
            self._stdin.flush()
            reply = json.loads(self._stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"emulator.{name}{args}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        self._stdin.close()
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._stdout.close()

    def __enter__(self) -> "RemoteEmulator":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# -- trade accounting ---------------------------------------------------------------------

class TradeLedger:
    """The trade IDs one trades subscription received: the highest, and the gaps below it.

    A gap is ``[first_missing, last_missing, mts_before, mts_after]``: the IDs never seen and
    the timestamps of the trades received just before and after them. A later snapshot that
    brings a missing ID fills (or splits) its gap. Memory grows with gaps, not with trades.
    """

    def __init__(self) -> None:
        self.high: Optional[int] = None
        self.high_mts = 0
        self.gaps: List[List[int]] = []
        self.received = 0
        self.peak_lag = 0.0  # seconds from a live trade's timestamp to its callback, worst since reset

    def add(self, trade_id: int, mts: int, live: bool) -> None:
        self.received += 1
        if live:
            self.peak_lag = max(self.peak_lag, time.time() - mts / 1000)
        if self.high is None:
            self.high, self.high_mts = trade_id, mts
            return
        if trade_id > self.high:
            if trade_id > self.high + 1:
                self.gaps.append([self.high + 1, trade_id - 1, self.high_mts, mts])
            self.high, self.high_mts = trade_id, mts
            return
        for index, (first, last, before, after) in enumerate(self.gaps):
            if first <= trade_id <= last:
                parts = [[first, trade_id - 1, before, mts], [trade_id + 1, last, mts, after]]
                self.gaps[index:index + 1] = [p for p in parts if p[0] <= p[1]]
                return


# -- the soak ---------------------------------------------------------------------------

class Fault:
    """One injected fault and what became of it."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        self.start_wall = time.time()
        self.start = mono()
        self.end_wall = 0.0
        self.observed = False
        self.recovered = False
        self.books_equal = False
        self.recover_seconds: Optional[float] = None
        self.max_trade_lag = 0.0


class Soak:
    def __init__(self, seed: int, duration: float, kinds: Sequence[str], out: Any = sys.stdout) -> None:
        self.seed, self.duration, self.kinds = seed, duration, tuple(kinds)
        self.rng = random.Random(seed)
        self.out = out
        self.faults: List[Fault] = []
        self.ledgers = {symbol: TradeLedger() for symbol in SYMBOLS}
        self.errors: Dict[str, int] = {}
        self.long_holds = 0  # on_reconnecting with a delay that only a 429 causes
        self.slow_target: Optional[bfxsync.BookSubscription] = None
        self.emu: RemoteEmulator
        self.client: bfxsync.Client
        self.handles: List[bfxsync.Subscription] = []
        self.books: List[bfxsync.BookSubscription] = []
        self.start_resources: Dict[str, int] = {}
        self.end_resources: Dict[str, int] = {}
        self.connections = 0
        self.elapsed = 0.0

    # -- callbacks (reader threads) ----------------------------------------------------
    def _on_trades(self, symbol: str) -> Callable[[Any], None]:
        ledger = self.ledgers[symbol]

        def on_trades(message: Any) -> None:
            for trade in message.items:
                ledger.add(trade.id, trade.mts, not message.snapshot)
        return on_trades

    def _on_book(self, handle: bfxsync.BookSubscription) -> Callable[[Any], None]:
        def on_book(message: Any) -> None:
            if self.slow_target is handle:
                time.sleep(SLOW_CALLBACK_SLEEP)
        return on_book

    def _on_error(self, event: Any) -> None:
        code = getattr(event.error, "code", None)
        key = str(code) if code is not None else type(event.error).__name__
        self.errors[key] = self.errors.get(key, 0) + 1

    def _on_reconnecting(self, event: Any) -> None:
        if event.delay > BAN_SECONDS / 2:
            self.long_holds += 1

    # -- set-up ------------------------------------------------------------------------
    def run(self) -> "Soak":
        began = mono()
        with RemoteEmulator(self.seed) as emu, bfxsync.Client(emu.url, CONFIG) as client:
            self.emu, self.client = emu, client
            client.on_error(self._on_error)
            client.on_reconnecting(self._on_reconnecting)
            for symbol in SYMBOLS:
                book = client.subscribe_book(symbol)
                book.on_data(self._on_book(book))
                self.books.append(book)
                self.handles += [book, client.subscribe_trades(symbol, on_data=self._on_trades(symbol)),
                                 client.subscribe_ticker(symbol)]
            for handle in self.handles:
                handle.wait_subscribed(30)
            if not self._settle(30):
                raise RuntimeError("the books never matched the emulator's before any fault")
            time.sleep(3)  # warm-up: caches, buffers, first trades
            self.connections = len(client.connections())
            self.start_resources = resources(client)
            self._say(f"soak: seed {self.seed}, {self.duration:g} s, {len(self.handles)} subscriptions on "
                      f"{self.connections} connections; faults: {', '.join(self.kinds)}")
            self._loop()
            # Threads and fds of dropped connections (client and emulator side) go away shortly.
            wait_until(lambda: self._back_to_start(resources(client)), 15, 0.5)
            self.end_resources = resources(client)
        self.elapsed = mono() - began
        return self

    def _back_to_start(self, now: Dict[str, int]) -> bool:
        return all(now[k] <= self.start_resources[k] for k in ("threads", "client_threads", "fds"))

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- the schedule ------------------------------------------------------------------
    def _loop(self) -> None:
        deadline = mono() + self.duration
        bans_allowed = int(self.duration // 300) if self.duration >= 180 else 0
        deck: List[str] = []
        while mono() < deadline:
            if not deck:  # rounds of every kind once, shuffled: even a short run sees each kind
                deck = list(self.kinds)
                self.rng.shuffle(deck)
            kind = deck.pop()
            if kind == "refused_429":
                # A 429 costs a minute: rationed, and never when it would run far past the end.
                if bans_allowed <= 0 or deadline - mono() < BAN_SECONDS + 10:
                    continue
                bans_allowed -= 1
            fault = self._inject(kind)
            self._recover(fault)
            self._say(f"{time.strftime('%H:%M:%S')} {LABELS[kind]:<17} {fault.detail[:30]:<30} "
                      f"observed={fault.observed!s:<5} recovered={fault.recovered!s:<5} "
                      f"books_equal={fault.books_equal!s:<5} in {fault.recover_seconds or float('nan'):5.2f} s, "
                      f"lag {fault.max_trade_lag:.2f} s, RSS {rss_kb() / 1024:.1f} MB")
            time.sleep(self.rng.uniform(1.0, 3.0))  # quiet time: trades lost now would count

    def _inject(self, kind: str) -> Fault:
        emu, client, rng = self.emu, self.client, self.rng
        before = client.stats()
        ids = emu.call("connection_ids")
        one = rng.choice(ids)
        whole = rng.random() < 0.5
        errors_before = dict(self.errors)
        for ledger in self.ledgers.values():
            ledger.peak_lag = 0.0

        def grew(stat: str, by: int = 1) -> Callable[[], bool]:
            return lambda: client.stats()[stat] >= before[stat] + by

        if kind == "drop":
            fault = Fault(kind, "all connections" if whole else f"connection {one}")
            emu.call("drop_connections", None if whole else one)
            fault.observed = wait_until(grew("reconnects", len(ids) if whole else 1), OBSERVE_TIMEOUT)
        elif kind == "stall":
            fault = Fault(kind, "all connections" if whole else f"connection {one}")
            emu.call("set_silent", True, None if whole else one)
            fault.observed = wait_until(grew("disconnects", len(ids) if whole else 1), OBSERVE_TIMEOUT)
            if whole:
                emu.call("set_silent", False)  # the redialled connections speak again
        elif kind == "info_20051":
            fault = Fault(kind, "every connection")
            emu.call("broadcast_info", 20051)
            fault.observed = wait_until(grew("reconnects", len(ids)), OBSERVE_TIMEOUT)
        elif kind == "maintenance":
            pause = rng.uniform(0.5, 2.0)
            fault = Fault(kind, f"{pause:.1f} s")
            emu.call("start_maintenance")
            fault.observed = wait_until(lambda: client.maintenance, OBSERVE_TIMEOUT)
            time.sleep(pause)
            emu.call("end_maintenance")
            fault.observed = fault.observed and wait_until(lambda: not client.maintenance, OBSERVE_TIMEOUT)
        elif kind == "checksum":
            book = rng.choice(self.books)
            failed = book.checks_failed
            fault = Fault(kind, book.spec.symbol)
            emu.call("corrupt_checksums", book.spec.symbol, book.spec.prec)
            fault.observed = wait_until(lambda: book.checks_failed > failed, OBSERVE_TIMEOUT)
            emu.call("corrupt_checksums", book.spec.symbol, book.spec.prec, False)
        elif kind == "sequence_gap":
            fault = Fault(kind, f"connection {one}")
            emu.call("skip_sequence", one)
            fault.observed = wait_until(lambda: grew("sequence_gaps")() and grew("reconnects")(), OBSERVE_TIMEOUT)
        elif kind == "malformed":
            handle = rng.choice([h for h in self.handles if h.chan_id is not None] or self.handles)
            text = rng.choice(GARBAGE).format(chan=handle.chan_id)
            fault = Fault(kind, f"{handle.channel} {handle.spec.symbol} {text[:12]!r}")  # type: ignore[attr-defined]
            emu.call("inject", text, handle.chan_id)
            fault.observed = wait_until(lambda: sum(self.errors.values()) > sum(errors_before.values()), OBSERVE_TIMEOUT)
        elif kind == "error_10305":
            fault = Fault(kind, "every connection")
            emu.call("inject", '{"event":"error","msg":"subscribe: limit","code":10305}')
            fault.observed = wait_until(lambda: self.errors.get("10305", 0) >= errors_before.get("10305", 0) + len(ids),
                                        OBSERVE_TIMEOUT)
        elif kind == "refused_429":
            fault = Fault(kind, f"connection {one}")
            holds = self.long_holds
            emu.call("refuse_connections", 429)
            emu.call("drop_connections", one)
            fault.observed = wait_until(lambda: self.long_holds > holds, OBSERVE_TIMEOUT)
            time.sleep(2.0)
            emu.call("refuse_connections", None)
        elif kind == "slow_server":
            delay = rng.uniform(0.005, 0.05)
            fault = Fault(kind, f"{delay * 1000:.0f} ms/frame, " + ("all" if whole else f"connection {one}"))
            emu.call("set_send_delay", delay, None if whole else one)
            time.sleep(3.0)
            emu.call("set_send_delay", 0.0, None if whole else one)
            fault.observed = True
        elif kind == "slow_callback":
            book = rng.choice(self.books)
            fault = Fault(kind, f"book {book.spec.symbol}")
            self.slow_target = book
            time.sleep(3.0)
            self.slow_target = None
            fault.observed = True
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.faults.append(fault)
        return fault

    # -- recovery ----------------------------------------------------------------------
    def _recover(self, fault: Fault) -> None:
        """Wait until every subscription is active and every book equals the emulator's."""
        timeout = RECOVER_TIMEOUT + (BAN_SECONDS if fault.kind == "refused_429" else 0)
        deadline = fault.start + timeout
        while mono() < deadline:
            if self.client.connected and not self.client.maintenance and all(h.active for h in self.handles):
                fault.recovered = True
                if all(b.synced for b in self.books) and self._settle(3.0):
                    fault.books_equal = True
                    break
            time.sleep(0.1)
        fault.end_wall = time.time()
        if fault.books_equal:
            fault.recover_seconds = mono() - fault.start
        fault.max_trade_lag = max(ledger.peak_lag for ledger in self.ledgers.values())

    def _settle(self, timeout: float) -> bool:
        """Pause the market; True once every book equals the emulator's view; resume."""
        self.emu.call("pause")
        try:
            return wait_until(self._books_match, timeout)
        finally:
            self.emu.call("resume")

    def _books_match(self) -> bool:
        """Every book synced, with the emulator's checksum and depth per side (the suite's ``book_matches``)."""
        truth = self.emu.call("books", *[(b.spec.symbol, b.spec.prec, b.spec.length) for b in self.books])
        for book, (bids, asks, checksum) in zip(self.books, truth):
            snap = book.snapshot()
            if not (snap.synced and snap.checksum == checksum and len(snap.bids) == bids and len(snap.asks) == asks):
                return False
        return True

    # -- verdict -----------------------------------------------------------------------
    def trade_losses(self) -> Tuple[int, int, int]:
        """(received, lost inside fault windows, lost outside them)."""
        windows = [(f.start_wall * 1000, f.end_wall * 1000) for f in self.faults]
        received = inside = outside = 0
        for ledger in self.ledgers.values():
            received += ledger.received
            for first, last, before, after in ledger.gaps:
                count = last - first + 1
                if any(before <= end and after >= start for start, end in windows):
                    inside += count
                else:
                    outside += count
        return received, inside, outside

    def verdict(self, rss_limit_mb: float) -> List[Tuple[str, bool, str]]:
        unrecovered = sum(not f.recovered for f in self.faults)
        unequal = sum(not f.books_equal for f in self.faults)
        _, _, outside = self.trade_losses()
        growth = (self.end_resources["rss_kb"] - self.start_resources["rss_kb"]) / 1024
        start, end = self.start_resources, self.end_resources
        return [
            ("zero unrecovered faults", unrecovered == 0, f"{unrecovered} unrecovered of {len(self.faults)}"),
            ("zero trades lost outside fault windows", outside == 0, f"{outside} lost"),
            ("every book equal after each recovery", unequal == 0, f"{len(self.faults) - unequal} of {len(self.faults)}"),
            (f"RSS growth under {rss_limit_mb:g} MB", growth < rss_limit_mb, f"{growth:+.1f} MB"),
            ("threads back to start", end["threads"] <= start["threads"] and end["client_threads"] <= start["client_threads"],
             f"{start['threads']} -> {end['threads']} (client {start['client_threads']} -> {end['client_threads']})"),
            ("open fds back to start", end["fds"] <= start["fds"], f"{start['fds']} -> {end['fds']}"),
        ]

    def table(self, rss_limit_mb: float) -> str:
        lines = [f"bfxsync fault soak: seed {self.seed}, {self.duration:g} s of faults, {self.elapsed:.0f} s in all, "
                 f"{len(self.handles)} subscriptions on {self.connections} connections (max_subscriptions "
                 f"{CONFIG.max_subscriptions}), SEQ_ALL on", ""]
        header = (f"{'fault':<17} {'injected':>8} {'observed':>8} {'recovered':>9} {'books equal':>11} "
                  f"{'recover p50':>11} {'recover max':>11} {'max trade lag':>13}")
        lines += [header, "-" * len(header)]
        for kind in [*self.kinds, "total"]:
            faults = [f for f in self.faults if kind in (f.kind, "total")]
            if not faults and kind != "total":
                continue
            times = [f.recover_seconds for f in faults if f.recover_seconds is not None]
            p50 = f"{statistics.median(times):.2f} s" if times else "-"
            worst = f"{max(times):.2f} s" if times else "-"
            lag = max((f.max_trade_lag for f in faults), default=0.0)
            lines.append(f"{LABELS.get(kind, kind):<17} {len(faults):>8} {sum(f.observed for f in faults):>8} "
                         f"{sum(f.recovered for f in faults):>9} {sum(f.books_equal for f in faults):>11} "
                         f"{p50:>11} {worst:>11} {lag:>11.2f} s")
        received, inside, outside = self.trade_losses()
        stats = self.client.stats()
        lines += ["", f"trades received {received}; lost inside fault windows {inside}; lost outside them {outside}",
                  f"client: {stats['reconnects']} reconnects, {stats['sequence_gaps']} sequence gaps, "
                  f"{stats['resyncs']} book resyncs, {stats['checks_passed']} checksums passed, "
                  f"{stats['checks_failed']} failed, {stats['channel_stalls']} channel stalls; "
                  f"errors reported: {', '.join(f'{k} x{v}' for k, v in sorted(self.errors.items())) or 'none'}", ""]
        start, end = self.start_resources, self.end_resources
        lines.append(f"{'resource':<26} {'start':>8} {'end':>8} {'delta':>8}")
        for label, key, scale in (("RSS (MB)", "rss_kb", 1024), ("threads (process)", "threads", 1),
                                  ("threads (client.threads())", "client_threads", 1), ("open fds", "fds", 1)):
            if scale == 1:
                lines.append(f"{label:<26} {start[key]:>8} {end[key]:>8} {end[key] - start[key]:>+8}")
            else:
                lines.append(f"{label:<26} {start[key] / scale:>8.1f} {end[key] / scale:>8.1f} "
                             f"{(end[key] - start[key]) / scale:>+8.1f}")
        lines.append("")
        for name, ok, detail in self.verdict(rss_limit_mb):
            lines.append(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
        return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="duration of the fault schedule (default 10)")
    length.add_argument("--seconds", type=float, help="the same in seconds")
    parser.add_argument("--seed", type=int, help="fault schedule and market seed (default: random, printed)")
    parser.add_argument("--faults", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--rss-limit-mb", type=float, default=5.0, help="largest RSS growth allowed (default 5)")
    parser.add_argument("--log", help="write bfxsync's INFO log to this file")
    parser.add_argument("--serve-emulator", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_emulator is not None:
        serve_emulator(args.serve_emulator)
        return 0
    duration = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 10)
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        parser.error(f"unknown fault kinds {unknown}; choose from {','.join(KINDS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    if args.log:
        logging.basicConfig(filename=args.log, level=logging.WARNING,
                            format="%(asctime)s %(threadName)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("bfxsync").setLevel(logging.INFO)
    else:
        logging.basicConfig(level=logging.CRITICAL)  # the table tells; the log would drown it
    print(f"seed {seed}", flush=True)
    soak = Soak(seed, duration, kinds).run()
    print(soak.table(args.rss_limit_mb), flush=True)
    command = " ".join(["python", "bench/soak.py", *(sys.argv[1:] if argv is None else argv)])
    if "--seed" not in command:
        command += f" --seed {seed}"
    print(f"\ncommand: {command}")
    return 0 if all(ok for _, ok, _ in soak.verdict(args.rss_limit_mb)) else 1


if __name__ == "__main__":
    sys.exit(main())
