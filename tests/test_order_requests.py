"""Every order request settles with its own answer, exactly once, against the emulator's trading account.

Several requests about one order in flight, two clients on one key with one cid, a duplicate
cid, deadlines, inputs that never left, and a drop racing with order entry.
"""
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


def outcome(request, timeout=10):
    """The request's result, or its error (the type and the instance)."""
    try:
        return request.result(timeout)
    except errors.BfxError as err:
        return err


def emulator_order(emulator, **fields):
    """The emulator's open orders that have all of ``fields``."""
    return [o for o in emulator.account(DEMO_KEY).orders if all(getattr(o, k) == v for k, v in fields.items())]


def test_two_clients_on_one_key_with_one_cid_each_get_their_own_order(emulator, make_client):
    """Same cid, same millisecond, different orders: neither takes the other's answer."""
    first = authenticated(make_client, emulator.url)
    second = authenticated(make_client, emulator.url)
    emulator.set_input_delay(0.2)  # both in flight together; each connection's events reach both clients
    cid = 424242
    a = first.account.submit_order("tBTCUSD", "0.001", "1000", cid=cid)
    b = second.account.submit_order("tBTCUSD", "0.002", "2000", cid=cid)
    mine, theirs = a.result(10), b.result(10)
    assert (mine.cid, mine.amount, mine.price) == (cid, Decimal("0.001"), Decimal("1000"))
    assert (theirs.cid, theirs.amount, theirs.price) == (cid, Decimal("0.002"), Decimal("2000"))
    assert mine.id != theirs.id
    assert first.stats()["requests_in_flight"] == second.stats()["requests_in_flight"] == 0


def test_a_cid_already_in_flight_is_refused_before_sending(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    emulator.set_input_delay(0.5)
    first = client.account.submit_order("tBTCUSD", "0.001", "1100", cid=777)
    with pytest.raises(ValueError, match="cid 777 is already in flight"):
        client.account.submit_order("tBTCUSD", "0.001", "1200", cid=777)
    assert first.result(10).price == Decimal("1100")
    assert len(emulator_order(emulator, cid=777)) == 1  # the refused one never left
    # Once answered, the cid may be used again (the exchange's rule is per day, not ours to enforce).
    assert client.account.submit_order("tBTCUSD", "0.001", "1200", cid=777).result(10).price == Decimal("1200")


def test_two_updates_of_one_order_each_get_their_own_answer(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    order = client.account.submit_order("tBTCUSD", "0.001", "20000").result(10)
    emulator.set_input_delay(0.1)
    first = client.account.update_order(order.id, price="21000")
    second = client.account.update_order(order.id, price="22000")
    assert first.result(10).price == Decimal("21000")
    assert second.result(10).price == Decimal("22000")


def test_two_cancels_one_cancels_and_the_other_is_refused(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    order = client.account.submit_order("tBTCUSD", "0.001", "20000").result(10)
    emulator.set_input_delay(0.1)
    first = client.account.cancel_order(order.id)
    second = client.account.cancel_order(order.id)
    assert first.result(10).status_word == "CANCELED"
    with pytest.raises(errors.OrderError, match="Order not found"):
        second.result(10)


def test_cancel_by_cid_while_the_submit_is_in_flight(emulator, make_client):
    """The documented way to cancel an order whose id you do not have yet: both requests settle."""
    client = authenticated(make_client, emulator.url)
    emulator.set_input_delay(0.1)
    submit = client.account.submit_order("tBTCUSD", "0.001", "20000")
    cancel = client.account.cancel_order(cid=submit.cid, cid_date=submit.cid_date)
    placed = submit.result(10)
    assert placed.cid == submit.cid and placed.price == Decimal("20000")
    cancelled = cancel.result(10)
    assert cancelled.id == placed.id and cancelled.status_word == "CANCELED"
    assert submit.order_id == placed.id and submit.cid_date == placed.cid_date
    assert client.stats()["requests_in_flight"] == 0


def test_a_request_without_an_answer_ends_at_its_deadline_and_is_reconciled(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    reconciled = []
    client.on_order_reconciled(reconciled.append)
    emulator.set_input_delay(5.0)  # the answer comes long after the deadline
    request = client.account.submit_order("tBTCUSD", "0.001", "20000", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(errors.OutcomeUnknownError, match="no answer") as caught:
        request.result(10)
    assert time.monotonic() - started < 4.5  # the deadline plus a sweep, not the late answer (5 s)
    assert caught.value.cid == request.cid and client.stats()["requests_in_flight"] == 0
    # The late answer changes nothing for the request; the order is found by reconciliation.
    assert wait_until(lambda: emulator_order(emulator, cid=request.cid), 15)
    emulator.set_input_delay(0)
    emulator.drop_connections()
    assert wait_until(lambda: reconciled, 10)
    assert reconciled[0].cid == request.cid and request.exception() is caught.value


def test_three_inputs_held_by_the_pacer_when_the_connection_drops(emulator, make_client):
    """The one sent is settled (or outcome-unknown); the two never sent fail as not sent; one order exists."""
    config = attrs.evolve(FAST, input_rate=0.5, input_burst=1)
    client = authenticated(make_client, emulator.url, config)
    requests = [client.account.submit_order("tBTCUSD", "0.001", str(20000 + i)) for i in range(3)]
    assert wait_until(lambda: emulator_order(emulator, cid=requests[0].cid), 5)  # the first left at once
    emulator.drop_connections()
    first, *others = [outcome(r) for r in requests]
    assert isinstance(first, errors.OutcomeUnknownError) or first.cid == requests[0].cid
    assert all(isinstance(r, errors.NotSentError) for r in others), others
    client.wait_authenticated(10)  # a new connection: nothing held back leaves on it
    later = client.account.submit_order("tBTCUSD", "0.001", "19000")  # the pacer lets it go in its turn
    assert later.result(10).cid == later.cid
    assert sorted(o.cid for o in emulator.account(DEMO_KEY).orders) == sorted([requests[0].cid, later.cid])
    assert client.stats()["requests_in_flight"] == 0


def test_close_leaves_no_request_pending(emulator, make_client):
    client = authenticated(make_client, emulator.url, attrs.evolve(FAST, input_rate=0.5, input_burst=1))
    emulator.set_input_delay(5.0)
    requests = [client.account.submit_order("tBTCUSD", "0.001", str(20000 + i)) for i in range(3)]
    client.close()
    assert all(r.done for r in requests)
    assert isinstance(requests[0].exception(), errors.OutcomeUnknownError)
    assert all(isinstance(r.exception(), errors.NotSentError) for r in requests[1:])


def test_order_entry_racing_with_drops_never_sends_an_input_twice_or_late(emulator, make_client):
    """Four threads place orders while the connection drops: every request ends once, and an input
    that failed as never sent is not at the exchange (it did not leave on a later connection)."""
    client = authenticated(make_client, emulator.url, attrs.evolve(FAST, input_rate=50, input_burst=5))
    requests, refused = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def place(worker):
        n = 0
        while not stop.is_set():
            n += 1
            try:
                request = client.account.submit_order("tBTCUSD", "0.001", str(10000 + worker * 1000 + n % 1000))
            except errors.NotAuthenticatedError:
                refused.append(worker)
                wait_until(lambda: client.account.authenticated or stop.is_set(), 5)
                continue
            with lock:
                requests.append(request)

    threads = [threading.Thread(target=place, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            assert wait_until(lambda: len(requests) > 20, 10)
            emulator.drop_connections()
            client.wait_authenticated(10)
            with lock:
                placed_before = len(requests)
            assert wait_until(lambda before=placed_before: len(requests) > before + 10, 10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    results = {id(r): outcome(r, 15) for r in requests}
    assert all(r.done for r in requests) and client.stats()["requests_in_flight"] == 0
    placed = {o.cid for o in emulator.account(DEMO_KEY).orders}
    not_sent = [r for r in requests if isinstance(results[id(r)], errors.NotSentError)]
    settled = [r for r in requests if not isinstance(results[id(r)], errors.BfxError)]
    assert not [r.cid for r in not_sent if r.cid in placed], "an input that failed as never sent was executed"
    assert all(r.cid in placed for r in settled)
    assert len({r.cid for r in requests}) == len(requests)  # generated cids never repeat


@pytest.mark.parametrize("text,reason", [
    ("Invalid order: not enough exchange balance for 10 BTC at 20000", "insufficient_balance"),
    ("Invalid order: not enough tradable balance for 1 BTCUSD at 20000", "insufficient_balance"),
    ("Invalid order: minimum size for BTC/USD is 0.002", "minimum_size"),
    ("Order not found.", "not_found"),
    ("amount: invalid", "invalid_amount"),
    ("price: invalid", "invalid_price"),
    ("price_aux_limit: invalid", "invalid_price"),
    ("symbol: invalid", "invalid_symbol"),
    ("This pair cannot be traded on margin.", "invalid_symbol"),
    ("api_key: permission invalid", "permission"),
    ("direction: invalid", "invalid_input"),
    ("something the exchange says one day", "other"),
    (None, "other"),
])
def test_order_errors_carry_a_stable_reason(text, reason):
    """Real ERROR texts map to a kind a program can act on; the text stays in the message."""
    assert errors.order_error_reason(text) == reason


def test_an_insufficient_balance_refusal_has_its_reason(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    with pytest.raises(errors.OrderError) as caught:
        client.account.submit_order("tBTCUSD", "1000", "20000").result(10)
    assert caught.value.reason == "insufficient_balance" and "balance" in str(caught.value)
    assert caught.value.cid is not None
