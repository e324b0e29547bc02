"""Numbers: what you read is what you can send (the policy of bfxsync.numbers).

Order entry takes int, float (by its shortest repr), str and Decimal, and refuses NaN,
infinities and bools; a price read from a book, a ticker or a trade goes into an order against
the emulator and comes back exactly; spread() and mid() carry no binary artefacts.
"""
import json
import random
import re
import struct
import subprocess
import sys
import time
from decimal import Decimal, localcontext

import pytest

from bfxsync import numbers
from bfxsync.account import inputs
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator
from bfxsync.orderbook import OrderBook

from conftest import FAST, wait_until
from test_cli import ROOT, Interruptible, child_env
from test_examples import float_artefacts


class DecoratedFloat(float):
    """A float whose repr is not its digits, as numpy 2's ``np.float64(0.1)`` prints ``np.float64(0.1)``."""

    def __repr__(self):
        return f"DecoratedFloat({float.__repr__(self)})"


def random_doubles(n, seed):
    """``n`` finite doubles drawn from every bit pattern (all magnitudes, subnormals included)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if x == x and abs(x) != float("inf") and x != 0:
            out.append(x)
    return out


class TestToDecimal:
    @pytest.mark.parametrize("value, text", [
        (0.1, "0.1"), (30000.1, "30000.1"), (30000.0, "30000"), (8.2013e-06, "0.0000082013"), (1e-07, "0.0000001"),
        (1e16, "10000000000000000"), (-0.05, "-0.05"), (0.1 + 0.2, "0.30000000000000004"),
        (DecoratedFloat(0.1), "0.1"), (30000, "30000"), (-7, "-7"), ("0.00100", "0.001"), (" 3e4 ", "30000"),
        ("-0.0000082013", "-0.0000082013"), (Decimal("1E-8"), "0.00000001"), (Decimal("12.50"), "12.5"),
        (-0.0, "0"), (Decimal("-0.000"), "0"),
    ])
    def test_each_kind_becomes_its_exact_plain_text(self, value, text):
        """int, str and Decimal as they are, a float (or float subclass) by its shortest repr; no exponent on the wire."""
        assert numbers.plain(value) == text
        assert numbers.to_decimal(value) == Decimal(text)

    @pytest.mark.parametrize("value, fragment", [
        (float("nan"), "price must be finite"), (float("inf"), "price must be finite"),
        (float("-inf"), "price must be finite"), ("NaN", "price must be finite"), (Decimal("-Infinity"), "finite"),
        (True, "got a bool"), (False, "got a bool"), (None, "got NoneType"), ([1], "got list"), (1j, "got complex"),
        (b"1", "got bytes"), ("1,5", "not a decimal number"), ("1" * 65, "65 characters"),
        (Decimal("0." + "1" * 65), "65 digits"), (2 ** 300, "301-bit integer"), ("1e401", "exponent out of range"),
    ])
    def test_refused_with_a_value_error_naming_the_argument(self, value, fragment):
        """NaN, infinities, bools, other types and out-of-bound numbers are a ValueError naming the argument."""
        with pytest.raises(ValueError, match=fragment):
            numbers.to_decimal(value, "price")
        with pytest.raises(ValueError, match=fragment.replace("price", "value")):
            numbers.plain(value)

    def test_every_double_goes_out_as_text_that_reads_back_as_itself(self):
        """For 20,000 random doubles the wire text is exact and float(text) is the same double."""
        for x in random_doubles(20_000, seed=16):
            text = numbers.plain(x)
            assert "e" not in text.lower() and float(text) == x and Decimal(text) == Decimal(repr(x)), x


class TestOrderEntryTakesFloats:
    def test_new_order_takes_a_float_everywhere_money_goes(self):
        """amount, price, oco, trailing and aux-limit prices accept floats and go out as the float's repr."""
        frame, _ = inputs.new_order("tBTCUSD", 0.001, 30000.1, oco_stop_price=29000.5, cid=1)
        assert frame[3]["amount"] == "0.001" and frame[3]["price"] == "30000.1" and frame[3]["price_oco_stop"] == "29000.5"
        frame, _ = inputs.new_order("tSHIB:USD", -1e6, 8.2013e-06, "EXCHANGE STOP LIMIT", price_aux_limit=8.2e-06, cid=1)
        assert (frame[3]["amount"], frame[3]["price"], frame[3]["price_aux_limit"]) == (
            "-1000000", "0.0000082013", "0.0000082")
        frame, _ = inputs.new_order("tBTCUSD", 0.5, type="TRAILING STOP", price_trailing=10.25, cid=1)
        assert frame[3]["price_trailing"] == "10.25"

    def test_update_funding_multi_op_and_meta_take_floats(self):
        """update_order, funding offers (rate and FRR delta), raw multi-op payloads and meta convert floats too."""
        frame, _ = inputs.update_order(5, price=2000.1, delta=-0.25)
        assert (frame[3]["price"], frame[3]["delta"]) == ("2000.1", "-0.25")
        frame, _ = inputs.new_funding_offer("fUSD", 50.5, 0.0002, 7)
        assert (frame[3]["amount"], frame[3]["rate"]) == ("50.5", "0.0002")
        frame, _ = inputs.new_funding_offer("fUSD", 50, -1e-05, 7, "FRRDELTAVAR")
        assert frame[3]["rate"] == "-0.00001"
        frame, _ = inputs.order_multi_op([("ou", {"id": 1, "price": 1.5, "flags": 0})])
        assert frame[3] == [["ou", {"id": 1, "price": "1.5", "flags": 0}]]
        frame, _ = inputs.new_order("tBTCUSD", "1", "1", meta={"x": 0.25, "make_visible": 1}, cid=1)
        assert frame[3]["meta"] == {"x": "0.25", "make_visible": 1}

    def test_a_float_is_sent_as_python_shows_it(self):
        """repr semantics: a computed float goes out as its repr (documented), not as the amount one had in mind."""
        frame, _ = inputs.new_order("tBTCUSD", 0.1 + 0.2, 30000, cid=1)
        assert frame[3]["amount"] == repr(0.1 + 0.2) == "0.30000000000000004"
        frame, _ = inputs.new_order("tBTCUSD", round(0.1 + 0.2, 8), 30000, cid=1)
        assert frame[3]["amount"] == "0.3"


def book_of(symbol, prec, rows, floats_as_text=True):
    """A book fed as the client feeds it (floats kept as their wire text) or, by hand, with plain floats."""
    book = OrderBook(symbol, prec)
    book.apply_snapshot(json.loads(json.dumps(rows), parse_float=str if floats_as_text else float))
    return book


class TestSpreadAndMid:
    @pytest.mark.parametrize("as_text", [True, False], ids=["wire-text", "floats"])
    def test_the_issue_s_book(self, as_text):
        """A 30000.1 / 30000.3 book: spread() is 0.2 and mid() 30000.2 (float arithmetic: 0.1999999999998181)."""
        book = book_of("tBTCUSD", "P0", [[30000.1, 1, 0.5], [30000.3, 2, -0.7]], as_text)
        assert 30000.3 - 30000.1 != 0.2  # the artefact this avoids
        assert book.spread() == 0.2 and type(book.spread()) is float and repr(book.spread()) == "0.2"
        assert book.mid() == 30000.2 and type(book.mid()) is float

    @pytest.mark.parametrize("symbol, prec, rows, spread, mid", [
        ("tBTCUSD", "R0", [[11, 2000.1, 1.5], [12, 1999.9, 2.0], [13, 2000.3, -1.0]], 0.2, 2000.2),
        ("fUSD", "P0", [[0.0002, 30, 1, -50.0], [0.00021, 2, 3, 80.0]], 1e-05, 0.000205),
        ("fUSD", "R0", [[21, 30, 0.0002, -50.0], [22, 2, 0.00023, 80.0]], 3e-05, 0.000215),
        ("tSHIB:USD", "P0", [[8.1999e-06, 3, 1e6], [8.2001e-06, 2, -1e6]], 2e-10, 8.2e-06),
        ("tBTCUSD", "P0", [[30000, 1, 1.0], [30001, 1, -1.0]], 1.0, 30000.5),
    ])
    def test_every_kind_of_book(self, symbol, prec, rows, spread, mid):
        """Raw, funding (rates, inverted sides), tiny and integer prices: exact spread and mid."""
        book = book_of(symbol, prec, rows)
        assert (book.spread(), book.mid()) == (spread, mid)

    def test_a_random_grid(self):
        """For 2,000 random books on 0.1, 0.01 and 1e-10 grids, spread() is the nearest float to the exact difference."""
        rng = random.Random(7)
        for _ in range(2_000):
            tick = rng.choice((Decimal("0.1"), Decimal("0.01"), Decimal("1E-10")))
            bid = tick * rng.randint(1, 10 ** 7)
            ask = bid + tick * rng.randint(1, 100)
            book = book_of("tBTCUSD", "P0", [[float(bid), 1, 1.0], [float(ask), 1, -1.0]])
            assert Decimal(repr(book.spread())) == ask - bid
            assert book.mid() == float((ask + bid) / 2)

    def test_the_caller_s_decimal_context_changes_nothing(self):
        """spread() and mid() use their own context: a caller's 3-digit context does not round them."""
        book = book_of("tBTCUSD", "P0", [[30000.1, 1, 0.5], [30000.3, 2, -0.7]])
        with localcontext() as ctx:
            ctx.prec = 3
            assert (book.spread(), book.mid()) == (0.2, 30000.2)

    def test_an_empty_side_is_none(self):
        """No spread or mid without both sides."""
        book = book_of("tBTCUSD", "P0", [[30000.1, 1, 0.5]])
        assert book.spread() is None and book.mid() is None


def test_prices_read_from_a_book_a_ticker_and_a_trade_go_into_orders_and_come_back_exactly(make_client):
    """A float read from market data goes straight into submit_order/update_order; the server receives the
    server's own price text, and the order reported back (result and order event) carries exactly that price."""
    with Emulator(seed=3, rate=0) as emu:  # rate 0: the books hold still, so the emulator's book is the reference
        client = make_client(emu.url, FAST, api_key=DEMO_KEY, api_secret=DEMO_SECRET)
        client.wait_authenticated(10)
        events = []
        client.account.on_orders(events.append)
        trades = []
        books = {s: client.subscribe_book(s) for s in ("tETHUSD", "tSHIB:USD", "tLTCBTC")}
        ticker = client.subscribe_ticker("tBTCUSD")
        client.subscribe_trades("tLTCBTC", on_data=trades.append)
        for book in books.values():
            book.wait_synced(10)
        assert wait_until(lambda: ticker.last is not None and trades, 10)

        eth_bid, eth_ask = (emu.book_view("tETHUSD", length=1)[side][0][0] for side in (0, 1))
        assert books["tETHUSD"].spread() == float(Decimal(repr(eth_ask)) - Decimal(repr(eth_bid)))
        assert repr(books["tETHUSD"].spread()) == "0.2" != repr(eth_ask - eth_bid)  # 0.20000000000004547 as floats

        # (symbol, amount, price as read): every value a float, as the models hold them
        reads = [("tETHUSD", 0.01, books["tETHUSD"].best_bid().price),
                 ("tSHIB:USD", 1e6, books["tSHIB:USD"].best_bid().price),  # 8.1999e-06: an exponent in repr
                 ("tLTCBTC", 1.5, books["tLTCBTC"].best_bid().price),
                 ("tBTCUSD", 0.001, ticker.last.last_price),
                 ("tLTCBTC", 0.5, trades[0].items[-1].price)]
        assert all(type(price) is float and type(amount) is float for _, amount, price in reads)
        for symbol, amount, price in reads:
            order = client.account.submit_order(symbol, amount, price).result(10)
            assert order.price == Decimal(repr(price)) == numbers.to_decimal(price) and float(order.price) == price
            assert order.amount_orig == Decimal(repr(amount))
            sent = [r.payload for r in emu.received_inputs(DEMO_KEY) if r.tag == "on" and r.payload["cid"] == order.cid]
            assert sent == [dict(sent[0], price=numbers.plain(price), amount=numbers.plain(amount))]
            assert "e" not in sent[0]["price"]
            assert wait_until(lambda order=order: any(m.item.id == order.id for m in events if m.items and not m.snapshot), 10)
            reported = [m.item for m in events if m.items and not m.snapshot and m.item.id == order.id]
            assert all(o.price == order.price for o in reported)

        # the exchange's own book holds the order at exactly the level it was read from
        shib_bid = emu.book_view("tSHIB:USD", length=1)[0][0]
        assert Decimal(repr(shib_bid[0])) == Decimal(repr(reads[1][2]))

        eth_order = next(o for o in client.account.snapshot().orders.values() if o.symbol == "tETHUSD")
        second_bid = books["tETHUSD"].book.bids(2)[1].price
        moved = client.account.update_order(eth_order.id, price=second_bid).result(10)
        assert moved.id == eth_order.id and moved.price == Decimal(repr(second_bid)) and float(moved.price) == second_bid


#: CLI displays on the symbols where floats garble (see test_examples.NUMBER_RUNS), each with a line it must print;
#: the streaming ones are interrupted once they printed it.
CLI_STREAMS = {
    ("ticker", "tSHIB:USD"): r"  bid 0\.00000\d+ x [\d.]+  ask 0\.00000\d+ x [\d.]+  last 0\.00000\d+ ",
    ("trades", "tSHIB:USD"): r" (buy |sell) [\d.]+ @ 0\.00000\d+  id \d+",
    ("candles", "tSHIB:USD"): r"  open 0\.00000\d+  high 0\.00000\d+  low 0\.00000\d+  close 0\.00000\d+ ",
    ("book", "tETHUSD", "--display", "lines"): r"\| bid \d+(\.\d)? x [\d.]+ \| ask \d+(\.\d)? x [\d.]+ "
                                               r"\| spread \d*\.?\d \| synced",
    ("book", "fBTC", "--display", "lines"): r"\| spread 0\.00000000\d+ \| synced",
}
CLI_ONCE = {
    ("account", "--once"): r"^  exchange  USD +100000 ",
    ("order", "tSHIB:USD", "1000000", "--price", "8.2e-06"): r" buy 1000000 @ 0\.0000082 \| remaining 1000000 ",
}


def test_the_cli_displays_exact_numbers():
    """bfxsync book/ticker/trades/candles/account/order against the emulator print tiny prices in fixed notation,
    spreads on a 0.1 grid exactly, and no float artefact anywhere."""
    streams = {args: Interruptible(["-m", "bfxsync", *args, "--emulator"], ready=pattern)
               for args, pattern in CLI_STREAMS.items()}
    once = {args: subprocess.Popen([sys.executable, "-m", "bfxsync", *args, "--emulator"], cwd=ROOT, env=child_env(),
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in CLI_ONCE}
    deadline = time.monotonic() + 30
    try:
        outputs = {}
        for args, child in streams.items():
            _, out, err = child.interrupt()
            outputs[args] = (out, err)
        for args, proc in once.items():
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err
            outputs[args] = (out, err)
        for args, (out, err) in outputs.items():
            pattern = {**CLI_STREAMS, **CLI_ONCE}[args]
            assert re.search(pattern, out, re.M), f"{args}: no line matches {pattern!r} in:\n{out[-3000:]}{err[-2000:]}"
            assert float_artefacts(out) == [], f"{args} printed numbers that are not exact plain text:\n{out[-3000:]}"
            assert "Traceback" not in err, err
    finally:
        for child in streams.values():
            child.reap()
        for proc in once.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
