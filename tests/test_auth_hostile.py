"""Authentication never hangs and never pretends, and odd answers to orders still settle them:
against a scripted account server (a real WebSocket server on loopback) and the emulator."""
import json
import threading
import time

import attrs
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from bfxsync import errors
from bfxsync.auth import MicrosecondNonce
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET

from conftest import FAST, wait_until

DEMO = {"api_key": DEMO_KEY, "api_secret": DEMO_SECRET}
INFO = {"event": "info", "version": 2, "serverId": "scripted", "platform": {"status": 1}}
AUTH_OK = {"event": "auth", "status": "OK", "chanId": 0, "userId": 7, "caps": {}}
WALLETS = [0, "ws", [["exchange", "USD", 999999999, 0, None, None, None]]]


class AccountServer:
    """A channel-0 server whose answer to ``auth`` is a script: ``on_auth(server, ws, attempt)``
    sends what it likes for the ``attempt``-th auth (1-based). Inputs are recorded per connection."""

    def __init__(self, on_auth):
        self.on_auth = on_auth
        self.connections = 0
        self.auths = []
        self.inputs = []  # (connection number, input)
        self.sockets = []
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/ws/2"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, ws):
        self.connections += 1
        number = self.connections
        self.sockets.append(ws)
        ws.send(json.dumps(INFO))
        try:
            for text in ws:
                message = json.loads(text)
                if isinstance(message, dict) and message.get("event") == "conf":
                    ws.send(json.dumps({"event": "conf", "status": "OK", "flags": message.get("flags", 0)}))
                elif isinstance(message, dict) and message.get("event") == "auth":
                    self.auths.append(number)
                    self.on_auth(self, ws, len(self.auths))
                elif isinstance(message, dict) and message.get("event") == "ping":
                    ws.send(json.dumps({"event": "pong", "ts": int(time.time() * 1000), "cid": message.get("cid")}))
                elif isinstance(message, list):
                    self.inputs.append((number, message))
        except ConnectionClosed:
            pass

    def send(self, ws, frame):
        ws.send(json.dumps(frame))

    def close(self):
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def scripted():
    servers = []

    def make(on_auth):
        server = AccountServer(on_auth)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def answer_ok(server, ws, number):
    server.send(ws, AUTH_OK)
    server.send(ws, WALLETS)
    for tag in ("os", "ps", "fos", "fcs", "fls"):
        server.send(ws, [0, tag, []])


def test_an_unanswered_auth_redials_and_authenticates_on_the_next_connection(scripted, make_client):
    """No answer to auth within request_timeout: the connection is redialled (reported), not left for ever."""
    def on_auth(server, ws, number):
        if number > 1:
            answer_ok(server, ws, number)
    server = scripted(on_auth)
    client = make_client(server.url, attrs.evolve(FAST, request_timeout=1.0), **DEMO)
    recoveries = []
    client.on_recovery(recoveries.append)
    client.wait_authenticated(10)
    assert len(server.auths) == 2 and server.auths[0] != server.auths[1]  # the second on a new connection
    assert client.stats()["auth_timeouts"] == 1
    assert [r.kind for r in recoveries] == ["reauthenticate"] and "no answer to auth" in recoveries[0].reason


def test_account_frames_before_a_refusal_never_become_state(scripted, make_client):
    """Snapshots first, FAILED later: wait_authenticated raises, and the fake wallet never appears."""
    refused = threading.Event()

    def on_auth(server, ws, number):
        server.send(ws, WALLETS)
        server.send(ws, [0, "os", []])
        time.sleep(0.3)  # the scenario under test: the answer comes after the frames
        server.send(ws, {"event": "auth", "status": "FAILED", "chanId": 0, "code": 10100, "msg": "apikey: invalid"})
        refused.set()
    server = scripted(on_auth)
    client = make_client(server.url, FAST, **DEMO)
    with pytest.raises(errors.AuthenticationError, match="apikey: invalid"):
        client.account.wait_authenticated(10)
    assert not client.account.authenticated and not client.account.snapshot().wallets
    assert client.stats()["account_frames_before_auth"] == 2


def test_a_final_refusal_makes_every_wait_and_account_call_raise_at_once(scripted, make_client):
    def on_auth(server, ws, number):
        server.send(ws, {"event": "auth", "status": "FAILED", "chanId": 0, "code": 10100, "msg": "apikey: invalid"})
    server = scripted(on_auth)
    client = make_client(server.url, FAST, **DEMO)
    with pytest.raises(errors.AuthenticationError):
        client.account.wait_authenticated(10)
    for call in (lambda: client.wait_connected(30), lambda: client.account.wait_authenticated(30),
                 lambda: client.account.submit_order("tBTCUSD", "0.001", "1000")):
        started = time.monotonic()
        with pytest.raises(errors.AuthenticationError):
            call()
        assert time.monotonic() - started < 5.0  # at once, not after the 30 s waits
    assert len(server.auths) == 1  # final: not retried


@pytest.mark.parametrize("answer", [
    {"event": "auth", "status": "FAIL"},
    {"event": "auth", "status": "FAILED", "code": 10999, "msg": "something new"},
])
def test_a_refusal_without_a_known_code_still_gets_a_hint(scripted, make_client, answer):
    server = scripted(lambda server, ws, number: server.send(ws, answer))
    client = make_client(server.url, FAST, **DEMO)
    with pytest.raises(errors.AuthenticationError) as caught:
        client.account.wait_authenticated(10)
    assert caught.value.hint and "None" not in str(caught.value)


def test_a_nonce_half_a_second_behind_another_clients_authenticates_after_retrying(emulator, make_client):
    """Another client on the key signs with a clock 0.5 s ahead: nonce: small, then a fresh nonce succeeds."""
    ahead = MicrosecondNonce(clock=lambda: time.time() + 0.5)
    make_client(emulator.url, FAST, **DEMO, nonce=ahead).wait_authenticated(10)
    behind = make_client(emulator.url, FAST, **DEMO, nonce=MicrosecondNonce())
    started = time.monotonic()
    behind.wait_authenticated(15)
    assert time.monotonic() - started < 15
    assert behind.stats()["auth_retries"] >= 1


def test_an_all_null_update_error_fails_the_update_in_flight(scripted, make_client):
    """A real 2018 ou-req ERROR carries an all-null order array: it answers the update in flight."""
    def on_auth(server, ws, number):
        answer_ok(server, ws, number)
    server = scripted(on_auth)
    client = make_client(server.url, FAST, **DEMO)
    client.wait_authenticated(10)
    request = client.account.update_order(12345, price="100")
    assert wait_until(lambda: server.inputs, 5)
    null_row = [None] * 32
    server.send(server.sockets[-1], [0, "n", [1523955674172, "ou-req", None, None, null_row, None, "ERROR",
                                              "Invalid order: minimum size for ETC/USD is 0.8"]])
    with pytest.raises(errors.OrderError, match="minimum size for ETC/USD is 0.8"):
        request.result(5)


def test_an_error_without_text_says_no_reason_was_given(scripted, make_client):
    server = scripted(answer_ok)
    client = make_client(server.url, FAST, **DEMO)
    client.wait_authenticated(10)
    request = client.account.cancel_order(555)
    assert wait_until(lambda: server.inputs, 5)
    row = [555] + [None] * 31
    server.send(server.sockets[-1], [0, "n", [1, "oc-req", None, None, row, None, "ERROR", None]])
    with pytest.raises(errors.OrderError, match="gave no reason") as caught:
        request.result(5)
    assert "None" not in str(caught.value)


def test_answers_that_do_not_match_what_was_sent_are_not_taken(scripted, make_client):
    """Another client's order with our cid (other amount, price or day) never settles our submit."""
    server = scripted(answer_ok)
    client = make_client(server.url, FAST, **DEMO)
    client.wait_authenticated(10)
    request = client.account.submit_order("tBTCUSD", "0.002", "2000", cid=99)
    assert wait_until(lambda: server.inputs, 5)
    now = int(time.time() * 1000)

    def order(oid, amount, price, mts=now):
        return [oid, None, 99, "tBTCUSD", mts, mts, amount, amount, "EXCHANGE LIMIT", None, None, None, 0, "ACTIVE",
                None, None, price, 0, 0, 0, None, None, None, 0, 0, 0, None, None, "API>BFX", None, None, None]

    ws = server.sockets[-1]
    for row in (order(1, 0.001, 1000), order(2, 0.002, 2001), order(3, 0.002, 2000, mts=now - 3 * 86400000)):
        server.send(ws, [0, "n", [now, "on-req", None, None, row, None, "SUCCESS", "Submitting"]])
        server.send(ws, [0, "on", row])
    assert not request.done
    mine = order(4, 0.002, 2000)
    server.send(ws, [0, "on", mine])
    server.send(ws, [0, "n", [now, "on-req", None, None, mine, None, "SUCCESS", "Submitting"]])
    assert request.result(5).id == 4
