"""The emulator's authenticated half over raw sockets: auth, snapshots, sequence numbers, faults.

Signatures are computed here with hmac, independently of the emulator. Every read has a
timeout; nothing sleeps for a condition.
"""
import contextlib
import hashlib
import hmac
import itertools
import json
import time
from decimal import Decimal

import pytest
import websocket

from bfxsync import protocol
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator, EmulatorAccount

QUIET = 60.0
_NONCES = itertools.count(int(time.time() * 1_000_000))
SNAPSHOT_TAGS = ["ps", "ws", "os", "fos", "fcs", "fls", "bu", "miu"]


def signed(key=DEMO_KEY, secret=DEMO_SECRET, nonce=None, **extra):
    """An auth event signed like the official clients: HMAC-SHA384 hex over ``AUTH<nonce>``."""
    nonce = next(_NONCES) if nonce is None else nonce
    payload = f"AUTH{nonce}"
    sig = hmac.new(secret.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return {"event": "auth", "apiKey": key, "authSig": sig, "authPayload": payload, "authNonce": nonce, **extra}


class Trader:
    """A websocket-client socket; numbers with a fraction are read as Decimal."""

    def __init__(self, url, flags=0):
        self.ws = websocket.create_connection(url, timeout=3)
        self.info = self.recv()
        if flags:
            self.send({"event": "conf", "flags": flags})
            assert self.until(lambda f: isinstance(f, dict))[-1]["status"] == "OK"

    def send(self, obj):
        self.ws.send(json.dumps(obj))

    def recv(self, timeout=3.0):
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv(), parse_float=Decimal)

    def until(self, predicate, timeout=3.0):
        """Frames up to and including the first matching ``predicate``."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s; got {frames[-6:]}")
            frames.append(self.recv(remaining))
            if predicate(frames[-1]):
                return frames

    def auth(self, **kwargs):
        """Send a signed auth; return the ``auth`` answer."""
        self.send(signed(**kwargs))
        return self.until(lambda f: isinstance(f, dict) and f.get("event") in ("auth", "error"))[-1]

    def login(self, **kwargs):
        """Authenticate and read the snapshots; returns ``{tag: payload}`` of them."""
        reply = self.auth(**kwargs)
        assert reply["status"] == "OK", reply
        frames = self.until(tagged("miu"))
        return {f[1]: f[2] for f in frames if isinstance(f, list) and f[0] == 0}

    def input(self, tag, payload):
        self.send([0, tag, None, payload])

    def frames_until(self, predicate, timeout=3.0):
        """Channel-0 data frames (no hb) up to the first matching ``predicate``."""
        frames = self.until(predicate, timeout)
        return [f for f in frames if isinstance(f, list) and f[0] == 0 and f[1] != "hb"]

    def quiet(self):
        """Frames received before a ping round trip completes (what was already in flight)."""
        self.send({"event": "ping", "cid": 4242})
        frames = self.until(lambda f: isinstance(f, dict) and f.get("cid") == 4242)
        return [f for f in frames[:-1] if not (isinstance(f, list) and f[1] == "hb")]

    def close(self):
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.close(timeout=0.5)
        with contextlib.suppress(OSError):
            self.ws.shutdown()


def tagged(tag, pred=lambda payload: True):
    """Predicate: a channel-0 frame with ``tag`` whose payload matches ``pred``."""
    return lambda f: isinstance(f, list) and f[0] == 0 and f[1] == tag and pred(f[2])


def note(kind, status=None):
    """Predicate: an ``n`` frame of TYPE ``kind`` (and STATUS)."""
    return tagged("n", lambda n: n[1] == kind and (status is None or n[6] == status))


def tags(frames):
    return [f[1] for f in frames]


@pytest.fixture
def world():
    """``(start, connect)``: emulators (no market thread unless asked) and traders, all closed after."""
    emulators, traders = [], []

    def start(**options):
        options.setdefault("heartbeat_interval", QUIET)
        options.setdefault("rate", 0)
        options.setdefault("seed", 1)
        emu = Emulator(**options).start()
        emulators.append(emu)
        return emu

    def connect(emu, flags=0):
        trader = Trader(emu.url, flags)
        traders.append(trader)
        return trader

    yield start, connect
    for trader in traders:
        trader.close()
    for emu in emulators:
        emu.stop()


# -- auth -----------------------------------------------------------------------------------
class TestAuth:
    def test_ok_answer_carries_user_caps_and_dms_only_when_sent(self, world):
        """A good signature gets status OK on channel 0 with userId, auth_id and caps; dms is echoed if sent."""
        start, connect = world
        emu = start()
        reply = connect(emu).auth()
        assert reply["status"] == "OK" and reply["chanId"] == 0 and reply["userId"] == 1000001
        assert "dms" not in reply and reply["caps"]["orders"] == {"read": 1, "write": 1}
        assert len(reply["auth_id"]) == 36
        assert connect(emu).auth(dms=4)["dms"] == 4

    def test_bad_key_and_bad_signature_fail_with_10100(self, world):
        """An unknown key or a signature made with the wrong secret: FAILED, code 10100."""
        start, connect = world
        emu = start()
        bad_key = connect(emu).auth(key="nobody")
        assert bad_key == {"event": "auth", "status": "FAILED", "chanId": 0, "code": 10100,
                           "msg": "apikey: invalid"}
        bad_sig = connect(emu).auth(secret="wrong")
        assert bad_sig["status"] == "FAILED" and bad_sig["code"] == 10100

    def test_nonce_must_grow_per_key_across_connections(self, world):
        """A nonce used on one connection is 'nonce: small' on another; a larger one passes."""
        start, connect = world
        emu = start()
        nonce = next(_NONCES)
        assert connect(emu).auth(nonce=nonce)["status"] == "OK"
        reused = connect(emu).auth(nonce=nonce)
        assert (reused["status"], reused["code"], reused["msg"]) == ("FAILED", 10114, "nonce: small")
        assert connect(emu).auth(nonce=nonce - 5)["code"] == 10114
        assert connect(emu).auth(nonce=nonce + 1)["status"] == "OK"

    def test_nonce_above_max_safe_integer_is_refused(self, world):
        """Nonces above 9007199254740991 are refused with 10114."""
        start, connect = world
        assert connect(start()).auth(nonce=9_007_199_254_740_992)["code"] == 10114

    def test_configured_accounts_replace_the_demo(self, world):
        """With accounts=(...) only those keys authenticate, with their own wallets."""
        start, connect = world
        emu = start(accounts=(EmulatorAccount("k1", "s1", wallets={("exchange", "EUR"): "12.5"}),))
        assert connect(emu).auth()["code"] == 10100
        snaps = connect(emu).login(key="k1", secret="s1")
        assert snaps["ws"] == [["exchange", "EUR", Decimal("12.5"), 0, None, None, None]]
        assert emu.account("k1").wallets == {("exchange", "EUR"): Decimal("12.5")}

    def test_second_auth_on_a_connection_is_a_dup_error(self, world):
        """Authenticating twice on one socket answers error 10100 'auth: dup'."""
        start, connect = world
        trader = connect(start())
        trader.login()
        assert trader.auth() == {"event": "error", "msg": "auth: dup", "code": 10100}

    def test_reject_auth_fault(self, world):
        """reject_auth(code) fails every auth with that code until reject_auth(None)."""
        start, connect = world
        emu = start()
        emu.reject_auth(10114)
        assert connect(emu).auth()["msg"] == "nonce: small"
        emu.reject_auth(None)
        assert connect(emu).auth()["status"] == "OK"


# -- snapshots and streams --------------------------------------------------------------------
class TestSnapshots:
    def test_snapshot_order_and_wallet_layout(self, world):
        """After auth OK: ps, ws, os, fos, fcs, fls, then bu and miu; wallets have 7 fields."""
        start, connect = world
        trader = connect(start())
        assert trader.auth()["status"] == "OK"
        frames = trader.frames_until(tagged("miu"))
        assert tags(frames) == SNAPSHOT_TAGS
        snaps = {f[1]: f[2] for f in frames}
        assert all(len(w) == 7 and w[4] is None for w in snaps["ws"])
        assert ["exchange", "USD", 100000, 0, None, None, None] in snaps["ws"]
        assert snaps["os"] == snaps["ps"] == snaps["fos"] == snaps["fcs"] == snaps["fls"] == []
        assert snaps["miu"][0] == "base" and len(snaps["miu"][1]) == 5 and len(snaps["bu"]) == 2

    def test_snapshots_show_existing_orders_positions_and_offers(self, world):
        """A second connection's os/ps/fos hold the 32-, 20- and 21-field arrays of what exists."""
        start, connect = world
        emu = start()
        first = connect(emu)
        first.login()
        bid = emu.book_view("tBTCUSD")[0][0][0]
        first.input("on", {"cid": 7, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1",
                           "price": str(bid - 100)})
        first.input("on", {"cid": 8, "type": "MARKET", "symbol": "tBTCUSD", "amount": "0.2"})
        first.input("fon", {"type": "LIMIT", "symbol": "fUSD", "amount": "100", "rate": "0.0002", "period": 2})
        first.until(tagged("fon"))
        snaps = connect(emu).login()
        assert [len(o) for o in snaps["os"]] == [32] and snaps["os"][0][2] == 7
        assert [len(p) for p in snaps["ps"]] == [20] and snaps["ps"][0][2] == Decimal("0.2")
        assert [len(o) for o in snaps["fos"]] == [21] and snaps["fos"][0][15] == 2

    def test_filter_limits_streams(self, world):
        """filter ['wallet'] gets ws/wu only: no order snapshot, no notifications, no order frames."""
        start, connect = world
        emu = start()
        trader = connect(emu)
        assert trader.auth(filter=["wallet"])["status"] == "OK"
        assert tags(trader.frames_until(tagged("ws"))) == ["ws"]
        trader.input("on", {"cid": 1, "type": "EXCHANGE MARKET", "symbol": "tBTCUSD", "amount": "0.01"})
        frames = trader.frames_until(tagged("wu", lambda w: w[6]["reason"] == "TRADING_FEE"))
        assert set(tags(frames)) == {"wu"}
        assert set(tags(trader.quiet())) <= {"wu"}

    def test_granular_filter(self, world):
        """filter ['trading-tETHUSD', 'notify'] shows tETHUSD order frames but not tBTCUSD ones."""
        start, connect = world
        trader = connect(start())
        assert trader.auth(filter=["trading-tETHUSD", "notify"])["status"] == "OK"
        assert tags(trader.frames_until(tagged("os"))) == ["ps", "os"]
        trader.input("on", {"cid": 1, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01",
                            "price": "100"})
        trader.input("on", {"cid": 2, "type": "EXCHANGE LIMIT", "symbol": "tETHUSD", "amount": "0.01",
                            "price": "100"})
        frames = trader.frames_until(tagged("on"))
        assert tags(frames) == ["n", "n", "on"] and frames[-1][2][3] == "tETHUSD"

    def test_account_channel_heartbeat(self, world):
        """An idle authenticated connection gets [0,'hb']."""
        start, connect = world
        trader = connect(start(heartbeat_interval=0.3))
        trader.login()
        assert trader.until(lambda f: f == [0, "hb"], timeout=3.0)


class TestSequence:
    def test_seq_all_adds_public_and_account_sequence(self, world):
        """With SEQ_ALL channel-0 frames end [seq, authSeq]; n repeats authSeq; calc answers carry 0."""
        start, connect = world
        trader = connect(start(), flags=protocol.FLAG_SEQ_ALL)
        assert trader.auth()["status"] == "OK"
        frames = trader.frames_until(tagged("miu"))
        assert [f[-2:] for f in frames] == [[i, i] for i in range(1, 9)]
        trader.input("on", {"cid": 5, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01",
                            "price": "100"})
        n, on = trader.frames_until(tagged("on"))
        assert n[-2:] == [9, 8] and on[-2:] == [10, 9]
        trader.input("calc", [["balance"]])
        (bu,) = trader.frames_until(tagged("bu"))
        assert bu[-2:] == [11, 0]

    def test_skip_account_sequence(self, world):
        """skip_account_sequence makes the next authSeq jump while seq stays contiguous."""
        start, connect = world
        emu = start()
        trader = connect(emu, flags=protocol.FLAG_SEQ_ALL)
        trader.login()
        emu.skip_account_sequence(count=2)
        trader.input("on", {"cid": 5, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01",
                            "price": "100"})
        n, on = trader.frames_until(tagged("on"))
        assert n[-2:] == [9, 8] and on[-2:] == [10, 11]


# -- inputs other than orders ---------------------------------------------------------------------
class TestCalcAndNotifications:
    def test_calc_is_answered(self, world):
        """calc answers bu, miu (sym), wu with BALANCE_AVAILABLE, and pu for an open position."""
        start, connect = world
        trader = connect(start())
        trader.login()
        trader.input("on", {"cid": 1, "type": "MARKET", "symbol": "tBTCUSD", "amount": "0.5"})
        trader.until(tagged("bu"))
        trader.input("calc", [["balance"], ["margin_sym_tBTCUSD"], ["wallet_exchange_USD"],
                              ["position_tBTCUSD"], ["funding_sym_fUSD"], ["margin_base"]])
        frames = trader.frames_until(tagged("miu", lambda m: m[0] == "base"))
        assert tags(frames) == ["bu", "miu", "wu", "pu", "fiu", "miu"]
        assert frames[2][2][:5] == ["exchange", "USD", 100000, 0, 100000]
        assert frames[3][2][6] is not None and frames[3][2][9] == 5  # PL and leverage computed

    def test_custom_notification_reaches_every_connection(self, world):
        """[0,'n',null,{type:'ucm-*',info}] is echoed to the account's connections."""
        start, connect = world
        emu = start()
        first, second = connect(emu), connect(emu)
        first.login()
        second.login()
        first.input("n", {"type": "ucm-test", "info": {"message": "hi", "foo": 1}})
        (frame,) = second.frames_until(tagged("n"))
        assert frame[2][1] == "ucm-test" and frame[2][4] == {"message": "hi", "foo": 1}
        assert frame[2][7] == "hi"

    def test_inputs_before_auth_are_ignored(self, world):
        """An order sent on an unauthenticated connection gets no answer and places nothing."""
        start, connect = world
        emu = start()
        trader = connect(emu)
        trader.input("on", {"cid": 1, "type": "EXCHANGE MARKET", "symbol": "tBTCUSD", "amount": "0.01"})
        assert trader.quiet() == []
        assert emu.account(DEMO_KEY).wallets[("exchange", "BTC")] == 2


# -- dead-man switch and input faults ---------------------------------------------------------------
def rest_order(trader, emu, cid):
    """Place a buy far below the market; return its order ID."""
    bid = emu.book_view("tBTCUSD")[0][0][0]
    trader.input("on", {"cid": cid, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01",
                        "price": str(bid - 500)})
    return trader.frames_until(tagged("on"))[-1][2][0]


class TestDeadManSwitch:
    def test_drop_with_dms_cancels_orders_on_other_connections(self, world):
        """Dropping a dms:4 connection cancels the account's orders; the other connection sees oc."""
        start, connect = world
        emu = start()
        watcher = connect(emu)
        watcher.login()
        trader = connect(emu)
        trader.login(dms=4)
        order_id = rest_order(trader, emu, 1)
        conn = emu.authenticated_connections(DEMO_KEY)[-1]
        emu.drop_connections(conn)
        oc = watcher.frames_until(tagged("oc"))[-1][2]
        assert oc[0] == order_id and oc[13] == "CANCELED"
        assert emu.account(DEMO_KEY).orders == ()

    def test_without_dms_orders_survive(self, world):
        """A connection closed without dms leaves the account's orders open."""
        start, connect = world
        emu = start()
        trader = connect(emu)
        trader.login()
        order_id = rest_order(trader, emu, 1)
        trader.close()
        assert emu.wait_for_authenticated(0)
        assert emu.account(DEMO_KEY).order(order_id) is not None


class TestInputFaults:
    def test_drop_before_applying(self, world):
        """drop_after_next_input(): the connection drops and the order is never placed."""
        start, connect = world
        emu = start()
        trader = connect(emu)
        trader.login()
        emu.drop_after_next_input()
        trader.input("on", {"cid": 1, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01",
                            "price": "100"})
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            trader.until(lambda f: False)
        assert emu.wait_for_authenticated(0)
        assert emu.account(DEMO_KEY).orders == ()

    def test_drop_after_applying(self, world):
        """drop_after_next_input(applied=True): the order is placed; the other connection sees it."""
        start, connect = world
        emu = start()
        watcher = connect(emu)
        watcher.login()
        trader = connect(emu)
        trader.login()
        emu.drop_after_next_input(applied=True)
        trader.input("on", {"cid": 9, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01",
                            "price": "100"})
        assert watcher.frames_until(tagged("on"))[-1][2][2] == 9
        assert emu.wait_for_authenticated(1)
        assert [o.cid for o in emu.account(DEMO_KEY).orders] == [9]

    def test_input_delay(self, world):
        """set_input_delay holds each input back by that long."""
        start, connect = world
        emu = start()
        trader = connect(emu)
        trader.login()
        emu.set_input_delay(0.3)
        sent = time.monotonic()
        trader.input("calc", [["balance"]])
        trader.until(tagged("bu"))
        assert time.monotonic() - sent >= 0.3
