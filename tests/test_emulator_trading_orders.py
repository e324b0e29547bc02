"""The emulator's matching engine over raw sockets: place, modify, cancel, fills, order kinds.

The market does not tick (rate 0, seed 1: best bid 29999, best ask 30001 on tBTCUSD), so
the public book each test trades against stays put.
"""
from decimal import Decimal

import pytest
from test_emulator_trading import note, tagged, tags, world  # noqa: F401 - world is a fixture

from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, EmulatorAccount
from bfxsync.emulator.wire import number_text

ON_BTC = {"symbol": "tBTCUSD"}
USD = Decimal(10_000_000)
#: The demo key with enough money to sweep a price level of the public book.
RICH = EmulatorAccount(DEMO_KEY, DEMO_SECRET, wallets={("exchange", "USD"): USD, ("exchange", "BTC"): 2,
                                               ("margin", "USD"): 50000, ("funding", "USD"): 20000})


@pytest.fixture
def market(world):  # noqa: F811 - the imported fixture
    """``(emu, trader, best_bid, best_ask, connect)`` with the trader logged in."""
    start, connect = world
    emu = start(accounts=(RICH,))
    trader = connect(emu)
    trader.login()
    bids, asks = emu.book_view("tBTCUSD", "R0", 100)
    return emu, trader, Decimal(number_text(bids[0][1])), Decimal(number_text(asks[0][1])), connect


def order(trader, **fields):
    trader.input("on", {**ON_BTC, **fields})


def ask_depth(emu, limit):
    """Public ask liquidity at or below ``limit``."""
    asks = emu.book_view("tBTCUSD", "R0", 250)[1]
    return sum(Decimal(number_text(-a[2])) for a in asks if Decimal(number_text(a[1])) <= limit)


class TestLifecycle:
    def test_place_modify_cancel(self, market):
        """A resting order: n on-req (CID at 2) + on; ou-req + ou; oc-req + oc CANCELED."""
        emu, trader, bid, _, _ = market
        order(trader, cid=11, gid=3, type="EXCHANGE LIMIT", amount="0.5", price=str(bid - 100))
        n, on = trader.frames_until(tagged("on"))
        assert n[2][1] == "on-req" and n[2][6] == "SUCCESS" and n[2][4][2] == 11
        assert len(on[2]) == 32 and on[2][13] == "ACTIVE" and on[2][1] == 3 and on[2][6] == Decimal("0.5")
        order_id = on[2][0]
        trader.input("ou", {"id": order_id, "price": str(bid - 50), "amount": "0.7"})
        n, ou = trader.frames_until(tagged("ou"))
        assert n[2][1] == "ou-req" and n[2][6] == "SUCCESS"
        assert (ou[2][16], ou[2][6], ou[2][7]) == (bid - 50, Decimal("0.7"), Decimal("0.7"))
        assert emu.account(DEMO_KEY).order(order_id).price == bid - 50
        trader.input("oc", {"id": order_id})
        n, oc = trader.frames_until(tagged("oc"))
        assert n[2][1] == "oc-req" and n[2][4][0] == order_id and f"(ID: {order_id})" in n[2][7]
        assert oc[2][13] == "CANCELED" and emu.account(DEMO_KEY).orders == ()

    def test_cancel_by_cid_and_multi(self, market):
        """oc by cid + cid_date, oc_multi by gid and all."""
        emu, trader, bid, _, _ = market
        for cid, gid in ((1, 5), (2, 5), (3, None), (4, None)):
            order(trader, cid=cid, gid=gid, type="EXCHANGE LIMIT", amount="0.01", price=str(bid - 100))
            created = trader.frames_until(tagged("on"))[-1][2][4]
        day = __import__("datetime").datetime.fromtimestamp(created / 1000, __import__("datetime").timezone.utc)
        trader.input("oc", {"cid": 3, "cid_date": day.strftime("%Y-%m-%d")})
        assert trader.frames_until(tagged("oc"))[-1][2][2] == 3
        trader.input("oc_multi", {"gid": [5]})
        frames = trader.frames_until(tagged("oc", lambda o: o[2] == 2))
        assert tags(frames) == ["n", "oc", "oc"] and len(frames[0][2][4]) == 2
        trader.input("oc_multi", {"all": 1})
        assert trader.frames_until(tagged("oc"))[-1][2][2] == 4
        assert emu.account(DEMO_KEY).orders == ()

    def test_errors(self, market):
        """Invalid inputs get an ERROR notification and nothing else."""
        _, trader, _, _, _ = market
        cases = [("on", {"cid": 1, "type": "EXCHANGE LIMIT", "amount": "0", "price": "1"}, "amount: invalid"),
                 ("on", {"cid": 1, "type": "EXCHANGE LIMIT", "amount": "1e-3", "price": "1"}, "amount: invalid"),
                 ("on", {"cid": 1, "type": "EXCHANGE LIMIT", "symbol": "tNOPE", "amount": "1", "price": "1"},
                  "symbol: invalid"),
                 ("oc", {"id": 12345}, "Order not found."),
                 ("ou", {"id": 12345, "price": "1"}, "Order not found.")]
        for tag, payload, text in cases:
            trader.input(tag, {**ON_BTC, **payload} if tag == "on" else payload)
            (n,) = trader.frames_until(tagged("n"))
            assert (n[2][1], n[2][6], n[2][7]) == (f"{tag}-req", "ERROR", text)
        assert trader.quiet() == []

    def test_insufficient_balance_is_an_on_req_error(self, market):
        """Buying more than the USD wallet holds: on-req ERROR 'Invalid order: not enough exchange balance ...'."""
        emu, trader, bid, _, _ = market
        order(trader, cid=1, type="EXCHANGE LIMIT", amount="1000", price=str(bid))
        (n,) = trader.frames_until(tagged("n"))
        assert n[2][6] == "ERROR" and n[2][7].startswith("Invalid order: not enough exchange balance for 1000")
        assert n[2][4][0] is None and n[2][4][2] == 1
        order(trader, cid=2, type="EXCHANGE LIMIT", amount="-3", price="40000")
        assert trader.frames_until(tagged("n"))[-1][2][6] == "ERROR"


class TestFills:
    def test_immediate_fill_frame_order_and_wallets(self, market):
        """A crossing buy: n, on, wu, wu, te, oc EXECUTED, wu (fee), tu, bu; 0.1% fee in BTC."""
        emu, trader, _, ask, _ = market
        order(trader, cid=1, type="EXCHANGE LIMIT", amount="0.1", price=str(ask))
        frames = trader.frames_until(tagged("bu"))
        assert tags(frames) == ["n", "on", "wu", "wu", "te", "oc", "wu", "tu", "bu"]
        te, oc, tu = frames[4][2], frames[5][2], frames[7][2]
        assert len(te) == 12 and te[9] is None and (te[4], te[5], te[8]) == (Decimal("0.1"), ask, -1)
        assert oc[13] == f"EXECUTED @ {ask}.0(0.1)" and oc[6] == 0
        assert (tu[9], tu[10], tu[11]) == (Decimal("-0.0001"), "BTC", 1)
        wallets = emu.account(DEMO_KEY).wallets
        assert wallets[("exchange", "BTC")] == Decimal("2.0999")
        assert wallets[("exchange", "USD")] == USD - Decimal("0.1") * ask

    def test_partial_fill_between_accounts(self, market):
        """A resting sell inside the spread is partly taken by a buy: maker ou PARTIALLY FILLED, no fee."""
        emu, trader, bid, ask, connect = market
        assert ask - bid >= 2
        price = bid + 1
        order(trader, cid=1, type="EXCHANGE LIMIT", amount="-0.5", price=str(price))
        maker_id = trader.frames_until(tagged("on"))[-1][2][0]
        taker = connect(emu)
        taker.login()
        order(taker, cid=2, type="EXCHANGE LIMIT", amount="0.2", price=str(price))
        taker_frames = taker.frames_until(tagged("bu"))
        # Both orders belong to the demo account, so the taker connection sees the maker's side too.
        te_maker = [f[2] for f in taker_frames if f[1] == "te" and f[2][3] == maker_id]
        assert te_maker and te_maker[0][8] == 1 and te_maker[0][4] == Decimal("-0.2")
        ou = [f[2] for f in taker_frames if f[1] == "ou" and f[2][0] == maker_id][0]
        assert ou[13] == f"PARTIALLY FILLED @ {price}.0(-0.2)" and ou[6] == Decimal("-0.3")
        tu_maker = [f[2] for f in taker_frames if f[1] == "tu" and f[2][3] == maker_id][0]
        assert tu_maker[9] == 0
        assert emu.account(DEMO_KEY).order(maker_id).amount == Decimal("-0.3")

    def test_taker_rests_its_remainder(self, market):
        """A buy larger than the liquidity within its limit fills partly (ou) and rests."""
        emu, trader, _, ask, _ = market
        depth = ask_depth(emu, ask)
        order(trader, cid=1, type="EXCHANGE LIMIT", amount=str(depth + 1), price=str(ask))
        frames = trader.frames_until(tagged("bu"))
        ou = [f[2] for f in frames if f[1] == "ou"][-1]
        assert ou[13].startswith("PARTIALLY FILLED @") and ou[6] == 1
        assert emu.account(DEMO_KEY).order(ou[0]).amount == 1

    def test_resting_order_fills_when_the_market_crosses_it(self, market):
        """Resting orders at the touch fill as makers once the market moves through one of them."""
        emu, trader, bid, ask, _ = market
        order(trader, cid=1, type="EXCHANGE LIMIT", amount="0.01", price=str(bid))
        order(trader, cid=2, type="EXCHANGE LIMIT", amount="-0.01", price=str(ask))
        trader.frames_until(tagged("on", lambda o: o[2] == 2))
        for _ in range(200):
            emu.step(10)
            if len(emu.account(DEMO_KEY).orders) < 2:
                break
        frames = trader.frames_until(tagged("oc"), timeout=5)
        assert frames[-1][2][13].startswith("EXECUTED")
        assert [f[2][8] for f in frames if f[1] == "te"] == [1] * tags(frames).count("te")  # maker


class TestOrderKinds:
    def test_post_only(self, market):
        """Post-only that would take: n SUCCESS then oc POSTONLY CANCELED; resting: FLAGS 0, META $F7."""
        _, trader, bid, ask, _ = market
        order(trader, cid=1, type="EXCHANGE LIMIT", amount="0.1", price=str(ask), flags=4096)
        assert tags(frames := trader.frames_until(tagged("oc"))) == ["n", "oc"]
        assert frames[1][2][13] == "POSTONLY CANCELED"
        order(trader, cid=2, type="EXCHANGE LIMIT", amount="0.1", price=str(bid), flags=4096 + 64)
        on = trader.frames_until(tagged("on"))[-1][2]
        assert (on[12], on[24], on[31]) == (64, 1, {"$F7": 1})

    def test_ioc(self, market):
        """IOC beyond the liquidity within its limit: fills what it can, then IOC CANCELED."""
        emu, trader, _, ask, _ = market
        depth = ask_depth(emu, ask)
        order(trader, cid=1, type="EXCHANGE IOC", amount=str(depth + 1), price=str(ask))
        oc = trader.frames_until(tagged("oc"))[-1][2]
        assert oc[13].startswith("IOC CANCELED was: PARTIALLY FILLED @") and oc[6] == 1
        assert emu.account(DEMO_KEY).orders == ()

    def test_fok(self, market):
        """FOK: killed whole when the book cannot fill it, executed whole when it can."""
        emu, trader, _, ask, _ = market
        depth = ask_depth(emu, ask)
        order(trader, cid=1, type="EXCHANGE FOK", amount=str(depth + 1), price=str(ask))
        frames = trader.frames_until(tagged("oc"))
        assert tags(frames) == ["n", "oc"] and frames[1][2][13] == "FILLORKILL CANCELED"
        assert emu.account(DEMO_KEY).wallets[("exchange", "BTC")] == 2
        order(trader, cid=2, type="EXCHANGE FOK", amount=str(depth), price=str(ask))
        assert trader.frames_until(tagged("oc"))[-1][2][13].startswith("EXECUTED")

    def test_market_order(self, market):
        """EXCHANGE MARKET sells at the best bid at once."""
        _, trader, bid, _, _ = market
        order(trader, cid=1, type="EXCHANGE MARKET", amount="-0.00000001")
        frames = trader.frames_until(tagged("oc"))
        assert tags(frames)[:2] == ["n", "on"] and frames[-1][2][13] == f"EXECUTED @ {bid}.0(-0.00000001)"

    def test_stops(self, market):
        """A buy STOP above the ask waits; one at the ask triggers: ou (MARKET, TYPE_PREV STOP) then fills."""
        emu, trader, _, ask, _ = market
        order(trader, cid=1, type="EXCHANGE STOP", amount="0.01", price=str(ask + 1000))
        waiting = trader.frames_until(tagged("on"))[-1][2][0]
        order(trader, cid=2, type="EXCHANGE STOP", amount="0.01", price=str(ask))
        frames = trader.frames_until(tagged("oc"))
        assert tags(frames)[:4] == ["n", "on", "ou", "wu"]
        assert (frames[2][2][8], frames[2][2][9]) == ("EXCHANGE MARKET", "EXCHANGE STOP")
        assert frames[-1][2][13].startswith("EXECUTED")
        order(trader, cid=3, type="EXCHANGE STOP LIMIT", amount="0.01", price=str(ask),
              price_aux_limit=str(ask - 500))
        ou = trader.frames_until(tagged("ou"))[-1][2]
        assert (ou[8], ou[16]) == ("EXCHANGE LIMIT", ask - 500)
        assert {o.id for o in emu.account(DEMO_KEY).orders} == {waiting, ou[0]}

    def test_margin_positions_and_reduce_only(self, market):
        """Margin fills open (pn), grow (pu) and close (pc) a position; reduce-only never opens or grows one."""
        emu, trader, bid, ask, _ = market
        order(trader, cid=1, type="LIMIT", amount="-0.1", price=str(bid), flags=1024)
        assert trader.frames_until(tagged("oc"))[-1][2][13] == "RSN_POS_NOTFOUND"
        order(trader, cid=2, type="MARKET", amount="0.3")
        frames = trader.frames_until(tagged("bu"))
        assert "pn" in tags(frames) and tags(frames).index("pn") < tags(frames).index("te")
        assert emu.account(DEMO_KEY).positions["tBTCUSD"].amount == Decimal("0.3")
        order(trader, cid=3, type="LIMIT", amount="0.1", price=str(ask), flags=1024)
        assert trader.frames_until(tagged("oc"))[-1][2][13] == "RSN_POS_REDUCE_INCR"
        order(trader, cid=4, type="MARKET", amount="-0.5", flags=1024)
        frames = trader.frames_until(tagged("pc"))
        assert frames[-1][2][1] == "CLOSED" and frames[-1][2][2] == 0
        oc = trader.frames_until(tagged("oc"))[-1][2]
        assert oc[13].startswith("CANCELED was: ") and oc[6] == Decimal("-0.2")
        assert emu.account(DEMO_KEY).positions == {}

    def test_ox_multi(self, market):
        """ox_multi: one ox_multi-req, then each op as if sent alone; over 15 ops is input: invalid."""
        emu, trader, bid, _, _ = market
        place = ["on", {**ON_BTC, "cid": 1, "type": "EXCHANGE LIMIT", "amount": "0.01", "price": str(bid - 100)}]
        trader.input("ox_multi", [place, ["oc", {"id": 1}]])
        frames = trader.frames_until(note("oc-req"))
        assert [f[2][1] if f[1] == "n" else f[1] for f in frames] == ["ox_multi-req", "on-req", "on", "oc-req"]
        trader.input("ox_multi", [place] * 16)
        (n,) = trader.frames_until(note("ox_multi-req"))
        assert (n[2][4], n[2][6], n[2][7]) == (None, "ERROR", "input: invalid")
        assert len(emu.account(DEMO_KEY).orders) == 1


class TestFunding:
    def test_offer_new_and_cancel(self, market):
        """fon: n fon-req + fon ACTIVE (21 fields); foc: n foc-req + foc CANCELED; too large: ERROR."""
        emu, trader, _, _, _ = market
        trader.input("fon", {"type": "LIMIT", "symbol": "fUSD", "amount": "500", "rate": "0.0003", "period": 7})
        n, fon = trader.frames_until(tagged("fon"))
        assert n[2][1] == "fon-req" and n[2][6] == "SUCCESS"
        assert len(fon[2]) == 21 and (fon[2][4], fon[2][10], fon[2][14], fon[2][15]) == (500, "ACTIVE",
                                                                                        Decimal("0.0003"), 7)
        trader.input("fon", {"type": "LIMIT", "symbol": "fUSD", "amount": "19600", "rate": "0.0003", "period": 7})
        assert trader.frames_until(note("fon-req"))[-1][2][6] == "ERROR"
        trader.input("foc", {"id": fon[2][0]})
        n, foc = trader.frames_until(tagged("foc"))
        assert n[2][1] == "foc-req" and foc[2][10] == "CANCELED"
        assert emu.account(DEMO_KEY).offers == ()
