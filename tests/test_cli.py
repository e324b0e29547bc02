"""The ``bfxsync`` command end to end: real subprocesses against the embedded emulator (never the internet).

Every command runs for a few seconds, so they are all started at once by a module
fixture and each test only collects and checks its own process: the file takes about
as long as the slowest command instead of the sum of all of them.
"""
import argparse
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bfxsync import cli, cli_book
from bfxsync.specs import BookSpec, CandlesSpec, StatusSpec, TickerSpec, TradesSpec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
#: Upper bound for one command, startup under load included; a hang fails the test instead of the run.
TIMEOUT = 30.0
RUN = ("--emulator", "--seconds", "3")


#: Bound, never listening: connections to these ports are refused, and no server started later
#: (another test's emulator) can take one of them, as it could a port bound and released.
_CLOSED_PORTS = []


def closed_port():
    """A local port nothing listens on for the rest of the test run."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _CLOSED_PORTS.append(sock)
    return sock.getsockname()[1]


#: Runs ``python SCRIPT ARGS`` or ``python -m MODULE ARGS`` after restoring Python's own Ctrl-C handler.
#: A shell's background job (or nohup) ignores SIGINT and children inherit that, so Python never
#: installs its KeyboardInterrupt handler: the child restores it itself, first thing.
_WITH_CTRL_C = (
    "import runpy, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "sys.argv = sys.argv[1:]\n"
    "if sys.argv[0] == '-m':\n"
    "    sys.argv = sys.argv[1:]\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "else:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def python_command(*args):
    """The command line for ``python ARGS`` (a script path or ``-m MODULE`` first) in which Ctrl-C works."""
    return [sys.executable, "-c", _WITH_CTRL_C, *map(str, args)]


def child_env(**extra):
    """Our environment with the checkout importable and unbuffered output (a pipe is block-buffered otherwise)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


class Interruptible:
    """A child in which Ctrl-C works, interrupted (SIGINT) once a line of its output matches ``ready``.

    stdout is read by a thread (never blocking the test), stderr goes to a file; the child is
    reaped in :meth:`interrupt` (or :meth:`reap`) whatever happens.
    """

    def __init__(self, args, ready, env=None, cwd=ROOT, stream="stdout"):
        self._ready = re.compile(ready)
        self.lines = []
        self.seen = threading.Event()  # the ready line, or the end of the output
        self._err = tempfile.TemporaryFile("w+")
        self._stream = stream
        watched = {"stdout": subprocess.PIPE, "stderr": self._err}
        if stream == "stderr":
            self._out = tempfile.TemporaryFile("w+")
            watched = {"stdout": self._out, "stderr": subprocess.PIPE}
        self.proc = subprocess.Popen(python_command(*args), cwd=cwd, env=env or child_env(), text=True, **watched)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        pipe = self.proc.stdout if self._stream == "stdout" else self.proc.stderr
        for line in pipe:
            self.lines.append(line)
            if self._ready.search(line):
                self.seen.set()
        self.seen.set()

    def interrupt(self, timeout=TIMEOUT):
        """Wait for the ready line, send SIGINT; (status, watched output, other output)."""
        try:
            assert self.seen.wait(timeout) and self.proc.poll() is None, \
                f"never ready: {''.join(self.lines)[-2000:]}{self._read_file(self._err)[-2000:]}"
            self.proc.send_signal(signal.SIGINT)
            code = self.proc.wait(timeout)
        finally:
            self.reap()
        other = self._read_file(self._err if self._stream == "stdout" else self._out)
        return code, "".join(self.lines), other

    def reap(self):
        """Kill the child if it still runs, wait for it and its reader."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(10)

    @staticmethod
    def _read_file(handle):
        handle.seek(0)
        return handle.read()


class Processes:
    """Subprocesses started together, collected one by one (each result cached)."""

    def __init__(self):
        self.procs, self.started, self.results = {}, {}, {}

    def start(self, name, *args, env=None):
        """Start ``bfxsync ARGS`` (Ctrl-C working in it) with this environment (default: ours)."""
        env = dict(os.environ if env is None else env, COLUMNS="200")  # rich wraps at 80 columns without a terminal
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        self.started[name] = time.monotonic()
        self.procs[name] = subprocess.Popen(python_command("-m", "bfxsync", *args), cwd=ROOT, env=env, text=True,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self, name):
        """(returncode, stdout, stderr, seconds) of a finished process; a hung one is killed and fails the test."""
        if name not in self.results:
            proc = self.procs[name]
            try:
                out, err = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"{name} did not finish within {TIMEOUT} s\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}")
            self.results[name] = (proc.returncode, out, err, time.monotonic() - self.started[name])
        return self.results[name]

    def kill_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def runs():
    from bfxsync.emulator import Emulator

    procs = Processes()
    # --emulator serves any symbol; a server with only its default symbols shows a rejection.
    emulator = Emulator().start()
    try:
        procs.start("ticker", "ticker", "tBTCUSD", *RUN)
        procs.start("ticker_funding", "ticker", "fUSD", *RUN)
        # Trades come at random; on a loaded 2-core machine 3 s sometimes held none live.
        procs.start("trades", "trades", "tETHUSD", "--emulator", "--seconds", "8")
        procs.start("candles", "candles", "tBTCUSD", "--timeframe", "5m", *RUN)
        procs.start("book", "book", "tBTCUSD", *RUN)  # stdout is a pipe: one line a second
        procs.start("book_ansi", "book", "tLTCBTC", "--depth", "5", "--display", "ansi", *RUN)
        procs.start("book_rich", "book", "tETHUSD", "--depth", "5", "--display", "rich", *RUN)
        procs.start("unreachable", "ticker", "tBTCUSD", "--url", f"ws://127.0.0.1:{closed_port()}", "--connect-timeout", "2")
        procs.start("bad_symbol", "ticker", "btcusd", "--emulator")
        procs.start("bad_prec", "book", "tBTCUSD", "--prec", "P9", "--emulator")
        procs.start("rejected", "trades", "tNOSUCH", "--url", emulator.url)
        procs.start("any_symbol", "book", "tXRPUSD", "--depth", "3", "--length", "100", *RUN)
        procs.start("bad_length", "book", "tBTCUSD", "--length", "30", "--emulator")
        procs.start("interrupted", "trades", "tBTCUSD", "--emulator")  # no --seconds: runs until SIGINT
        yield procs
    finally:
        procs.kill_all()
        emulator.stop()


def data_lines(out, pattern):
    return [line for line in out.splitlines() if re.search(pattern, line)]


class TestLineCommands:
    def test_ticker_prints_a_line_per_update(self, runs):
        """ticker exits 0 after --seconds and prints bid, ask and last price lines."""
        code, out, err, _ = runs.result("ticker")
        assert code == 0, err
        assert len(data_lines(out, r"^\d\d:\d\d:\d\d tBTCUSD  bid \d+(\.\d+)? x [\d.]+  ask \d+(\.\d+)? x [\d.]+  last \d")) >= 2
        assert err == ""

    def test_funding_ticker_shows_frr_and_periods(self, runs):
        """A funding ticker line shows the FRR and the bid/ask periods, rates in fixed notation."""
        code, out, err, _ = runs.result("ticker_funding")
        assert code == 0, err
        assert data_lines(out, r"fUSD  frr 0\.000\d+  bid 0\.000\d+ \d+d x ")
        assert "e-0" not in out

    def test_trades_prints_snapshot_then_live_trades(self, runs):
        """trades prints the snapshot (marked) and then each live trade with side, amount and price."""
        code, out, err, _ = runs.result("trades")
        assert code == 0, err
        trades = data_lines(out, r"^\d\d:\d\d:\d\d\.\d{3} tETHUSD (buy |sell) [\d.]+ @ \d+(\.\d+)?  id \d+")
        assert any(line.endswith("(snapshot)") for line in trades)
        assert any(not line.endswith("(snapshot)") for line in trades), "no live trade in 8 s"

    def test_candles_summarise_the_snapshot_then_update(self, runs):
        """candles prints one summary line for the snapshot, then full OHLCV lines."""
        code, out, err, _ = runs.result("candles")
        assert code == 0, err
        assert re.search(r"^tBTCUSD 5m snapshot: \d+ candles from ", out, re.M)
        assert data_lines(out, r"tBTCUSD 5m  open \d+  high \d+  low \d+  close \d+  volume [\d.]+$")


class TestBook:
    def test_lines_on_a_pipe_show_a_synced_verified_book(self, runs):
        """On a pipe the book prints a status line a second; it ends synced, checksums passing, none failing."""
        code, out, err, _ = runs.result("book")
        assert code == 0, err
        last = out.splitlines()[-1]
        assert re.search(r"^tBTCUSD P0 length 25 \| bid \d+ x [\d.]+ \| ask \d+ x [\d.]+ \| spread \d+ \| synced \|", last), last
        passed = int(re.search(r"checksums (\d+) ok, 0 failed", last).group(1))
        assert passed > 0
        assert re.search(r"resyncs \d+ \| reconnects 0 \| [\d.]+ updates/s$", last)

    def test_ansi_display_redraws_a_table(self, runs):
        """The plain display clears the screen per frame and draws both sides with the status line."""
        code, out, err, _ = runs.result("book_ansi")
        assert code == 0, err
        assert out.count("\x1b[H\x1b[J") >= 2
        frame = out.rsplit("\x1b[H\x1b[J", 1)[1]
        assert "BIDS | ASKS" in frame and re.search(r"^\s+Price\s+Amount\s+Count \|", frame, re.M)
        assert len(data_lines(frame, r"^\s+0\.00\d+\s+[\d.]+\s+\d+ \|\s+0\.00\d+\s+[\d.]+\s+\d+$")) == 5
        assert "\nsynced | checksums" in frame

    def test_rich_display_draws_a_table(self, runs):
        """With rich the book is a table with bid and ask columns and the status line under it."""
        code, out, err, _ = runs.result("book_rich")
        if importlib.util.find_spec("rich") is None:  # the optional extra is missing: say so, status 2
            assert code == 2 and "needs rich" in err
            return
        assert code == 0, err
        assert "Bid price" in out and "Ask count" in out
        assert re.search(r"│\s+\d{4}(\.\d)?\s+│\s+[\d.]+\s+│\s+\d+\s+│\s+\d{4}", out)
        assert re.search(r"^synced \| checksums \d+ ok, 0 failed", out, re.M)


class TestFailures:
    def test_unreachable_server_is_one_line_and_status_1(self, runs):
        """A refused connection ends with status 1 and exactly one explanatory line on stderr, no traceback."""
        code, out, err, _ = runs.result("unreachable")
        assert code == 1
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert re.match(r"bfxsync: cannot connect to ws://127\.0\.0\.1:\d+: .*refused", err), err
        # That it gave up rather than retrying forever is result()'s bound (TIMEOUT); no wall-clock
        # limit here: 14 processes start at once, and on a loaded 2-core machine one took 15.2 s.

    def test_invalid_symbol_is_status_2(self, runs):
        """A malformed symbol is rejected before connecting, in one line, with status 2."""
        code, out, err, _ = runs.result("bad_symbol")
        assert code == 2 and out == ""
        assert err.startswith("bfxsync: invalid symbol 'btcusd'") and len(err.strip().splitlines()) == 1

    def test_invalid_precision_is_status_2(self, runs):
        """A bad --prec names the valid choices, with status 2."""
        code, _, err, _ = runs.result("bad_prec")
        assert code == 2
        assert err.strip() == "bfxsync: invalid prec 'P9': expected one of P0, P1, P2, P3, P4, R0"

    def test_bad_length_names_the_option_and_choices(self, runs):
        """--length is checked like --prec: status 2 and one line with the name used everywhere and the choices."""
        code, _, err, _ = runs.result("bad_length")
        assert code == 2
        assert err.strip() == "bfxsync: invalid length 30: expected one of 1, 25, 100, 250"

    def test_emulator_serves_the_symbol_asked_for(self, runs):
        """--emulator serves a symbol beyond its eight defaults: tXRPUSD gives a synced, verified book (--length 100)."""
        code, out, err, _ = runs.result("any_symbol")
        assert code == 0, err
        last = out.splitlines()[-1]
        assert re.search(r"^tXRPUSD P0 length 100 \| bid [\d.]+ x [\d.]+ \| ask [\d.]+ x [\d.]+ .*\| synced \|", last), out
        assert re.search(r"\| checksums [1-9]\d* ok, 0 failed \|", last), last

    def test_symbol_the_server_rejects_is_status_2(self, runs):
        """A well-formed symbol the server does not list is reported with the server's reason, status 2."""
        code, _, err, _ = runs.result("rejected")
        assert code == 2
        assert re.fullmatch(r"bfxsync: the server rejected the trades subscription to tNOSUCH: .+ \(code 10300\)\n", err)

    def test_ctrl_c_exits_cleanly(self, runs):
        """SIGINT (Ctrl-C) while data flows: status 130, the client and emulator closed, no traceback."""
        proc = runs.procs["interrupted"]
        guard = threading.Timer(TIMEOUT, proc.kill)  # readline() below must not hang the suite
        guard.start()
        try:
            first = proc.stdout.readline()
        finally:
            guard.cancel()
        assert "tBTCUSD" in first
        proc.send_signal(signal.SIGINT)
        code, _, err, _ = runs.result("interrupted")
        assert code == 130
        assert "Traceback" not in err


class TestInProcess:
    def test_main_returns_status_2_for_bad_arguments(self, capsys):
        """main() returns the status (the console script exits with it) and prints one line."""
        assert cli.main(["candles", "tBTCUSD", "--timeframe", "2m", "--emulator"]) == 2
        assert capsys.readouterr().err.startswith("bfxsync: invalid candle key 'trade:2m:tBTCUSD'")

    def test_funding_candles_without_period_suggest_the_option(self, capsys):
        """A funding symbol without --period is status 2 with a hint naming --period, not the key syntax."""
        assert cli.main(["candles", "fUSD", "--emulator"]) == 2
        err = capsys.readouterr().err
        assert "--period 30" in err and ":p30" not in err and len(err.strip().splitlines()) == 1

    def test_missing_emulator_extra_is_one_line_and_status_2(self, capsys, monkeypatch):
        """Without the emulator extra, --emulator says which extra to install, in one line, status 2."""
        monkeypatch.setitem(sys.modules, "bfxsync.emulator", None)  # makes the import raise ImportError
        assert cli.main(["ticker", "tBTCUSD", "--emulator"]) == 2
        err = capsys.readouterr().err
        assert 'pip install "websockets>=15"' in err and len(err.strip().splitlines()) == 1

    def test_url_and_emulator_are_exclusive(self, capsys):
        """--url and --emulator together are a usage error (argparse, status 2)."""
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["ticker", "tBTCUSD", "--emulator", "--url", "ws://127.0.0.1:1"])
        assert exit_info.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err

    def test_bad_url_is_status_2(self, capsys):
        """A URL that is not ws:// or wss:// is rejected before any connection attempt."""
        assert cli.main(["ticker", "tBTCUSD", "--url", "http://example.invalid"]) == 2
        assert "invalid WebSocket URL" in capsys.readouterr().err

    @pytest.mark.parametrize("value, text", [
        (30000.0, "30000"), (8.2013e-06, "0.0000082013"), (9.9e-07, "0.00000099"), (0.5, "0.5"), (-1e-08, "-0.00000001"),
    ])
    def test_numbers_print_exactly_without_exponent(self, value, text):
        """Prices print as the shortest exact decimal, never in exponent notation."""
        assert cli_book.num_text(value) == text


class TestSubscriptionSpecs:
    @pytest.mark.parametrize("text, spec", [
        ("book:tBTCUSD", BookSpec("tBTCUSD")),
        ("book:tSHIB:USD", BookSpec("tSHIB:USD")),
        ("book:tBTCF0:USTF0:P0:25", BookSpec("tBTCF0:USTF0", "P0", "F0", 25)),
        ("book:tSHIB:USD:R0:100:F1", BookSpec("tSHIB:USD", "R0", "F1", 100)),
        ("book:tBTCUSD:P2", BookSpec("tBTCUSD", "P2")),
        ("book:fUSD:P0:25", BookSpec("fUSD", "P0", "F0", 25)),
        ("ticker:tSHIB:USD", TickerSpec("tSHIB:USD")),
        ("trades:tBTCF0:USTF0", TradesSpec("tBTCF0:USTF0")),
        ("candles:trade:1m:tSHIB:USD", CandlesSpec("trade:1m:tSHIB:USD")),
        ("status:deriv:tBTCF0:USTF0", StatusSpec("deriv:tBTCF0:USTF0")),
    ])
    def test_symbols_may_contain_colons(self, text, spec):
        """Every channel takes symbols with a colon; a book's options start at its first precision, length or frequency."""
        assert parse_spec(text) == spec

    @pytest.mark.parametrize("text, message", [
        ("book:tBTCUSD:P9", "invalid prec 'P9'"),
        ("book:tSHIB:USD:25", "invalid prec '25'"),
        ("book:tSHIB:USD:P0:30", "invalid length"),
        ("book:tSHIB:USD:P0:25:F0:9", "expected book:SYMBOL[:PREC[:LENGTH[:FREQ]]]"),
        ("nope:tBTCUSD", "unknown channel 'nope'"),
        ("book", "expected CHANNEL:ARGS"),
    ])
    def test_bad_specs_say_what_is_wrong(self, text, message):
        """A wrong option is reported as that option, never as a symbol or a precision it is not."""
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_spec(text)


class TestCtrlC:
    def test_record_exits_130_and_keeps_the_file(self, tmp_path):
        """bfxsync record interrupted by Ctrl-C: status 130 like every command, no traceback, the recording complete."""
        path = tmp_path / "interrupted.jsonl"
        child = Interruptible(["-m", "bfxsync", "record", "--emulator", "--out", path, "book:tBTCUSD"],
                              ready=r"^bfxsync: recording 1 subscription", stream="stderr")
        code, err, out = child.interrupt()
        assert code == 130, err
        assert "Traceback" not in err and out == ""
        from bfxsync.recording import read_recording
        lines = list(read_recording(path))
        assert any('"subscribed"' in line.frame for line in lines) and lines[-1].direction == "close"


def subcommand_parsers():
    """Every subcommand's parser, by name."""
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices


class TestHelp:
    @pytest.mark.parametrize("command", ["account", "order"])
    def test_credentials_commands_name_the_environment_variables(self, command, capsys):
        """account --help and order --help say the key and secret come from BFX_API_KEY and BFX_API_SECRET."""
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert "BFX_API_KEY" in out and "BFX_API_SECRET" in out and "--emulator" in out

    @pytest.mark.parametrize("command", sorted(subcommand_parsers()))
    def test_every_default_is_shown(self, command):
        """Each option with a default value says it in its help ("default: ..."), in every subcommand."""
        missing = []
        for action in subcommand_parsers()[command]._actions:
            quiet = action.default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._CountAction)
            if action.option_strings and not quiet and "default" not in (action.help or ""):
                missing.append(action.option_strings[0])
        assert not missing, f"bfxsync {command}: no default shown for {missing}"
