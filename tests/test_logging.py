"""What bfxsync logs, captured against the emulator and a dropped connection: lines that tell the truth."""
import logging
import threading

import websocket

from bfxsync import protocol
from bfxsync._engine import transport

from conftest import wait_until
from test_cli import closed_port

#: The format the README recommends.
README_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bfxsync_lines(caplog):
    """Every bfxsync record, formatted as the README's format shows it."""
    formatter = logging.Formatter(README_FORMAT)
    return [formatter.format(r) for r in caplog.records if r.name.split(".")[0] == "bfxsync"]


def test_a_whole_session_logs_no_doubled_prefix(emulator, make_client, caplog):
    """Connect, subscribe, a server info, a drop and reconnect, a close: no line reads 'bfxsync: bfxsync:'."""
    caplog.set_level(logging.DEBUG, logger="bfxsync")
    client = make_client(emulator.url)
    client.subscribe_book("tBTCUSD").wait_synced(5)
    emulator.broadcast_info(protocol.INFO_MAINTENANCE_START, "Maintenance: resync start")
    emulator.broadcast_info(protocol.INFO_MAINTENANCE_END, "Maintenance: resync end")
    emulator.drop_connections()
    assert wait_until(lambda: client.stats()["reconnects"] == 1 and client.connected)
    client.close()
    lines = bfxsync_lines(caplog)
    assert len(lines) >= 5  # connected, info twice, the drop, reconnected, ...
    assert not [line for line in lines if "bfxsync: bfxsync" in line], lines
    assert not [r for r in caplog.records if r.name.startswith("bfxsync") and r.getMessage().startswith("bfxsync")]


def test_info_without_a_message_says_what_it_means(emulator, make_client, caplog):
    """An info 20051 with an empty msg is logged with its meaning, never as 'info 20051: '."""
    caplog.set_level(logging.INFO, logger="bfxsync")
    client = make_client(emulator.url)
    client.wait_connected(5)
    emulator.broadcast_info(protocol.INFO_RECONNECT, "")
    assert wait_until(lambda: client.stats()["reconnects"] == 1)
    infos = [r.getMessage() for r in caplog.records if "20051" in r.getMessage() and r.name == "bfxsync"]
    assert "server info 20051 (the server is restarting: reconnecting): no message" in infos, infos
    assert not [m for m in infos if m.rstrip().endswith(":")]


def test_failed_dials_are_numbered_by_attempt(make_client, caplog):
    """Three refused dials of one connection log attempts 1, 2, 3 (the connection's own number stays)."""
    caplog.set_level(logging.INFO, logger="bfxsync")
    client = make_client(f"ws://127.0.0.1:{closed_port()}/ws/2")
    assert wait_until(lambda: client.stats()["dials"] >= 3)
    client.close()
    number = client_number = None
    attempts = []
    for record in caplog.records:
        message = record.getMessage()
        if ": attempt " in message and " failed: " in message:
            number = int(message.split()[1])
            client_number = client_number or number
            assert number == client_number, message
            attempts.append(int(message.split(": attempt ")[1].split()[0]))
    assert attempts[:3] == [1, 2, 3], attempts


def test_the_clients_own_close_is_not_blamed_on_the_server(emulator, make_client, caplog):
    """close() reads 'closed by client' in the log and in Disconnected; a server's close still reads 'by server'."""
    caplog.set_level(logging.INFO, logger="bfxsync")
    client = make_client(emulator.url)
    seen = []
    client.on_disconnected(seen.append)
    client.wait_connected(5)
    emulator.close_connections(code=1001, reason="going away")
    assert wait_until(lambda: seen and client.connected)
    assert seen[0].reason == "closed by server: 1001 going away"
    client.close()
    assert len(seen) == 2 and seen[1].reason == "closed by client", seen
    ended = [r.getMessage() for r in caplog.records if " ended: " in r.getMessage()]
    assert ended[-1].endswith("ended: closed by client"), ended
    assert not [m for m in ended if "closed by server: 1000" in m], ended


def test_websocket_client_goodbye_is_demoted_on_bfxsync_threads_only(emulator, make_client, caplog, monkeypatch):
    """An ordinary drop makes websocket-client log ERROR '... - goodbye' on the reader thread: it reaches
    the user's handlers as DEBUG (and not at all at WARNING); the user's own websocket-client use keeps ERROR.
    (Through the batch framer, which runs websocket-client's run_forever; the stock reader logs no goodbye.)"""
    monkeypatch.setattr(transport, "FALLBACK_REASON", transport.missing_internals())
    caplog.set_level(logging.DEBUG, logger="websocket")
    client = make_client(emulator.url)
    client.wait_connected(5)
    emulator.drop_connections()  # TCP closed without a close frame
    assert wait_until(lambda: client.stats()["reconnects"] == 1 and client.connected)
    ours = [r for r in caplog.records if r.name == "websocket" and "goodbye" in r.getMessage()]
    assert ours, "websocket-client no longer logs goodbye on a drop: nothing to demote"
    assert all(r.levelno == logging.DEBUG and r.levelname == "DEBUG" for r in ours)
    assert not [r for r in caplog.records if r.name == "websocket" and r.levelno > logging.DEBUG]

    caplog.clear()
    caplog.set_level(logging.WARNING, logger="websocket")  # the default: nothing of ours shows
    emulator.drop_connections()
    assert wait_until(lambda: client.stats()["reconnects"] == 2 and client.connected)
    assert not [r for r in caplog.records if r.name == "websocket"]

    # The application's own websocket-client, on its own thread: untouched.
    app = websocket.WebSocketApp(f"ws://127.0.0.1:{closed_port()}/")
    user = threading.Thread(target=app.run_forever, kwargs={"reconnect": 0})
    user.start()
    user.join(10)
    assert not user.is_alive()
    theirs = [r for r in caplog.records if r.name == "websocket" and "goodbye" in r.getMessage()]
    assert theirs and theirs[0].levelno == logging.ERROR
