"""The fault soak (``bench/soak.py``): its trade numbering premise, and a short run against its targets."""
import importlib.util
import io
import pathlib

from bfxsync.emulator.config import DEFAULT_SYMBOLS
from bfxsync.emulator.market import Market


class TestTradeIds:
    def test_trades_are_numbered_consecutively_per_symbol(self):
        """Every symbol numbers its trades 1, 2, 3... apart, with no ID shared across symbols, so gaps are countable."""
        market = Market(DEFAULT_SYMBOLS, seed=5, depth=60, now_ms=1_700_000_000_000)
        ids = {symbol: [t.id for t in m.trades] for symbol, m in market.symbols.items()}
        for tick in range(300):
            market.tick(1_700_000_000_000 + tick * 100, with_status=False)
            for symbol, m in market.symbols.items():
                ids[symbol] += [t.id for t in m.new_trades]
        for symbol, numbers in ids.items():
            assert len(numbers) > 30 and numbers == list(range(numbers[0], numbers[0] + len(numbers))), symbol
        assert len({n for numbers in ids.values() for n in numbers}) == sum(map(len, ids.values()))

    def test_a_symbol_added_later_is_numbered_consecutively_too(self):
        """A market created on demand (any_symbol) keeps its own consecutive numbering."""
        market = Market(("tBTCUSD",), seed=5, depth=60, now_ms=1_700_000_000_000)
        added = market.add_symbol("tXRPUSD", 1_700_000_000_000)
        numbers = [t.id for t in added.trades]
        for tick in range(200):
            market.tick(1_700_000_000_000 + tick * 100, with_status=False)
            numbers += [t.id for t in added.new_trades]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def _load_soak():
    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("bfxsync_bench_soak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Every fault kind but the 429: a refused dial holds the client off for 60 s, the length of the whole run.
SHORT_RUN_FAULTS = ("drop", "stall", "info_20051", "maintenance", "checksum", "sequence_gap", "malformed",
                    "error_10305", "slow_server", "slow_callback")
#: 60 s is too short for RSS to settle to the 10-minute target of 5 MB, so the bound is looser here.
SHORT_RUN_RSS_LIMIT_MB = 20.0


def test_a_one_minute_fault_soak_meets_every_target(capsys):
    """60 s of seeded faults (all kinds but 429): every one recovered, no trade lost outside a fault window,
    every book equal after each recovery, RSS, threads and fds back to where they started."""
    soak = _load_soak()
    assert set(SHORT_RUN_FAULTS) == set(soak.KINDS) - {"refused_429"}
    out = io.StringIO()
    run = soak.Soak(seed=11, duration=60.0, kinds=SHORT_RUN_FAULTS, out=out).run()
    table = run.table(SHORT_RUN_RSS_LIMIT_MB)
    with capsys.disabled():
        print("\n" + table)
    assert len(run.faults) >= 8, out.getvalue()
    failed = [f"{name}: {detail}" for name, ok, detail in run.verdict(SHORT_RUN_RSS_LIMIT_MB) if not ok]
    assert not failed, out.getvalue() + "\n" + table
