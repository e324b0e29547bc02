"""Checksum text and CRC: worked examples (docs: ws-websocket-checksum) and JavaScript number formatting."""
import json
import math

import pytest
from hypothesis import given, strategies as st

from bfxsync.orderbook import OrderBook
from bfxsync.protocol import decode_tokens
from bfxsync.protocol.checksum import book_checksum, checksum_text, js_number_str, same_checksum, signed_crc32

EXAMPLE_A = '[17082,[[30000,2,1.5],[29999.5,1,1e-8],[29999,3,12],[30000.5,1,-0.25],[30001,4,-0.0000082],[30002,1,-1e-8]]]'
EXAMPLE_B = ('[433290,[[34753002978,7294.7,1.54340371],[34753002990,7294.7,0.5],[34753002900,7294.6,2],'
             '[34753006045,7295,-1],[34753006000,7295,-0.3],[34753006100,7295.5,-1.2e-7]]]')
EXAMPLE_C = ('[431549,[[0.00023112,30,1,-15190.7005375],[0.0002311,2,3,-500],[0.00019012,2,1,307776.15921388],'
             '[0.0001902,7,2,1000]]]')


class TestJsNumberStr:
    @pytest.mark.parametrize("value, text", [
        (30000.0, "30000"), (12.0, "12"), (1e-8, "1e-8"), (1.7e-7, "1.7e-7"), (0.0000082, "0.0000082"),
        (0.000001, "0.000001"), (1.5e20, "150000000000000000000"), (1.5e21, "1.5e+21"), (-0.25, "-0.25"),
        (0.0, "0"), (123, "123"), (0.1 + 0.2, "0.30000000000000004"), (-1e-7, "-1e-7"),
    ])
    def test_reference_table(self, value, text):
        """Values from docs: ws-websocket-checksum table format exactly as JavaScript does."""
        assert js_number_str(value) == text

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_round_trips(self, value):
        """Whatever the float, its JavaScript text parses back to the same value."""
        assert float(js_number_str(value)) == value or (value == 0 and js_number_str(value) == "0")

    def test_rejects_nan(self):
        """NaN has no JSON text."""
        with pytest.raises(ValueError):
            js_number_str(math.nan)


class TestWorkedExamples:
    def _book(self, text, symbol, prec):
        book = OrderBook(symbol, prec)
        book.apply_snapshot(decode_tokens(text)[1])
        return book

    def test_example_a_trading_p0(self):
        """docs: ws-websocket-checksum: a P0 book with 30000, 1e-8 and 0.0000082 hashes to -539989233."""
        book = self._book(EXAMPLE_A, "tBTCUSD", "P0")
        assert book.checksum() == -539989233

    def test_example_a_text(self):
        """The hashed text interleaves bid and ask and keeps the wire digits."""
        assert checksum_text(
            [("30000", "1.5"), ("29999.5", "1e-8"), (29999, 12)],
            [("30000.5", "-0.25"), (30001, "-0.0000082"), (30002, "-1e-8")],
        ) == "30000:1.5:30000.5:-0.25:29999.5:1e-8:30001:-0.0000082:29999:12:30002:-1e-8"

    def test_python_float_text_would_be_wrong(self):
        """The naive str(float) text gives the wrong checksum quoted in docs: ws-websocket-checksum."""
        naive = "30000:1.5:30000.5:-0.25:29999.5:1e-08:30001:-8.2e-06:29999:12:30002:-1e-08"
        assert signed_crc32(naive) == -1469784945

    def test_example_b_raw_trading(self):
        """docs: ws-websocket-checksum: R0 hashes order ids, ordered by price then id, to 1715826273."""
        assert self._book(EXAMPLE_B, "tBTCUSD", "R0").checksum() == 1715826273

    def test_example_c_funding(self):
        """docs: ws-websocket-checksum: a funding P0 book hashes to -1993476160."""
        assert self._book(EXAMPLE_C, "fUSD", "P0").checksum() == -1993476160

    def test_only_25_levels_count(self):
        """Levels past the 25th of a side do not enter the checksum."""
        bids = [(str(100 - i), "1") for i in range(30)]
        asks = [(str(200 + i), "-1") for i in range(30)]
        assert book_checksum(bids, asks) == book_checksum(bids[:25], asks[:25])

    def test_signedness(self):
        """Signed and unsigned renderings of one CRC compare equal."""
        assert same_checksum(-539989233, 3754978063)
        assert not same_checksum(-539989233, 1)

    def test_tokens_survive_decoding(self):
        """Decoding with parse_float=str keeps the float text; ints stay ints."""
        assert json.loads("[1e-8, 30000, 0.0000082]", parse_float=str) == ["1e-8", 30000, "0.0000082"]


def test_the_books_fast_checksum_equals_the_reference_text_on_random_books():
    """OrderBook builds the checksum text in one pass; it must equal checksum_text for every book kind and size."""
    import random

    rnd = random.Random(11)
    for _ in range(300):
        prec, symbol = rnd.choice(["P0", "R0"]), rnd.choice(["tBTCUSD", "fUSD"])
        book = OrderBook(symbol, prec)
        n_bids, n_asks = rnd.randint(0, 30), rnd.randint(0, 30)
        rows = []
        for i in range(n_bids + n_asks):
            bid = i < n_bids
            amount = str(round(rnd.uniform(0.1, 3), 4)) if rnd.random() < 0.8 else str(rnd.randint(1, 5))
            funding_bid = symbol.startswith("f") and bid
            trading_ask = not symbol.startswith("f") and not bid
            signed = "-" + amount if funding_bid or trading_ask else amount
            wire = signed if "." in signed else int(signed)
            if symbol.startswith("f"):
                rate = str(0.0001 + i * 1e-6)
                rows.append([1000 + i, rnd.randint(2, 30), rate, wire] if prec == "R0" else [rate, rnd.randint(2, 30), 1, wire])
            else:
                price = 30000 - i if bid else 30000 + i
                rows.append([1000 + i, price, wire] if prec == "R0" else [price, 1, wire])
        book.apply_snapshot(rows)
        key, amount_index = 0, book._amount_index
        bids = [(r[key], r[amount_index]) for r in book._bids.best(25)]
        asks = [(r[key], r[amount_index]) for r in book._asks.best(25)]
        assert book.checksum() == book_checksum(bids, asks)


def test_the_books_checksum_text_follows_updates_removals_and_side_changes():
    """Level texts kept by the writer's checksums follow every later update, removal and side change.

    A checksum from any other thread (``checksum()``) makes the texts it needs but keeps
    none, so it can never store the text of a row the writer replaced meanwhile.
    """
    import random

    rnd = random.Random(5)
    for prec in ("P0", "R0"):
        book = OrderBook("tBTCUSD", prec)
        book.apply_snapshot([])
        for i in range(3000):
            price = 30000 + rnd.randint(-40, 40)
            amount = str(round(rnd.uniform(-3, 3), 3) or 1.5)
            if prec == "P0":
                count = rnd.randint(0, 3)
                book.apply_update([price, count, amount if count else (1 if amount[0] != "-" else -1)])
            else:
                book.apply_update([rnd.randint(1, 120), 0 if rnd.random() < 0.3 else price, amount])
            amount_index = book._amount_index
            bids = [(r[0], r[amount_index]) for r in book._bids.best(25)]
            asks = [(r[0], r[amount_index]) for r in book._asks.best(25)]
            reference = book_checksum(bids, asks)
            made = lambda book=book: [t for side in (book._bids, book._asks) for t in side.texts if t is not None]  # noqa: E731
            kept = made()
            assert book.checksum() == reference, (prec, i)
            assert made() == kept
            if rnd.random() < 0.3:  # as a cs frame every few updates would
                assert book.checksum_from_writer() == reference, (prec, i)
                assert None not in book._bids.texts[:25] + book._asks.texts[:25]
            assert len(book._bids.texts) == len(book._bids.order) and len(book._asks.texts) == len(book._asks.order)
