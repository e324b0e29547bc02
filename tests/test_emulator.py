"""The emulator, driven with plain websocket-client sockets (not the bfxsync client).

Every read has a timeout and every wait a deadline; nothing sleeps for a condition.
"""
import json
import ssl
import struct
import threading
import time
import uuid
import zlib
from decimal import Decimal

import pytest
import trustme
import websocket

from bfxsync import protocol
from bfxsync.emulator import Emulator
from bfxsync.emulator.wire import decimal_strings, encode

from conftest import wait_until

SEQ, TS, CS, BULK, DEC_S = (protocol.FLAG_SEQ_ALL, protocol.FLAG_TIMESTAMP, protocol.FLAG_CHECKSUM,
                            protocol.FLAG_BULK_UPDATES, protocol.FLAG_DEC_S)
QUIET = 60.0  # a heartbeat interval that never fires during a test


# -- helpers -------------------------------------------------------------------------------
class Client:
    """A websocket-client socket speaking JSON; floats are kept as their wire text."""

    def __init__(self, url, **kwargs):
        self.ws = websocket.create_connection(url, timeout=3, **kwargs)
        self.log = []  # every frame received, in order
        self.info = self.recv()

    def send(self, **event):
        self.ws.send(json.dumps(event))

    def recv(self, timeout=3.0):
        self.ws.settimeout(timeout)
        frame = json.loads(self.ws.recv(), parse_float=str)
        self.log.append(frame)
        return frame

    def recv_until(self, predicate, timeout=3.0):
        """Frames up to and including the first one matching ``predicate``."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s; got {frames[-5:]}")
            frame = self.recv(remaining)
            frames.append(frame)
            if predicate(frame):
                return frames

    def request(self, timeout=3.0, **event):
        """Send an event and return the first event (object) frame that follows."""
        self.send(**event)
        return self.recv_until(lambda f: isinstance(f, dict), timeout)[-1]

    def subscribe(self, **fields):
        """Subscribe and return ``(ack, snapshot_or_None)``; fails on an error reply."""
        ack = self.request(event="subscribe", **fields)
        assert ack["event"] == "subscribed", ack
        return ack

    def close(self):
        try:
            self.ws.close(timeout=0.5)
        finally:
            self.ws.shutdown()  # close() skips this when the server already went away


def is_event(name):
    return lambda f: isinstance(f, dict) and f.get("event") == name


def on_chan(chan_id):
    return lambda f: isinstance(f, list) and f[0] == chan_id


def array_frames(frames, chan_id=None):
    return [f for f in frames if isinstance(f, list) and (chan_id is None or f[0] == chan_id)]


@pytest.fixture
def start():
    """Start emulators and open clients; everything is closed after the test."""
    emulators, clients = [], []

    def run(**options):
        options.setdefault("heartbeat_interval", QUIET)
        options.setdefault("rate", 50.0)
        options.setdefault("seed", 3)
        emu = Emulator(**options).start()
        emulators.append(emu)
        return emu

    def connect(emu, **kwargs):
        client = Client(emu.url, **kwargs)
        clients.append(client)
        return client

    run.connect = connect
    yield run
    for client in clients:
        try:
            client.close()
        except Exception:
            pass
    for emu in emulators:
        emu.stop()


@pytest.fixture
def emu(start):
    return start()


@pytest.fixture
def client(start, emu):
    return start.connect(emu)


# -- wire text ----------------------------------------------------------------------------
class TestWire:
    def test_floats_are_written_as_javascript_numbers(self):
        """The encoder writes 1e-8, 30000 and 0.0000082 as JavaScript does, ints unchanged."""
        assert encode([30000.0, 1e-8, 8.2e-6, -0.25, 12, None, "x"]) == '[30000,1e-8,0.0000082,-0.25,12,null,"x"]'
        assert encode({"a": 1.5e20, "b": [True, False]}) == '{"a":150000000000000000000,"b":[true,false]}'

    def test_decimal_strings_turns_only_floats_into_strings(self):
        """DEC_S: floats become their number text; IDs, counts and periods stay numbers."""
        assert decimal_strings([12, [30000.0, 2, 1e-8]]) == [12, ["30000", 2, "1e-8"]]


# -- connection basics --------------------------------------------------------------------
class TestConnection:
    def test_info_frame_on_connect(self, client):
        """The first frame is info with version 2, a uuid serverId and platform status 1."""
        assert client.info["event"] == "info"
        assert client.info["version"] == 2
        assert client.info["platform"] == {"status": 1}
        uuid.UUID(client.info["serverId"])

    def test_info_version_and_platform_status_are_configurable(self, start):
        """Tests of version mismatch and maintenance can change the info frame."""
        emu = start(version=3, platform_status=0)
        info = start.connect(emu).info
        assert info["version"] == 3 and info["platform"] == {"status": 0}

    def test_any_path_is_served(self, start, emu):
        """The client uses /ws/2, but any path is accepted."""
        assert emu.url.endswith(":%d/ws/2" % emu.port)
        client = Client(emu.url.replace("/ws/2", "/other"))
        try:
            assert client.info["event"] == "info"
        finally:
            client.close()

    def test_conf_acks_with_the_flags(self, client):
        """conf is answered with status OK and the flags."""
        assert client.request(event="conf", flags=SEQ | CS) == {"event": "conf", "status": "OK", "flags": SEQ | CS}

    def test_ping_pong_echoes_cid(self, client):
        """ping gets pong with the cid and a server time in ms."""
        before = int(time.time() * 1000)
        pong = client.request(event="ping", cid=1234)
        assert pong["event"] == "pong" and pong["cid"] == 1234
        assert before - 1000 <= pong["ts"] <= int(time.time() * 1000) + 1000

    def test_tls(self, start, tmp_path):
        """With certfile/keyfile the emulator serves wss://, verified against a trustme CA."""
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        ca.cert_pem.write_to_path(str(cafile))
        emu = start(certfile=str(certfile), keyfile=str(keyfile))
        assert emu.url.startswith("wss://127.0.0.1:")
        client = start.connect(emu, sslopt={"ca_certs": str(cafile), "cert_reqs": ssl.CERT_REQUIRED})
        assert client.info["event"] == "info"
        ack = client.subscribe(channel="book", symbol="tBTCUSD")
        assert client.recv_until(on_chan(ack["chanId"]))[-1][1]
        emu.drop_connections()
        with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
            client.recv_until(lambda f: False, timeout=2.0)


# -- subscribe acks -----------------------------------------------------------------------
class TestAcks:
    def test_ticker_trading(self, client):
        """Trading symbols are acked with pair; subId is echoed."""
        ack = client.subscribe(channel="ticker", symbol="tBTCUSD", subId="s1")
        assert ack == {"event": "subscribed", "channel": "ticker", "chanId": ack["chanId"],
                       "symbol": "tBTCUSD", "pair": "BTCUSD", "subId": "s1"}

    def test_trades_funding_without_sub_id(self, client):
        """Funding symbols are acked with currency; no subId is invented."""
        ack = client.subscribe(channel="trades", symbol="fUSD")
        assert ack == {"event": "subscribed", "channel": "trades", "chanId": ack["chanId"],
                       "symbol": "fUSD", "currency": "USD"}

    def test_book_defaults_are_filled_and_len_is_a_string(self, client):
        """A bare book request is acked with prec P0, freq F0 and len "25"."""
        ack = client.subscribe(channel="book", symbol="tETHUSD", subId=123)
        assert ack == {"event": "subscribed", "channel": "book", "chanId": ack["chanId"], "symbol": "tETHUSD",
                       "prec": "P0", "freq": "F0", "len": "25", "subId": 123, "pair": "ETHUSD"}

    @pytest.mark.parametrize("length", [1, "1", 100, "250"])
    def test_book_len_number_or_string_comes_back_as_string(self, client, length):
        """len may be sent as a number or a string; the ack always has a string."""
        ack = client.subscribe(channel="book", symbol="fBTC", prec="R0", freq="F1", len=length)
        assert (ack["prec"], ack["freq"], ack["len"], ack["currency"]) == ("R0", "F1", str(length), "BTC")

    @pytest.mark.parametrize("key", ["trade:1m:tBTCUSD", "trade:1W:tBTCF0:USTF0",
                                     "trade:1m:fUSD:p30", "trade:1D:fUSD:a30:p2:p30"])
    def test_candles(self, client, key):
        """Candle acks carry the key (trading, derivative, funding period and aggregate keys)."""
        ack = client.subscribe(channel="candles", key=key, subId="c")
        assert ack == {"event": "subscribed", "channel": "candles", "chanId": ack["chanId"], "key": key, "subId": "c"}

    @pytest.mark.parametrize("key", ["deriv:tBTCF0:USTF0", "liq:global"])
    def test_status(self, client, key):
        """Status acks carry the key."""
        ack = client.subscribe(channel="status", key=key)
        assert ack == {"event": "subscribed", "channel": "status", "chanId": ack["chanId"], "key": key}

    def test_chan_ids_are_unique_and_reported(self, emu, client):
        """Each subscription gets its own chanId; subscriptions() lists them with their params."""
        a = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        b = client.subscribe(channel="book", symbol="tBTCUSD", prec="P1", len=100)["chanId"]
        assert a != b and a > 0 and b > 0
        assert emu.wait_for_subscriptions(2, 2.0)
        subs = sorted(emu.subscriptions(), key=lambda s: s[1])
        assert [s[1:] for s in subs] == [
            (a, "ticker", {"symbol": "tBTCUSD"}),
            (b, "book", {"symbol": "tBTCUSD", "prec": "P1", "freq": "F0", "len": "100"})]
        assert {s[0] for s in subs} == set(emu.connection_ids())
        client.request(event="unsubscribe", chanId=a)
        assert emu.wait_for_subscriptions(1, 2.0)
        client.close()
        assert emu.wait_for_subscriptions(0, 2.0) and emu.wait_for_connections(0, 2.0)


# -- errors -------------------------------------------------------------------------------
class TestErrors:
    @pytest.mark.parametrize("request_, msg, extra", [
        ({"channel": "nope", "symbol": "tBTCUSD"}, "channel: unknown", {}),
        ({"channel": "ticker", "symbol": "tDOGEUSD"}, "symbol: invalid", {}),
        ({"channel": "book", "symbol": "tBTCUSD", "prec": "P9"}, "precision: invalid", {"pair": "BTCUSD"}),
        ({"channel": "book", "symbol": "fUSD", "len": "30"}, "length: invalid", {"currency": "USD"}),
        ({"channel": "candles", "key": "trade:2m:tBTCUSD"}, "key: invalid", {}),
        ({"channel": "candles", "key": "trade:1m:fUSD"}, "key: invalid", {}),
        ({"channel": "candles", "key": "trade:1m:tDOGEUSD"}, "symbol: invalid", {}),
        ({"channel": "status", "key": "nope"}, "key: invalid", {}),
    ])
    def test_subscribe_rejections(self, client, request_, msg, extra):
        """Bad subscriptions get 10300 echoing the fields sent; the socket stays open."""
        reply = client.request(event="subscribe", subId="x", **request_)
        assert reply == {**request_, "subId": "x", "event": "error", "msg": msg, "code": 10300, **extra}
        assert client.request(event="ping", cid=1)["event"] == "pong"

    def test_duplicate_carries_the_existing_chan_id(self, client):
        """A second identical subscribe gets 10301 with the first subscription's chanId."""
        ack = client.subscribe(channel="book", symbol="tBTCUSD", prec="P0", len="25")
        reply = client.request(event="subscribe", channel="book", symbol="tBTCUSD", prec="P0", len=25)
        assert reply == {"channel": "book", "symbol": "tBTCUSD", "prec": "P0", "len": 25, "event": "error",
                         "msg": "subscribe: dup", "code": 10301, "chanId": ack["chanId"], "pair": "BTCUSD"}

    def test_subscription_limit(self, start):
        """Beyond max_subscriptions a subscribe gets 10305; other connections are unaffected."""
        emu = start(max_subscriptions=2)
        client = start.connect(emu)
        client.subscribe(channel="ticker", symbol="tBTCUSD")
        client.subscribe(channel="ticker", symbol="tETHUSD")
        reply = client.request(event="subscribe", channel="trades", symbol="fUSD")
        assert reply == {"channel": "trades", "symbol": "fUSD", "event": "error", "msg": "subscribe: limit",
                         "code": 10305, "currency": "USD"}
        start.connect(emu).subscribe(channel="trades", symbol="fUSD")

    def test_unknown_deriv_key_gets_no_reply(self, client):
        """deriv: for an unknown symbol is ignored, as observed live: the next reply is the pong."""
        client.send(event="subscribe", channel="status", key="deriv:tDOGEF0:USTF0")
        assert client.request(event="ping", cid=7) == {"event": "pong", "ts": pytest.approx(0, abs=1e13), "cid": 7}

    def test_unsubscribe_unknown_chan_id(self, client):
        """Unsubscribing an unknown chanId gets 10400."""
        assert client.request(event="unsubscribe", chanId=424242) == {
            "chanId": 424242, "event": "error", "msg": "unsubscribe: invalid", "code": 10400}

    def test_unknown_event(self, client):
        """An unknown event gets 10000 and the socket stays usable."""
        reply = client.request(event="nope")
        assert (reply["event"], reply["code"]) == ("error", 10000)
        assert client.request(event="ping", cid=2)["cid"] == 2


# -- streams ------------------------------------------------------------------------------
class TestStreams:
    def test_unsubscribe_stops_the_channel(self, client):
        """After the unsubscribed ack nothing more arrives for that chanId."""
        chan = client.subscribe(channel="book", symbol="tBTCUSD")["chanId"]
        client.recv_until(on_chan(chan))
        reply = client.request(event="unsubscribe", chanId=chan)
        assert reply == {"event": "unsubscribed", "status": "OK", "chanId": chan}
        other = client.subscribe(channel="ticker", symbol="tETHUSD")["chanId"]
        frames = client.recv_until(lambda f: isinstance(f, list) and f[0] == other and f[1] != "hb", 2.0)
        frames += [client.recv() for _ in range(5)]
        assert not array_frames(frames, chan)

    def test_book_snapshot_is_bids_then_asks_best_first(self, client):
        """A P0 snapshot holds len levels per side: bids descending, then asks ascending."""
        chan = client.subscribe(channel="book", symbol="tBTCUSD")["chanId"]
        snapshot = client.recv_until(on_chan(chan))[-1][1]
        prices = [Decimal(str(p)) for p, _, _ in snapshot]
        bids = [Decimal(str(e[0])) for e in snapshot if Decimal(str(e[2])) > 0]
        asks = [Decimal(str(e[0])) for e in snapshot if Decimal(str(e[2])) < 0]
        assert len(bids) == len(asks) == 25
        assert prices == bids + asks and bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0]

    def test_tickers(self, client):
        """Trading tickers have 10 fields plus a trailing null; funding tickers 16 fields."""
        t = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        f = client.subscribe(channel="ticker", symbol="fUSD")["chanId"]
        trading = client.recv_until(on_chan(t))[-1][1]
        funding = client.recv_until(on_chan(f))[-1][1]
        assert len(trading) == 11 and trading[10] is None
        assert Decimal(str(trading[0])) < Decimal(str(trading[2]))  # bid < ask
        assert len(funding) == 16 and funding[13] is None and funding[14] is None

    @pytest.mark.parametrize("symbol, tags, width", [("tBTCUSD", ("te", "tu"), 4), ("fUSD", ("fte", "ftu"), 5)])
    def test_trades(self, client, symbol, tags, width):
        """Trades: a newest-first snapshot, then each trade as te then tu (funding fte/ftu)."""
        chan = client.subscribe(channel="trades", symbol=symbol)["chanId"]
        snapshot = client.recv_until(on_chan(chan))[-1][1]
        assert len(snapshot) == 30 and all(len(t) == width for t in snapshot)
        mts = [t[1] for t in snapshot]
        assert mts == sorted(mts, reverse=True)
        first = client.recv_until(lambda f: on_chan(chan)(f) and f[1] in tags)[-1]
        second = client.recv_until(on_chan(chan))[-1]
        assert (first[1], second[1]) == tags and first[2] == second[2] and len(first[2]) == width

    def test_candles_update_the_current_candle(self, client):
        """Candles: 100 newest-first, then updates of the current candle (or a new one)."""
        chan = client.subscribe(channel="candles", key="trade:1m:tBTCUSD")["chanId"]
        snapshot = client.recv_until(on_chan(chan))[-1][1]
        assert len(snapshot) == 100 and all(len(c) == 6 for c in snapshot)
        assert [c[0] for c in snapshot] == sorted((c[0] for c in snapshot), reverse=True)
        update = client.recv_until(on_chan(chan), 5.0)[-1][1]
        assert update[0] in (snapshot[0][0], snapshot[0][0] + 60_000)

    def test_derivative_status(self, start):
        """deriv: status has 23 fields and repeats about once a second."""
        emu = start(status_interval=0.2)
        client = start.connect(emu)
        chan = client.subscribe(channel="status", key="deriv:tBTCF0:USTF0")["chanId"]
        rows = [client.recv_until(on_chan(chan))[-1][1] for _ in range(3)]
        assert all(len(r) == 23 for r in rows)

    def test_liquidations_are_arrays_of_arrays(self, start):
        """liq:global payloads are lists of ["pos", ...] rows (driven by step, so deterministic)."""
        emu = start(rate=0)
        client = start.connect(emu)
        chan = client.subscribe(channel="status", key="liq:global")["chanId"]
        emu.step(200)
        payload = client.recv_until(on_chan(chan))[-1][1]
        assert payload[0][0] == "pos" and len(payload[0]) == 12

    def test_dec_s_sends_decimals_as_strings(self, client):
        """With DEC_S, prices and amounts arrive as JSON strings; counts, IDs and periods stay numbers."""
        client.request(event="conf", flags=DEC_S)
        client.send(event="subscribe", channel="book", symbol="fUSD", subId="book")
        client.send(event="subscribe", channel="trades", symbol="tBTCUSD", subId="trades")
        chans, frames = {}, {}
        client.ws.settimeout(3)
        while len(frames) < 2:
            frame = json.loads(client.ws.recv())  # no parse_float: see the real JSON types
            if isinstance(frame, dict):
                chans[frame["subId"]] = frame["chanId"]
            else:
                frames.setdefault(frame[0], frame)  # the first frame after the ack: the snapshot
        book, trades = chans["book"], chans["trades"]
        rate, period, count, amount = frames[book][1][0]
        assert isinstance(rate, str) and isinstance(amount, str) and type(period) is type(count) is int
        trade_id, mts, amount, price = frames[trades][1][0]
        assert type(trade_id) is type(mts) is int and isinstance(amount, str) and isinstance(price, str)

    def test_f1_books_batch_updates(self, start):
        """freq F1 books get one batch (plus its cs) per f1_interval, not one per tick."""
        emu = start(rate=100.0, f1_interval=0.3)
        client = start.connect(emu)
        client.request(event="conf", flags=BULK | CS)
        chan = client.subscribe(channel="book", symbol="tBTCUSD", freq="F1")["chanId"]
        client.recv_until(on_chan(chan))  # snapshot
        arrivals = []
        for _ in range(3):
            batch = client.recv_until(on_chan(chan), 2.0)[-1]
            arrivals.append(time.monotonic())
            assert isinstance(batch[1][0], list)
            assert client.recv_until(on_chan(chan))[-1][1] == "cs"
        assert min(b - a for a, b in zip(arrivals, arrivals[1:])) > 0.2

    def test_same_seed_same_market(self, start):
        """Two emulators with one seed produce the same books tick after tick."""
        one, two = start(rate=0, seed=11), start(rate=0, seed=11)
        one.step(25)
        two.step(25)
        for prec in ("R0", "P0", "P2"):
            assert one.book_view("tBTCUSD", prec) == two.book_view("tBTCUSD", prec)
            assert one.book_view("fUSD", prec, 100) == two.book_view("fUSD", prec, 100)
        assert one.book_view("tBTCUSD") != start(rate=0, seed=12).book_view("tBTCUSD")


# -- flags --------------------------------------------------------------------------------
class TestFlags:
    def test_seq_all_counts_every_array_frame(self, start):
        """SEQ_ALL: one counter per connection from 1, +1 on every array frame incl. hb and cs."""
        emu = start(heartbeat_interval=0.1)
        client = start.connect(emu)
        client.request(event="conf", flags=SEQ | CS)
        client.subscribe(channel="book", symbol="tBTCUSD")
        client.subscribe(channel="ticker", symbol="fBTC")
        client.subscribe(channel="candles", key="trade:1m:tETHUSD")
        client.recv_until(lambda f: isinstance(f, list) and f[1] == "cs")
        emu.pause()
        client.recv_until(lambda f: isinstance(f, list) and f[1] == "hb")
        seqs = [f[-1] for f in array_frames(client.log)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(array_frames(client.log)[-1]) == 3  # [CHAN_ID, "hb", SEQ]

    def test_conf_replaces_the_flag_set(self, client):
        """A second conf replaces the first: without SEQ_ALL no sequence is appended."""
        client.request(event="conf", flags=SEQ)
        client.request(event="conf", flags=CS)
        chan = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        assert len(client.recv_until(on_chan(chan))[-1]) == 2

    def test_timestamp_comes_after_seq_and_not_on_heartbeats(self, start):
        """TIMESTAMP appends server ms last (after SEQ); heartbeats carry only the SEQ."""
        emu = start(heartbeat_interval=0.2)
        client = start.connect(emu)
        client.request(event="conf", flags=SEQ | TS)
        chan = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        frame = client.recv_until(on_chan(chan))[-1]
        assert len(frame) == 4 and frame[2] == 1 and abs(frame[3] - time.time() * 1000) < 5000
        emu.pause()
        hb = client.recv_until(lambda f: isinstance(f, list) and f[1] == "hb")[-1]
        assert len(hb) == 3 and isinstance(hb[2], int)

    def test_bulk_updates_send_one_array_of_arrays_per_tick(self, client):
        """BULK_UPDATES: after the snapshot, each tick's book changes are one list of entries."""
        client.request(event="conf", flags=BULK)
        chan = client.subscribe(channel="book", symbol="tBTCUSD", prec="R0")["chanId"]
        client.recv_until(on_chan(chan))  # snapshot
        for _ in range(5):
            payload = client.recv_until(on_chan(chan))[-1][1]
            assert isinstance(payload, list) and payload and all(isinstance(e, list) and len(e) == 3 for e in payload)

    def test_skip_sequence(self, emu, client):
        """skip_sequence() makes the next sequence number jump by one."""
        client.request(event="conf", flags=SEQ)
        chan = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        assert client.recv_until(on_chan(chan))[-1][-1] == 1
        emu.pause()
        emu.skip_sequence()
        emu.step()
        assert client.recv_until(on_chan(chan))[-1][-1] == 3


# -- checksums ----------------------------------------------------------------------------
class TinyBook:
    """A deliberately simple book model for the test: dicts, sorted() and the wire text."""

    def __init__(self, funding, raw):
        self.funding, self.raw = funding, raw
        self.bids, self.asks = {}, {}

    def apply(self, entry):
        n = lambda x: Decimal(str(x))  # noqa: E731
        if self.raw:
            key = entry[0]
            price = entry[2] if self.funding else entry[1]
            if n(price) == 0:
                self.bids.pop(key, None)
                self.asks.pop(key, None)
                return
        else:
            key = (n(entry[0]), entry[1]) if self.funding else n(entry[0])
            count = entry[2] if self.funding else entry[1]
            if count == 0:
                side = n(entry[-1]) == (-1 if self.funding else 1)
                (self.bids if side else self.asks).pop(key, None)
                return
        amount = n(entry[-1])
        bid = amount < 0 if self.funding else amount > 0
        (self.asks if bid else self.bids).pop(key, None)
        (self.bids if bid else self.asks)[key] = entry

    def sides(self):
        n = lambda x: Decimal(str(x))  # noqa: E731
        rate = (lambda e: n(e[2])) if self.raw and self.funding else (lambda e: n(e[1]) if self.raw else n(e[0]))
        tie = (lambda e: e[0]) if self.raw else ((lambda e: e[1]) if self.funding else (lambda e: 0))
        bids = sorted(self.bids.values(), key=lambda e: (-rate(e), tie(e)))
        asks = sorted(self.asks.values(), key=lambda e: (rate(e), tie(e)))
        return bids, asks

    def checksum(self):
        bids, asks = self.sides()
        parts = []
        for i in range(25):
            for side in (bids, asks):
                if i < len(side):
                    parts += [str(side[i][0]), str(side[i][-1])]
        crc = zlib.crc32(":".join(parts).encode())
        return crc - 2**32 if crc >= 2**31 else crc


class TestChecksums:
    @pytest.mark.parametrize("bulk", [False, True])
    @pytest.mark.parametrize("symbol, prec, length", [
        ("tBTCUSD", "P0", 25), ("tBTCUSD", "R0", 25), ("fUSD", "P0", 25), ("fUSD", "R0", 25),
        ("fBTC", "P0", 100), ("tSHIB:USD", "P1", 25), ("tLTCBTC", "P0", 1),
    ])
    def test_checksum_frames_match_a_recomputed_book(self, start, symbol, prec, length, bulk):
        """Every cs frame equals the checksum of snapshot+updates applied to a tiny model."""
        emu = start(rate=100.0)
        client = start.connect(emu)
        client.request(event="conf", flags=CS | (BULK if bulk else 0))
        chan = client.subscribe(channel="book", symbol=symbol, prec=prec, len=length)["chanId"]
        book = TinyBook(symbol.startswith("f"), prec == "R0")
        for entry in client.recv_until(on_chan(chan))[-1][1]:
            book.apply(entry)
        verified = 0
        deadline = time.monotonic() + 5.0
        while verified < 12:
            frame = client.recv_until(on_chan(chan), max(0.1, deadline - time.monotonic()))[-1]
            if frame[1] == "cs":
                assert frame[2] == book.checksum(), f"after {verified} good checksums"
                verified += 1
            elif frame[1] != "hb":
                payload = frame[1]
                for entry in (payload if isinstance(payload[0], list) else [payload]):
                    book.apply(entry)
                bids, asks = book.sides()
                assert len(bids) <= length and len(asks) <= length
        emu.pause()
        while True:  # drain what the last tick sent
            try:
                frame = client.recv(0.2)
            except websocket.WebSocketTimeoutException:
                break
            if on_chan(chan)(frame) and frame[1] not in ("cs", "hb"):
                for entry in (frame[1] if isinstance(frame[1][0], list) else [frame[1]]):
                    book.apply(entry)
        expected = json.loads(encode(emu.book_view(symbol, prec, length)), parse_float=str)
        assert list(book.sides()) == expected
        assert book.checksum() == emu.book_checksum(symbol, prec, length)

    def test_book_data_exercises_javascript_number_text(self, start):
        """The synthetic data contains integer prices, 1e-8-style amounts and 0.0000082-style numbers."""
        emu = start(rate=0)
        texts = set()
        for symbol, prec in (("tBTCUSD", "R0"), ("tSHIB:USD", "R0"), ("fBTC", "P0"), ("fUSD", "R0")):
            bids, asks = emu.book_view(symbol, prec, 250)
            texts.update(encode(e) for e in bids + asks)
        joined = " ".join(texts)
        assert "e-8" in joined and "0.0000082" in joined and "e-7" in joined
        assert any(encode(e).split(",")[1].isdigit() for e in emu.book_view("tBTCUSD", "R0")[0])


# -- heartbeats, faults and control -------------------------------------------------------
class TestControl:
    def test_heartbeats_on_idle_channels(self, start):
        """Each idle channel gets [CHAN_ID,"hb"] after heartbeat_interval."""
        emu = start(heartbeat_interval=0.2)
        client = start.connect(emu)
        a = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        b = client.subscribe(channel="book", symbol="fUSD")["chanId"]
        assert emu.pause()
        started = time.monotonic()
        frames = client.recv_until(lambda f: f == [a, "hb"])
        frames += client.recv_until(lambda f: f == [b, "hb"])
        assert 0.1 < time.monotonic() - started < 5.0  # some ticks of 0.2 s, not an endless wait
        # pause() returned after the last tick's frames were written: only heartbeats follow.
        first_hb = next(i for i, f in enumerate(frames) if f[1] == "hb")
        assert all(f[1] == "hb" for f in frames[first_hb:])

    def test_no_heartbeat_while_traffic_flows(self, start):
        """A channel that carries data every tick gets no heartbeat."""
        emu = start(heartbeat_interval=0.2, rate=50.0)
        client = start.connect(emu)
        chan = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            frame = client.recv()
            assert frame[0] == chan and frame[1] != "hb"

    def test_drop_connections_is_abrupt(self, emu, client):
        """drop_connections closes TCP without a close frame; the count drops to zero at once."""
        assert emu.wait_for_connections(1, 2.0)
        emu.drop_connections()
        assert emu.connection_count() == 0
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            client.recv_until(lambda f: False, timeout=2.0)

    def test_close_connections_sends_a_close_frame(self, emu, client):
        """close_connections sends a close frame with the code given."""
        emu.close_connections(code=1012, reason="restart")
        client.ws.settimeout(2.0)
        while True:
            opcode, data = client.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        assert struct.unpack("!H", data[:2])[0] == 1012 and data[2:] == b"restart"
        client.ws.send_close()  # complete the closing handshake, so the server need not time out
        assert emu.wait_for_connections(0, 2.0)

    def test_set_silent_stops_everything(self, emu, client):
        """A silenced server sends nothing (data, pong); traffic resumes when it speaks again."""
        chan = client.subscribe(channel="book", symbol="tBTCUSD")["chanId"]
        client.recv_until(on_chan(chan))
        emu.set_silent(True)
        emu.pause()
        emu.resume()
        while True:  # drain frames queued before the stall
            try:
                client.recv(0.2)
            except websocket.WebSocketTimeoutException:
                break
        client.send(event="ping", cid=5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            client.recv(0.4)
        emu.set_silent(False)
        assert client.request(event="ping", cid=6)["cid"] == 6

    def test_slow_client_is_dropped(self, start):
        """A connection whose queue overflows is dropped; others keep going."""
        emu = start(max_pending_frames=20)
        slow, fast = start.connect(emu), start.connect(emu)
        slow_chan = slow.subscribe(channel="book", symbol="tBTCUSD")["chanId"]
        fast_chan = fast.subscribe(channel="book", symbol="tETHUSD")["chanId"]
        assert emu.wait_for_connections(2, 2.0)
        emu.set_send_delay(1.0, conn=emu.connection_ids()[0])
        assert emu.wait_for_connections(1, 3.0)
        assert fast.recv_until(on_chan(fast_chan))
        assert slow_chan

    def test_broadcast_info_and_inject(self, emu, client, start):
        """broadcast_info reaches everyone; inject sends raw text, optionally only to a chanId's owners."""
        other = start.connect(emu)
        chan = client.subscribe(channel="ticker", symbol="tBTCUSD")["chanId"]
        emu.broadcast_info(20051, "restart")
        for c in (client, other):
            assert c.recv_until(is_event("info"))[-1] == {"event": "info", "code": 20051, "msg": "restart"}
        emu.inject('{"event":"custom","n":1}', chan_id=chan)
        assert client.recv_until(is_event("custom"))[-1] == {"event": "custom", "n": 1}
        emu.inject('{"event":"custom","n":2}')
        assert other.recv_until(is_event("custom"))[-1]["n"] == 2

    def test_maintenance(self, emu, client, start):
        """start_maintenance sends 20060 and new connections see platform status 0; end sends 20061."""
        emu.start_maintenance()
        assert client.recv_until(is_event("info"))[-1]["code"] == 20060
        assert start.connect(emu).info["platform"] == {"status": 0}
        emu.end_maintenance()
        assert client.recv_until(is_event("info"))[-1]["code"] == 20061

    def test_wait_helpers_time_out(self, emu):
        """Waits return False when the condition does not happen in time."""
        started = time.monotonic()
        assert not emu.wait_for_connections(1, 0.1)
        assert not emu.wait_for_subscriptions(1, 0.1)
        assert time.monotonic() - started < 5.0  # they returned: neither waited for ever

    def test_stop_joins_every_thread(self, start):
        """stop() returns promptly and leaves no emulator or connection threads behind."""
        before = set(threading.enumerate())
        emu = start(rate=100.0, heartbeat_interval=0.05)
        clients = [Client(emu.url) for _ in range(3)]
        for c in clients:
            c.subscribe(channel="book", symbol="tBTCUSD")
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 10.0  # not stuck on a connection thread
        for c in clients:
            c.close()
        assert wait_until(lambda: not set(threading.enumerate()) - before, 2.0), set(threading.enumerate()) - before
