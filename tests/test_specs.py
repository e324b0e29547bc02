"""Argument validation: bad symbols, precisions, frequencies, lengths and keys fail before sending."""
import pytest

from bfxsync.specs import BookSpec, CandlesSpec, StatusSpec, TickerSpec, candle_key


class TestValidation:
    @pytest.mark.parametrize("symbol", ["tBTCUSD", "fUSD", "tBTCF0:USTF0", "tTESTBTC:TESTUSD", "fBTC"])
    def test_good_symbols(self, symbol):
        """Trading pairs, derivatives and funding currencies are accepted."""
        assert TickerSpec(symbol).symbol == symbol

    @pytest.mark.parametrize("symbol", ["BTCUSD", "tbtcusd", "btc", "", "t", "xBTCUSD", 5, "tBTC USD"])
    def test_bad_symbols(self, symbol):
        """Anything else raises ValueError naming the expected format."""
        with pytest.raises(ValueError, match="symbol"):
            TickerSpec(symbol)

    @pytest.mark.parametrize("kwargs, word", [
        ({"prec": "P5"}, "prec"), ({"freq": "F3"}, "freq"), ({"length": 50}, "invalid length 50"),
        ({"length": "x"}, "invalid length 'x'"),
    ])
    def test_bad_book_parameters(self, kwargs, word):
        """Book precision, frequency and length are checked against the documented sets."""
        with pytest.raises(ValueError, match=word):
            BookSpec("tBTCUSD", **kwargs)

    def test_book_length_normalised(self):
        """'25' and 25 are the same subscription; the request sends it as the wire's ``len``, a string like the docs."""
        assert BookSpec("tBTCUSD", length="25") == BookSpec("tBTCUSD", length=25)
        assert BookSpec("tBTCUSD", length="25").length == 25
        assert BookSpec("tBTCUSD", "R0", length=100).request() == {
            "symbol": "tBTCUSD", "prec": "R0", "freq": "F0", "len": "100"}

    def test_book_length_has_one_name(self):
        """The book length is ``length`` everywhere in Python: the old ``len`` keyword is refused, not aliased."""
        with pytest.raises(TypeError, match="len"):
            BookSpec("tBTCUSD", len=25)  # type: ignore[call-arg]
        assert not hasattr(BookSpec("tBTCUSD"), "len")

    @pytest.mark.parametrize("key", ["trade:1m:tBTCUSD", "trade:1W:tETHUSD", "trade:1h:fUSD:p30",
                                     "trade:1m:fUSD:a30:p2:p30", "trade:14D:tBTCF0:USTF0"])
    def test_good_candle_keys(self, key):
        """Every documented time frame and the funding key forms are accepted."""
        assert CandlesSpec(key).key == key

    @pytest.mark.parametrize("key", ["trade:7D:tBTCUSD", "trade:1m:fUSD", "candles:1m:tBTCUSD",
                                     "trade:1m:tBTCUSD:p30", "trade:1m:fUSD:a20:p2:p30", "trade:1m:btcusd"])
    def test_bad_candle_keys(self, key):
        """Unknown time frames, funding keys without a period and malformed keys are refused."""
        with pytest.raises(ValueError, match="candle key"):
            CandlesSpec(key)

    def test_candle_key_builder(self):
        """candle_key() builds and validates keys."""
        assert candle_key("1h", "fUSD", 30) == "trade:1h:fUSD:p30"
        with pytest.raises(ValueError):
            candle_key("2m", "tBTCUSD")

    @pytest.mark.parametrize("key, ok", [("deriv:tBTCF0:USTF0", True), ("liq:global", True),
                                         ("deriv:BTC", False), ("liq:local", False)])
    def test_status_keys(self, key, ok):
        """Status keys are deriv:SYMBOL or liq:global."""
        if ok:
            assert StatusSpec(key).request() == {"key": key}
        else:
            with pytest.raises(ValueError):
                StatusSpec(key)
