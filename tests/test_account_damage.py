"""Account state under bad input, end to end: a bad snapshot row never throws the good ones away,
damaged state is rebuilt from fresh snapshots (re-authenticating, bounded) before it is called
synced, and a hostile number costs microseconds, never seconds of GIL.

Two servers: the emulator (frames injected into its account connection) and a hostile account
server written here that sends crafted snapshots after each ``auth``.
"""
import json
import logging
import threading
import time

import pytest
from test_account_state import WALLET, credit, offer, order, position, replaced
from websockets.sync.server import serve

import bfxsync
from bfxsync import errors
from bfxsync._engine.account_session import AccountSession
from bfxsync._engine.callback_runner import Handlers
from bfxsync._engine.runtime import Runtime
from bfxsync.account.repair import REPAIR_TRIES
from bfxsync.auth import Credentials
from bfxsync.backoff import Backoff
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET

from conftest import FAST, wait_until

DEMO = {"api_key": DEMO_KEY, "api_secret": DEMO_SECRET}

#: One good and one bad row per snapshot tag (the bad one has a NaN or absurd number in a required field).
ROWS = {
    "os": (order(1), replaced(order(2), 16, "NaN")),
    "ps": (position("tBTCUSD"), position("tETHUSD", amount="NaN")),
    "ws": (WALLET, ["exchange", "BTC", "NaN", 0, None, None, None]),
    "fos": (offer(1), offer(2, amount="NaN")),
    "fcs": (credit(1), replaced(credit(2), 5, "NaN")),
    "fls": (credit(1)[:21], replaced(credit(2)[:21], 0, "1e1000000")),
}
ATTRIBUTE = {"os": "orders", "ps": "positions", "ws": "wallets", "fos": "funding_offers", "fcs": "funding_credits",
             "fls": "funding_loans"}


def snapshots(damaged=(), orders=None):
    """The six snapshot frames an account sends after auth; the tags in ``damaged`` carry one bad row."""
    frames = []
    for tag, (good, bad) in ROWS.items():
        rows = [good, bad] if tag in damaged else [good]
        if tag == "os" and orders is not None:
            rows = [order(i) for i in range(1, orders + 1)]
            if tag in damaged:
                rows[orders // 2] = replaced(rows[orders // 2], 16, "NaN")  # a NaN price in the middle
        frames.append(json.dumps([0, tag, rows]))
    return frames


class AccountServer:
    """A hostile account endpoint: ``info`` on connect, OK to every ``auth``, then ``script(n)``'s frames.

    ``n`` counts the authentications (1 for the first). Pings are answered; everything else is ignored.
    """

    def __init__(self, script):
        self.script = script
        self.auths = 0
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/ws/2"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-account-server", daemon=True)
        self._thread.start()

    def _handle(self, ws):
        ws.send(json.dumps({"event": "info", "version": 2, "serverId": "hostile", "platform": {"status": 1}}))
        for text in ws:
            event = json.loads(text)
            if not isinstance(event, dict):
                continue
            if event.get("event") == "auth":
                with self._lock:
                    self.auths += 1
                    n = self.auths
                ws.send(json.dumps({"event": "auth", "status": "OK", "chanId": 0, "userId": 1, "caps": {}}))
                for frame in self.script(n):
                    ws.send(frame)
            elif event.get("event") == "conf":
                ws.send(json.dumps({"event": "conf", "status": "OK", "flags": event.get("flags")}))
            elif event.get("event") == "ping":
                ws.send(json.dumps({"event": "pong", "cid": event.get("cid"), "ts": 1}))

    def close(self):
        self._server.shutdown()
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def hostile():
    servers = []

    def make(script):
        servers.append(AccountServer(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def watch_orders(client):
    """Record, from inside each orders callback, what a reader saw at that moment."""
    seen = []

    def record(message):
        snap = client.account.snapshot()
        seen.append((message.tag, len(message.items), len(snap.orders), snap.damaged))

    client.account.on_orders(record)
    return seen


class TestTheIssueCase:
    def test_one_nan_row_in_a_1000_order_snapshot(self, hostile, make_client, caplog):
        """One NaN price in a 1,000-order os: 999 rows kept and counted, not synced, re-authenticated, then whole."""
        server = hostile(lambda n: snapshots(damaged=("os",) if n == 1 else (), orders=1000))
        client = make_client(server.url, FAST, **DEMO)
        seen = watch_orders(client)
        with caplog.at_level(logging.WARNING, logger="bfxsync"):
            client.wait_authenticated(10)
        snap = client.account.snapshot()
        assert server.auths == 2  # wait_authenticated returned only after the clean fresh snapshot
        assert len(snap.orders) == 1000 and snap.damaged == frozenset()
        assert seen[0] == ("os", 999, 999, frozenset({"os"}))  # the good rows were kept, the state marked damaged
        assert seen[-1] == ("os", 1000, 1000, frozenset())
        stats = client.stats()
        assert stats["account_bad_rows"] == 1 and stats["account_repair_reauths"] == 1
        assert stats["authentications"] == 2
        warnings = [r.getMessage() for r in caplog.records if "rows unreadable" in r.getMessage()]
        assert len(warnings) == 1 and "1 of 1000" in warnings[0] and "'os'" in warnings[0]

    @pytest.mark.parametrize("tag", sorted(ROWS))
    def test_every_snapshot_kind(self, hostile, make_client, tag):
        """os, ps, ws, fos, fcs, fls alike: the good row is kept while damaged; a fresh snapshot makes it whole."""
        server = hostile(lambda n: snapshots(damaged=(tag,) if n == 1 else ()))
        client = make_client(server.url, FAST, **DEMO)
        kept = []
        client.account.on_message(lambda m: kept.append((m.tag, len(m.items), client.account.snapshot().damaged))
                                  if m.tag == tag else None)
        client.wait_authenticated(10)
        assert kept[0] == (tag, 1, frozenset({tag})) and kept[-1] == (tag, 1, frozenset())
        snap = client.account.snapshot()
        assert len(getattr(snap, ATTRIBUTE[tag])) == 1 and snap.damaged == frozenset()
        assert server.auths == 2 and client.stats()["account_bad_rows"] == 1

    def test_a_server_that_always_sends_a_bad_row(self, hostile, make_client, caplog):
        """Re-authentication is bounded: after REPAIR_TRIES the client goes on with the good rows, says so, stops."""
        server = hostile(lambda n: snapshots(damaged=("os", "ws"), orders=10))
        client = make_client(server.url, FAST, **DEMO)
        with caplog.at_level(logging.WARNING, logger="bfxsync"):
            client.wait_authenticated(15)
        session = client.account._session
        assert server.auths == REPAIR_TRIES + 1 and client.stats()["account_repair_reauths"] == REPAIR_TRIES
        assert session.repair.given_up(session.auth_count)
        snap = client.account.snapshot()
        assert len(snap.orders) == 9 and len(snap.wallets) == 1 and snap.damaged == {"os", "ws"}
        assert any("going on with the rows that could be read" in r.getMessage() for r in caplog.records)
        assert client.stats()["account_bad_rows"] == 2 * (REPAIR_TRIES + 1)
        # Given up for this authentication: the next sweeps ask for nothing more.
        assert session.settle_late_snapshots(time.monotonic() + 3600) is None

    def test_not_synced_while_backing_off(self, hostile, make_client):
        """Between a damaged snapshot and the fresh one wait_authenticated does not return (no 5 s grace either)."""
        release = threading.Event()

        def script(n):
            if n > 1:
                release.wait(10)  # the second authentication's snapshots are held until the test has looked
            return snapshots(damaged=("os",) if n == 1 else (), orders=5)

        server = hostile(script)
        client = make_client(server.url, FAST, **DEMO)
        try:
            assert wait_until(lambda: server.auths == 2, 10)
            with pytest.raises(errors.BfxTimeoutError):
                client.wait_authenticated(0.3)
            assert client.account.snapshot().damaged == frozenset()  # the state was reset for the new authentication
        finally:
            release.set()
        client.wait_authenticated(10)
        assert len(client.account.snapshot().orders) == 5


class TestAgainstTheEmulator:
    def test_a_damaged_orders_snapshot_is_rebuilt_from_the_exchange(self, emulator, make_client):
        """A 1,000-row os with one bad row, injected into the emulator's account connection: the good rows are
        kept, then the client re-authenticates and holds exactly the exchange's orders."""
        client = make_client(emulator.url, FAST, **DEMO)
        client.wait_authenticated(10)
        placed = client.account.submit_order("tBTCUSD", "0.01", "20000").result(10)
        seen = watch_orders(client)
        emulator.inject(snapshots(damaged=("os",), orders=1000)[0])
        assert wait_until(lambda: client.stats()["authentications"] == 2, 15)
        client.wait_authenticated(10)
        assert ("os", 999, 999, frozenset({"os"})) in seen
        snap = client.account.snapshot()
        assert list(snap.orders) == [placed.id] == [o.id for o in emulator.account(DEMO_KEY).orders]
        assert snap.damaged == frozenset() and client.stats()["account_bad_rows"] == 1

    def test_an_unreadable_order_update_is_repaired(self, emulator, make_client):
        """An ou that cannot be read leaves a stale order: counted as malformed, marked damaged, re-authenticated."""
        client = make_client(emulator.url, FAST, **DEMO)
        client.wait_authenticated(10)
        placed = client.account.submit_order("tBTCUSD", "0.01", "20000").result(10)
        emulator.inject(json.dumps([0, "ou", replaced(order(placed.id), 6, "Infinity")]))
        assert wait_until(lambda: client.stats()["account_repair_reauths"] == 1, 15)
        client.wait_authenticated(10)
        assert wait_until(lambda: client.account.snapshot().damaged == frozenset() and
                          list(client.account.snapshot().orders) == [placed.id])
        assert client.stats()["malformed"] >= 1


#: Numbers that cost seconds of GIL inside ``int(Decimal(text))`` before they were bounded.
HUGE = ("1e250000", "1e1000000", "-1e1000000")


class TestHostileNumbers:
    @pytest.mark.parametrize("text", HUGE)
    @pytest.mark.parametrize("tag, index", [("on", 0), ("on", 4), ("ou", 2), ("n", None)])
    def test_a_huge_number_in_an_account_frame_is_refused_at_once(self, emulator, make_client, text, tag, index):
        """1e1000000 in an order id, a timestamp, a cid or a notification's MTS: refused in well under a second,
        counted, and the account connection keeps working."""
        client = make_client(emulator.url, FAST, **DEMO)
        client.wait_authenticated(10).wait_connected(10)  # ping() goes to the public connection: not waited for above
        if tag == "n":
            frame = f'[0,"n",[{text},"on-req",null,null,null,null,"SUCCESS","x"]]'
        else:
            frame = f'[0,"{tag}",{json.dumps(replaced(order(5), index, "X")).replace(chr(34) + "X" + chr(34), text)}]'
        started = time.monotonic()
        emulator.inject(frame)
        assert wait_until(lambda: client.stats().get("malformed", 0) >= 1, 10)
        assert time.monotonic() - started < 5.0  # 33 s of GIL before the bound
        assert client.ping(5) < 1.0
        if tag != "n":  # an unreadable order marks the orders damaged: a re-authentication repairs them
            assert wait_until(lambda: client.stats()["authentications"] == 2, 15)
            client.wait_authenticated(10)
        order_ = client.account.submit_order("tBTCUSD", "0.01", "20000").result(10)
        assert order_.status_word == "ACTIVE"

    def test_a_huge_integer_in_a_public_trade_is_refused(self, emulator, make_client):
        """Public integers are JSON integers below 1e21: a 30-digit trade id is a counted bad payload."""
        client = make_client(emulator.url)
        got = []
        sub = client.subscribe_trades("tBTCUSD", on_data=got.append).wait_subscribed(5)
        emulator.inject(f'[{sub.chan_id},"te",[{10 ** 30},1700000000000,0.1,30000]]', chan_id=sub.chan_id)
        emulator.inject(f'[{sub.chan_id},"te",[1e1000000,1700000000000,0.1,30000]]', chan_id=sub.chan_id)
        assert wait_until(lambda: client.stats().get("bad_payload", 0) == 2)
        assert not any(t.id >= 10 ** 21 for m in got for t in m.items)


class TestTheSessionsClock:
    """The session's decisions against a clock the test moves (no socket: the parts above prove the wiring)."""

    @staticmethod
    def session():
        runtime = Runtime(bfxsync.Config(), Handlers(), on_end=lambda: None)
        session = AccountSession(Credentials(DEMO_KEY, DEMO_SECRET), lambda: 7, False, None, runtime.callbacks)
        session.repair.backoff = Backoff(initial=10.0, factor=2.0, maximum=60.0, jitter=0.0)
        return session

    @staticmethod
    def authenticate(session, damaged):
        session.auth_frame()
        session.on_auth({"event": "auth", "status": "OK", "userId": 1}, 1)
        for frame in snapshots(damaged=damaged):
            _, tag, rows = json.loads(frame, parse_float=str)
            session.on_frame(tag, rows, None, None)
        return session.authenticated_at

    def test_damaged_state_is_not_synced_after_the_5_s_grace(self):
        """Damaged and backing off (20 s): 6 s after authentication the state is still not called synced."""
        session = self.session()
        first = self.authenticate(session, ("os",))
        assert session.settle_late_snapshots(first) is not None  # the first re-authentication: at once
        at = self.authenticate(session, ("os",))
        assert not session.synced.is_set()
        assert session.settle_late_snapshots(at + 6.0) is None and not session.synced.is_set()
        assert session.settle_late_snapshots(first + 20.0) is not None  # the back-off has passed
        at = self.authenticate(session, ())
        assert session.synced.is_set() and session.settle_late_snapshots(at + 6.0) is None

    def test_a_missing_snapshot_still_settles_after_the_grace(self):
        """Whole but incomplete (no fls ever comes): synced after the grace, as before."""
        session = self.session()
        session.auth_frame()
        session.on_auth({"event": "auth", "status": "OK", "userId": 1}, 1)
        for frame in snapshots()[:-1]:
            _, tag, rows = json.loads(frame, parse_float=str)
            session.on_frame(tag, rows, None, None)
        at = session.authenticated_at
        assert session.settle_late_snapshots(at + 1.0) is None and not session.synced.is_set()
        assert session.settle_late_snapshots(at + 5.0) is None and session.synced.is_set()
