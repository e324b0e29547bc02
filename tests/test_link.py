"""A link's parser alone, fed frames by hand: ordering cases that are hard to time against a live server."""
import json

import pytest

from bfxsync import Config, errors
from bfxsync._engine.callback_runner import Handlers
from bfxsync._engine.pool import Pool
from bfxsync._engine.runtime import Runtime
from bfxsync.specs import BookSpec, TickerSpec

INFO = '{"event":"info","version":2,"serverId":"x","platform":{"status":1}}'


class FakeConnection:
    """Records what the link sends; always 'open'."""

    def __init__(self):
        self.sent = []
        self.dropped = []
        self.dials = 1
        self.stopped = False
        self.is_open = True
        self.frames = 0
        self.opened_at = None

    def send(self, text):
        self.sent.append(json.loads(text))

    def thread(self):
        return "not started by the pool"

    def mark_healthy(self):
        pass

    def drop(self, reason):
        self.dropped.append(reason)

    def stop(self):
        self.stopped = True


class Harness:
    """One pool with one link whose connection is fake; frames go straight into the link's parser."""

    def __init__(self):
        self.ended = []
        self.runtime = Runtime(Config(), Handlers(), on_end=lambda: self.ended.append(True))
        self.handlers = self.runtime.callbacks.handlers
        self.pool = Pool("ws://test", self.runtime, wake=lambda delay: None)
        self.pool._started = True
        self.link = self.pool._new_link()
        self.link.connection = self.connection = FakeConnection()

    def subscribe(self, spec):
        return self.pool.subscribe(spec, {})

    def on_frame(self, text):
        self.link.on_frame(text)

    def stats(self):
        return self.pool.stats()


@pytest.fixture
def session():
    s = Harness()
    s.link.on_open()
    s.on_frame(INFO)
    s.on_frame('{"event":"conf","status":"OK","flags":131072}')
    return s


def ack(session, sub_id, chan_id, **fields):
    session.on_frame(json.dumps({"event": "subscribed", "chanId": chan_id, "subId": sub_id, **fields}))


def test_conf_is_one_frame_with_all_flags(session):
    """The handshake sends one conf frame with the whole flag set (each conf replaces the last)."""
    confs = [m for m in session.connection.sent if m.get("event") == "conf"]
    assert confs == [{"event": "conf", "flags": 131072}]


def test_checksum_before_snapshot_and_unknown_level(session):
    """A cs before the snapshot is counted, not checked; deleting an unknown level is a no-op."""
    book = session.subscribe(BookSpec("tBTCUSD"))
    sub_id = session.connection.sent[-1]["subId"]
    ack(session, sub_id, 5, channel="book")
    session.on_frame("[5,\"cs\",123]")
    assert session.stats()["checksum_unsynced"] == 1 and book.checks_failed == 0
    session.on_frame("[5,[[100,1,1.5],[101,1,-2]]]")
    assert book.synced
    session.on_frame("[5,[99,0,1]]")
    session.on_frame(f"[5,\"cs\",{book.checksum()}]")
    assert book.checks_passed == 1


def test_data_before_subscribed_is_counted(session):
    """Frames for a chanId we were not told about are counted as unknown."""
    session.on_frame("[77,[1,2,3]]")
    assert session.stats()["unknown_channel"] == 1


def test_bad_update_resyncs_via_unsubscribe(session):
    """A malformed book update starts a resync: unsubscribe, then subscribe again after the confirmation."""
    book = session.subscribe(BookSpec("tBTCUSD"))
    ack(session, session.connection.sent[-1]["subId"], 5, channel="book")
    session.on_frame("[5,[[100,1,1.5]]]")
    session.on_frame("[5,[1,2]]")
    assert session.connection.sent[-1] == {"event": "unsubscribe", "chanId": 5}
    assert not book.synced and book.resyncs == 1
    session.on_frame("[5,[100,1,1.5]]")  # in flight before the server saw the unsubscribe: dropped quietly
    session.on_frame('{"event":"unsubscribed","status":"OK","chanId":5}')
    again = session.connection.sent[-1]
    assert again["event"] == "subscribe" and again["channel"] == "book"
    ack(session, again["subId"], 6, channel="book")
    session.on_frame("[6,[[100,1,1.5]]]")
    assert book.synced and book.chan_id == 6 and session.stats().get("unknown_channel", 0) == 0


def test_error_routed_by_sub_id(session):
    """An error naming our subId fails exactly that subscription, with the server's code."""
    first = session.subscribe(TickerSpec("tBTCUSD"))
    second = session.subscribe(TickerSpec("tETHUSD"))
    sub_id = session.connection.sent[-1]["subId"]
    session.on_frame(json.dumps({"event": "error", "msg": "symbol: invalid", "code": 10300, "subId": sub_id,
                                 "channel": "ticker", "symbol": "tETHUSD"}))
    with pytest.raises(errors.SubscriptionError) as caught:
        second.wait_subscribed(0.1)
    assert caught.value.code == 10300
    assert first.state.value == "pending"


def test_error_without_sub_id_matched_by_fields(session):
    """Without a subId, the echoed channel and fields find the pending request."""
    sub = session.subscribe(BookSpec("tBTCUSD", prec="P1"))
    session.on_frame(json.dumps({"event": "error", "msg": "subscribe: limit", "code": 10305, "channel": "book",
                                 "symbol": "tBTCUSD", "prec": "P1", "len": "25"}))
    assert sub.error is not None and sub.error.code == 10305


def test_duplicate_error_adopts_existing_channel(session):
    """10301 'subscribe: dup' carries the existing chanId: adopted as success."""
    sub = session.subscribe(TickerSpec("tBTCUSD"))
    session.on_frame(json.dumps({"event": "error", "msg": "subscribe: dup", "code": 10301, "chanId": 42,
                                 "subId": session.connection.sent[-1]["subId"], "channel": "ticker"}))
    assert sub.active and sub.chan_id == 42


def test_unsubscribe_while_request_in_flight(session):
    """Unsubscribing before the ack ends it at once; a late ack is unsubscribed quietly (one event in all)."""
    events = []
    session.handlers.add("unsubscribed", events.append)
    sub = session.subscribe(TickerSpec("tBTCUSD"))
    sub_id = session.connection.sent[-1]["subId"]
    sub.unsubscribe()
    assert sub.state.value == "closed" and len(events) == 1
    ack(session, sub_id, 9, channel="ticker")
    assert session.connection.sent[-1] == {"event": "unsubscribe", "chanId": 9}
    session.on_frame("[9,[1,2,3,4,5,6,7,8,9,10]]")  # in flight before the server saw it: dropped quietly
    session.on_frame('{"event":"unsubscribed","status":"OK","chanId":9}')
    assert len(events) == 1 and not sub.active and session.stats().get("unknown_channel", 0) == 0


def test_version_mismatch_is_fatal(session):
    """A server speaking another version ends the whole client with VersionMismatchError."""
    session.on_frame('{"event":"info","version":3}')
    assert session.ended and isinstance(session.runtime.fatal, errors.VersionMismatchError)
    assert isinstance(session.pool.end_error(), errors.VersionMismatchError)


def test_subscription_limit_opens_another_link(session):
    """Past the per-connection limit the pool places the request on a new link, never on the full one."""
    for i in range(25):
        session.subscribe(TickerSpec(f"tQ{i:02d}USD"))
    sent = len(session.connection.sent)
    extra = session.subscribe(TickerSpec("tZZZUSD"))
    try:
        assert len(session.connection.sent) == sent and len(session.pool.links()) == 2
        assert session.pool._where[extra] is session.pool.links()[1]
    finally:
        session.pool.stop()


def test_candle_series_replaces_and_appends(session):
    """An update with a known MTS replaces that candle; a new MTS appends; reads are oldest first."""
    from bfxsync.specs import CandlesSpec

    sub = session.subscribe(CandlesSpec("trade:1m:tBTCUSD"))
    ack(session, session.connection.sent[-1]["subId"], 8, channel="candles")
    session.on_frame("[8,[[180000,3,3.5,4,2,1],[120000,2,3,3,2,1],[60000,1,2,2,1,1]]]")
    assert [c.mts for c in sub.candles()] == [60000, 120000, 180000]
    session.on_frame("[8,[180000,3,9,9,2,5]]")
    assert len(sub.candles()) == 3 and sub.last.close == 9
    session.on_frame("[8,[240000,9,9,9,9,0.5]]")
    assert [c.mts for c in sub.candles(2)] == [180000, 240000]
