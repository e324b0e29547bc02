"""The emulator's fault injection, rate limit, on-the-fly symbols and packaging edges.

Driven with plain websocket-client sockets (not the bfxsync client). Every read has a
timeout and every wait a deadline; absence of traffic is proven with ping round trips.
"""
import contextlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import websocket

from bfxsync import protocol
from bfxsync.emulator import DEFAULT_SYMBOLS, Emulator, EmulatorConfig
from bfxsync.emulator.ratelimit import ConnectLimiter

QUIET = 60.0  # a heartbeat interval that never fires during a test
_cids = itertools.count(1)


class Conn:
    """A websocket-client socket speaking JSON; ``info`` is not awaited (it may be held)."""

    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=3)

    def send(self, **event):
        self.ws.send(json.dumps(event))

    def recv(self, timeout=3.0):
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv())

    def until(self, predicate, timeout=3.0):
        """Frames up to and including the first one matching ``predicate``."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching frame within {timeout} s; got {frames[-5:]}"
            frames.append(self.recv(remaining))
            if predicate(frames[-1]):
                return frames

    def round_trip(self):
        """Ping and return every frame that arrived before the pong (the pong excluded)."""
        cid = next(_cids)
        self.send(event="ping", cid=cid)
        return self.until(lambda f: isinstance(f, dict) and f.get("event") == "pong" and f.get("cid") == cid)[:-1]

    def request(self, **event):
        """Send an event; return the first event frame that follows."""
        self.send(**event)
        return self.until(lambda f: isinstance(f, dict))[-1]

    def close(self):
        try:
            self.ws.close(timeout=0.5)
        finally:
            self.ws.shutdown()


def arrays(frames, chan_id=None):
    return [f for f in frames if isinstance(f, list) and (chan_id is None or f[0] == chan_id)]


def events(frames):
    return [f for f in frames if isinstance(f, dict)]


@pytest.fixture
def start():
    """Start emulators and open connections; everything is closed after the test."""
    emulators, conns = [], []

    def run(**options):
        options.setdefault("heartbeat_interval", QUIET)
        options.setdefault("rate", 50.0)
        options.setdefault("seed", 5)
        emu = Emulator(**options).start()
        emulators.append(emu)
        return emu

    def connect(emu, info=True):
        conn = Conn(emu.url)
        conns.append(conn)
        if info:
            conn.info = conn.recv()
            assert conn.info["event"] == "info"
        return conn

    run.connect = connect
    yield run
    for conn in conns:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            conn.close()
    for emu in emulators:
        emu.stop()


def subscribe(conn, **fields):
    ack = conn.request(event="subscribe", **fields)
    assert ack["event"] == "subscribed", ack
    return ack["chanId"]


def handshake_status(url):
    """The HTTP status of a handshake: 101 if it upgraded (the socket is closed again)."""
    try:
        ws = websocket.create_connection(url, timeout=3)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.close(timeout=0.5)
    return 101


# -- connection-rate limit ----------------------------------------------------------------
class TestConnectLimiter:
    def test_admits_limit_per_window_then_rolls(self):
        """Up to ``limit`` admissions per window; the oldest one ageing out frees a slot."""
        now = [0.0]
        limiter = ConnectLimiter(2, 10.0, clock=lambda: now[0])
        assert limiter.admit("a")
        now[0] = 5.0
        assert limiter.admit("a")
        assert not limiter.admit("a")
        assert limiter.admit("b")  # per key
        now[0] = 9.9
        assert not limiter.admit("a")  # refused attempts are not recorded ...
        now[0] = 10.0
        assert limiter.admit("a")  # ... so the first admission ageing out lets one in
        assert not limiter.admit("a")

    def test_none_admits_everything_and_bad_arguments_raise(self):
        """limit None disables the limiter; a zero limit or window is a usage error."""
        limiter = ConnectLimiter(None, 1.0)
        assert all(limiter.admit("a") for _ in range(1000))
        with pytest.raises(ValueError):
            ConnectLimiter(0, 1.0)
        with pytest.raises(ValueError):
            ConnectLimiter(1, 0.0)

    def test_config_validates_the_limit(self):
        """connect_limit must be a positive int or None; the default is api-pub's 20 a minute."""
        config = EmulatorConfig()
        assert (config.connect_limit, config.connect_window) == (20, 60.0)
        with pytest.raises(ValueError):
            EmulatorConfig(connect_limit=0)
        with pytest.raises(ValueError):
            EmulatorConfig(connect_window=0)


class TestRateLimit:
    def test_handshakes_past_the_limit_get_429_and_are_counted(self, start):
        """With connect_limit=3 the fourth handshake in the window is refused with HTTP 429."""
        emu = start(connect_limit=3)
        assert [handshake_status(emu.url) for _ in range(4)] == [101, 101, 101, 429]
        assert emu.rate_limited == 1
        assert emu.handshakes == 3

    def test_window_rolls_and_refusals_do_not_extend_it(self, start):
        """Once the oldest admitted handshake is connect_window old, the next one gets in."""
        emu = start(connect_limit=1, connect_window=0.3)
        before_first = time.monotonic()  # the server records the admission after this, before the reply
        assert handshake_status(emu.url) == 101
        assert handshake_status(emu.url) == 429
        deadline, waiter = time.monotonic() + 3.0, threading.Event()
        while handshake_status(emu.url) != 101:
            assert time.monotonic() < deadline, "never admitted again"
            waiter.wait(0.02)  # poll interval
        assert time.monotonic() - before_first >= 0.3
        assert emu.handshakes == 2 and emu.rate_limited >= 1

    def test_none_disables_the_limit(self, start):
        """connect_limit=None admits more than api-pub's 20 a minute."""
        emu = start(connect_limit=None)
        assert all(handshake_status(emu.url) == 101 for _ in range(25))
        assert emu.handshakes == 25 and emu.rate_limited == 0

    def test_refuse_connections_is_not_counted_as_rate_limited(self, start):
        """refuse_connections answers every handshake itself; rate_limited stays 0."""
        emu = start()
        emu.refuse_connections(503)
        assert handshake_status(emu.url) == 503
        emu.refuse_connections(None)
        assert handshake_status(emu.url) == 101
        assert (emu.handshakes, emu.rate_limited) == (1, 0)


# -- mute_channels ------------------------------------------------------------------------
class TestMuteChannels:
    def test_muted_connection_gets_events_but_no_channel_frames(self, start):
        """Muted: no data and no hb on any chanId, yet pong, subscribed, conf and unsubscribed come."""
        emu = start(heartbeat_interval=0.1)
        conn = start.connect(emu)
        book = subscribe(conn, channel="book", symbol="tBTCUSD")
        conn.until(lambda f: isinstance(f, list) and f[0] == book)
        emu.mute_channels()
        conn.round_trip()  # frames queued before the mute are written before this pong
        ticker = subscribe(conn, channel="ticker", symbol="tETHUSD")
        assert conn.request(event="conf", flags=protocol.FLAG_SEQ_ALL)["event"] == "conf"
        # Several heartbeat intervals with the market running: only pongs arrive.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert arrays(conn.round_trip()) == []
        assert conn.request(event="unsubscribe", chanId=ticker)["event"] == "unsubscribed"
        emu.mute_channels(False)
        conn.until(lambda f: isinstance(f, list) and f[0] == book)

    def test_mute_one_connection(self, start):
        """With conn=ID only that connection goes quiet; the other keeps its data."""
        emu = start()
        quiet, loud = start.connect(emu), start.connect(emu)
        quiet_chan = subscribe(quiet, channel="ticker", symbol="tBTCUSD")
        loud_chan = subscribe(loud, channel="ticker", symbol="tBTCUSD")
        emu.mute_channels(conn=emu.connection_ids()[0])
        quiet.round_trip()
        emu.step(3)
        assert arrays(quiet.round_trip()) == []
        loud.until(lambda f: isinstance(f, list) and f[0] == loud_chan)
        assert quiet_chan

    def test_mute_applies_to_new_connections(self, start):
        """mute_channels() with no conn also mutes connections opened later: no snapshot after the ack."""
        emu = start(rate=0)
        emu.mute_channels()
        conn = start.connect(emu)
        subscribe(conn, channel="book", symbol="tBTCUSD")
        emu.step(2)
        assert arrays(conn.round_trip()) == []


# -- hold_info ----------------------------------------------------------------------------
class TestHoldInfo:
    def test_held_connection_gets_pongs_but_no_info_and_no_subscriptions(self, start):
        """A connection opened while held never gets info; pings are answered, subscribes ignored."""
        emu = start()
        emu.hold_info()
        held = start.connect(emu, info=False)
        assert held.round_trip() == []  # the pong is the very first frame
        held.send(event="subscribe", channel="ticker", symbol="tBTCUSD")
        assert held.round_trip() == []
        assert emu.subscriptions() == []
        emu.hold_info(False)
        fresh = start.connect(emu)  # gets its info (asserted by connect)
        assert subscribe(fresh, channel="ticker", symbol="tBTCUSD")
        assert events(held.round_trip()) == []  # still no info for the held one


# -- subscribe / unsubscribe replies ------------------------------------------------------
class TestReplies:
    def test_subscribe_reply_none_ignores_requests(self, start):
        """Mode "none": no ack, no error, no subscription; "ok" answers again."""
        emu = start()
        conn = start.connect(emu)
        emu.set_subscribe_reply("none")
        conn.send(event="subscribe", channel="ticker", symbol="tBTCUSD", subId="a")
        conn.send(event="subscribe", channel="ticker", symbol="tNOPE", subId="b")
        assert conn.round_trip() == []
        assert emu.subscriptions() == []
        emu.set_subscribe_reply("ok")
        assert subscribe(conn, channel="ticker", symbol="tBTCUSD")

    def test_unsubscribe_reply_none_stops_data_without_an_answer(self, start):
        """Mode "none": the channel is removed and goes quiet, but no unsubscribed event comes."""
        emu = start()
        conn = start.connect(emu)
        chan = subscribe(conn, channel="ticker", symbol="tBTCUSD")
        emu.set_unsubscribe_reply("none")
        conn.send(event="unsubscribe", chanId=chan)
        assert events(conn.round_trip()) == []
        assert emu.wait_for_subscriptions(0, 2.0)
        emu.step(3)
        assert conn.round_trip() == []

    def test_unsubscribe_reply_error_without_chan_id(self, start):
        """Mode "error_no_chanid": a bare 10400 error with no echo; the channel keeps streaming."""
        emu = start()
        conn = start.connect(emu)
        chan = subscribe(conn, channel="ticker", symbol="tBTCUSD")
        emu.set_unsubscribe_reply("error_no_chanid")
        reply = conn.request(event="unsubscribe", chanId=chan)
        assert reply == {"event": "error", "msg": "unsubscribe: invalid", "code": 10400}
        assert len(emu.subscriptions()) == 1
        conn.until(lambda f: isinstance(f, list) and f[0] == chan)
        emu.set_unsubscribe_reply("ok")
        assert conn.request(event="unsubscribe", chanId=chan) == {
            "event": "unsubscribed", "status": "OK", "chanId": chan}

    def test_unknown_modes_are_rejected(self, start):
        """A misspelt mode raises at once instead of silently behaving like "ok"."""
        emu = start()
        with pytest.raises(ValueError, match="error_no_chanid"):
            emu.set_unsubscribe_reply("error")
        with pytest.raises(ValueError):
            emu.set_subscribe_reply("never")


# -- corrupt_checksums --------------------------------------------------------------------
def next_checksum(emu, conn, chan):
    """Step the (rate 0) market until ``chan`` gets a cs frame; return (sent, correct)."""
    for _ in range(50):
        emu.step(1)
        cs = [f for f in arrays(conn.round_trip(), chan) if f[1] == protocol.CHECKSUM]
        if cs:
            return cs[-1][2], emu.book_checksum("tBTCUSD" if chan == conn.btc else "tETHUSD")
    raise AssertionError("no cs frame in 50 ticks")


class TestCorruptChecksums:
    def test_only_the_named_book_gets_wrong_checksums_until_turned_off(self, start):
        """corrupt_checksums sends correct XOR 1 (a valid int32) for that book only, on every connection."""
        emu = start(rate=0)
        conns = [start.connect(emu), start.connect(emu)]
        for conn in conns:
            assert conn.request(event="conf", flags=protocol.FLAG_CHECKSUM)["event"] == "conf"
            conn.btc = subscribe(conn, channel="book", symbol="tBTCUSD")
            conn.eth = subscribe(conn, channel="book", symbol="tETHUSD")
        emu.corrupt_checksums("tBTCUSD")
        for conn in conns:
            sent, correct = next_checksum(emu, conn, conn.btc)
            assert sent == correct ^ 1 and -2**31 <= sent < 2**31
            sent, correct = next_checksum(emu, conn, conn.eth)
            assert sent == correct
        emu.corrupt_checksums("tBTCUSD", on=False)
        sent, correct = next_checksum(emu, conns[0], conns[0].btc)
        assert sent == correct

    def test_bad_precision_is_rejected(self, start):
        """prec is checked against the book precisions."""
        with pytest.raises(ValueError):
            start().corrupt_checksums("tBTCUSD", "P9")


# -- any_symbol ---------------------------------------------------------------------------
class TestAnySymbol:
    def test_unknown_symbols_are_invalid_by_default(self, start):
        """Without any_symbol a symbol outside EmulatorConfig.symbols gets 10300."""
        conn = start.connect(start())
        reply = conn.request(event="subscribe", channel="ticker", symbol="tFOOBAR")
        assert (reply["event"], reply["code"], reply["msg"]) == ("error", 10300, "symbol: invalid")

    def test_symbols_config_replaces_the_default_list(self, start):
        """symbols= serves exactly the listed symbols."""
        conn = start.connect(start(symbols=["tFOOBAR"]))
        assert subscribe(conn, channel="ticker", symbol="tFOOBAR")
        assert conn.request(event="subscribe", channel="ticker", symbol="tBTCUSD")["code"] == 10300

    def test_any_well_formed_symbol_gets_a_market(self, start):
        """any_symbol creates markets on the fly for every channel type; malformed ones still fail."""
        emu = start(any_symbol=True)
        conn = start.connect(emu)
        book = subscribe(conn, channel="book", symbol="tABC:USD", prec="R0")
        snapshot = conn.until(lambda f: isinstance(f, list) and f[0] == book)[-1]
        assert len(snapshot[1]) == 50
        assert subscribe(conn, channel="ticker", symbol="fXYZ")
        assert subscribe(conn, channel="candles", key="trade:1m:tNEWUSD")
        assert subscribe(conn, channel="status", key="deriv:tNEWF0:USTF0")
        for bad in ("tfoo", "xBTCUSD", "tBTC:"):
            reply = conn.request(event="subscribe", channel="trades", symbol=bad)
            assert (reply["event"], reply["msg"]) == ("error", "symbol: invalid"), bad

    def test_created_markets_are_seeded_from_seed_and_symbol(self, start):
        """The same seed and symbol give the same book, whatever was subscribed before."""
        first, second = start(any_symbol=True, rate=0), start(any_symbol=True, rate=0)
        a, b = start.connect(first), start.connect(second)
        subscribe(b, channel="ticker", symbol="tOTHERUSD")  # an earlier creation changes nothing
        books = []
        for conn in (a, b):
            chan = subscribe(conn, channel="book", symbol="tFOOBAR")
            books.append(conn.until(lambda f, c=chan: isinstance(f, list) and f[0] == c)[-1][1])
        assert books[0] == books[1]
        assert first.book_view("tFOOBAR") == second.book_view("tFOOBAR")


# -- lifecycle and packaging --------------------------------------------------------------
def test_url_and_port_before_start_raise():
    """Reading url or port before start() says what to do instead of returning port 0."""
    emu = Emulator()
    with pytest.raises(RuntimeError, match=r"not started; call start\(\) or use it as a context manager"):
        _ = emu.url
    with pytest.raises(RuntimeError, match="not started"):
        _ = emu.port
    with emu:
        assert emu.url == f"ws://127.0.0.1:{emu.port}/ws/2"


def run_python(code_or_args, tmp_path=None, timeout=20):
    env = dict(os.environ)
    if tmp_path is not None:  # shadow websockets with a package that fails to import
        fake = tmp_path / "websockets"
        fake.mkdir()
        (fake / "__init__.py").write_text(
            "raise ModuleNotFoundError(\"No module named 'websockets'\", name='websockets')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)


class TestWithoutWebsockets:
    def test_import_names_what_to_install(self):
        """Importing Emulator without websockets raises ModuleNotFoundError with the pip command."""
        result = run_python(textwrap.dedent("""
            import sys
            sys.modules["websockets"] = None  # as if it were not installed
            from bfxsync.emulator import EmulatorConfig  # pure: still importable
            try:
                from bfxsync.emulator import Emulator
            except ModuleNotFoundError as exc:
                print(exc)
            """))
        assert result.returncode == 0, result.stderr
        assert 'pip install "websockets>=15"' in result.stdout and "bfxsync[emulator]" not in result.stdout

    def test_cli_prints_one_line_and_exits_2(self, tmp_path):
        """python -m bfxsync.emulator without websockets: one stderr line, exit status 2."""
        result = run_python(["-m", "bfxsync.emulator"], tmp_path)
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and 'pip install "websockets>=15"' in lines[0]


class TestCli:
    def test_help_lists_default_symbols_and_new_options(self):
        """--help documents --symbols (with the default list) and --any-symbol."""
        result = run_python(["-m", "bfxsync.emulator", "--help"])
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "--symbols" in text and "--any-symbol" in text
        assert all(symbol in text.replace(" ", "") for symbol in DEFAULT_SYMBOLS)

    def test_config_docstring_lists_default_symbols(self):
        """EmulatorConfig documents the default symbol list."""
        assert all(f"``{symbol}``" in EmulatorConfig.__doc__ for symbol in DEFAULT_SYMBOLS)

    def test_cli_serves_the_given_symbols(self):
        """--symbols replaces the list and --any-symbol creates others on the fly."""
        proc = subprocess.Popen([sys.executable, "-m", "bfxsync.emulator", "--rate", "0",
                                 "--symbols", "tFOOBAR,fQUX", "--any-symbol"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = proc.stdout.readline().strip()
            assert url.startswith("ws://127.0.0.1:"), proc.stderr.read() if not url else url
            conn = Conn(url)
            try:
                assert conn.recv()["event"] == "info"
                assert subscribe(conn, channel="ticker", symbol="tFOOBAR")
                assert subscribe(conn, channel="ticker", symbol="fQUX")
                assert subscribe(conn, channel="ticker", symbol="tANYUSD")
            finally:
                conn.close()
        finally:
            proc.terminate()
            proc.wait(5)
