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
        """reset forgets everything, snapshots received included."""
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
