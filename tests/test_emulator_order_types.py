"""Trailing stops, OCO pairs and time in force on the emulator, over raw sockets and through bfxsync.

The market does not tick unless a test steps it (rate 0, seed 1), so prices are read from
the emulator's book between steps. TIF expiry runs on the emulator's wall clock (its clock
thread, not market ticks): those tests set a tif one or two seconds ahead and wait for the
``oc`` with a deadline.
"""
import datetime
import time
from decimal import Decimal

import pytest
from test_emulator_trading import note, tagged, tags, world  # noqa: F401 - world is a fixture
from test_emulator_trading_orders import RICH, order

from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator, EmulatorAccount
from bfxsync.emulator.accounts import AccountLedger, WorkingOrder
from bfxsync.emulator.contingent import Contingent, trail_stop
from bfxsync.emulator.wire import number_text

from conftest import FAST, wait_until

OCO = 16384


def best(emu, side):
    """The best public bid (``side`` 0) or ask (1) of tBTCUSD."""
    levels = emu.book_view("tBTCUSD", "R0", 100)[side]
    return Decimal(number_text(levels[0][1]))


def tif_in(seconds):
    """A ``tif`` string at least ``seconds`` ahead (whole seconds, UTC) and its millisecond value."""
    moment = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=seconds + 1)
    return moment.strftime("%Y-%m-%d %H:%M:%S"), int(moment.timestamp()) * 1000


@pytest.fixture
def desk(world):  # noqa: F811 - the imported fixture
    """``(emu, trader, best_bid, best_ask)``: the rich demo account logged in, the market still."""
    start, connect = world
    emu = start(accounts=(RICH,))
    trader = connect(emu)
    trader.login()
    return emu, trader, best(emu, 0), best(emu, 1)


def refused(trader, payload, text):
    """Send an ``on``; expect only an ERROR on-req with ``text``; return its NOTIFY_INFO."""
    order(trader, **payload)
    (n,) = trader.frames_until(tagged("n"))
    assert (n[2][1], n[2][6], n[2][7]) == ("on-req", "ERROR", text)
    return n[2][4]


class TestTrailingStop:
    def test_refusals_echo_numbers(self, desk):
        """No, zero or negative price_trailing: 'price_trailing: invalid'; the echo's amount and price are numbers."""
        emu, trader, _, _ = desk
        for trailing in (None, "0", "-5", "abc"):
            payload = {"cid": 1, "type": "EXCHANGE TRAILING STOP", "amount": "-0.01", "price": "100"}
            if trailing is not None:
                payload["price_trailing"] = trailing
            info = refused(trader, payload, "price_trailing: invalid")
            assert len(info) == 32 and info[0] is None and info[2] == 1 and info[8] == "EXCHANGE TRAILING STOP"
            assert (info[6], info[16]) == (Decimal("-0.01"), 100)  # JSON numbers, not the request's strings
            assert not isinstance(info[6], str) and (info[23], info[24]) == (0, 0)
        assert trader.quiet() == [] and emu.account(DEMO_KEY).orders == ()

    @pytest.mark.parametrize("amount", ["-0.01", "0.01"])
    def test_the_stop_follows_the_market_then_triggers_a_market_order(self, desk, amount):
        """A sell's stop is the highest bid since placement less the distance (a buy's: lowest ask plus it); an ou
        announces each move; once the market reaches the stop it becomes a market order and executes.

        A stop the market reaches before it ever moves proves no trailing, so the test places
        another one until one has moved (the market is random but seeded).
        """
        emu, trader, _, _ = desk
        for cid in range(1, 30):
            if self.trail_until_triggered(emu, trader, cid, amount, Decimal(3)) > 0:
                break
        else:
            pytest.fail("no trailing stop moved before it triggered")
        assert emu.account(DEMO_KEY).orders == ()

    @staticmethod
    def trail_until_triggered(emu, trader, cid, amount, distance):
        """Place a trailing stop, step the market until it executes, checking each tick; return its moves."""
        buy = amount[0] != "-"
        side = 1 if buy else 0  # a buy stop watches the ask, a sell stop the bid
        anchor = best(emu, side)
        order(trader, cid=cid, type="EXCHANGE TRAILING STOP", amount=amount, price_trailing=str(distance))
        n, on = trader.frames_until(tagged("on"))
        assert n[2][6] == "SUCCESS" and on[2][8] == "EXCHANGE TRAILING STOP"
        stop = anchor + distance if buy else anchor - distance
        assert (on[2][16], on[2][18]) == (stop, distance)
        order_id, moves = on[2][0], 0
        for _ in range(2000):
            emu.step(1)
            price = best(emu, side)
            if (price >= stop) if buy else (price <= stop):
                break  # reached: triggered on this tick
            if (price < anchor) if buy else (price > anchor):
                anchor, stop, moves = price, price + distance if buy else price - distance, moves + 1
                ou = trader.frames_until(tagged("ou"))[-1][2]
                assert (ou[0], ou[8], ou[16]) == (order_id, "EXCHANGE TRAILING STOP", stop)
            assert emu.account(DEMO_KEY).order(order_id).price == stop
        else:
            pytest.fail("the market never reached the trailing stop")
        frames = trader.frames_until(tagged("bu"))  # a fill's frames end with the balance update
        triggered = [f[2] for f in frames if f[1] == "ou" and f[2][8] == "EXCHANGE MARKET"]
        assert triggered and triggered[0][9] == "EXCHANGE TRAILING STOP"
        (oc,) = [f[2] for f in frames if f[1] == "oc"]
        assert oc[0] == order_id and oc[13].startswith("EXECUTED @")
        assert "te" in tags(frames) and emu.account(DEMO_KEY).order(order_id) is None
        return moves

    def test_update_changes_the_distance(self, desk):
        """ou with price_trailing moves the stop to the anchor less the new distance."""
        emu, trader, bid, _ = desk
        order(trader, cid=6, type="EXCHANGE TRAILING STOP", amount="-0.01", price_trailing="50")
        order_id = trader.frames_until(tagged("on"))[-1][2][0]
        trader.input("ou", {"id": order_id, "price_trailing": "80"})
        n, ou = trader.frames_until(tagged("ou"))
        assert n[2][6] == "SUCCESS" and (ou[2][16], ou[2][18]) == (bid - 80, 80)
        trader.input("ou", {"id": order_id, "price_trailing": "0"})
        assert trader.frames_until(note("ou-req"))[-1][2][7] == "price_trailing: invalid"
        assert emu.account(DEMO_KEY).order(order_id).price_trailing == 80


class TestOco:
    def test_missing_stop_price_is_refused(self, desk):
        """Flag 16384 without price_oco_stop: 'price_oco_stop: invalid', nothing placed; OCO needs a LIMIT order."""
        emu, trader, bid, ask = desk
        info = refused(trader, {"cid": 1, "type": "EXCHANGE LIMIT", "amount": "-0.05", "price": str(ask + 100),
                                "flags": OCO}, "price_oco_stop: invalid")
        assert (info[2], info[6], info[12], info[16]) == (1, Decimal("-0.05"), OCO, ask + 100)
        refused(trader, {"cid": 2, "type": "EXCHANGE LIMIT", "amount": "-0.05", "price": str(ask + 100),
                         "flags": OCO, "price_oco_stop": "0"}, "price_oco_stop: invalid")
        refused(trader, {"cid": 3, "type": "EXCHANGE MARKET", "amount": "-0.05", "flags": OCO,
                         "price_oco_stop": str(bid - 100)}, "Invalid order: OCO needs a LIMIT order")
        assert trader.quiet() == [] and emu.account(DEMO_KEY).orders == ()

    def place_pair(self, trader, amount, price, stop, cid=7, cid_oco=8):
        order(trader, cid=cid, cid_oco=cid_oco, type="EXCHANGE LIMIT", amount=amount, price=str(price),
              price_oco_stop=str(stop), flags=OCO)
        frames = trader.frames_until(tagged("on", lambda o: o[8] == "EXCHANGE STOP"))
        assert tags(frames) == ["n", "on", "on"] and frames[0][2][6] == "SUCCESS"
        assert frames[0][2][4][25] == frames[2][2][0]  # the on-req order already names its stop leg
        return frames[1][2], frames[2][2]

    def test_the_pair_is_linked_and_holds_the_balance_once(self, desk):
        """n, on (limit), on (stop leg): each has the other's ID at PLACED_ID; the sell holds its BTC once."""
        emu, trader, bid, ask = desk
        limit, stop = self.place_pair(trader, "-0.05", ask + 100, bid - 100)
        assert (limit[25], stop[25]) == (stop[0], limit[0])
        assert (limit[2], limit[8], limit[12], limit[16], limit[19]) == (7, "EXCHANGE LIMIT", OCO, ask + 100, bid - 100)
        assert (stop[2], stop[6], stop[12], stop[13], stop[16]) == (8, Decimal("-0.05"), OCO, "ACTIVE", bid - 100)
        assert {o.id: o.placed_id for o in emu.account(DEMO_KEY).orders} == {limit[0]: stop[0], stop[0]: limit[0]}
        order(trader, cid=9, type="EXCHANGE LIMIT", amount="-1.95", price=str(ask + 500))  # 2 BTC - 0.05 held once
        assert trader.frames_until(tagged("on"))[-1][2][2] == 9

    @pytest.mark.parametrize("leg", [0, 1])
    def test_cancelling_one_leg_cancels_the_other(self, desk, leg):
        """oc of either leg: oc-req, oc of that leg, then oc CANCELED of the other."""
        emu, trader, bid, ask = desk
        pair = self.place_pair(trader, "-0.05", ask + 100, bid - 100)
        trader.input("oc", {"id": pair[leg][0]})
        frames = trader.frames_until(tagged("oc", lambda o: o[0] == pair[1 - leg][0]))
        assert tags(frames) == ["n", "oc", "oc"] and frames[1][2][0] == pair[leg][0]
        assert frames[1][2][13] == frames[2][2][13] == "CANCELED"
        assert emu.account(DEMO_KEY).orders == ()

    def test_a_filled_limit_leg_cancels_the_stop(self, desk):
        """An OCO buy whose limit crosses executes; its stop leg is cancelled after the fill."""
        emu, trader, _, ask = desk
        order(trader, cid=7, type="EXCHANGE LIMIT", amount="0.001", price=str(ask), price_oco_stop=str(ask + 1000),
              flags=OCO)
        frames = trader.frames_until(tagged("oc", lambda o: o[8] == "EXCHANGE STOP"))
        limit_oc = [f[2] for f in frames if f[1] == "oc" and f[2][8] == "EXCHANGE LIMIT"]
        assert limit_oc and limit_oc[0][13].startswith("EXECUTED @") and frames[-1][2][13] == "CANCELED"
        assert tags(frames).index("te") < len(frames) - 1 and emu.account(DEMO_KEY).orders == ()

    def test_a_partial_fill_of_the_limit_leg_cancels_the_stop(self, desk):
        """A sell taking part of a resting OCO buy: the buy stays PARTIALLY FILLED, its stop leg is cancelled."""
        emu, trader, bid, ask = desk
        limit, stop = self.place_pair(trader, "0.5", bid + 1, ask + 1000)
        order(trader, cid=20, type="EXCHANGE LIMIT", amount="-0.2", price=str(bid + 1))
        frames = trader.frames_until(tagged("oc", lambda o: o[0] == stop[0]))
        assert frames[-1][2][13] == "CANCELED"
        ou = [f[2] for f in frames if f[1] == "ou" and f[2][0] == limit[0]][-1]
        assert ou[13].startswith("PARTIALLY FILLED @") and ou[6] == Decimal("0.3")
        assert [o.id for o in emu.account(DEMO_KEY).orders] == [limit[0]]
        order(trader, cid=21, type="EXCHANGE LIMIT", amount="0.01", price=str(bid - 100))  # any later input
        trader.frames_until(tagged("on", lambda o: o[2] == 21))
        emu.step(1)
        assert limit[0] in {o.id for o in emu.account(DEMO_KEY).orders}  # the pair is settled: the limit rests on

    def test_a_triggered_stop_leg_cancels_the_limit(self, desk):
        """A sell stop leg at the best bid triggers at once: it executes at market, the limit leg is cancelled."""
        emu, trader, bid, ask = desk
        order(trader, cid=7, type="EXCHANGE LIMIT", amount="-0.001", price=str(ask + 1000), price_oco_stop=str(bid),
              flags=OCO)
        frames = trader.frames_until(tagged("oc", lambda o: o[8] == "EXCHANGE LIMIT"))
        stop_oc = [f[2] for f in frames if f[1] == "oc" and f[2][9] == "EXCHANGE STOP"]
        assert stop_oc and stop_oc[0][8] == "EXCHANGE MARKET" and stop_oc[0][13].startswith("EXECUTED @")
        assert frames[-1][2][13] == "CANCELED" and emu.account(DEMO_KEY).orders == ()

    def test_the_market_triggers_the_stop_leg(self, desk):
        """Stepping the market until the bid reaches the stop leg: the stop executes, then the limit is cancelled."""
        emu, trader, bid, ask = desk
        limit, stop = self.place_pair(trader, "-0.001", ask + 1000, bid - 2)
        for _ in range(2000):
            emu.step(1)
            if best(emu, 0) <= bid - 2:
                break
        else:
            pytest.fail("the bid never reached the stop leg")
        frames = trader.frames_until(tagged("oc", lambda o: o[0] == limit[0]))
        stop_oc = [f[2] for f in frames if f[1] == "oc" and f[2][0] == stop[0]]
        assert stop_oc and stop_oc[0][13].startswith("EXECUTED @") and frames[-1][2][13] == "CANCELED"
        assert emu.account(DEMO_KEY).orders == ()


class TestTif:
    def test_malformed_or_past_tif_is_refused(self, desk):
        """A tif that is not 'YYYY-MM-DD HH:MM:SS', not a date, or not in the future: 'tif: invalid'."""
        emu, trader, bid, _ = desk
        for tif in ("2030-01-01T00:00:00", "2030-02-30 00:00:00", 1893456000, "2020-01-01 10:45:23"):
            refused(trader, {"cid": 1, "type": "EXCHANGE LIMIT", "amount": "0.01", "price": str(bid - 100),
                             "tif": tif}, "tif: invalid")
        assert emu.account(DEMO_KEY).orders == ()

    def test_an_order_is_cancelled_at_its_tif(self, desk):
        """MTS_TIF is set from tif; at that time (the market not ticking) the order gets oc CANCELED."""
        emu, trader, bid, _ = desk
        tif, mts_tif = tif_in(1)
        order(trader, cid=1, type="EXCHANGE LIMIT", amount="0.01", price=str(bid - 100), tif=tif)
        on = trader.frames_until(tagged("on"))[-1][2]
        assert on[10] == mts_tif and emu.account(DEMO_KEY).order(on[0]).mts_tif == mts_tif
        oc = trader.frames_until(tagged("oc"), timeout=5)[-1][2]
        assert (oc[0], oc[10], oc[13]) == (on[0], mts_tif, "CANCELED")
        assert oc[5] >= mts_tif and time.time() * 1000 >= mts_tif
        assert emu.account(DEMO_KEY).orders == ()

    def test_update_sets_tif_and_an_oco_pair_expires_together(self, desk):
        """ou with tif sets MTS_TIF (a past one is refused); an OCO pair placed with a tif expires as a pair."""
        emu, trader, bid, ask = desk
        order(trader, cid=1, type="EXCHANGE LIMIT", amount="0.01", price=str(bid - 100))
        plain = trader.frames_until(tagged("on"))[-1][2][0]
        trader.input("ou", {"id": plain, "tif": "2020-01-01 10:45:23"})
        assert trader.frames_until(note("ou-req"))[-1][2][7] == "tif: invalid"
        tif, mts_tif = tif_in(1)
        trader.input("ou", {"id": plain, "tif": tif})
        assert trader.frames_until(tagged("ou"))[-1][2][10] == mts_tif
        order(trader, cid=2, type="EXCHANGE LIMIT", amount="-0.01", price=str(ask + 100),
              price_oco_stop=str(bid - 100), flags=OCO, tif=tif)
        legs = [f[2] for f in trader.frames_until(tagged("on", lambda o: o[8] == "EXCHANGE STOP")) if f[1] == "on"]
        assert [o[10] for o in legs] == [mts_tif, mts_tif]
        cancelled = {}

        def all_three(frame):
            if tagged("oc")(frame):
                cancelled[frame[2][0]] = (frame[2][13], frame[2][5])
            return len(cancelled) == 3

        trader.frames_until(all_three, timeout=5)
        assert set(cancelled) == {plain, legs[0][0], legs[1][0]}
        assert all(status == "CANCELED" and mts >= mts_tif for status, mts in cancelled.values())
        assert emu.account(DEMO_KEY).orders == ()


class TestContingentPure:
    """The bookkeeping behind the engine, without sockets."""

    @staticmethod
    def accounts_with(*orders):
        account = AccountLedger(EmulatorAccount("k", "s"), 1)
        account.orders.update((o.id, o) for o in orders)
        return {"k": account}

    @staticmethod
    def working(order_id, amount="1", **fields):
        return WorkingOrder(id=order_id, owner="k", symbol="tBTCUSD", type="EXCHANGE LIMIT", amount=Decimal(amount),
                            amount_orig=Decimal(amount), price=Decimal(100), mts_create=0, **fields)

    def test_trail_stop(self):
        """A sell trails below its anchor, a buy above; a non-trailing order is a ValueError."""
        sell = self.working(1, "-1", price_trailing=Decimal(5), trail_anchor=Decimal(100))
        buy = self.working(2, "1", price_trailing=Decimal(5), trail_anchor=Decimal(100))
        assert (trail_stop(sell), trail_stop(buy)) == (95, 105)
        with pytest.raises(ValueError):
            trail_stop(self.working(3))

    def test_due_and_next_expiry(self):
        """due() returns open orders with a tif up to now, earliest first, once; closed ones are dropped."""
        late, early, gone = (self.working(i, mts_tif=t) for i, t in ((1, 3000), (2, 1000), (3, 500)))
        timers = []
        links = Contingent(self.accounts_with(late, early), lambda: timers.append(1))
        for o in (late, early, gone):
            links.track(o)
        assert len(timers) == 3 and links.next_expiry() == 1000
        assert links.due(999) == [] and links.due(3000) == [early, late] and links.due(9999) == []
        assert not links.has_expiries and links.next_expiry() is None

    def test_orphaned_settles_a_pair_once(self):
        """A partly filled leg stays open, its other leg is reported once; a closed leg orphans the other."""
        limit, stop = self.working(1, "1"), self.working(2, "1")
        limit.placed_id, stop.placed_id = 2, 1
        accounts = self.accounts_with(limit, stop)
        links = Contingent(accounts, None)
        for leg in (limit, stop):
            links.track(leg)
        assert links.orphaned() == []
        limit.record_fill(Decimal(100), Decimal("0.4"))
        assert links.orphaned() == [stop]
        del accounts["k"].orders[stop.id]
        assert links.orphaned() == []  # the limit leg, partly filled, is left alone
        other_limit, other_stop = self.working(3), self.working(4)
        other_limit.placed_id, other_stop.placed_id = 4, 3
        accounts["k"].orders.update({4: other_stop})  # the limit leg closed
        for leg in (other_limit, other_stop):
            links.track(leg)
        assert links.orphaned() == [other_stop]


# -- through bfxsync's client ---------------------------------------------------------------------
@pytest.fixture
def emu():
    """A market that does not move on its own, with the rich demo account."""
    with Emulator(rate=0, seed=1, heartbeat_interval=1.0, accounts=(RICH,)) as emulator:
        yield emulator


def test_the_client_reads_trailing_oco_and_tif_orders(emu, make_client):
    """bfxsync places each kind, its models carry PRICE_TRAILING, PLACED_ID and MTS_TIF, and its account
    state follows the emulator: an OCO cancel removes both legs, an expired order disappears."""
    client = make_client(emu.url, FAST, api_key=DEMO_KEY, api_secret=DEMO_SECRET)
    account = client.wait_authenticated(10).account
    bid, ask = best(emu, 0), best(emu, 1)
    trailing = account.submit_order("tBTCUSD", "-0.01", type="EXCHANGE TRAILING STOP", price_trailing="25").result(10)
    assert (trailing.order_type, trailing.price_trailing, trailing.price) == ("EXCHANGE TRAILING STOP", 25, bid - 25)
    limit = account.submit_order("tBTCUSD", "-0.02", ask + 100, oco_stop_price=bid - 100).result(10)
    assert limit.flags & OCO and limit.price_aux_limit == bid - 100 and limit.placed_id
    assert wait_until(lambda: limit.placed_id in account.snapshot().orders, 5)
    stop = account.snapshot().orders[limit.placed_id]
    assert (stop.order_type, stop.placed_id, stop.price, stop.amount) == ("EXCHANGE STOP", limit.id, bid - 100,
                                                                         Decimal("-0.02"))
    assert account.cancel_order(limit.id).result(10).status_word == "CANCELED"
    assert wait_until(lambda: not {limit.id, stop.id} & set(account.snapshot().orders), 5)
    tif, mts_tif = tif_in(1)
    expiring = account.submit_order("tBTCUSD", "0.01", bid - 100, tif=tif).result(10)
    assert expiring.mts_tif == mts_tif
    assert wait_until(lambda: expiring.id not in account.snapshot().orders, 5)
    assert set(account.snapshot().orders) == {o.id for o in emu.account(DEMO_KEY).orders} == {trailing.id}
