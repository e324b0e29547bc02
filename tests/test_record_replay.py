"""Recording sessions (Client(record=...)), redaction, and replaying them (Emulator.replay, the CLI)."""
import errno
import itertools
import json
import logging
import os
import subprocess
import sys
import time

import pytest

import bfxsync
from bfxsync import cli
from bfxsync._engine import recording as engine_recording
from bfxsync._engine.recording import Recorder
from bfxsync.auth import sign
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator
from bfxsync.recording import REDACTED, parse_line, read_recording, redact

from conftest import FAST, wait_until
from test_cli import Interruptible

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: 10 KB of 5,000 nested arrays around a word that makes redaction look inside.
DEEP = "[" * 5000 + '"sig"' + "]" * 5000


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

    @pytest.mark.parametrize("depth", [65, 900, 5000])
    def test_frame_too_deep_to_follow_is_replaced(self, depth):
        """Nesting deeper than the parser (5,000) or the walk (64) follows: the frame is replaced, no RecursionError."""
        assert redact("[" * depth + '{"nonce":1}' + "]" * depth, outbound=False) == json.dumps(REDACTED)

    def test_frame_within_the_walk_is_cleaned_not_replaced(self):
        """63 levels of lists around the secret: redacted in place, the rest kept."""
        frame = "[" * 63 + '{"nonce":1,"a":2}' + "]" * 63
        assert redact(frame, outbound=False) == "[" * 63 + '{"nonce":"<redacted>","a":2}' + "]" * 63


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

    @pytest.mark.parametrize("line", [
        '{"t":null,"conn":1,"dir":"in","frame":"[1]"}', '{"t":true,"conn":1,"dir":"in","frame":"[1]"}',
        '{"t":"1.5","conn":1,"dir":"in","frame":"[1]"}', '{"t":1.5,"conn":"1","dir":"in","frame":"[1]"}',
        '{"t":1.5,"conn":1,"dir":null,"frame":"[1]"}', '{"t":1.5,"conn":1,"dir":"in","frame":[1]}',
    ])
    def test_wrong_field_types_are_value_errors(self, line):
        """A line whose t, conn, dir or frame has the wrong type is a ValueError naming the field, never a TypeError."""
        with pytest.raises(ValueError, match="'(t|conn|dir|frame)' must be"):
            parse_line(line)


def write_lines(path, *lines, end="\n"):
    path.write_text("\n".join(lines) + end)


META = '{"t":1.0,"conn":0,"dir":"meta","format":"bfxsync-recording","version":1}'
HB = '{"t":2.0,"conn":1,"dir":"in","frame":"[1,\\"hb\\"]"}'


class TestReadRecording:
    def test_corrupted_line_names_file_and_line(self, tmp_path):
        """A "t": null in the middle of a file: ValueError with the file name and line number."""
        path = tmp_path / "bad.jsonl"
        write_lines(path, META, HB, '{"t":null,"conn":1,"dir":"in","frame":"[1,2]"}', HB)
        with pytest.raises(ValueError, match=rf"^{path}:3: 't' must be a number"):
            lines_of(path)

    def test_partial_last_line_skipped_with_a_warning(self, tmp_path, caplog):
        """A last line cut mid-way (no newline, not whole) is skipped with one warning; the lines before it are read."""
        path = tmp_path / "cut.jsonl"
        write_lines(path, META, HB, HB, HB[:17], end="")
        with caplog.at_level(logging.WARNING, logger="bfxsync"):
            lines = lines_of(path)
        assert [line.direction for line in lines] == ["meta", "in", "in"]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and f"{path}:4" in warnings[0].getMessage()

    def test_whole_last_line_without_newline_is_read(self, tmp_path, caplog):
        """A complete last line that only lacks its newline is a line like any other."""
        path = tmp_path / "whole.jsonl"
        write_lines(path, META, HB, end="")
        with caplog.at_level(logging.WARNING, logger="bfxsync"):
            assert [line.direction for line in lines_of(path)] == ["meta", "in"]
        assert not caplog.records

    def test_cut_line_before_the_end_is_an_error(self, tmp_path):
        """A broken line that is not the last one is not a cut recording: ValueError with file and line."""
        path = tmp_path / "middle.jsonl"
        write_lines(path, META, HB[:17], HB)
        with pytest.raises(ValueError, match=rf"^{path}:2: not a recording line"):
            lines_of(path)

    def test_replay_command_reports_a_corrupted_line_in_one_line(self, tmp_path):
        """bfxsync replay of a corrupted recording: status 2, one line naming file and line, no traceback."""
        path = tmp_path / "bad.jsonl"
        write_lines(path, META, HB, '{"t":null,"conn":1,"dir":"in","frame":"[1,2]"}')
        proc = subprocess.run([sys.executable, "-m", "bfxsync", "replay", str(path), "--seconds", "5"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert f"{path}:3: 't' must be a number" in proc.stderr and "Traceback" not in proc.stderr


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


class FailingFile:
    """A real text file that, like a full disk, writes its first ``room`` characters and then raises ENOSPC.

    The write that crosses the limit puts its first part on disk before failing, as a short
    write does, so the file ends in a cut line.
    """

    def __init__(self, path, room):
        self._file = open(path, "w", encoding="utf-8")
        self._room = room
        self.failures = 0

    def write(self, text):
        if len(text) > self._room:
            self._file.write(text[:self._room])
            self._file.flush()
            self._room = 0
            self.failures += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(text)
        return self._file.write(text)

    def flush(self):
        self._file.flush()
        if self._room == 0:  # what is still buffered cannot go anywhere either
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self):
        self._file.close()


class TestRecorderNeverDies:
    def test_frame_too_deep_to_redact_is_recorded_and_recording_goes_on(self, tmp_path, make_client, emulator):
        """The 10 KB, 5,000-deep frame a hostile server sends is recorded redacted; later frames are written too."""
        path = tmp_path / "deep.jsonl"
        client = make_client(emulator.url, record=str(path), record_flush_interval=0.05)
        ticks = []
        client.subscribe_ticker("tBTCUSD", on_data=lambda message: ticks.append(message)).wait_subscribed(10)
        emulator.inject(DEEP)
        assert wait_until(lambda: client.stats().get("malformed") == 1, 10)
        seen = len(ticks)
        assert wait_until(lambda: len(ticks) >= seen + 3, 10)  # frames after it
        client.ping()
        assert wait_until(lambda: client.stats()["record_queued"] == 0 and client.stats()["record_written"] > 0, 10)
        recorder = client.threads()[-1]
        assert recorder.name.startswith("bfxsync-recorder-") and recorder.is_alive()
        client.close()
        frames = [line.frame for line in lines_of(path) if line.direction == "in"]
        index = frames.index(json.dumps(REDACTED))
        assert sum(1 for frame in frames[index + 1:] if frame.startswith("[") and '"hb"' not in frame) >= 3
        stats = client.stats()
        assert stats["record_errors"] == 0 and stats["record_dropped"] == 0 and stats["record_stopped"] == 0

    def test_a_frame_that_fails_to_redact_becomes_a_marker(self, tmp_path, monkeypatch, caplog):
        """Any exception while redacting one frame: an error line (without the frame), counted, logged once;
        the rest of the batch and later frames are written."""
        real = engine_recording.redact

        def redact_or_fail(text, outbound):
            if "boom" in text:
                raise RecursionError("maximum recursion depth exceeded")
            return real(text, outbound)

        monkeypatch.setattr(engine_recording, "redact", redact_or_fail)
        path = tmp_path / "marker.jsonl"
        recorder = Recorder(path, flush_interval=0.05)
        recorder.start()
        try:
            with caplog.at_level(logging.ERROR, logger="bfxsync"):
                for n, frame in enumerate(['[1,"a"]', '[1,"boom sig"]', '[1,"b"]']):
                    recorder.append((100.0 + n, 1, "in", frame, None))
                assert wait_until(lambda: recorder.written == 3, 10)
                recorder.append((200.0, 1, "in", '[1,"boom again"]', None))
                recorder.append((201.0, 1, "in", '[1,"later"]', None))
                assert wait_until(lambda: recorder.written == 5, 10)
            assert recorder.thread().is_alive()
        finally:
            recorder.close()
        lines = [line for line in lines_of(path) if line.direction != "meta"]
        assert [(line.direction, line.frame) for line in lines] == [
            ("in", '[1,"a"]'), ("error", ""), ("in", '[1,"b"]'), ("error", ""), ("in", '[1,"later"]')]
        assert lines[1].fields == {"of": "in", "error": "RecursionError"} and "boom" not in path.read_text()
        assert recorder.stats()["record_errors"] == 2
        assert len([r for r in caplog.records if "could not be written" in r.getMessage()]) == 1

    def test_queue_is_bounded_and_drops_are_counted_and_marked(self, tmp_path):
        """Past max_queued, lines are dropped and counted; the file gets every queued line, then a dropped marker."""
        path = tmp_path / "bounded.jsonl"
        recorder = Recorder(path, flush_interval=60.0, max_queued=10)  # the writer only drains at close
        recorder.start()
        try:
            for n in range(25):
                recorder.append((100.0 + n, 1, "in", f"[1,{n}]", None))
            assert len(recorder.queue) == 10
            assert recorder.stats()["record_dropped"] == 15 and recorder.stats()["record_queued"] == 10
        finally:
            recorder.close()
        lines = [line for line in lines_of(path) if line.direction != "meta"]
        assert [line.frame for line in lines[:10]] == [f"[1,{n}]" for n in range(10)]
        assert lines[10].direction == "dropped" and lines[10].fields == {"lines": 15} and len(lines) == 11

    def test_reader_drops_past_the_bound_and_the_client_goes_on(self, tmp_path, emulator):
        """Frames beyond the recorder's bound are dropped by the reader thread and counted; delivery is untouched;
        the file marks the gap."""
        path = tmp_path / "full-queue.jsonl"
        client = bfxsync.Client(emulator.url, FAST, record=str(path))
        client._recorder.max_queued, client._recorder.flush_interval = 20, 60.0  # drained only at close
        try:
            client.start()
            updates = []
            book = client.subscribe_book("tBTCUSD", on_data=updates.append)
            assert wait_until(lambda: client.stats()["record_dropped"] >= 30, 20)
            seen = len(updates)
            assert wait_until(lambda: len(updates) >= seen + 5, 10) and book.wait_synced(10).synced
            assert client.stats()["record_queued"] == 20
        finally:
            client.close()
        lines = [line for line in lines_of(path) if line.direction != "meta"]
        assert len(lines) == 21 and lines[-1].direction == "dropped"
        assert lines[-1].fields["lines"] == client.stats()["record_dropped"] >= 30

    def test_rotation_that_fails_stops_recording_once(self, tmp_path, monkeypatch, caplog):
        """A rotation that cannot rename the file: one error, recording stops, no new file, the written lines kept."""
        def refuse(source, target):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(engine_recording.os, "replace", refuse)
        path = tmp_path / "r.jsonl"
        recorder = Recorder(path, max_bytes=4096, backups=2, flush_interval=0.05)
        recorder.start()
        try:
            with caplog.at_level(logging.ERROR, logger="bfxsync"):
                for n in range(40):
                    recorder.append((1000.0 + n, 1, "in", "[1," + "1" * 300 + "]", None))
                assert wait_until(lambda: recorder.stopped, 10)
                recorder.append((2000.0, 1, "in", "[1,2]", None))  # ignored from now on
            assert recorder.thread().is_alive() and recorder.stats()["record_stopped"] == 1
        finally:
            recorder.close()
        assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]
        times = [line.t for line in lines_of(path) if line.direction == "in"]
        assert times == [1000.0 + n for n in range(len(times))] and 0 < len(times) < 40
        assert recorder.written == len(times)
        assert len([r for r in caplog.records if "stopped" in r.getMessage()]) == 1

    def test_disk_full_mid_line_stops_recording_once_and_the_client_goes_on(self, tmp_path, monkeypatch, make_client,
                                                                             emulator, caplog):
        """ENOSPC in the middle of a line: one error, recording stops, the client keeps its data, close() raises
        nothing, and the file replays up to the cut line (skipped with a warning)."""
        path = tmp_path / "full.jsonl"
        files = []

        def open_failing(name, mode, encoding):
            files.append(FailingFile(name, room=20_000))
            return files[-1]

        monkeypatch.setattr(engine_recording, "open", open_failing, raising=False)
        with caplog.at_level(logging.WARNING, logger="bfxsync"):
            client = make_client(emulator.url, record=str(path), record_flush_interval=0.05)
            book = client.subscribe_book("tBTCUSD")
            ticks = []
            client.subscribe_ticker("tBTCUSD", on_data=lambda message: ticks.append(message))
            assert wait_until(lambda: client.stats()["record_stopped"] == 1, 20)
            seen = len(ticks)
            assert wait_until(lambda: len(ticks) >= seen + 3, 10)  # the client goes on
            assert book.wait_synced(10).synced and client.connected
            client.close()  # no OSError here or on the recorder thread
            lines = lines_of(path)
        assert files[0].failures == 1 and os.path.getsize(path) == 20_000
        stopped = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(stopped) == 1 and "No space left on device" in stopped[0].getMessage(), stopped
        assert any("incomplete last line" in r.getMessage() for r in caplog.records)
        assert lines[0].direction == "meta" and any(line.direction == "in" for line in lines)
        assert client.stats()["record_written"] > 0

    def test_real_write_failure_in_a_process(self, tmp_path):
        """A real OS write error (a file-size limit, EFBIG, cutting a line): the process records, fails once, goes
        on receiving, exits 0 without a traceback, and the file reads back."""
        path = tmp_path / "limited.jsonl"
        script = (
            "import logging, resource, signal, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "logging.basicConfig(level=logging.WARNING)\n"
            "import bfxsync\n"
            "from bfxsync.emulator import Emulator\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (30000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "with Emulator(seed=3, rate=40.0) as emu:\n"
            "    client = bfxsync.Client(emu.url, record=sys.argv[1], record_flush_interval=0.05).start()\n"
            "    try:\n"
            "        ticks = []\n"
            "        client.subscribe_book('tBTCUSD', on_data=ticks.append)\n"
            "        import time\n"
            "        deadline = time.monotonic() + 30\n"
            "        while client.stats()['record_stopped'] == 0 and time.monotonic() < deadline:\n"
            "            time.sleep(0.05)\n"
            "        seen = len(ticks)\n"
            "        while len(ticks) < seen + 5 and time.monotonic() < deadline:\n"
            "            time.sleep(0.05)\n"
            "        print(client.stats()['record_stopped'], len(ticks) - seen, flush=True)\n"
            "    finally:\n"
            "        client.close()\n"
        )
        proc = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True,
                              timeout=90)
        assert proc.returncode == 0, proc.stderr
        stopped, later = map(int, proc.stdout.split())
        assert stopped == 1 and later >= 5, proc.stdout
        assert "Traceback" not in proc.stderr
        assert proc.stderr.count("stopped: [Errno 27] File too large") == 1, proc.stderr
        assert os.path.getsize(path) == 30000
        assert [line.direction for line in lines_of(path)][:2] == ["meta", "open"]

    def test_unwritable_file_is_refused_at_start(self, tmp_path, capsys):
        """bfxsync record --out /dev/full: a write error at once is a usage error in one line (status 2)."""
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full on this system")
        assert cli.main(["record", "--emulator", "--out", "/dev/full", "--seconds", "1", "ticker:tBTCUSD"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bfxsync: cannot write /dev/full:") and len(err.splitlines()) == 1, err


def book_state(sub):
    snap = sub.snapshot()
    return snap.checksum, [repr(level) for level in snap.bids], [repr(level) for level in snap.asks]


def observe(client, symbols):
    """Subscribe a book, trades and a ticker; count what arrives (on the reader thread)."""
    counts = {"trades": 0, "ticker": 0}
    book = client.subscribe_book(symbols[0])
    client.subscribe_trades(symbols[1],
                            on_data=lambda message: counts.__setitem__("trades", counts["trades"] + len(message.items)))
    client.subscribe_ticker(symbols[0], on_data=lambda message: counts.__setitem__("ticker", counts["ticker"] + 1))
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
            prices, arrivals = [], []

            def on_data(message):
                arrivals.append(time.monotonic())
                prices.append(message.item.last_price)

            client.subscribe_ticker("tBTCUSD", on_data=on_data)
            assert wait_until(lambda: len(prices) == 5, 10)
            elapsed = arrivals[-1] - arrivals[0]  # the recording's 0.8 s spread, paced by speed; not dial time
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
        child = Interruptible(["-m", "bfxsync", "replay", path, "--speed", "0"], ready=r"^ws://127\.0\.0\.1:\d+/ws/2$")
        try:
            assert child.seen.wait(30) and child.lines, "no URL printed"
            client = make_client(child.lines[0].strip(), FAST)
            assert client.subscribe_book("tBTCUSD").wait_synced(10).synced
            client.close()
            code, out, err = child.interrupt()
        finally:
            child.reap()
        assert code == 130 and "Traceback" not in err, err

    def test_symbols_with_a_colon_are_recorded(self, tmp_path):
        """bfxsync record with book:tSHIB:USD, book:tBTCF0:USTF0:P0:25 and ticker:tSHIB:USD records every one's frames."""
        path = tmp_path / "colon.jsonl"
        status = cli.main(["record", "--emulator", "--out", str(path), "--seconds", "3", "book:tSHIB:USD",
                           "book:tBTCF0:USTF0:P1:25", "ticker:tSHIB:USD"])
        assert status == 0
        channels = {}  # chanId -> (channel, symbol, prec)
        frames = {}
        for line in lines_of(path):
            if line.direction == "in" and '"subscribed"' in line.frame:
                ack = json.loads(line.frame)
                channels[ack["chanId"]] = (ack["channel"], ack["symbol"], ack.get("prec"))
            elif line.direction == "in" and line.frame.startswith("["):
                chan = json.loads(line.frame)[0]
                frames[channels.get(chan)] = frames.get(channels.get(chan), 0) + 1
        assert set(channels.values()) == {("book", "tSHIB:USD", "P0"), ("book", "tBTCF0:USTF0", "P1"),
                                          ("ticker", "tSHIB:USD", None)}
        assert all(frames.get(key, 0) >= 1 for key in channels.values()), frames

    def test_bad_subscription(self, tmp_path, capsys):
        """An unknown channel is a usage error (status 2)."""
        assert cli.main(["record", "--emulator", "--out", str(tmp_path / "x"), "nope:tBTCUSD"]) == 2
        assert "unknown channel" in capsys.readouterr().err
