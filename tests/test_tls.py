"""wss:// end to end with certificate verification, against the emulator serving a test CA's certificate."""
import ssl
import threading
import time

import pytest
import trustme

import bfxsync
from bfxsync._engine import transport
from bfxsync.emulator import Emulator

from conftest import FAST, settle_books
from test_client import Collector


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def tls_emulator(ca, tmp_path):
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(certfile, append=True)
    cert.private_key_pem.write_to_path(keyfile)
    with Emulator(seed=3, rate=40.0, heartbeat_interval=1.0, certfile=str(certfile), keyfile=str(keyfile)) as emu:
        yield emu


def test_wss_with_verified_certificate(ca, tls_emulator, make_client):
    """Over wss:// with the CA trusted, books sync and verify exactly as over ws://."""
    assert tls_emulator.url.startswith("wss://")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = make_client(tls_emulator.url, bfxsync.Config(ssl_context=context, backoff=FAST.backoff))
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    raw = client.subscribe_book("fUSD", prec="R0").wait_synced(5)
    assert settle_books(tls_emulator, [book, raw])
    assert book.checks_failed == 0


def test_wss_untrusted_certificate_fails_at_once(tls_emulator, make_client):
    """Without the CA the certificate does not verify: a configuration error, so the client ends at once
    with the reason (CertificateError), after one dial and no back-off, instead of retrying until a timeout."""
    client = make_client(tls_emulator.url, bfxsync.Config(backoff=bfxsync.Backoff(initial=5, jitter=0)))
    seen = Collector()
    client.on_disconnected(seen)
    errors = Collector()
    client.on_error(errors)
    started = time.monotonic()
    with pytest.raises(bfxsync.CertificateError, match="did not verify: unable to get local issuer certificate"):
        client.wait_connected(10)
    assert time.monotonic() - started < 4.5  # not the wait's timeout (10 s), not the 5 s back-off
    assert client.closed and isinstance(client.fatal_error, bfxsync.CertificateError)
    assert isinstance(client.fatal_error.__cause__, ssl.SSLCertVerificationError)
    assert isinstance(client.fatal_error, bfxsync.NotConnectedError)  # what waits raised before stays caught
    assert client.stats()["dials"] == 1
    assert seen.wait_for(timeout=5)
    assert "did not verify" in seen.items[0].reason and not seen.items[0].will_reconnect
    assert errors.wait_for(timeout=5) and isinstance(errors.items[0].error, bfxsync.CertificateError)
    with pytest.raises(bfxsync.NotConnectedError, match="closed"):
        client.subscribe_ticker("tBTCUSD")


def test_wss_wrong_host_name_fails_at_once(ca, tmp_path, make_client):
    """A certificate issued for another host (trusted CA, wrong name) is refused the same way."""
    cert = ca.issue_cert("other.example")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with Emulator(seed=3, certfile=str(certfile), keyfile=str(keyfile)) as emu:
        client = make_client(emu.url, bfxsync.Config(ssl_context=context, backoff=FAST.backoff))
        with pytest.raises(bfxsync.CertificateError, match="did not verify: .*(mismatch|match)"):
            client.wait_connected(5)
        assert client.stats()["dials"] == 1


def test_wss_burst_keeps_books_exact(ca, tls_emulator, make_client):
    """A burst of hundreds of ticks over TLS (read-ahead plus TLS-buffered bytes) leaves every book exact."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = make_client(tls_emulator.url, bfxsync.Config(ssl_context=context, backoff=FAST.backoff))
    books = [client.subscribe_book("tBTCUSD", prec="R0", length=250).wait_synced(5),
             client.subscribe_book("tETHUSD", length=250).wait_synced(5),
             client.subscribe_book("fUSD", prec="P1", length=100).wait_synced(5)]
    tls_emulator.pause()
    assert tls_emulator.step(300)
    tls_emulator.resume()
    assert settle_books(tls_emulator, books)
    assert sum(b.checks_passed for b in books) > 100 and not any(b.checks_failed for b in books)


def _watching_context(ca):
    """A client context whose sockets count reads, writes, and any read and write on one socket at once."""
    seen = {"reads": 0, "writes": 0, "overlaps": 0}
    lock = threading.Lock()
    inside = {}  # id(socket) -> {"read": n, "write": n} calls under way

    class Watched(ssl.SSLSocket):
        def _call(self, kind, method, *args):
            with lock:
                now = inside.setdefault(id(self), {"read": 0, "write": 0})
                if now["write" if kind == "read" else "read"]:
                    seen["overlaps"] += 1
                now[kind] += 1
                seen[kind + "s"] += 1
            try:
                return method(*args)
            finally:
                with lock:
                    now[kind] -= 1

        def recv_into(self, *args):  # the batch framer's read
            return self._call("read", super().recv_into, *args)

        def recv(self, *args):  # websocket-client's stock reader's
            return self._call("read", super().recv, *args)

        def send(self, *args):
            return self._call("write", super().send, *args)

        def sendall(self, *args):
            return self._call("write", super().sendall, *args)

    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.sslsocket_class = Watched
    return context, seen


@pytest.mark.parametrize("reader", ["batch", "stock"])
def test_a_tls_socket_is_never_read_and_written_at_once(ca, tls_emulator, make_client, monkeypatch, reader):
    """OpenSSL forbids two threads in one SSL object at once (a read that handles a post-handshake
    message beside a write has failed connections with a bad record MAC): the reader and the senders
    take turns at the socket, and a quiet reader waits for data without holding it up. Both readers:
    the batch framer, and websocket-client's stock reader (the fallback)."""
    monkeypatch.setattr(transport, "FALLBACK_REASON", None if reader == "batch" else "forced by the test")
    context, seen = _watching_context(ca)
    client = make_client(tls_emulator.url, bfxsync.Config(ssl_context=context, backoff=FAST.backoff))
    book = client.subscribe_book("tBTCUSD").wait_synced(5)
    trades = client.subscribe_trades("tETHUSD").wait_subscribed(5)
    errors = []

    def pinger():
        try:
            for _ in range(150):
                client.ping(5)  # a send from this thread, answered by a pong the reader reads
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    pingers = [threading.Thread(target=pinger) for _ in range(2)]
    for thread in pingers:
        thread.start()
    for thread in pingers:
        thread.join(60)
    assert not errors and not any(thread.is_alive() for thread in pingers)
    assert seen["writes"] >= 300 and seen["reads"] >= 300  # both sides were busy...
    assert seen["overlaps"] == 0  # ...and never at once
    assert settle_books(tls_emulator, [book]) and book.checks_failed == 0 and trades.active
    assert client.stats()["reconnects"] == 0
