"""Recording sessions (Client(record=...)), redaction, and replaying them (Emulator.replay, the CLI)."""
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import bfxsync
from bfxsync import cli
from bfxsync._engine.recording import Recorder
from bfxsync.auth import sign
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator
from bfxsync.recording import REDACTED, parse_line, read_recording, redact

from conftest import FAST, wait_until


def lines_of(path):
    """Every line of a recording file, parsed."""
    return list(read_recording(path))


class TestRedact:
    def test_auth_event_keeps_only_its_options(self):
        """An outgoing auth keeps event, dms and filter; key, signature, payload and nonce are redacted."""
        text = json.dumps({"event": "auth", "apiKey": "k", "authSig": "s", "authPayload": "AUTH1", "authNonce": 1,
                           "dms": 4, "filter": ["trading"]})
        assert json.loads(redact(text, outbound=True)) == {
            "event": "auth", "apiKey": REDACTED, "authSig": REDACTED, "authPayload": REDACTED, "authNonce": REDACTED,
            "dms": 4, "filter": ["trading"]}

    def test_secret_fields_anywhere(self):
        """A secret field is redacted in any frame, in either direction."""
        assert json.loads(redact('{"event":"x","nested":{"apiKey":"k"}}', outbound=False)) == {
            "event": "x", "nested": {"apiKey": REDACTED}}

    def test_ordinary_frames_untouched(self):
        """Frames without secrets keep their exact text (number spelling included)."""
        for text in ('[17,[30000.10,1,0.50]]', '{"event":"auth","status":"OK","chanId":0,"userId":1}'):
            assert redact(text, outbound=False) == text

    def test_unparseable_suspect_frame_replaced(self):
        """A frame that may hold a secret but is not JSON is dropped whole."""
        assert redact('authSig=abc', outbound=True) == json.dumps(REDACTED)


class TestFormat:
    def test_plain_log_lines(self):
        """Plain 'DIRECTION TIMESTAMP: FRAME' logs are read too (seconds, milliseconds, ISO 8601)."""
        first = parse_line('< 1700000000.5: [1,"hb"]')
        assert (first.direction, first.t, first.frame) == ("in", 1700000000.5, '[1,"hb"]')
        assert parse_line('out 1700000000500: {"event":"ping"}').t == 1700000000.5
        assert parse_line('recv 2023-11-14T22:13:20.5Z: [1,"hb"]').t == 1700000000.5

    def test_not_a_recording(self):
        """Anything else is a ValueError."""
        with pytest.raises(ValueError):
            parse_line("hello world")


class TestRecorder:
    def test_flushed_without_close(self, tmp_path):
        """A queued frame reaches the file within the flush interval, while the recorder still runs."""
        path = tmp_path / "r.jsonl"
        recorder = Recorder(path, flush_interval=0.1)
        recorder.start()
        try:
            recorder.append((time.time(), 1, "in", '[1,"hb"]', None))
            assert wait_until(lambda: '"hb' in path.read_text(), 5.0)
        finally:
            recorder.close()
        assert not recorder.thread().is_alive()

    def test_rotation(self, tmp_path):
        """Past max_bytes the file rotates to PATH.1, PATH.2; reading returns every line in order."""
        path = tmp_path / "r.jsonl"
        recorder = Recorder(path, max_bytes=4096, backups=2, flush_interval=0.05)
        recorder.start()
        frame = "[1," + "1" * 300 + "]"
        for n in range(40):
            recorder.append((1000.0 + n, 1, "in", frame, None))
        recorder.close()
        assert (tmp_path / "r.jsonl.1").exists() and (tmp_path / "r.jsonl.2").exists()
        assert not (tmp_path / "r.jsonl.3").exists()
        assert all(os.path.getsize(p) <= 4096 for p in tmp_path.iterdir())
        times = [line.t for line in lines_of(path) if line.direction == "in"]
        assert times == sorted(times) and times[-1] == 1039.0


def book_state(sub):
    snap = sub.snapshot()
    return snap.checksum, [repr(level) for level in snap.bids], [repr(level) for level in snap.asks]


def observe(client, symbols):
    """Subscribe a book, trades and a ticker; count what arrives (on the reader thread)."""
    counts = {"trades": 0, "ticker": 0}
    book = client.subscribe_book(symbols[0])
    client.subscribe_trades(symbols[1], lambda message: counts.__setitem__("trades", counts["trades"] + len(message.items)))
    client.subscribe_ticker(symbols[0], lambda message: counts.__setitem__("ticker", counts["ticker"] + 1))
    return book, counts


def summary(client, book, counts):
    stats = client.stats()
    return {"book": book_state(book), "checks_passed": stats["checks_passed"], "checks_failed": stats["checks_failed"],
            "resyncs": stats["resyncs"], **counts}


class TestRecordReplay:
    def test_replay_reaches_the_same_state(self, tmp_path, make_client):
        """A session with three channels and a book resync, replayed, ends with the same books, checksums and counts."""
        path = tmp_path / "session.jsonl"
        symbols = ("tBTCUSD", "tETHUSD")
        with Emulator(seed=11, rate=0, heartbeat_interval=1.0) as emu:
            client = make_client(emu.url, record=str(path))
            book, counts = observe(client, symbols)
            book.wait_synced(10)
            assert emu.wait_for_subscriptions(3, 10)
            emu.step(15)
            chan_id = next(chan for _, chan, channel, _ in emu.subscriptions() if channel == "book")
            emu.inject(f'[{chan_id},"cs",12345]', chan_id)  # a wrong checksum: the book resyncs
            assert wait_until(lambda: book.resyncs == 1 and book.snapshot().synced, 10)
            emu.step(15)
            assert wait_until(lambda: book_state(book)[0] == emu.book_checksum("tBTCUSD"), 10)
            client.ping()  # a barrier: every frame sent before the pong has been handled
            recorded = summary(client, book, counts)
            client.close()
        assert recorded["resyncs"] == 1 and recorded["checks_failed"] == 1 and recorded["trades"] > 0
        assert recorded["ticker"] == 31 and recorded["checks_passed"] > 10

        with Emulator(rate=0, heartbeat_interval=1.0) as emu:
            replay = emu.replay(path, speed=0)
            assert replay.episode_count == 4  # book twice (the resync), trades, ticker
            client = make_client(emu.url)
            book, counts = observe(client, symbols)
            assert replay.wait_finished(20)
            client.ping()
            assert wait_until(lambda: summary(client, book, counts) == recorded, 10)

    @pytest.mark.parametrize(("speed", "least"), [(1.0, 0.7), (4.0, 0.15)])
    def test_speed_paces_frames(self, tmp_path, make_client, speed, least):
        """speed=1 keeps the recorded spacing (0.8 s here); speed=4 plays it four times faster."""
        path = tmp_path / "paced.jsonl"
        ack = '{"event":"subscribed","channel":"ticker","chanId":5,"symbol":"tBTCUSD","pair":"BTCUSD","subId":"9"}'
        row = "[1,2,3,4,5,6,{price},8,9,10]"
        with open(path, "w") as out:
            out.write(json.dumps({"t": 100.0, "conn": 1, "dir": "in", "frame": ack}) + "\n")
            for n in range(5):
                out.write(json.dumps({"t": 100.0 + 0.2 * n, "conn": 1, "dir": "in",
                                      "frame": f"[5,{row.format(price=100 + n)}]"}) + "\n")
        with Emulator(rate=0) as emu:
            emu.replay(path, speed=speed)
            client = make_client(emu.url)
            prices = []
            started = time.monotonic()
            client.subscribe_ticker("tBTCUSD", lambda message: prices.append(message.item.last_price))
            assert wait_until(lambda: len(prices) == 5, 10)
            elapsed = time.monotonic() - started
            assert prices == [100, 101, 102, 103, 104]
            assert least <= elapsed < least * 5 + 1.0, elapsed

    def test_unknown_subscription_refused(self, tmp_path, make_client):
        """A subscription the recording lacks is refused with 10300."""
        path = tmp_path / "empty.jsonl"
        path.write_text("")
        with Emulator(rate=0) as emu:
            emu.replay(path, speed=0)
            client = make_client(emu.url)
            with pytest.raises(bfxsync.SubscriptionError):
                client.subscribe_ticker("tBTCUSD").wait_subscribed(10)


class TestRedactionEndToEnd:
    def test_no_credentials_in_the_file(self, tmp_path, make_client, emulator):
        """An authenticated session (with an order) leaves no key, secret, signature or nonce in the recording."""
        path = tmp_path / "auth.jsonl"
        nonces = itertools.count(int(time.time() * 1e6))
        used = []

        def nonce():
            used.append(next(nonces))
            return used[-1]

        client = make_client(emulator.url, api_key=DEMO_KEY, api_secret=DEMO_SECRET, nonce=nonce, dms=True,
                             record=str(path))
        client.wait_authenticated(10)
        client.account.submit_order("tBTCUSD", "0.01", price="1000", type="EXCHANGE LIMIT").result(10)
        client.close()
        text = path.read_text()
        assert used
        for secret in [DEMO_KEY, DEMO_SECRET] + [sign(DEMO_SECRET, f"AUTH{n}") for n in used] + [str(n) for n in used]:
            assert secret not in text
        auths = [json.loads(line.frame) for line in lines_of(path) if line.direction == "out" and '"auth"' in line.frame]
        assert auths and all(a["authSig"] == a["apiKey"] == a["authPayload"] == a["authNonce"] == REDACTED for a in auths)
        assert all(a["dms"] == 4 for a in auths)
        assert any(line.direction == "out" and '"on"' in line.frame for line in lines_of(path))  # the order is kept


class TestCli:
    def test_record_then_replay(self, tmp_path, make_client):
        """bfxsync record writes a recording; bfxsync replay serves it and prints its URL."""
        path = tmp_path / "cli.jsonl"
        status = cli.main(["record", "--emulator", "--out", str(path), "--seconds", "1.0", "book:tBTCUSD:P0:25",
                           "trades:tETHUSD"])
        assert status == 0
        assert any(line.direction == "in" and '"subscribed"' in line.frame for line in lines_of(path))
        proc = subprocess.Popen([sys.executable, "-m", "bfxsync", "replay", str(path), "--speed", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url_line = []
            reader = threading.Thread(target=lambda: url_line.append(proc.stdout.readline()), daemon=True)
            reader.start()
            reader.join(30)
            assert url_line and url_line[0].startswith("ws://127.0.0.1:")
            client = make_client(url_line[0].strip(), FAST)
            assert client.subscribe_book("tBTCUSD").wait_synced(10).synced
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 130

    def test_bad_subscription(self, tmp_path, capsys):
        """An unknown channel is a usage error (status 2)."""
        assert cli.main(["record", "--emulator", "--out", str(tmp_path / "x"), "nope:tBTCUSD"]) == 2
        assert "unknown channel" in capsys.readouterr().err
