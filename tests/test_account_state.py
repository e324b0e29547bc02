"""AccountState follows channel 0: snapshots replace, updates upsert, closes remove; bad frames change nothing."""
import threading
import time
from decimal import Decimal

import pytest

from bfxsync.account.models import Notification, Order, UserTrade
from bfxsync.account.state import SNAPSHOT_TAGS, AccountSnapshot, AccountState
from bfxsync.errors import ProtocolError


def order(oid, amount="0.1", status="ACTIVE", symbol="tBTCUSD", mts=1700000000000):
    """A 32-field order row."""
    return [oid, None, oid + 1000, symbol, mts, mts, amount, amount, "EXCHANGE LIMIT", None, None, None, 0, status,
            None, None, "30000", "0", 0, 0, None, None, None, 0, 0, None, None, None, "API>BFX", None, None, None]


def replaced(row, index, value):
    """A copy of ``row`` with one field changed."""
    return [value if i == index else v for i, v in enumerate(row)]


def position(symbol, amount="0.5", status="ACTIVE"):
    return [symbol, status, amount, "30000", 0, 0, None, None, None, None, None, 1, 1, 1, None, 0, None, 0, None, None]


def offer(oid, amount="100"):
    return [oid, "fUSD", 1, 1, amount, amount, "LIMIT", None, None, 0, "ACTIVE", None, None, None, "0.0002", 2, 0, 0,
            None, 0, None]


def credit(cid, pair="tBTCUSD"):
    return [cid, "fUSD", 1, 1, 1, "50", 0, "ACTIVE", "FIXED", None, None, "0.0002", 2, 1, 1, 0, 0, None, 0, None, 0, pair]


WALLET = ["exchange", "USD", "1000", 0, None, None, None]
TRADE = [738045455, "tBTCUSD", 1622169615771, 1, "0.001", 38175, "EXCHANGE LIMIT", 39000, -1, None, None, 5]


@pytest.fixture
def state():
    return AccountState()


class TestOrders:
    def test_snapshot_then_new_update_cancel(self, state):
        """os fills the book of orders; on adds, ou replaces, oc removes."""
        assert state.apply("os", [order(1), order(2)])[0] == "orders"
        assert set(state.snapshot().orders) == {1, 2}
        stream, models, is_snapshot = state.apply("on", order(3))
        assert (stream, is_snapshot, models[0].id) == ("orders", False, 3)
        state.apply("ou", order(3, amount="0.05", status="PARTIALLY FILLED @ 30000.0(0.05)"))
        assert state.snapshot().orders[3].amount == Decimal("0.05")
        stream, models, _ = state.apply("oc", order(2, status="CANCELED"))
        assert models[0].status_word == "CANCELED"
        assert sorted(state.snapshot().orders) == [1, 3]
        assert [o.id for o in state.snapshot().open_orders()] == [1, 3]

    def test_snapshot_returns_every_order(self, state):
        """The apply result of a snapshot carries every parsed order and says it is a snapshot."""
        stream, models, is_snapshot = state.apply("os", [order(1), order(2)])
        assert (stream, is_snapshot) == ("orders", True)
        assert all(isinstance(m, Order) for m in models) and len(models) == 2

    def test_empty_snapshot_clears(self, state):
        """An empty os (after a DMS cancel, say) clears the orders but counts as received."""
        state.apply("os", [order(1)])
        assert state.apply("os", []) == ("orders", (), True)
        assert dict(state.snapshot().orders) == {} and "os" in state.snapshot().snapshots_received

    def test_snapshot_replaces(self, state):
        """A second os replaces the first entirely."""
        state.apply("os", [order(1), order(2)])
        state.apply("os", [order(5)])
        assert list(state.snapshot().orders) == [5]

    def test_cancel_of_unknown_order(self, state):
        """oc for an order never seen (filled at once, no on) is returned and leaves state alone."""
        before = state.snapshot()
        stream, models, _ = state.apply("oc", order(9, status="EXECUTED @ 30000.0(0.1)"))
        assert stream == "orders" and models[0].id == 9 and state.snapshot().orders == before.orders

    def test_open_orders_by_symbol(self, state):
        """open_orders filters by symbol, oldest first."""
        state.apply("os", [order(2, symbol="tETHUSD", mts=5), order(1, mts=9), order(3, mts=1)])
        assert [o.id for o in state.snapshot().open_orders("tBTCUSD")] == [3, 1]


class TestOtherStreams:
    def test_positions(self, state):
        """Positions are keyed by symbol; pc removes."""
        state.apply("ps", [position("tBTCUSD"), position("tETHUSD")])
        state.apply("pn", position("tLTCUSD"))
        state.apply("pu", position("tBTCUSD", amount="0.7"))
        assert state.apply("pc", position("tETHUSD", status="CLOSED"))[0] == "positions"
        snap = state.snapshot()
        assert sorted(snap.positions) == ["tBTCUSD", "tLTCUSD"] and snap.positions["tBTCUSD"].amount == Decimal("0.7")

    def test_wallets(self, state):
        """Wallets are keyed by (type, currency); wu replaces one; 4-field rows work."""
        assert state.apply("ws", [WALLET, ["margin", "BTC", 1, 0]])[2] is True
        state.apply("wu", ["exchange", "USD", "900", 0, "850", "Trading fees", {"reason": "TRADE"}])
        snap = state.snapshot()
        assert snap.wallet("exchange", "USD").balance_available == Decimal(850)
        assert snap.wallets[("margin", "BTC")].balance == 1 and snap.wallet("funding", "USD") is None

    def test_balance_margin_funding_info(self, state):
        """bu, miu base, miu sym and fiu are stored under their own attributes."""
        assert state.apply("bu", ["1000", "990"])[0] == "balance"
        assert state.apply("miu", ["base", [1, 2, 3, 4, 5]])[0] == "margin"
        stream, models, _ = state.apply("miu", ["sym", "tBTCUSD", [1, 2, 3, 4, None, None, None, None]])
        assert stream == "margin" and models[0].symbol == "tBTCUSD"
        assert state.apply("fiu", ["sym", "fUSD", [1, 2, 3, 4]])[0] == "funding_info"
        snap = state.snapshot()
        assert (snap.balance.aum, snap.margin.margin_min) == (Decimal(1000), Decimal(5))
        assert snap.symbol_margin["tBTCUSD"].sell == Decimal(4) and snap.funding_info["fUSD"].duration_lend == 4

    def test_funding_offers_credits_loans(self, state):
        """fos/fon/fou/foc, fcs/.../fcc and fls/.../flc keep their maps by id."""
        state.apply("fos", [offer(1), offer(2)])
        state.apply("fou", offer(2, amount="50"))
        state.apply("foc", offer(1))
        state.apply("fcs", [credit(7)])
        state.apply("fcn", credit(8))
        state.apply("fcc", credit(7))
        state.apply("fls", [credit(9)[:21]])
        state.apply("flu", credit(9)[:21])
        state.apply("fln", credit(10)[:21])
        state.apply("flc", credit(10)[:21])
        snap = state.snapshot()
        assert list(snap.funding_offers) == [2] and snap.funding_offers[2].amount == Decimal(50)
        assert list(snap.funding_credits) == [8] and snap.funding_credits[8].position_pair == "tBTCUSD"
        assert list(snap.funding_loans) == [9]
        assert snap.snapshots_received == {"fos", "fcs", "fls"}

    @pytest.mark.parametrize("tag, row, stream, cls", [
        ("te", TRADE, "trades", UserTrade),
        ("tu", TRADE, "trades", UserTrade),
        ("n", [1, "on-req", None, None, None, None, "ERROR", "amount: invalid"], "notifications", Notification),
    ])
    def test_passing_streams_are_not_stored(self, state, tag, row, stream, cls):
        """Trades and notifications are returned but leave the snapshot as it was."""
        before = state.snapshot()
        got_stream, models, is_snapshot = state.apply(tag, row)
        assert (got_stream, is_snapshot, type(models[0])) == (stream, False, cls)
        assert state.snapshot() is before

    def test_funding_trades(self, state):
        """fte/ftu are returned as funding trades."""
        assert state.apply("ftu", [1, "fUSD", 1, 2, "10", "0.0002", 2, 1])[0] == "funding_trades"

    @pytest.mark.parametrize("tag", ["hos", "mis", "hfos", "hfcs", "hfls", "hfts", "uac", "hb", "xyz"])
    def test_unknown_tags(self, state, tag):
        """Unknown tags change nothing."""
        before = state.snapshot()
        assert state.apply(tag, [[1, 2, 3]]) == ("unknown", (), False)
        assert state.snapshot() is before


class TestConsistency:
    @pytest.mark.parametrize("tag, payload", [
        ("bu", [1]),
        ("miu", ["other", [1, 2, 3, 4]]),
        ("miu", []),
        ("miu", None),
        ("fiu", ["sym", "fUSD"]),
        ("te", TRADE[:3]),
        ("n", [1]),
    ])
    def test_malformed_leaves_state_unchanged(self, state, tag, payload):
        """A malformed payload of a stream that is not keyed raises ProtocolError; the snapshot stays the same object."""
        state.apply("os", [order(1)])
        state.apply("ws", [WALLET])
        before = state.snapshot()
        with pytest.raises(ProtocolError):
            state.apply(tag, payload)
        assert state.snapshot() is before

    @pytest.mark.parametrize("tag, payload", [
        ("on", [order(5)]),                  # a snapshot shape where an update belongs
        ("ou", None),
        ("oc", replaced(order(1), 0, "1e1000000")),
        ("pu", ["tBTCUSD"]),
        ("wu", ["exchange", "USD", "NaN"]),
        ("fcu", credit(1)[:5]),
        ("os", None),                        # a snapshot that is no list at all
        ("ws", {"exchange": 1}),
    ])
    def test_malformed_update_marks_its_stream_damaged(self, state, tag, payload):
        """An unreadable update raises ProtocolError, changes no row, and names its tag in damaged (a row may be stale)."""
        state.apply("os", [order(1)])
        state.apply("ws", [WALLET])
        before = state.snapshot()
        with pytest.raises(ProtocolError):
            state.apply(tag, payload)
        after = state.snapshot()
        assert after.damaged == {tag} and before.damaged == frozenset()
        assert (after.orders, after.wallets, after.positions, after.funding_credits) == \
            (before.orders, before.wallets, before.positions, before.funding_credits)
        assert state.counts["account_bad_rows"] == 0  # rows of snapshots only; updates are bad frames

    def test_snapshots_are_read_only_and_stable(self, state):
        """A snapshot is immutable and does not change when the state moves on."""
        state.apply("os", [order(1)])
        old = state.snapshot()
        with pytest.raises(TypeError):
            old.orders[2] = old.orders[1]
        with pytest.raises(AttributeError):
            old.orders = {}
        state.apply("on", order(2))
        state.apply("oc", order(1))
        assert list(old.orders) == [1] and list(state.snapshot().orders) == [2]

    def test_reset(self, state):
        """reset forgets the live state, snapshots received included (closed orders are history: see TestClosedOrders)."""
        state.apply("os", [order(1)])
        state.apply("bu", [1, 1])
        state.reset()
        assert state.snapshot() == AccountSnapshot()
        assert state.snapshot().snapshots_received == frozenset()

    def test_snapshots_received(self, state):
        """Each snapshot tag is remembered once it arrives."""
        for tag, payload in (("os", []), ("ps", []), ("ws", []), ("fos", []), ("fcs", []), ("fls", [])):
            assert state.apply(tag, payload)[2] is True
        assert state.snapshot().snapshots_received == SNAPSHOT_TAGS

    def test_reader_never_sees_a_torn_state(self, state):
        """Readers on other threads always see whole snapshots while the writer applies frames.

        Generation k is an os of k orders, each with amount k, followed by ou updates that move one
        order at a time to the next generation's id space; an in-place update would let a reader see
        a mix of generations or fail with "dictionary changed size during iteration".
        """
        done = threading.Event()
        problems = []
        reads = []

        def read():
            count = 0
            try:
                while not done.is_set() or count == 0:
                    snap = state.snapshot()
                    orders = list(snap.orders.values())
                    if orders and any(o.amount != len(orders) for o in orders):
                        problems.append(sorted((o.id, o.amount) for o in orders))
                    if orders and "os" not in snap.snapshots_received:
                        problems.append("orders without the os that brought them")
                    list(snap.wallets.items())
                    count += 1
            except Exception as err:  # a torn read shows up here
                problems.append(repr(err))
            reads.append(count)

        readers = [threading.Thread(target=read, name=f"reader-{i}") for i in range(3)]
        try:
            for r in readers:
                r.start()
            for k in range(1, 400):
                state.apply("os", [order(i, amount=str(k)) for i in range(1, k + 1)])
                state.apply("wu", ["exchange", f"C{k % 7}", k, 0])
        finally:
            done.set()
            for r in readers:
                r.join(10)
        assert not any(r.is_alive() for r in readers)
        assert not problems, problems[:3]
        assert len(reads) == 3 and all(count > 0 for count in reads)


class TestBadRows:
    BAD = {  # one unreadable row per snapshot tag
        "os": replaced(order(9), 16, "NaN"),
        "ps": position("tETHUSD", amount="NaN"),
        "ws": ["exchange", "BTC", "NaN"],
        "fos": offer(9, amount="Infinity"),
        "fcs": replaced(credit(9), 0, "1e1000000"),
        "fls": [9],
    }
    GOOD = {"os": order(1), "ps": position("tBTCUSD"), "ws": WALLET, "fos": offer(1), "fcs": credit(1),
            "fls": credit(1)[:21]}
    ATTRIBUTE = {"os": "orders", "ps": "positions", "ws": "wallets", "fos": "funding_offers",
                 "fcs": "funding_credits", "fls": "funding_loans"}

    def test_one_nan_price_in_a_1000_order_snapshot(self, state, caplog):
        """The issue's case: 999 good orders are kept, the bad one counted, the state marked damaged."""
        rows = [order(i) for i in range(1, 1001)]
        rows[500] = replaced(rows[500], 16, "NaN")
        with caplog.at_level("WARNING", logger="bfxsync"):
            stream, models, is_snapshot = state.apply("os", rows)
        assert (stream, len(models), is_snapshot) == ("orders", 999, True)
        snap = state.snapshot()
        assert len(snap.orders) == 999 and 501 not in snap.orders and snap.damaged == {"os"}
        assert "os" in snap.snapshots_received and state.counts["account_bad_rows"] == 1
        assert len(caplog.records) == 1 and "1 of 1000 rows unreadable" in caplog.records[0].getMessage()

    @pytest.mark.parametrize("tag", sorted(BAD))
    def test_every_snapshot_keeps_its_good_rows(self, state, tag):
        """ps, ws, fos, fcs and fls alike: good rows kept, bad ones counted, the tag marked damaged."""
        stream, models, _ = state.apply(tag, [self.GOOD[tag], self.BAD[tag], self.GOOD[tag]])
        snap = state.snapshot()
        assert len(models) == 2 and len(getattr(snap, self.ATTRIBUTE[tag])) == 1 and stream == self.ATTRIBUTE[tag]
        assert snap.damaged == {tag} and state.counts["account_bad_rows"] == 1

    def test_counted_always_logged_once(self, state, caplog):
        """Later bad rows are counted, not logged again."""
        with caplog.at_level("WARNING", logger="bfxsync"):
            state.apply("os", [self.BAD["os"], self.BAD["os"], order(1)])
            state.apply("ws", [self.BAD["ws"]])
        assert state.counts["account_bad_rows"] == 3 and len(caplog.records) == 1
        assert state.snapshot().damaged == {"os", "ws"}

    def test_reset_makes_whole_but_keeps_the_count(self, state):
        """A reset (before re-authenticating) clears the damage; the counter is the client's history."""
        state.apply("os", [self.BAD["os"]])
        state.reset()
        assert state.snapshot().damaged == frozenset() and state.damaged == frozenset()
        assert state.counts["account_bad_rows"] == 1

    def test_counts_go_to_the_given_dict(self):
        """The client's stats dict receives the counter."""
        counts = {"other": 1}
        AccountState(counts).apply("os", [self.BAD["os"]])
        assert counts == {"other": 1, "account_bad_rows": 1}


class TestCostPerEvent:
    @staticmethod
    def per_event(size):
        """Best seconds per on/ou/oc event with ``size`` orders held (copies of the whole map would show)."""
        state = AccountState()
        state.apply("os", [order(i) for i in range(1, size + 1)])
        rows = [order(size + i) for i in range(1, 301)]
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for row in rows:
                state.apply("on", row)
                state.apply("ou", row)
                state.apply("oc", row)
            best = min(best, (time.perf_counter() - started) / (3 * len(rows)))
        return best

    def test_an_order_event_costs_the_same_whatever_the_account_size(self):
        """50,000 orders: an event costs about what it costs with 100 (it was 4 ms: the whole map copied)."""
        small, large = self.per_event(100), self.per_event(50_000)
        assert large < 3 * small + 20e-6, (small, large)

    def test_a_read_copies_only_after_a_change(self, state):
        """snapshot() twice without a change is the same object; a change gives a new one with it."""
        state.apply("os", [order(i) for i in range(1, 1001)])
        first = state.snapshot()
        assert state.snapshot() is first
        state.apply("oc", order(7))
        second = state.snapshot()
        assert second is not first and 7 in first.orders and 7 not in second.orders and len(second.orders) == 999

    def test_readers_see_whole_prefixes_of_the_writers_updates(self, state):
        """Per-key updates under the lock: a reader sees wallet k only with orders 1..k (each on precedes its wu)."""
        done = threading.Event()
        problems = []

        def read():
            try:
                while not done.is_set():
                    snap = state.snapshot()
                    wallet = snap.wallet("exchange", "USD")
                    k = int(wallet.balance) if wallet else 0
                    ids = set(snap.orders)
                    if not set(range(1, k + 1)) <= ids or len(ids) > k + 1:
                        problems.append((k, len(ids)))
            except Exception as err:  # noqa: BLE001 - a torn read shows up here
                problems.append(repr(err))

        readers = [threading.Thread(target=read, name=f"reader-{i}") for i in range(3)]
        try:
            for r in readers:
                r.start()
            for k in range(1, 3001):
                state.apply("on", order(k))
                state.apply("wu", ["exchange", "USD", k, 0])
        finally:
            done.set()
            for r in readers:
                r.join(10)
        assert not any(r.is_alive() for r in readers)
        assert not problems, problems[:3]


def closed_row(oid, status, mts_update=1700000005000, amount="0", cid=None, mts=1700000000000):
    """The ``oc`` row of order ``oid``: its final status and update time (cid ``oid + 1000`` unless given)."""
    row = replaced(replaced(order(oid, amount=amount, status=status, mts=mts), 5, mts_update), 7, "0.1")
    return replaced(row, 2, cid) if cid is not None else row


class TestClosedOrders:
    def test_oc_moves_the_order_to_the_closed_list_with_its_status_and_time(self, state):
        """oc: gone from the open orders, listed with the exchange's status text, the update time and the final row."""
        state.apply("os", [order(1), order(2)])
        state.apply("oc", closed_row(1, "EXECUTED @ 30000.5(0.1)", mts_update=1700000001234))
        snap = state.snapshot()
        assert list(snap.orders) == [2] and list(snap.closed_orders) == [1]
        closed = snap.closed_orders[1]
        assert (closed.status, closed.status_word, closed.known) == ("EXECUTED @ 30000.5(0.1)", "EXECUTED", True)
        assert closed.mts_closed == 1700000001234 and closed.order.amount == 0 and closed.order.amount_orig == Decimal("0.1")
        assert (closed.id, closed.cid, closed.cid_date) == (1, 1001, "2023-11-14")

    def test_lookups_by_id_and_by_cid_with_its_date(self, state):
        """closed_order(id) and closed_order(cid=, cid_date=) (str or date) find it, on the snapshot and live."""
        import datetime

        state.apply("oc", closed_row(7, "CANCELED"))
        snap = state.snapshot()
        for find in (snap.closed_order, state.find_closed):
            assert find(7).status == "CANCELED"
            assert find(cid=1007, cid_date="2023-11-14").id == 7
            assert find(cid=1007, cid_date=datetime.date(2023, 11, 14)).id == 7
            assert find(8) is None and find(cid=1007, cid_date="2023-11-15") is None
            assert find(cid=1, cid_date="2023-11-14") is None

    @pytest.mark.parametrize("args, kwargs, message", [
        ((), {}, "give the order id, or both cid and cid_date"),
        ((), {"cid": 1}, "give the order id, or both"),
        ((1,), {"cid": 1, "cid_date": "2023-11-14"}, "not both"),
        (("1",), {}, "order_id must be an int"),
        ((), {"cid": 1, "cid_date": "14/11/2023"}, "cid_date must be a date"),
    ])
    def test_a_lookup_without_a_usable_key_is_refused(self, state, args, kwargs, message):
        """Wrong lookup arguments raise ValueError naming the problem (snapshot and live alike)."""
        for find in (state.snapshot().closed_order, state.find_closed):
            with pytest.raises(ValueError, match=message):
                find(*args, **kwargs)

    def test_an_oc_for_an_unknown_order_is_listed_and_leaves_the_open_orders_alone(self, state):
        """oc without on (filled at once, or another connection's order before our snapshot): listed all the same."""
        state.apply("os", [order(1)])
        before = state.snapshot()
        stream, models, _ = state.apply("oc", closed_row(9, "EXECUTED @ 30000.0(0.1)"))
        snap = state.snapshot()
        assert (stream, models[0].id) == ("orders", 9)
        assert snap.orders == before.orders and snap.closed_orders[9].status_word == "EXECUTED"

    def test_a_duplicate_oc_changes_nothing(self, state):
        """A repeated oc (even with another status) neither replaces, reorders nor evicts: the first report stands."""
        state = AccountState(max_closed=2)
        told = []
        state.on_close = told.append
        state.apply("oc", closed_row(1, "CANCELED"))
        state.apply("oc", closed_row(2, "EXECUTED @ 1(0.1)"))
        first = state.snapshot()
        state.apply("oc", closed_row(1, "EXECUTED @ 2(0.1)"))
        assert state.snapshot() is first  # nothing changed, not even a new copy
        assert [(c.id, c.status) for c in first.closed_orders.values()] == [(1, "CANCELED"), (2, "EXECUTED @ 1(0.1)")]
        assert [c.id for c in told] == [1, 2]

    def test_the_bound_evicts_the_oldest_close_and_its_cid(self, state):
        """max_closed=3 and 5 closes: the last 3 stay, in close order; the evicted are found neither by id nor by cid."""
        state = AccountState(max_closed=3)
        for oid in range(1, 6):
            state.apply("oc", closed_row(oid, "CANCELED"))
        snap = state.snapshot()
        assert list(snap.closed_orders) == [3, 4, 5]
        for find in (snap.closed_order, state.find_closed):
            assert find(1) is None and find(cid=1002, cid_date="2023-11-14") is None
            assert find(cid=1003, cid_date="2023-11-14").id == 3

    def test_evicting_an_old_order_keeps_a_newer_one_with_the_same_cid(self):
        """Two orders with one cid and date (the exchange does not stop it): evicting the older keeps the newer findable."""
        state = AccountState(max_closed=2)
        state.apply("oc", closed_row(1, "CANCELED", cid=55))
        state.apply("oc", closed_row(2, "CANCELED", cid=55))
        assert state.find_closed(cid=55, cid_date="2023-11-14").id == 2
        assert state.snapshot().closed_order(cid=55, cid_date="2023-11-14").id == 2
        state.apply("oc", closed_row(3, "CANCELED"))  # evicts 1
        assert state.find_closed(cid=55, cid_date="2023-11-14").id == 2

    def test_the_bound_must_be_positive(self):
        with pytest.raises(ValueError, match="max_closed must be from 1"):
            AccountState(max_closed=0)

    def test_orders_gone_from_the_snapshot_after_a_reset_close_with_an_unknown_status(self, state):
        """Open before the re-authentication, missing from the fresh os, no oc: listed with status None, not guessed."""
        state.apply("os", [order(1), order(2), order(3, amount="0.05", status="PARTIALLY FILLED @ 30000.0(0.05)")])
        state.apply("oc", closed_row(2, "CANCELED"))
        state.reset()
        assert list(state.snapshot().closed_orders) == [2]  # history survives the reset
        started = int(time.time() * 1000)
        state.apply("os", [order(1)])
        snap = state.snapshot()
        assert list(snap.orders) == [1] and list(snap.closed_orders) == [2, 3]
        unseen = snap.closed_orders[3]
        assert (unseen.status, unseen.known, unseen.status_word) == (None, False, "")
        assert unseen.order.status_word == "PARTIALLY FILLED" and unseen.order.amount == Decimal("0.05")  # the last known row
        assert started <= unseen.mts_closed <= int(time.time() * 1000)
        state.reset()
        state.apply("os", [])
        assert snap.closed_orders.keys() <= state.snapshot().closed_orders.keys()  # the orphans are told once
        assert list(state.snapshot().closed_orders) == [2, 3, 1]

    def test_a_late_oc_replaces_an_unknown_close_in_place(self, state):
        """The exchange's word beats "unknown": an oc for an order listed with status None fills the status in."""
        state.apply("os", [order(1), order(2)])
        state.apply("os", [])  # a second os without them (no reset): both closed unseen
        state.apply("oc", closed_row(1, "CANCELED was: PARTIALLY FILLED @ 30000.0(0.01)"))
        closed = state.snapshot().closed_orders
        assert list(closed) == [1, 2] and closed[1].status_word == "CANCELED" and closed[2].status is None

    def test_an_unreadable_row_does_not_close_its_order(self, state):
        """A fresh os whose row for an open order cannot be read: the order is damaged, never called closed."""
        state.apply("os", [order(1), order(2)])
        state.reset()
        state.apply("os", [order(1), replaced(order(2), 16, "NaN")])
        assert dict(state.snapshot().closed_orders) == {} and state.snapshot().damaged == {"os"}

    def test_an_unreadable_oc_lists_nothing(self, state):
        """An oc that cannot be read marks the orders damaged and lists no close."""
        state.apply("os", [order(1)])
        with pytest.raises(ProtocolError):
            state.apply("oc", replaced(closed_row(1, "CANCELED"), 6, "NaN"))
        assert dict(state.snapshot().closed_orders) == {} and 1 in state.snapshot().orders

    def test_snapshots_of_the_closed_orders_are_read_only_and_stable(self, state):
        state.apply("oc", closed_row(1, "CANCELED"))
        old = state.snapshot()
        with pytest.raises(TypeError):
            old.closed_orders[2] = old.closed_orders[1]
        state.apply("oc", closed_row(2, "CANCELED"))
        assert list(old.closed_orders) == [1] and list(state.snapshot().closed_orders) == [1, 2]

    def test_a_reader_sees_every_order_open_or_closed(self, state):
        """oc removes and lists in one step: a reader never sees an order that is in neither map."""
        done = threading.Event()
        problems = []

        def read():
            while not done.is_set():
                snap = state.snapshot()
                wallet = snap.wallet("exchange", "USD")
                k = int(wallet.balance) if wallet else 0  # orders 1..k were placed before this wallet update
                missing = [i for i in range(max(1, k - 50), k + 1) if i not in snap.orders and i not in snap.closed_orders]
                if missing:
                    problems.append(missing)

        reader = threading.Thread(target=read, name="closed-reader")
        reader.start()
        try:
            for k in range(1, 2001):
                state.apply("on", order(k))
                state.apply("wu", ["exchange", "USD", k, 0])
                state.apply("oc", closed_row(k, "CANCELED"))
        finally:
            done.set()
            reader.join(10)
        assert not reader.is_alive() and not problems, problems[:3]
