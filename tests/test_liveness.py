"""Recovery that always finishes: silent channels, a server that never says info, unanswered
requests, and books that keep failing their checksum."""
import logging

import attrs
import pytest

import bfxsync
from bfxsync import errors

from conftest import FAST, settle_books, wait_until

#: Short limits so each fault is noticed in about a second (the emulator's heartbeats come every 1 s).
QUICK = attrs.evolve(FAST, channel_timeout=2.5, request_timeout=1.0, connect_timeout=1.0,
                     keepalive_interval=0.5, heartbeat_timeout=3.0)


def test_silent_channels_are_resubscribed_while_pongs_still_arrive(emulator, make_client):
    client = make_client(emulator.url, QUICK)
    recoveries = []
    client.on_recovery(recoveries.append)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    ticker = client.subscribe_ticker("tETHUSD").wait_subscribed(5)
    emulator.mute_channels(True)
    assert wait_until(lambda: {r.subscription for r in recoveries if r.kind == "resubscribe"} >= {book, ticker}, 10)
    assert client.stats()["disconnects"] == 0  # the connection itself stayed up: only the channels were redone
    assert not book.synced
    emulator.mute_channels(False)
    book.wait_synced(10)
    assert settle_books(emulator, [book])
    assert client.stats()["channel_stalls"] >= 2 and ticker.wait_subscribed(5).active


def test_a_server_that_never_sends_info_is_redialled(emulator, make_client):
    emulator.hold_info(True)
    client = make_client(emulator.url, QUICK)
    recoveries = []
    client.on_recovery(recoveries.append)
    assert wait_until(lambda: [r for r in recoveries if r.kind == "redial"], 10)
    assert "no info" in recoveries[0].reason and client.stats()["handshake_timeouts"] >= 1
    emulator.hold_info(False)
    client.wait_connected(10)


@pytest.mark.parametrize("reply", ["none", "error_no_chanid"])
def test_an_unconfirmed_unsubscribe_is_given_up_and_reported(emulator, make_client, reply):
    client = make_client(emulator.url, QUICK)
    recoveries, ended = [], []
    client.on_recovery(recoveries.append)
    client.on_unsubscribed(ended.append)
    ticker = client.subscribe_ticker("tBTCUSD").wait_subscribed(5)
    emulator.set_unsubscribe_reply(reply)
    ticker.unsubscribe()
    assert wait_until(lambda: ended and ticker.state is bfxsync.State.CLOSED, 10)
    assert [r.kind for r in recoveries] == ["unsubscribe_timeout"]
    again = client.subscribe_ticker("tBTCUSD")  # a new request, not stuck behind the old one
    emulator.set_unsubscribe_reply("ok")
    assert again.wait_subscribed(5).active


def test_an_unanswered_subscribe_fails_instead_of_waiting_for_ever(emulator, make_client):
    client = make_client(emulator.url, QUICK)
    client.wait_connected(5)
    emulator.set_subscribe_reply("none")
    ticker = client.subscribe_ticker("tBTCUSD")
    with pytest.raises(errors.SubscriptionError, match="no answer"):
        ticker.wait_subscribed(5)
    emulator.set_subscribe_reply("ok")
    assert client.subscribe_ticker("tBTCUSD").wait_subscribed(5).active  # a fresh handle, a fresh request


def test_a_book_that_keeps_failing_resyncs_with_back_off_and_one_warning(emulator, make_client, caplog):
    client = make_client(emulator.url, QUICK)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    caplog.set_level(logging.DEBUG, logger="bfxsync")
    emulator.corrupt_checksums("tBTCUSD")
    assert wait_until(lambda: book.resyncs >= 4, 15)
    emulator.corrupt_checksums("tBTCUSD", on=False)
    book.wait_synced(20)
    assert settle_books(emulator, [book])
    # Without back-off this loop ran 1,300-3,100 times a second; with it, a handful of times in seconds.
    assert book.resyncs <= 8
    episode_warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "resync" in r.getMessage()]
    assert len(episode_warnings) == 1, [r.getMessage() for r in episode_warnings]
