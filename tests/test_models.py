"""Models read the documented positions, tolerate extra fields and reject short or mistyped rows."""
import json
import math

import attrs
import pytest
from hypothesis import given, settings, strategies as st

from bfxsync.errors import ProtocolError
from bfxsync.models import (
    Candle,
    DerivativesStatus,
    FundingTicker,
    FundingTrade,
    Liquidation,
    Trade,
    TradingTicker,
)
from bfxsync.protocol import decode_tokens

TRADING_TICKER = [7616.5, 31.89055171, 7617.5, 43.358118629999986, -550.8, -0.0674, 7617.1, 8314.71200815, 8257.8, 7500]
FUNDING_TICKER = [0.0003193369863013699, 0.0002401, 30, 3939629.6177260396, 0.00019012, 2, 307776.1592138799,
                  -0.00005823, -0.2344, 0.00019016, 122156333.45260866, 0.00027397, 6.8e-7, None, None, 3441851.73330503]
DERIV = [1596124822000, None, 0.896, 0.771995, None, 1396531.67460709, None, 1596153600000, 0.0001056, 6, None,
         -0.01381344, None, None, 0.7664, None, None, 246502.09001551, None, None, None, None, 0.3]
LIQ = ["pos", 145400868, 1609144352338, None, "tETHF0:USTF0", -1.67566, 733.97, None, 0, 1, None, 736.96]


def test_trading_ticker_reference_frame():
    """A documented ticker frame, with the trailing null seen live, reads field by field."""
    t = TradingTicker.from_wire(TRADING_TICKER + [None])
    assert (t.bid, t.ask, t.last_price, t.low) == (7616.5, 7617.5, 7617.1, 7500.0)


def test_funding_ticker_docs_order():
    """Funding tickers follow the docs (ws-public-ticker): BID, BID_PERIOD, BID_SIZE."""
    t = FundingTicker.from_wire(FUNDING_TICKER)
    assert (t.bid, t.bid_period, t.bid_size, t.ask_period, t.frr_amount_available) == (
        0.0002401, 30, 3939629.6177260396, 2, 3441851.73330503)


def test_trades_and_candles():
    """Trades, funding trades and candles (CLOSE before HIGH)."""
    assert Trade.from_wire([401597395, 1574694478808, 0.005, 7245.3]) == Trade(401597395, 1574694478808, 0.005, 7245.3)
    assert FundingTrade.from_wire([133323543, 1574694605000, -59.84, 0.00023647, 2]).period == 2
    c = Candle.from_wire([1574698260000, 7379.785503, 7383.8, 7388.3, 7379.785503, 1.68829482])
    assert (c.close, c.high) == (7383.8, 7388.3)


def test_status_models():
    """Derivatives status uses WS indices; liquidation rows read flags as booleans."""
    s = DerivativesStatus.from_wire(DERIV)
    assert (s.deriv_price, s.mark_price, s.open_interest, s.clamp_max) == (0.896, 0.7664, 246502.09001551, 0.3)
    liq = Liquidation.from_wire(LIQ)
    assert (liq.symbol, liq.is_match, liq.is_market_sold, liq.liquidation_price) == ("tETHF0:USTF0", False, True, 736.96)


def test_decimal_strings_accepted():
    """DEC_S sends decimals as strings; models still hold floats."""
    assert Trade.from_wire([1, 2, "0.5", "30000"]).price == 30000.0


@pytest.mark.parametrize("model, row", [
    (TradingTicker, TRADING_TICKER[:9]), (Trade, [1, 2, 3]), (Trade, "abc"), (Trade, None),
    (Candle, [1, "x", 2, 3, 4, 5]), (FundingTicker, [1] * 12), (DerivativesStatus, [1] * 5),
])
def test_bad_rows_raise_protocol_error(model, row):
    """Short, mistyped or non-list rows raise ProtocolError (a ValueError), never IndexError."""
    with pytest.raises(ProtocolError):
        model.from_wire(row)


HOSTILE_NUMBERS = [float("nan"), float("inf"), float("-inf"), "NaN", "Infinity", "-1e999", 10 ** 400, True, False,
                   [], {}, "abc"]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=repr)
@pytest.mark.parametrize("model, row, index", [
    (Trade, [1, 2, 0.5, 100.0], 3), (Trade, [1, 2, 0.5, 100.0], 2), (FundingTrade, [1, 2, 5.0, 0.0002, 2], 3),
    (TradingTicker, TRADING_TICKER, 0), (TradingTicker, TRADING_TICKER, 9), (FundingTicker, FUNDING_TICKER, 1),
    (FundingTicker, FUNDING_TICKER, 15), (Candle, [1, 2.0, 3.0, 4.0, 1.0, 5.0], 2),
    (DerivativesStatus, DERIV, 14), (Liquidation, LIQ, 6),
])
def test_prices_and_amounts_must_be_finite_numbers(model, row, index, value):
    """NaN, infinities, floats that overflow, booleans and non-numbers never become a model's float."""
    row = list(row)
    row[index] = value
    with pytest.raises(ProtocolError):
        model.from_wire(row)


@pytest.mark.parametrize("value", [1.5, "7", True, None, float("nan")], ids=repr)
@pytest.mark.parametrize("model, row, index", [
    (Trade, [1, 2, 0.5, 100.0], 0), (Trade, [1, 2, 0.5, 100.0], 1), (FundingTrade, [1, 2, 5.0, 0.0002, 2], 4),
    (Candle, [1, 2.0, 3.0, 4.0, 1.0, 5.0], 0), (FundingTicker, FUNDING_TICKER, 2), (DerivativesStatus, DERIV, 0),
])
def test_ids_and_timestamps_must_be_integers(model, row, index, value):
    """Integer fields take JSON integers only: not floats, strings or booleans."""
    row = list(row)
    row[index] = value
    with pytest.raises(ProtocolError):
        model.from_wire(row)


@pytest.mark.parametrize("index, value", [(4, 7), (4, None), (8, 2), (8, "1"), (9, None)])
def test_liquidation_symbol_and_flags_are_typed(index, value):
    """A liquidation's symbol is a string and its flags 0/1 (or true/false), nothing else."""
    row = list(LIQ)
    row[index] = value
    with pytest.raises(ProtocolError):
        Liquidation.from_wire(row)
    assert Liquidation.from_wire(LIQ[:8] + [True, False] + LIQ[10:]).is_match is True


def test_optional_fields_still_take_null():
    """null stays None in optional fields; NaN there is refused."""
    assert DerivativesStatus.from_wire(DERIV).spot_price == 0.771995
    row = list(DERIV)
    row[3] = None
    assert DerivativesStatus.from_wire(row).spot_price is None
    row[3] = float("nan")
    with pytest.raises(ProtocolError):
        DerivativesStatus.from_wire(row)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=10, max_size=10))
def test_models_read_the_same_numbers_from_wire_text_as_from_json_floats(values):
    """The link decodes every channel with floats kept as wire text: the models hold exactly what a float parse gives."""
    text = json.dumps([17, values])
    from_text = TradingTicker.from_wire(decode_tokens(text)[1])
    from_floats = TradingTicker.from_wire(json.loads(text)[1])
    assert from_text == from_floats
    assert [math.copysign(1, v) for v in attrs.astuple(from_text)] == [math.copysign(1, v) for v in attrs.astuple(from_floats)]
    trade_text = json.dumps([17, "te", [1, 1700000000000, values[0], values[1]]])
    assert Trade.from_wire(decode_tokens(trade_text)[2]) == Trade.from_wire(json.loads(trade_text)[2])
