"""Integer fields and number texts are bounded before conversion, in public models, book rows and order
arguments: an absurd number is refused in microseconds, a sane one still reads exactly."""
from decimal import Decimal

import attrs
import pytest
from test_models import DERIV, FUNDING_TICKER, LIQ

from bfxsync.account import inputs
from bfxsync.errors import ProtocolError
from bfxsync.models import Candle, DerivativesStatus, FundingTicker, FundingTrade, Liquidation, Trade
from bfxsync.orderbook import OrderBook
from bfxsync.protocol import INT_LIMIT, decode_tokens

from conftest import cpu_seconds

#: JSON integers a hostile server could send (Python's int parser stops at 4,300 digits).
HUGE_INTS = [10 ** 21, -(10 ** 21), 10 ** 30, 10 ** 4000]


@pytest.mark.parametrize("value", HUGE_INTS, ids=lambda v: f"{len(str(v))}-digits")
@pytest.mark.parametrize("model, row, index", [
    (Trade, [1, 2, 0.5, 100.0], 0), (Trade, [1, 2, 0.5, 100.0], 1), (FundingTrade, [1, 2, 5.0, 0.0002, 2], 4),
    (Candle, [1, 2.0, 3.0, 4.0, 1.0, 5.0], 0), (FundingTicker, FUNDING_TICKER, 2), (DerivativesStatus, DERIV, 0),
    (DerivativesStatus, DERIV, 7), (Liquidation, LIQ, 1), (Liquidation, LIQ, 2),
])
def test_public_integers_stop_below_1e21(model, row, index, value):
    """A public integer field refuses a JSON integer of 1e21 or more (JavaScript writes none)."""
    row = list(row)
    row[index] = value
    with pytest.raises(ProtocolError):
        model.from_wire(row)
    row[index] = INT_LIMIT - 1
    assert INT_LIMIT - 1 in attrs.astuple(model.from_wire(row))


@pytest.mark.parametrize("text", ["1e250000", "1e1000000", "9" * 100_000 + ".5"])
def test_a_public_frame_with_a_hostile_number_is_cheap(text):
    """1e1000000 in a trade id is a float's text (refused as no integer); as a price it reads as inf (not finite)."""
    def refuse():
        for row_text in (f"[{text},2,0.5,100.0]", f"[1,2,0.5,{text}]"):
            with pytest.raises(ProtocolError):
                Trade.from_wire(decode_tokens(row_text))

    assert cpu_seconds(refuse) < 0.5


def test_a_json_integer_of_100000_digits_is_refused_by_the_decoder():
    """The decoder itself refuses integers beyond 4,300 digits (the link counts the frame as malformed), at once."""
    def refuse():
        with pytest.raises(ValueError):
            decode_tokens(f"[{'9' * 100_000},2,0.5,100.0]")

    assert cpu_seconds(refuse) < 0.5


class TestBookRows:
    KINDS = {  # symbol, prec, a valid row, the indexes of its integer fields
        "trading": ("tBTCUSD", "P0", [100.0, 1, 1.0], (1,)),
        "funding": ("fUSD", "P0", [0.0002, 30, 1, -5.0], (1, 2)),
        "raw": ("tBTCUSD", "R0", [11, 100.0, 1.0], (0,)),
        "raw_funding": ("fUSD", "R0", [21, 30, 0.0002, -5.0], (0, 1)),
    }

    @pytest.mark.parametrize("kind", sorted(KINDS))
    @pytest.mark.parametrize("value", HUGE_INTS, ids=lambda v: f"{len(str(v))}-digits")
    def test_ids_counts_and_periods_stop_below_1e21(self, kind, value):
        """A book row with an id, count or period of 1e21 or more is refused and changes nothing."""
        symbol, prec, good, ints = self.KINDS[kind]
        for index in ints:
            book = OrderBook(symbol, prec)
            book.apply_snapshot([list(good)])
            before = book.snapshot()
            row = list(good)
            row[index] = value
            with pytest.raises(ProtocolError, match="count|period|id"):
                book.apply_update(row)
            assert book.snapshot() == before
            row[index] = INT_LIMIT - 1
            book.apply_update(row)  # the largest integer JavaScript writes as digits still reads


class TestOrderArguments:
    @pytest.mark.parametrize("value", ["1e1000000", "-1e250000", "1e401", "1e-401", "1" * 65, 10 ** 80,
                                       Decimal("1e1000000")])
    def test_absurd_money_is_refused_at_once(self, value):
        """An amount or price with a huge exponent or text is a ValueError in microseconds, never a huge wire text."""
        for kwargs in ({"amount": value, "price": "100"}, {"amount": "0.1", "price": value}):
            def refuse(kwargs=kwargs):
                with pytest.raises(ValueError, match="amount|price"):
                    inputs.new_order("tBTCUSD", **kwargs)

            assert cpu_seconds(refuse) < 0.05

    def test_sane_extremes_still_pass(self):
        """Tiny and large but sane amounts keep their exact text."""
        frame, _ = inputs.new_order("tBTCUSD", "0.00000001", "1e10", now_ms=1_700_000_000_000)
        assert (frame[3]["amount"], frame[3]["price"]) == ("0.00000001", "10000000000")
