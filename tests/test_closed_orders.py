"""How an order ended, against the emulator: the account's closed orders and the waits for a close.

A request settles at acceptance (a market order's result says ACTIVE); the closed orders keep
the exchange's final status, and ``Request.closed()`` / ``Account.wait_order_closed()`` wait
for it without missing an ``oc`` that came first, give up at their timeout, and fail at once
when the account connection drops.
"""
import json
import re
import threading
import time
from decimal import Decimal

import attrs
import pytest

from bfxsync import errors
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET

from conftest import FAST, wait_until

DEMO = {"api_key": DEMO_KEY, "api_secret": DEMO_SECRET}


def authenticated(make_client, url, config=FAST, **options):
    client = make_client(url, config, **{**DEMO, **options})
    client.wait_authenticated(10)
    return client


class Waiter:
    """``account.wait_order_closed(...)`` on a thread of the test: its result or error, and when it ended."""

    def __init__(self, account, *args, **kwargs):
        self.outcome = None
        self.ended_at = None
        self._thread = threading.Thread(target=self._run, args=(account, args, kwargs), name="test-close-waiter")
        self._thread.start()

    def _run(self, account, args, kwargs):
        try:
            self.outcome = account.wait_order_closed(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the test checks which
            self.outcome = err
        self.ended_at = time.monotonic()

    def join(self, timeout=15):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the wait did not end"
        return self.outcome


def resting_order(account, price="20000"):
    """A limit buy far under the market: it stays open."""
    return account.submit_order("tBTCUSD", "0.001", price).result(10)


class TestFinalStatus:
    def test_a_market_order_is_active_at_acceptance_and_executed_in_the_closed_list(self, emulator, make_client):
        """result() says ACTIVE (the state at acceptance); closed() says EXECUTED @ the fill price the trade had."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        trades = []
        account.on_trades(trades.append)
        request = account.submit_order("tBTCUSD", "-0.1", type="EXCHANGE MARKET")
        accepted = request.result(10)
        assert accepted.status_word == "ACTIVE"
        closed = request.closed(5)
        assert closed.known and closed.status_word == "EXECUTED" and closed.id == accepted.id
        # "EXECUTED @ P(A): was PARTIALLY FILLED @ P(A) ...": each fill, newest first, as the trades had them.
        fills = [(Decimal(p), Decimal(a)) for p, a in re.findall(r"@ ([\d.]+)\((-?[\d.]+)\)", closed.status)]
        assert fills and sum(a for _, a in fills) == Decimal("-0.1") and closed.order.amount == 0
        average = sum(p * a for p, a in fills) / Decimal("-0.1")
        assert abs(closed.order.price_avg - average) < Decimal("1e-8")
        assert wait_until(lambda: sum(m.item.exec_amount for m in trades if m.tag == "te"
                                      and m.item.order_id == closed.id) == Decimal("-0.1"), 5)
        trades_of_order = [m.item for m in trades if m.tag == "te" and m.item.order_id == closed.id]
        assert sorted((t.exec_price, t.exec_amount) for t in trades_of_order) == sorted(fills)
        assert closed.mts_closed == closed.order.mts_update and closed.mts_closed >= accepted.mts_create
        # The same close, by id and by cid, live and in the snapshot; no longer open.
        assert account.closed_order(closed.id) == closed
        assert account.closed_order(cid=request.cid, cid_date=request.cid_date) == closed
        snap = account.snapshot()
        assert snap.closed_orders[closed.id] == closed and snap.closed_order(cid=request.cid, cid_date=request.cid_date) == closed
        assert closed.id not in snap.orders

    def test_a_cancelled_order_is_canceled(self, emulator, make_client):
        """A resting order cancelled by id: CANCELED in the closed list, nothing filled."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        order = resting_order(account)
        cancel = account.cancel_order(order.id)
        closed = cancel.closed(5)
        assert (closed.status, closed.id) == ("CANCELED", order.id)
        assert closed.order.amount == closed.order.amount_orig == Decimal("0.001")
        assert account.closed_order(cid=order.cid, cid_date=order.cid_date).status == "CANCELED"

    def test_a_post_only_that_would_take_is_postonly_canceled(self, emulator, make_client):
        """A post-only sell under the bids: accepted, then cancelled by the engine: POSTONLY CANCELED, no on."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        request = account.submit_order("tBTCUSD", "-0.1", "1000", post_only=True)
        assert request.result(10).status_word == "POSTONLY CANCELED"  # its first order event is the oc
        closed = request.closed(1)
        assert closed.status == "POSTONLY CANCELED" and closed.order.amount == Decimal("-0.1")
        assert account.closed_order(closed.id) == closed and closed.id not in account.snapshot().orders

    def test_the_bound_forgets_the_oldest_close(self, emulator, make_client):
        """max_closed_orders=3 and five cancels: the last three stay, oldest first; the others are forgotten."""
        client = authenticated(make_client, emulator.url, attrs.evolve(FAST, max_closed_orders=3))
        account = client.account
        orders = [resting_order(account, str(20000 + i)) for i in range(5)]
        for order in orders:
            account.cancel_order(order.id).closed(5)
        assert list(account.snapshot().closed_orders) == [o.id for o in orders[2:]]
        for gone in orders[:2]:
            assert account.closed_order(gone.id) is None
            assert account.closed_order(cid=gone.cid, cid_date=gone.cid_date) is None
        assert account.closed_order(cid=orders[2].cid, cid_date=orders[2].cid_date).id == orders[2].id

    def test_an_order_that_closed_while_disconnected_has_an_unknown_status(self, emulator, make_client):
        """Cancelled by another client while this one could not see: after re-authentication it is listed
        as closed with status None (its last known row kept), never as a guessed CANCELED."""
        watcher = authenticated(make_client, emulator.url)
        (watcher_conn,) = emulator.authenticated_connections(DEMO_KEY)
        trader = authenticated(make_client, emulator.url)
        order = resting_order(trader.account)
        assert wait_until(lambda: order.id in watcher.account.snapshot().orders, 5)
        emulator.set_silent(True, conn=watcher_conn)  # the watcher's frames are lost from here on
        assert trader.account.cancel_order(order.id).closed(5).status == "CANCELED"
        before = int(time.time() * 1000)
        emulator.drop_connections(conn=watcher_conn)
        assert wait_until(lambda: watcher.account.closed_order(order.id) is not None, 15)
        closed = watcher.account.closed_order(order.id)
        assert (closed.status, closed.known) == (None, False) and closed.order.status_word == "ACTIVE"
        assert before <= closed.mts_closed <= int(time.time() * 1000)
        assert order.id not in watcher.account.snapshot().orders
        assert watcher.account.wait_order_closed(order.id, timeout=0.1) == closed  # already listed: at once


class TestWaits:
    def test_returns_at_once_when_the_close_already_arrived(self, emulator, make_client):
        """The oc came before the call: the closed list answers, with no wait at all."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        request = account.submit_order("tBTCUSD", "0.01", type="EXCHANGE MARKET")
        order = request.result(10)
        assert wait_until(lambda: account.closed_order(order.id) is not None, 5)
        # A 1 ms timeout: a wait that did not answer from what the account holds would raise.
        assert account.wait_order_closed(order.id, timeout=0.001).status_word == "EXECUTED"
        assert account.wait_order_closed(cid=order.cid, cid_date=order.cid_date, timeout=0.001).id == order.id
        assert request.closed(0.001).id == order.id

    def test_waits_for_a_close_that_comes_later(self, emulator, make_client):
        """A wait for a resting order returns when it is cancelled, with CANCELED, not before."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        order = resting_order(account)
        by_id = Waiter(account, order.id, timeout=15)
        by_cid = Waiter(account, cid=order.cid, cid_date=order.cid_date, timeout=15)
        assert not wait_until(lambda: by_id.ended_at or by_cid.ended_at, 0.3)  # still open: both wait
        cancelled_at = time.monotonic()
        account.cancel_order(order.id)
        assert by_id.join().status == "CANCELED" and by_cid.join().status == "CANCELED"
        assert by_id.ended_at >= cancelled_at and by_cid.outcome is by_id.outcome

    def test_times_out_on_an_order_that_stays_open(self, emulator, make_client):
        """An open order and a short timeout: BfxTimeoutError after about that long; the order is untouched."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        request = account.submit_order("tBTCUSD", "0.001", "20000")
        started = time.monotonic()
        with pytest.raises(errors.BfxTimeoutError, match="did not close within 0.3 s"):
            request.closed(0.3)
        assert 0.25 <= time.monotonic() - started < 5.0  # the timeout, not the order's life
        with pytest.raises(errors.BfxTimeoutError):
            account.wait_order_closed(request.order_id, timeout=0.2)
        assert request.order_id in account.snapshot().orders
        assert account.closed_order(request.order_id) is None

    def test_fails_at_once_when_the_connection_drops(self, emulator, make_client):
        """A drop while waiting ends the wait with NotConnectedError at once, not at its 30 s timeout."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        order = resting_order(account)
        waiter = Waiter(account, order.id, timeout=30)
        assert not wait_until(lambda: waiter.ended_at, 0.2)
        dropped_at = time.monotonic()
        emulator.drop_connections()
        error = waiter.join()
        assert isinstance(error, errors.NotConnectedError) and "ended while waiting" in str(error), error
        assert waiter.ended_at - dropped_at < 2.0
        client.wait_authenticated(15)  # back: the order is still open, and a new wait works again
        assert wait_until(lambda: order.id in account.snapshot().orders, 5)
        with pytest.raises(errors.BfxTimeoutError):
            account.wait_order_closed(order.id, timeout=0.1)

    def test_a_drop_with_the_order_in_flight_is_the_requests_own_unknown_outcome(self, emulator, make_client):
        """The connection drops with the submit in flight: closed() raises OutcomeUnknownError at once, as result() does."""
        client = authenticated(make_client, emulator.url)
        emulator.drop_after_next_input(applied=True)
        request = client.account.submit_order("tBTCUSD", "0.01", type="EXCHANGE MARKET")
        started = time.monotonic()
        with pytest.raises(errors.OutcomeUnknownError) as caught:
            request.closed(30)
        assert caught.value.cid == request.cid and time.monotonic() - started < 5.0

    def test_a_wait_while_the_connection_is_down_fails_at_once(self, emulator, make_client):
        """Not authenticated (the drop before the wait): NotConnectedError at once, unless the close is listed."""
        client = authenticated(make_client, emulator.url, attrs.evolve(FAST, backoff=attrs.evolve(
            FAST.backoff, initial=2.0, maximum=2.0)))  # the redial waits 2 s: time to call while down
        account = client.account
        order = resting_order(account)
        market = account.submit_order("tBTCUSD", "0.01", type="EXCHANGE MARKET").closed(5)
        emulator.drop_connections()
        assert wait_until(lambda: not account.authenticated, 5)
        started = time.monotonic()
        with pytest.raises(errors.NotConnectedError, match="account connection is down"):
            account.wait_order_closed(order.id, timeout=30)
        assert time.monotonic() - started < 5.0  # at once, not after the 30 s timeout
        assert account.wait_order_closed(market.id, timeout=10) == market  # listed closes answer while down

    def test_the_client_closing_ends_a_wait(self, emulator, make_client):
        """close() while a thread waits: NotConnectedError in that thread at once."""
        client = authenticated(make_client, emulator.url)
        order = resting_order(client.account)
        waiter = Waiter(client.account, order.id, timeout=30)
        assert not wait_until(lambda: waiter.ended_at, 0.2)
        closed_at = time.monotonic()
        client.close()
        assert isinstance(waiter.join(), errors.NotConnectedError)
        assert waiter.ended_at - closed_at < 5.0
        with pytest.raises(errors.NotConnectedError):
            client.account.wait_order_closed(order.id, timeout=1)

    def test_a_failed_request_raises_its_own_error(self, emulator, make_client):
        """closed() of a refused order raises the OrderError result() raises; of a multi-op, ValueError."""
        client = authenticated(make_client, emulator.url)
        with pytest.raises(errors.OrderError) as caught:
            client.account.submit_order("tBTCUSD", "1000", "30000").closed(5)
        assert caught.value.reason == "insufficient_balance"
        with pytest.raises(ValueError, match="not about one order"):
            client.account.cancel_orders(all=True).closed(5)

    def test_blocking_waits_are_refused_in_a_callback(self, emulator, make_client):
        """From a callback the waits raise CallbackThreadError (the reader would wait for itself)."""
        client = authenticated(make_client, emulator.url)
        raised = []

        @client.account.on_orders
        def on_orders(message):
            if message.tag == "oc":
                try:
                    client.account.wait_order_closed(message.item.id, timeout=1)
                except errors.CallbackThreadError as err:
                    raised.append(err)

        client.account.submit_order("tBTCUSD", "0.01", type="EXCHANGE MARKET").closed(5)
        assert wait_until(lambda: raised, 5)


class TestHostile:
    def test_an_oc_for_an_unknown_order_is_listed_and_wakes_its_wait(self, emulator, make_client):
        """A server's oc for an order this client never saw: listed with its status, open orders untouched."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        open_before = dict(account.snapshot().orders)
        waiter = Waiter(account, 987654321, timeout=15)
        assert not wait_until(lambda: waiter.ended_at, 0.2)
        row = oc_row(987654321, "EXECUTED @ 30000.0(0.5)", cid=4242)
        emulator.inject(json.dumps([0, "oc", row]))
        closed = waiter.join()
        assert closed.status == "EXECUTED @ 30000.0(0.5)" and closed.cid == 4242
        assert account.closed_order(cid=4242, cid_date=closed.cid_date) == closed
        assert dict(account.snapshot().orders) == open_before

    def test_a_duplicate_oc_changes_nothing(self, emulator, make_client):
        """The server repeats an order's oc with another status: the first close stands, listed once."""
        client = authenticated(make_client, emulator.url)
        account = client.account
        order = resting_order(account)
        first = account.cancel_order(order.id).closed(5)
        marker = resting_order(account, "20001")
        emulator.inject(json.dumps([0, "oc", oc_row(order.id, "EXECUTED @ 1.0(0.001)", cid=order.cid)]))
        account.cancel_order(marker.id).closed(5)  # frames arrive in order: the duplicate came before this close
        assert account.closed_order(order.id) == first and first.status == "CANCELED"
        assert list(account.snapshot().closed_orders) == [order.id, marker.id]


def oc_row(order_id, status, cid):
    """A 32-field ``oc`` row as the exchange sends it (mts now)."""
    mts = int(time.time() * 1000)
    return [order_id, None, cid, "tBTCUSD", mts, mts, 0, 0.5, "EXCHANGE LIMIT", None, None, None, 0, status,
            None, None, 30000, 30000, 0, 0, None, None, None, 0, 0, None, None, None, "API>BFX", None, None, None]
