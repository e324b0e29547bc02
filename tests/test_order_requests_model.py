"""Model test of order entry: several threads trade at once while the emulator drops, stalls and answers late.

Hypothesis draws a plan per example: an operation list for each of two or three user threads,
and a fault plan. The threads run their operations at once against a fresh emulator and
client: submits (some reusing a cid that is in flight, some followed at once by a cancel by
cid while the submit is in flight), updates (some the exchange refuses) and cancels of orders
placed earlier in the example (by id or by cid, and twice in a row), waits for their own
requests to end, and faults at points of their own sequence. Meanwhile a fault thread fires
faults as the request count grows: the connection drops (at once, or after the next input,
applied or lost), the server handles inputs slowly and delays its frames. Requests get a
short deadline (``timeout=``), so some end in flight and their answers come after it.

Invariants checked after every example:

- every request ends exactly once (its done callback runs once), no later than a second after
  its deadline, with its own answer (a submit's order has the cid, amount and price it sent,
  an update's the price it set, a cancel's the order it named; a refusal echoes its own
  request's fields; an update the exchange refuses is never answered as done) or a typed
  error (OrderError, OutcomeUnknownError, NotSentError);
- a submit whose cid is in flight in the client is refused with ValueError, and only then;
- no input reaches the server more often than the client issued it, one that failed as never
  sent does not reach it at all, and none leaves after its request reached its deadline
  (``Emulator.received_inputs`` lists what arrived, and when);
- once settled (no request pending, authenticated and synced), the client's open orders equal
  the emulator's (ids, cids, amounts, prices, statuses), both before and after a final
  re-authentication.

The smallest examples of the bugs these invariants found are at the end, as ordinary tests (they failed before the fixes).
"""
import collections
import threading
import time
import traceback
from decimal import Decimal

import attrs
from hypothesis import HealthCheck, example, given, settings, strategies as st

import bfxsync
from bfxsync import errors
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator

from conftest import FAST, wait_until

#: The deadline of every request of the model (``timeout=``): short, so that examples are quick
#: and some requests end before their answer comes.
TIMEOUT = 1.0
#: How long after its deadline a request may end (the scheduler sweeps about once a second).
LATE = 1.0
#: How long an input that left may take to reach the emulator's handler on a loaded machine.
TRANSIT = 0.5
#: The errors a request may end with.
TYPED = (errors.OrderError, errors.OutcomeUnknownError, errors.NotSentError)
#: Enough pacing that inputs wait in the client's queue, fail as never sent when a drop comes, and some
#: reach their deadline there (they end as never sent and must not leave afterwards).
CONFIG = attrs.evolve(FAST, input_rate=5.0, input_burst=5)
SYMBOL = "tBTCUSD"  # the emulator's market is still (rate=0) with asks near 30000: buys below it rest
AMOUNTS = ("0.001", "0.002", "0.0035")

faults = st.one_of(
    st.tuples(st.just("drop"), st.none()),
    st.tuples(st.just("drop_after_next_input"), st.booleans()),
    # 2.5 s per input is past every deadline plus a second: those requests must expire, then the answers come.
    st.tuples(st.just("input_delay"), st.sampled_from([0.0, 0.02, 0.1, 2.5])),
    st.tuples(st.just("send_delay"), st.sampled_from([0.0, 0.01, 0.05])),
)
refs = st.integers(0, 40)  # an order placed earlier in the example (modulo the ones known)
operations = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(AMOUNTS)),
    st.tuples(st.just("submit_same_cid"), st.sampled_from(AMOUNTS)),
    st.tuples(st.just("submit_then_cancel_by_cid"), st.sampled_from(AMOUNTS)),
    st.tuples(st.just("update"), refs),
    st.tuples(st.just("update_twice"), refs),
    st.tuples(st.just("update_refused"), refs),
    st.tuples(st.just("cancel"), refs),
    st.tuples(st.just("cancel_twice"), refs),
    st.tuples(st.just("cancel_by_cid"), refs),
    st.tuples(st.just("await"), st.none()),  # wait for this thread's requests to end, as a careful user would
    st.tuples(st.just("fault"), faults),  # a fault at this point of this thread's sequence
)
plans = st.fixed_dictionaries({
    "threads": st.lists(st.lists(operations, min_size=1, max_size=10), min_size=2, max_size=3),
    # Each fault fires once this many requests were issued (or once the threads are done).
    "faults": st.lists(st.tuples(st.integers(0, 24), faults), max_size=4),
})


@attrs.define(eq=False)
class Record:
    """One request of the model: what it sent, what it must be answered with, and when it ended."""

    kind: str  # submit, update, cancel
    request: bfxsync.Request
    wire: tuple  # what identifies its input at the server (see wire_key)
    expect: dict  # fields its answer must have
    ends: list = attrs.Factory(list)  # time.monotonic() of each done-callback call


def wire_key(tag, payload):
    """What identifies an input at the server: the fields that differ between the model's inputs."""
    if tag == "on":
        return ("on", payload.get("cid"), Decimal(str(payload["amount"])), Decimal(str(payload["price"])))
    if tag == "ou":
        return ("ou", payload["id"], Decimal(str(payload["price"])))
    if tag == "oc" and "id" in payload:
        return ("oc", payload["id"])
    if tag == "oc":
        return ("oc", payload.get("cid"), payload.get("cid_date"))
    return (tag, repr(payload))


def order_table(orders):
    """Orders (client models or emulator working orders) as {id: (cid, amount, amount_orig, price, status)}."""
    return {o.id: (o.cid, o.amount, o.amount_orig, o.price, o.status) for o in orders}


class Model:
    """Runs one plan against one client and emulator and records every request (thread-safe)."""

    def __init__(self, client, emulator):
        self.client = client
        self.emulator = emulator
        self._lock = threading.Lock()
        self.records = []
        self.known = []  # (order id, cid, cid date) of orders whose submit succeeded
        self.failures = []  # assertion failures and crashes of the worker threads
        self.refused = 0  # calls refused while not authenticated
        self._prices = iter(range(1, 4000))  # every price of the example is distinct
        self._cids = iter(range(7_000_001, 7_100_000))  # explicit cids, far from generated ones

    def issued(self):
        with self._lock:
            return len(self.records)

    def _price(self, base):
        with self._lock:
            return str(base + next(self._prices))

    # -- requests ------------------------------------------------------------------------------

    def _track(self, kind, request, wire, expect):
        record = Record(kind, request, wire, expect)
        with self._lock:
            self.records.append(record)

        def ended(req):  # on whatever thread settles it: quick, no blocking call
            with self._lock:
                record.ends.append(time.monotonic())
                if kind == "submit" and req.exception() is None:
                    self.known.append((req.order_id, req.cid, req.cid_date))

        request.add_done_callback(ended)
        return record

    def submit(self, amount, cid=None):
        price = self._price(20000)
        options = {} if cid is None else {"cid": cid}
        request = self.client.account.submit_order(SYMBOL, amount, price, timeout=TIMEOUT, **options)
        return self._track("submit", request, ("on", request.cid, Decimal(amount), Decimal(price)),
                           {"cid": request.cid, "amount": Decimal(amount), "price": Decimal(price)})

    def update(self, order_id, refused=False):
        """Move the order's price; ``refused``: with an amount of the wrong sign too, which the exchange refuses."""
        price = self._price(25000)
        changes = {"amount": "-0.001"} if refused else {}  # every order of the model buys
        request = self.client.account.update_order(order_id, price=price, timeout=TIMEOUT, **changes)
        return self._track("update", request, ("ou", order_id, Decimal(price)),
                           {"id": order_id, "price": Decimal(price), "refused": refused})

    def cancel(self, order_id):
        request = self.client.account.cancel_order(order_id, timeout=TIMEOUT)
        return self._track("cancel", request, ("oc", order_id), {"id": order_id})

    def cancel_by_cid(self, cid, cid_date):
        request = self.client.account.cancel_order(cid=cid, cid_date=cid_date, timeout=TIMEOUT)
        return self._track("cancel", request, ("oc", cid, cid_date), {"cid": cid})

    def _known(self, ref):
        """An order placed earlier in the example; waits (bounded) while submits are still in flight."""
        def placed_or_none_pending():
            with self._lock:
                return self.known or all(r.ends for r in self.records if r.kind == "submit")

        wait_until(placed_or_none_pending, TIMEOUT + LATE + 1)
        with self._lock:
            return self.known[ref % len(self.known)] if self.known else None

    # -- operations ----------------------------------------------------------------------------

    def run(self, op, arg):
        if op == "submit":
            self.submit(arg)
        elif op == "submit_same_cid":
            self.submit_same_cid(arg)
        elif op == "submit_then_cancel_by_cid":
            placed = self.submit(arg)
            self.cancel_by_cid(placed.request.cid, placed.request.cid_date)  # its id is not known yet
        else:
            target = self._known(arg)
            if target is None:
                return
            order_id, cid, cid_date = target
            if op == "update_refused":
                self.update(order_id, refused=True)
            elif op in ("update", "update_twice"):
                for _ in range(1 if op == "update" else 2):
                    self.update(order_id)
            elif op in ("cancel", "cancel_twice"):
                for _ in range(1 if op == "cancel" else 2):
                    self.cancel(order_id)
            else:
                self.cancel_by_cid(cid, cid_date)

    def submit_same_cid(self, amount):
        """A second submit with the first's cid: refused while the first is in flight, accepted after."""
        with self._lock:
            cid = next(self._cids)
        first = self.submit(amount, cid)
        ended_before = first.request.done
        try:
            second = self.submit(amount, cid)
        except ValueError:
            assert not ended_before, f"cid {cid} was refused as in flight after its request had ended"
            return
        called = time.monotonic()
        # Accepted: the first had ended. Its callback may run a moment after the tracker let the cid go.
        assert wait_until(lambda: first.ends, 0.5) and first.ends[0] <= called + 0.5, (
            f"a second submit with cid {cid} was accepted while the first was in flight: {first.request!r}, "
            f"{second.request!r}")

    def worker(self, ops):
        mine = []  # this thread's requests

        def run(op, arg):
            if op == "await":
                wait_until(lambda: all(r.ends for r in mine), TIMEOUT + LATE + 1)
                return
            if op == "fault":
                self.fault(*arg)
                return
            with self._lock:
                issued = len(self.records)
            try:
                self.run(op, arg)
            finally:
                with self._lock:
                    mine.extend(self.records[issued:])  # others' too, at worst: it only waits longer

        try:
            for op, arg in ops:
                try:
                    run(op, arg)
                except errors.NotAuthenticatedError:
                    with self._lock:
                        self.refused += 1
                    wait_until(lambda: self.client.account.authenticated, 5)
        except BaseException:  # noqa: BLE001 - reported by the example's thread
            self.failures.append(traceback.format_exc())

    def fault(self, fault, arg):
        emulator = self.emulator
        if fault == "drop":
            emulator.drop_connections()
        elif fault == "drop_after_next_input":
            emulator.drop_after_next_input(applied=arg)
        elif fault == "input_delay":
            emulator.set_input_delay(arg)
        else:
            emulator.set_send_delay(arg)

    def fault_thread(self, plan, workers_done):
        try:
            for threshold, (fault, arg) in sorted(plan, key=lambda f: f[0]):
                wait_until(lambda t=threshold: self.issued() >= t or workers_done.is_set(), 5)
                self.fault(fault, arg)
        except BaseException:  # noqa: BLE001
            self.failures.append(traceback.format_exc())


def check_requests(model, tally):
    """Each request ended once, in time, with its own answer or a typed error."""
    for record in model.records:
        request = record.request
        assert len(record.ends) == 1, f"{request!r} ended {len(record.ends)} times"
        assert record.ends[0] <= request.deadline + LATE, (
            f"{request!r} ended {record.ends[0] - request.deadline:.2f} s after its deadline")
        error = request.exception()
        expect = record.expect
        if error is not None:
            assert isinstance(error, TYPED), f"{request!r} failed with {error!r}"
            assert not isinstance(error, errors.OrderError) or refusal_is_its_own(record, error), (
                f"{request!r} failed with another request's refusal: {error!r}, echo {error.notification.info}")
            tally[type(error).__name__] += 1
            continue
        answer = request.result(0)
        tally["answered"] += 1
        assert not expect.get("refused"), f"{request!r}, which the exchange refuses, was answered with {answer}"
        if record.kind == "submit":
            assert (answer.cid, answer.amount_orig, answer.price) == (
                expect["cid"], expect["amount"], expect["price"]), f"{request!r} got another order: {answer}"
        elif record.kind == "update":
            assert (answer.id, answer.price) == (expect["id"], expect["price"]), \
                f"{request!r} got another update's answer: {answer}"
        else:
            assert answer.status_word == "CANCELED", f"{request!r} answered with {answer}"
            assert answer.id == expect["id"] if "id" in expect else answer.cid == expect["cid"], \
                f"{request!r} got another order's cancel: {answer}"


def refusal_is_its_own(record, error):
    """The order array a refusal echoes (the request's own fields, docs: ws-auth-notifications) is this request's."""
    info = error.notification.info if error.notification is not None else None
    if not isinstance(info, list) or len(info) < 17:
        return True  # nothing to compare (an all-null echo)
    expect = record.expect
    echoed = {"id": info[0], "cid": info[2], "price": info[16]}
    for name in ("id", "cid", "price"):
        if name in expect and echoed[name] is not None:
            same = Decimal(str(echoed[name])) == expect[name] if name == "price" else echoed[name] == expect[name]
            if not same:
                return False
    return True


def check_inputs(model, emulator):
    """No input reached the server more often than issued; a never-sent input not at all."""
    received = emulator.received_inputs()
    assert all(r.key == DEMO_KEY for r in received), "an input reached the server before authentication"
    arrived = collections.Counter(wire_key(r.tag, r.payload) for r in received)
    may_arrive = collections.Counter(r.wire for r in model.records
                                     if not isinstance(r.request.exception(), errors.NotSentError))
    answered = [r.wire for r in model.records
                if r.request.exception() is None or isinstance(r.request.exception(), errors.OrderError)]
    assert all(arrived[key] for key in answered), "a request the server answered is not among its inputs"
    twice = {key: n for key, n in arrived.items() if n > may_arrive[key]}
    assert not twice, f"inputs reached the server more often than sent (never-sent ones included): {twice}"
    # Nothing leaves after its request ended: a request that reached its deadline had either sent its
    # input (which then arrived within moments) or must never send it. Keys several requests share
    # (two cancels of one order) are left out: their arrivals cannot be told apart.
    unique = [r for r in model.records if may_arrive[r.wire] == 1]
    arrivals = {wire_key(r.tag, r.payload): r.at for r in received}
    for record in unique:
        error = record.request.exception()
        at = arrivals.get(record.wire)
        if at is not None and isinstance(error, errors.OutcomeUnknownError) and "no answer" in str(error):
            assert at <= record.ends[0] + TRANSIT, (
                f"{record.request!r} ended at its deadline, then its input left: it reached the server "
                f"{at - record.ends[0]:.2f} s later")
    # By cid and price: a cid may be used again once its first submit ended (prices are all distinct).
    placed = {(o.cid, o.price) for o in emulator.account(DEMO_KEY).orders}
    for record in model.records:
        if record.kind == "submit" and isinstance(record.request.exception(), errors.NotSentError):
            assert (record.expect["cid"], record.expect["price"]) not in placed, (
                f"{record.request!r} failed as never sent but was placed")


def settled_and_equal(client, emulator):
    """No request pending, authenticated, and the client's open orders are the emulator's."""
    return (client.stats()["requests_in_flight"] == 0 and client.account.authenticated
            and order_table(client.account.snapshot().orders.values())
            == order_table(emulator.account(DEMO_KEY).orders))


def run_example(plan, tally):
    """One example: a fresh emulator and client, the plan, the invariants, and nothing left running."""
    threads_before = set(threading.enumerate())
    with Emulator(seed=11, rate=0.0, heartbeat_interval=1.0) as emulator:
        client = bfxsync.Client(emulator.url, CONFIG, api_key=DEMO_KEY, api_secret=DEMO_SECRET)
        try:
            client.start()
            client.account.wait_authenticated(10)
            model = Model(client, emulator)
            workers_done = threading.Event()
            workers = [threading.Thread(target=model.worker, args=(ops,), name=f"model-worker-{i}")
                       for i, ops in enumerate(plan["threads"])]
            chaos = threading.Thread(target=model.fault_thread, args=(plan["faults"], workers_done),
                                     name="model-faults")
            chaos.start()
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join(30)
            workers_done.set()
            chaos.join(30)
            assert not any(t.is_alive() for t in [*workers, chaos]), "a model thread is stuck"
            assert not model.failures, "\n".join(model.failures)

            # Every request ends by its deadline plus a second; wait a little longer to see any that do not.
            last = max((r.request.deadline for r in model.records), default=time.monotonic())
            wait_until(lambda: all(r.ends for r in model.records), max(0.0, last - time.monotonic()) + LATE + 2)
            check_requests(model, tally)
            tally["requests"] += len(model.records)
            tally["refused_not_authenticated"] += model.refused

            emulator.set_input_delay(0)
            emulator.set_send_delay(0)
            # The state the order events built converges on the emulator's.
            assert wait_until(lambda: settled_and_equal(client, emulator), 10), (
                order_table(client.account.snapshot().orders.values()), order_table(emulator.account(DEMO_KEY).orders))
            # And so does the state a fresh authentication builds (inputs still held by the old
            # connection's handler are abandoned with it).
            before = set(emulator.authenticated_connections(DEMO_KEY))
            emulator.drop_connections()
            assert wait_until(lambda: set(emulator.authenticated_connections(DEMO_KEY)) - before, 10)
            client.account.wait_authenticated(10)
            assert wait_until(lambda: settled_and_equal(client, emulator), 10), (
                order_table(client.account.snapshot().orders.values()), order_table(emulator.account(DEMO_KEY).orders))
            check_inputs(model, emulator)
            assert client.stats()["callback_errors"] == 0
        finally:
            client.close()
    left = wait_until(lambda: not [t for t in threading.enumerate() if t not in threads_before], 5, interval=0.05)
    assert left, f"threads left running: {[t.name for t in threading.enumerate() if t not in threads_before]}"


def test_order_requests_settle_once_with_their_own_answer_under_faults():
    """Several threads submit, update and cancel while the connection drops and answers come late:
    every request ends once, in time, with its own answer or a typed error; nothing is sent twice;
    the client's orders end equal to the exchange's."""
    tally = collections.Counter()

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(plan=plans)
    # Plans that reach every ending whatever Hypothesis draws: refusals (a second cancel, an update of
    # a cancelled order), never sent (a drop with inputs held by the pacer), outcome unknown (answers
    # slower than the deadline, inputs lost with the connection).
    @example(plan={"threads": [[("submit", "0.001")] * 8,
                               [("update_twice", 0), ("cancel_twice", 1), ("cancel_by_cid", 2), ("update", 1),
                                ("update_refused", 0),
                                ("submit_then_cancel_by_cid", "0.002"), ("submit_same_cid", "0.001")]],
                   "faults": [(10, ("drop", None))]})
    @example(plan={"threads": [[("submit", "0.001"), ("await", None), ("cancel_twice", 0), ("await", None),
                                ("update", 0)],
                               [("submit", "0.002"), ("await", None), ("update_refused", 0), ("update_twice", 0)]],
                   "faults": []})
    @example(plan={"threads": [[("submit", "0.001"), ("submit_same_cid", "0.002"), ("update", 0)],
                               [("submit_then_cancel_by_cid", "0.001"), ("cancel", 0)]],
                   "faults": [(0, ("input_delay", 2.5))]})
    @example(plan={"threads": [[("submit", "0.001"), ("update_twice", 0), ("submit", "0.002"), ("cancel", 1)],
                               [("submit", "0.0035"), ("cancel_twice", 0), ("submit_same_cid", "0.001")],
                               [("submit", "0.001"), ("update", 2), ("cancel_by_cid", 0)]],
                   "faults": [(0, ("send_delay", 0.05)), (3, ("drop_after_next_input", True)),
                              (8, ("drop_after_next_input", False))]})
    def model(plan):
        run_example(plan, tally)

    model()
    print("\nmodel tally:", dict(tally))
    # The model must have reached every ending: a drawn plan that never drops or never answers proves little.
    assert tally["answered"] and tally["OrderError"] and tally["OutcomeUnknownError"] and tally["NotSentError"], tally


# -- Bugs the model's invariants caught, as their smallest examples (fixed; regression tests) -------
# A request that reached its deadline left the tracker while the server still answered its input,
# later and in order; that late answer was taken by the next request of its kind about the order.
# A request that reached its deadline in the input pacer's queue was still sent afterwards.

def _demo_client(make_client, url, config=FAST):
    client = make_client(url, config, api_key=DEMO_KEY, api_secret=DEMO_SECRET)
    client.wait_authenticated(10)
    return client


def test_bug_a_late_refusal_of_an_expired_update_fails_the_next_update(emulator, make_client):
    """The next update is executed by the exchange yet its request fails with the first one's refusal."""
    client = _demo_client(make_client, emulator.url)
    order = client.account.submit_order(SYMBOL, "0.001", "20000").result(10)
    emulator.set_input_delay(2.5)  # each input is handled 2.5 s after it arrives, in order
    refused = client.account.update_order(order.id, price="25001", amount="-0.001", timeout=TIMEOUT)
    assert isinstance(outcome_of(refused), errors.OutcomeUnknownError)  # its deadline passed
    valid = client.account.update_order(order.id, price="25002", timeout=6.0)
    assert wait_until(lambda: emulator.account(DEMO_KEY).order(order.id).price == Decimal("25002"), 10)
    answer = outcome_of(valid)
    assert not isinstance(answer, errors.BfxError), answer  # today: OrderError('amount: invalid'), the first's
    assert answer.price == Decimal("25002")


def test_bug_a_late_success_of_an_expired_update_answers_the_next_update(emulator, make_client):
    """An update the exchange refuses is reported done, with the first update's order."""
    client = _demo_client(make_client, emulator.url)
    order = client.account.submit_order(SYMBOL, "0.001", "20000").result(10)
    emulator.set_input_delay(2.5)
    first = client.account.update_order(order.id, price="25001", timeout=TIMEOUT)
    assert isinstance(outcome_of(first), errors.OutcomeUnknownError)
    refused = client.account.update_order(order.id, amount="-0.001", timeout=6.0)  # sets no price
    assert isinstance(outcome_of(refused), errors.OrderError)  # today: Order(price=25001), the first's answer


def test_bug_a_request_expiring_before_its_input_left_is_never_sent(emulator, make_client):
    """Its input never left when it ended: it must fail as never sent and stay unsent (a user who then
    cancels by cid gets 'Order not found', and the order is placed after)."""
    client = _demo_client(make_client, emulator.url, attrs.evolve(FAST, input_rate=0.5, input_burst=1))
    client.account.submit_order(SYMBOL, "0.001", "20000")  # takes the pacer's one token
    held = client.account.submit_order(SYMBOL, "0.001", "20001", timeout=0.5)  # waits 2 s for the next
    error = outcome_of(held)
    arrived = wait_until(lambda: [r for r in emulator.received_inputs() if r.payload.get("cid") == held.cid], 4)
    assert not arrived, f"it ended with {error!r}, then its input reached the server"
    assert isinstance(error, errors.NotSentError)  # today: OutcomeUnknownError, and the order is placed


def outcome_of(request, timeout=10):
    """The request's result, or the error it ended with."""
    try:
        return request.result(timeout)
    except errors.BfxError as err:
        return err
