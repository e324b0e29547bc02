"""Every script in examples/ runs offline against the embedded emulator and prints real data.

The scripts run a few seconds each, so a module fixture starts them all at once and
each test collects its own; the examples are also checked to use only the public API.
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    "order_book.py": [r"^tBTCUSD  bid \d+ x [\d.]+  ask \d+ x [\d.]+  spread \d+  synced  checksums ok [1-9]\d* failed 0  resyncs \d+$"],
    "multi_channel.py": [rf"^\[{kind}\s*\] {symbol}" for kind in ("ticker", "trade", "candle", "book")
                         for symbol in ("tBTCUSD", "tETHUSD")],
}


@pytest.fixture(scope="module")
def runs():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    procs = {
        name: subprocess.Popen([sys.executable, str(EXAMPLES / name), "--emulator", "--seconds", "3"], cwd=ROOT, env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name in EXPECTED
    }
    started = time.monotonic()
    results = {}

    def result(name):
        if name not in results:
            proc = procs[name]
            try:
                out, err = proc.communicate(timeout=max(1.0, TIMEOUT - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"{name} did not finish within {TIMEOUT} s\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}")
            results[name] = (proc.returncode, out, err)
        return results[name]

    try:
        yield result
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_offline_and_prints_data(runs, name):
    """The example exits 0 after --seconds, with no output on stderr and every expected kind of line."""
    code, out, err = runs(name)
    assert code == 0, err
    assert err == ""
    for pattern in EXPECTED[name]:
        assert re.search(pattern, out, re.M), f"{name}: no line matches {pattern!r} in:\n{out[-3000:]}"
    assert "[error" not in out


def test_every_example_is_tested():
    """A new example gets an entry in EXPECTED (and so runs in this file)."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_is_short_and_uses_only_the_public_api(name):
    """Examples stay short and import bfxsync itself plus, for --emulator, bfxsync.emulator; nothing private."""
    source = (EXAMPLES / name).read_text()
    assert len(source.splitlines()) <= 65
    imports = set(re.findall(r"^\s*(?:from|import) (bfxsync[\w.]*)", source, re.M))
    assert imports <= {"bfxsync", "bfxsync.emulator"}, imports
    assert not re.search(r"\._[a-z]", source.replace("__name__", "")), "examples must not touch private names"
