"""The fault soak (``bench/soak.py``): its trade numbering premise, and a short run against its targets."""
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
