"""Every script in examples/ runs offline against the embedded emulator and prints real data.

The scripts run a few seconds each, so a module fixture starts them all at once and
each test collects its own; the examples are also checked to use only the public API.
The tkinter example needs an X display: tests/test_legacy_examples.py runs it under Xvfb.
"""
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli import Interruptible

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: Upper bound for one script, startup under load included; a hang fails the test instead of the run.
TIMEOUT = 30.0

#: script -> patterns its output must contain (each a regex matched per line).
EXPECTED = {
    "ticker.py": [r"^tBTCUSD  bid \d+\s+ask \d+\s+last \d+\s+24h [+-]\d+\.\d\d%  volume [\d.]+$"],
    "trades.py": [r"^--- \d+ recent trades of tBTCUSD ---$", r"^\d\d:\d\d:\d\d\.\d{3} (BUY |SELL)\s+[\d.]+ @ \d+$"],
    "candles.py": [r"^--- \d+ 1m candles of tBTCUSD; the last 3: ---$",
                   r"^\d{4}-\d\d-\d\d \d\d:\d\d  open \d+  high \d+  low \d+  close \d+  volume [\d.]+$"],
    "order_book.py": [r"^tBTCUSD  bid \d+ x [\d.]+  ask \d+ x [\d.]+  spread \d+  synced  "
                      r"checksums ok [1-9]\d* failed 0  resyncs \d+$"],
    "multi_channel.py": [rf"^\[{kind}\s*\] {symbol}" for kind in ("ticker", "trade", "candle", "book")
                         for symbol in ("tBTCUSD", "tETHUSD")],
    "legacy_loop.py": [r"^\[ticker\] tBTCUSD last \d+$", r"^\[trade \] tBTCUSD [+-][\d.]+ @ \d+$",
                       r"^\[loop  \] drained [1-9]\d* ticker, [1-9]\d* trades, [1-9]\d* book messages; "
                       r"bid \d+ ask \d+; checksums ok [1-9]\d*; dropped 0$"],
    "trading.py": [r"^wallet exchange USD 100000$", r"^placed \d+: ACTIVE 0\.0002 @ \d+$",
                   r"^modified \d+: ACTIVE 0\.0002 @ \d+$", r"^cancelled \d+: CANCELED$",
                   r"^fill tBTCUSD 0\.0002 @ \d+ \(order \d+\)$", r"^wallet exchange BTC now 2\.0001998$"],
}
#: Examples with a window, tested elsewhere (under Xvfb).
GUI = {"tk_book.py"}
#: The start of a log record as the examples format it: time, level, logger name.
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+): ", re.M)


def unexpected_stderr(err):
    """What an example wrote to stderr beyond the client's INFO records (which the examples turn on).

    Records of ``bfxsync.emulator.*`` are left to the emulator's own tests: this file tests the
    examples and the client, and the emulator is only their data source here. Under
    ``BFXSYNC_STOCK_FRAMING=1`` (CI's run through the fallback reader) the one warning that
    says so is expected too.
    """
    forced = os.environ.get("BFXSYNC_STOCK_FRAMING", "") not in ("", "0")
    starts = [m.start() for m in RECORD.finditer(err)]
    problems = [err[:starts[0] if starts else len(err)]]  # anything before the first record (a bare traceback, say)
    for start, end in zip(starts, starts[1:] + [len(err)]):
        record = err[start:end]
        match = RECORD.match(record)
        if match["logger"].startswith("bfxsync.emulator"):
            continue
        if forced and match["level"] == "WARNING" and "own reader (slower): BFXSYNC_STOCK_FRAMING is set" in record:
            continue
        if match["level"] != "INFO" or not match["logger"].startswith("bfxsync") or "Traceback" in record:
            problems.append(record)
    return "".join(problems)


#: Runs on the symbols whose numbers a naive display garbles, each with a line it must print: tSHIB:USD
#: prices are below 1e-5 (``:g`` and ``repr`` write ``8.2013e-06``), and on tETHUSD's 0.1 grid float
#: arithmetic gives spreads like ``0.20000000000004547``. Prices must show in fixed notation, exactly.
NUMBER_RUNS = {
    ("ticker.py", "tSHIB:USD"): r"^tSHIB:USD  bid 0\.00000\d+\s+ask 0\.00000\d+\s+last 0\.00000\d+\s+24h ",
    ("trades.py", "tSHIB:USD"): r"^\d\d:\d\d:\d\d\.\d{3} (BUY |SELL)\s+[\d.]+ @ 0\.00000\d+$",
    ("candles.py", "tSHIB:USD"): r"  open 0\.00000\d+  high 0\.00000\d+  low 0\.00000\d+  close 0\.00000\d+  volume [\d.]+$",
    ("order_book.py", "tETHUSD"): r"^tETHUSD  bid \d+(\.\d)? x [\d.]+  ask \d+(\.\d)? x [\d.]+  spread \d*\.?\d  synced ",
    ("legacy_loop.py", "tSHIB:USD"): r"^\[loop  \] drained .*; bid 0\.00000\d+ ask 0\.00000\d+; checksums ok",
    ("multi_channel.py", "tETHUSD", "tSHIB:USD"): r"^\[trade  \] tETHUSD  [+-][\d.]+ @ \d+(\.\d)?  \(book mid \d+(\.\d\d?)?\)$",
}
#: A number in exponent notation (``-8.2e-06``, ``1E-7``).
EXPONENT = re.compile(r"\d[eE][+-]?\d")
#: A binary floating-point artefact: a fraction with a nonzero digit, then 7 or more zeros and a digit
#: (``0.30000000000000004``), or 7 or more nines (``0.1999999999998181``).
ARTEFACT = re.compile(r"\.\d*[1-9]0{7,}[1-9]|\.\d*9{7,}")


def float_artefacts(out):
    """The numbers in ``out`` written in exponent notation or carrying a float artefact."""
    return [m.group() for m in EXPONENT.finditer(out)] + [m.group() for m in ARTEFACT.finditer(out)]


def started_examples(commands):
    """Start each ``(script, *arguments)`` with ``--emulator --seconds 3`` at once; yields a collector of results."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    procs = {
        command: subprocess.Popen([sys.executable, str(EXAMPLES / command[0]), *command[1:], "--emulator", "--seconds", "3"],
                                  cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for command in commands
    }
    started = time.monotonic()
    results = {}

    def result(command):
        if command not in results:
            proc = procs[command]
            try:
                out, err = proc.communicate(timeout=max(1.0, TIMEOUT - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"{command} did not finish within {TIMEOUT} s\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}")
            results[command] = (proc.returncode, out, err)
        return results[command]

    try:
        yield result
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def runs():
    collect = started_examples([(name,) for name in EXPECTED])
    result = next(collect)
    try:
        yield lambda name: result((name,))
    finally:
        collect.close()


@pytest.fixture(scope="module")
def number_runs():
    collect = started_examples(NUMBER_RUNS)
    try:
        yield next(collect)
    finally:
        collect.close()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_offline_and_prints_data(runs, name):
    """The example exits 0 after --seconds, only bfxsync INFO lines on stderr, and every expected kind of line."""
    code, out, err = runs(name)
    assert code == 0, err
    assert unexpected_stderr(err) == "", err
    for pattern in EXPECTED[name]:
        assert re.search(pattern, out, re.M), f"{name}: no line matches {pattern!r} in:\n{out[-3000:]}"
    assert "[error" not in out
    assert float_artefacts(out) == [], f"{name} printed numbers that are not exact plain text:\n{out[-3000:]}"


@pytest.mark.parametrize("command", sorted(NUMBER_RUNS), ids=" ".join)
def test_example_prints_exact_numbers_where_floats_garble(number_runs, command):
    """On tiny prices (tSHIB:USD) and a 0.1 grid (tETHUSD) the example prints prices, amounts, spreads and mids in
    fixed notation with no float artefact."""
    code, out, err = number_runs(command)
    assert code == 0, err
    assert unexpected_stderr(err) == "", err
    assert re.search(NUMBER_RUNS[command], out, re.M), f"{command}: no line matches {NUMBER_RUNS[command]!r} in:\n{out[-3000:]}"
    assert float_artefacts(out) == [], f"{command} printed numbers that are not exact plain text:\n{out[-3000:]}"


@pytest.fixture(scope="module")
def interrupted():
    """Every example started without --seconds, each interrupted (SIGINT) once it prints its last expected kind of line.

    Started together (each waits for its own line), collected one by one; every child is reaped.
    """
    children = {name: Interruptible([EXAMPLES / name, "--emulator"], ready=EXPECTED[name][-1]) for name in EXPECTED}
    results = {}

    def result(name):
        if name not in results:
            results[name] = children[name].interrupt()
        return results[name]

    try:
        yield result
    finally:
        for child in children.values():
            child.reap()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ctrl_c_exits_130(interrupted, name):
    """Ctrl-C while the example runs: status 130 (as every example and the CLI), the client closed, no traceback."""
    code, out, err = interrupted(name)
    assert code == 130, err
    assert unexpected_stderr(err) == "", err


def test_every_example_is_tested():
    """A new example gets an entry in EXPECTED (and so runs in this file) or in GUI (run under Xvfb)."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(set(EXPECTED) | GUI)


@pytest.fixture(scope="module")
def without_emulator_extra(tmp_path_factory):
    """A PYTHONPATH entry whose ``websockets`` cannot be imported, as when the extra is not installed."""
    path = tmp_path_factory.mktemp("no_websockets")
    (path / "websockets.py").write_text("raise ModuleNotFoundError(\"No module named 'websockets'\", name='websockets')\n")
    return path


@pytest.mark.parametrize("name", sorted(set(EXPECTED) | GUI))
def test_emulator_without_the_extra_is_one_line_and_status_2(name, without_emulator_extra):
    """--emulator without the emulator extra says which pip command to run, in one line, with status 2."""
    no_tk = name in GUI and importlib.util.find_spec("_tkinter") is None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(without_emulator_extra), str(ROOT))))
    env.pop("DISPLAY", None)  # the GUI example must fail before opening a window
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--emulator", "--seconds", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.stdout == ""
    if no_tk:  # without tkinter the GUI example stops before the extra matters, just as clearly
        assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1 and "python3-tk" in proc.stderr, proc.stderr
        return
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and 'pip install "websockets>=15"' in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", sorted(set(EXPECTED) | GUI))
def test_example_is_short_and_uses_only_the_public_api(name):
    """Examples stay short and import bfxsync, its number helpers and, for --emulator, bfxsync.emulator; nothing private."""
    source = (EXAMPLES / name).read_text()
    assert len(source.splitlines()) <= 85
    imports = set(re.findall(r"^\s*(?:from|import) (bfxsync[\w.]*)", source, re.M))
    assert imports <= {"bfxsync", "bfxsync.emulator", "bfxsync.numbers"}, imports
    assert not re.search(r"\._[a-z]", source.replace("__name__", "")), "examples must not touch private names"
