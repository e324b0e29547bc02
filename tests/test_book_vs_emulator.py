"""Property test across two implementations: the client's OrderBook fed the emulator's diffs.

Random sequences of resting orders go through the emulator's own view/diff/checksum code
(plain dicts and sorted(), written independently) and its JavaScript-number encoder;
the client decodes the frames as it does off the socket. After every step the book must
equal the emulator's view and carry the checksum the emulator would send.
"""
from decimal import Decimal

import attrs
import pytest
from hypothesis import given, settings, strategies as st

from bfxsync.emulator.books import Order, build_view, diff_views, view_checksum
from bfxsync.emulator.wire import encode
from bfxsync.orderbook import OrderBook
from bfxsync.protocol import decode_tokens

# A real book is never crossed: bids sit below asks. Values include docs: ws-websocket-checksum troublemakers.
BID_PRICES = [Decimal(p) for p in ("29999.5", "29998.25", "0.00000001", "0.0000082", "12")]
ASK_PRICES = [Decimal(p) for p in ("30000", "30000.5", "30001", "150000")]
BID_RATES = [Decimal(r) for r in ("0.00019012", "0.00000017", "0.0001")]
ASK_RATES = [Decimal(r) for r in ("0.0002", "0.00023112", "0.0002311")]
AMOUNTS = [Decimal(a) for a in ("1.5", "0.00000001", "0.0000082", "12", "0.25", "3", "30000")]


def orders(funding):
    bid_sign = -1 if funding else 1  # funding bids are negative (docs: ws-public-books)
    bid_prices, ask_prices = (BID_RATES, ASK_RATES) if funding else (BID_PRICES, ASK_PRICES)
    side = st.one_of(
        st.tuples(st.sampled_from(bid_prices), st.just(bid_sign)),
        st.tuples(st.sampled_from(ask_prices), st.just(-bid_sign)),
    )
    order = st.builds(
        lambda oid, price_sign, amount, period: Order(oid, price_sign[0], price_sign[1] * amount, period if funding else None),
        st.integers(1, 15), side, st.sampled_from(AMOUNTS), st.sampled_from([2, 7, 30]),
    )
    # One order per id in a state; successive states model adds, cancels and moves.
    return st.lists(order, max_size=25, unique_by=lambda o: o.id)


def run_sequence(symbol, prec, length, states):
    funding = symbol.startswith("f")
    book = OrderBook(symbol, prec)
    view = build_view(states[0], funding, prec, length)
    bids, asks = view.entries()
    book.apply_snapshot(decode_tokens(encode([1, bids + asks]))[1])
    for state in states[1:]:
        assert book.checksum() == view_checksum(view)
        new = build_view(state, funding, prec, length)
        for entry in diff_views(view, new, funding):
            book.apply_update(decode_tokens(encode([1, list(entry)]))[1])
        view = new
    bids, asks = view.entries()
    assert [list(map(float, e)) for e in bids] == [list(map(float, attrs.astuple(level))) for level in book.bids()]
    assert [list(map(float, e)) for e in asks] == [list(map(float, attrs.astuple(level))) for level in book.asks()]
    assert book.checksum() == view_checksum(view)


@pytest.mark.parametrize("symbol, prec, length", [
    ("tBTCUSD", "P0", 25), ("tBTCUSD", "P2", 25), ("tBTCUSD", "R0", 25), ("tBTCUSD", "P0", 1),
    ("fUSD", "P0", 25), ("fUSD", "R0", 25), ("fUSD", "P1", 100),
])
def test_client_book_follows_emulator(symbol, prec, length):
    """For any sequence of order states, the client's book equals the emulator's view, checksum included."""
    @settings(max_examples=60, deadline=None)
    @given(st.lists(orders(symbol.startswith("f")), min_size=1, max_size=8))
    def check(states):
        run_sequence(symbol, prec, length, states)

    check()
