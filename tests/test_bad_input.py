"""Bad frames from the server: logged once per kind, counted, never a dead thread or a corrupted book."""
import pytest

import bfxsync

from conftest import settle_books, wait_until
from test_client import Collector

BAD_FRAMES = [
    ("malformed", "this is not json"),
    ("malformed", "[{chan},"),
    ("malformed", "[{chan},[1,2,3]"),
    ("malformed", "[abc,[1,2,3]]"),
    ("malformed", "[{chan},[1,2,3]] and more"),
    ("malformed", "[{chan}]"),
    ("malformed", "[]"),
    ("malformed", '["{chan}",[1,2,3]]'),
    ("malformed", "42"),
    ("malformed", ""),
    ("unknown_event", '{"event":"surprise"}'),
    ("unknown_event", '{"no_event":1}'),
    ("unknown_channel", "[987654,[1,2,3]]"),
    ("unknown_channel", '[987654,"hb"]'),
]


@pytest.mark.parametrize("kind, frame", BAD_FRAMES)
def test_bad_frame_is_counted_and_stream_goes_on(emulator, make_client, kind, frame):
    """Each kind of bad frame bumps its counter; the book keeps verifying afterwards."""
    client = make_client(emulator.url)
    errors = Collector()
    client.on_error(errors)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    emulator.inject(frame.replace("{chan}", str(book.chan_id)))
    assert wait_until(lambda: client.stats().get(kind, 0) >= 1)
    assert any(isinstance(e.error, bfxsync.BfxError) for e in errors.items) or kind != "malformed"
    passed = book.checks_passed
    assert wait_until(lambda: book.checks_passed > passed)
    assert settle_books(emulator, [book])
    assert all(t.is_alive() for t in client.threads())


def test_a_channel_frame_with_whitespace_is_read_like_any_other(emulator, make_client):
    """JSON whitespace inside and after a channel frame takes the full decoder's path and still counts."""
    client = make_client(emulator.url)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    beats = book.heartbeats
    emulator.inject(f'[ {book.chan_id} , "hb" ] \n', chan_id=book.chan_id)
    assert wait_until(lambda: book.heartbeats > beats)
    assert not client.stats().get("malformed")
    assert settle_books(emulator, [book])


def test_wrong_shape_book_update_resyncs_instead_of_corrupting(emulator, make_client):
    """A book entry with the wrong shape is reported and the book rebuilt from a fresh snapshot."""
    client = make_client(emulator.url)
    errors = Collector()
    client.on_error(errors)
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    emulator.inject(f'[{book.chan_id},[1,2]]', chan_id=book.chan_id)
    assert errors.wait_for(lambda i: any("wrong shape" in str(e.error) for e in i))
    assert wait_until(lambda: book.resyncs == 1 and book.synced)
    assert settle_books(emulator, [book])


def test_wrong_shape_ticker_is_reported(emulator, make_client):
    """A ticker with missing fields raises no exception in the reader; it is counted and reported."""
    client = make_client(emulator.url)
    errors = Collector()
    client.on_error(errors)
    got = Collector()
    sub = client.subscribe_ticker("tBTCUSD", on_data=got).wait_subscribed(5)
    emulator.inject(f'[{sub.chan_id},[1,2,3]]', chan_id=sub.chan_id)
    assert wait_until(lambda: client.stats().get("bad_payload", 0) == 1)
    mark = len(got.items)
    assert got.wait_for(lambda i: len(i) > mark)


def test_invalid_utf8_bytes_are_malformed(emulator, make_client):
    """Frames are decoded once; invalid UTF-8 counts as malformed (validated by the decoder)."""
    client = make_client(emulator.url)
    client.wait_connected(5)
    client._pool.links()[0].on_frame(b"[1,\xff\xfe]")  # the parser entry point, as the reader thread calls it
    assert client.stats()["malformed"] == 1
