"""The authenticated half end to end against the emulator's trading account, over ws:// and wss://."""
import logging
import re
import ssl
import threading
from decimal import Decimal

import pytest
import trustme

import bfxsync
from bfxsync import errors
from bfxsync._engine import account_link
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator, EmulatorAccount

from conftest import FAST, wait_until

DEMO = {"api_key": DEMO_KEY, "api_secret": DEMO_SECRET}


def authenticated(make_client, url, **options):
    client = make_client(url, FAST, **{**DEMO, **options})
    client.wait_authenticated(10)
    return client


def test_authentication_brings_every_snapshot(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    snapshot = client.account.snapshot()
    assert {"os", "ps", "ws", "fos", "fcs", "fls"} <= set(snapshot.snapshots_received)
    expected = emulator.account(DEMO_KEY).wallets
    assert {key: wallet.balance for key, wallet in snapshot.wallets.items()} == expected
    assert client.stats()["authentications"] == 1 and client.account.authenticated


@pytest.mark.parametrize("options,code", [
    ({"api_key": "nobody"}, 10100),
    ({"api_secret": "not-the-secret"}, 10100),
])
def test_a_refused_authentication_is_typed_hinted_and_not_retried(emulator, make_client, options, code):
    client = make_client(emulator.url, FAST, **{**DEMO, **options})
    with pytest.raises(errors.AuthenticationError) as caught:
        client.wait_authenticated(10)
    assert caught.value.code == code and caught.value.hint
    link = client._pool.account_link()
    assert wait_until(lambda: not link.connection.alive(), 5)
    assert link.connection.dials == 1  # never retried in a loop
    assert client.subscribe_ticker("tBTCUSD").wait_subscribed(5).active  # public data is unaffected


def test_a_shared_nonce_is_refused_with_its_hint_after_the_retries(emulator, make_client, monkeypatch):
    """nonce: small is retried with fresh nonces on new connections; one that never grows is final."""
    monkeypatch.setattr(account_link, "NONCE_RETRY_DELAY", 0.05)
    authenticated(make_client, emulator.url, nonce=lambda: 5)
    second = make_client(emulator.url, FAST, **DEMO, nonce=lambda: 5)
    with pytest.raises(errors.AuthenticationError, match="another client shares this key's nonce") as caught:
        second.wait_authenticated(10)
    assert caught.value.code == 10114
    assert second.stats()["auth_retries"] == account_link.NONCE_RETRIES


def test_plain_ws_authentication_is_refused_off_loopback():
    with pytest.raises(ValueError, match="plain ws://"):
        bfxsync.Client("ws://example.com/ws/2", **DEMO)
    with pytest.raises(ValueError, match="go together"):
        bfxsync.Client("ws://127.0.0.1:1/ws/2", api_key="only-a-key")


def test_place_modify_cancel(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    account = client.account
    order = account.submit_order("tBTCUSD", "0.01", "20000").result(10)
    assert order.status_word == "ACTIVE" and order.amount == Decimal("0.01") and order.price == Decimal("20000")
    assert wait_until(lambda: order.id in account.snapshot().orders)
    moved = account.update_order(order.id, price="20001").result(10)
    assert moved.id == order.id and moved.price == Decimal("20001")
    cancelled = account.cancel_order(order.id).result(10)
    assert cancelled.status_word == "CANCELED"
    assert wait_until(lambda: order.id not in account.snapshot().orders)
    assert emulator.account(DEMO_KEY).orders == ()


def test_a_fill_reaches_trades_and_wallets(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    trades = []
    client.account.on_trades(trades.append)
    btc = client.account.snapshot().wallets[("exchange", "BTC")].balance
    client.account.submit_order("tBTCUSD", "0.01", type="EXCHANGE MARKET").result(10)
    assert wait_until(lambda: any(m.tag == "tu" for m in trades))
    assert wait_until(lambda: client.account.snapshot().wallets[("exchange", "BTC")].balance > btc)
    assert client.account.snapshot().wallets[("exchange", "BTC")].balance == emulator.account(DEMO_KEY).wallets[
        ("exchange", "BTC")]


def test_a_partial_fill(make_client):
    rich = EmulatorAccount("rich-key", "rich-secret", wallets={("exchange", "USD"): "100000000"})
    with Emulator(seed=5, rate=0, accounts=(rich,)) as emulator:  # rate 0: the book holds still
        client = make_client(emulator.url, FAST, api_key="rich-key", api_secret="rich-secret")
        client.wait_authenticated(10)
        orders = []
        client.account.on_orders(orders.append)
        book = client.subscribe_book("tBTCUSD").wait_synced(5)
        ask = book.best_ask()
        amount = (Decimal(ask.amount).copy_abs() * 2).quantize(Decimal("0.00000001"))
        order = client.account.submit_order("tBTCUSD", str(amount), str(ask.price)).result(10)
        assert wait_until(lambda: any(m.item.status_word == "PARTIALLY FILLED" for m in orders if m.items), 10)
        left = client.account.snapshot().orders[order.id].amount
        assert Decimal(0) < left < amount


def test_insufficient_balance_is_an_order_error(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    with pytest.raises(errors.OrderError, match="not enough"):
        client.account.submit_order("tBTCUSD", "1000", "30000").result(10)
    with pytest.raises(ValueError, match="amount must be finite"):
        client.account.submit_order("tBTCUSD", float("nan"), "30000")


def test_a_drop_with_an_order_in_flight_is_unknown_then_reconciled(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    reconciled = []
    client.on_order_reconciled(reconciled.append)
    emulator.drop_after_next_input(applied=True)
    request = client.account.submit_order("tBTCUSD", "0.01", "20000")
    with pytest.raises(errors.OutcomeUnknownError) as caught:
        request.result(10)
    assert caught.value.cid == request.cid and caught.value.cid_date
    assert wait_until(lambda: reconciled, 15)
    assert reconciled[0].cid == request.cid and reconciled[0].order.status_word == "ACTIVE"
    assert len(emulator.account(DEMO_KEY).orders) == 1  # placed once, never sent again


def test_reauthentication_after_a_reconnect_rebuilds_the_state(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    seen = []
    client.on_authenticated(seen.append)
    order = client.account.submit_order("tBTCUSD", "0.01", "20000").result(10)
    emulator.drop_connections()
    assert wait_until(lambda: any(a.reauthenticated for a in seen), 15)
    client.wait_authenticated(10)
    assert wait_until(lambda: order.id in client.account.snapshot().orders)


def test_an_account_sequence_gap_reauthenticates(emulator, make_client):
    client = authenticated(make_client, emulator.url, sequence=True)
    seen = []
    client.on_authenticated(seen.append)
    emulator.skip_account_sequence()
    client.account.calc(["balance"])
    client.account.submit_order("tBTCUSD", "0.01", "20000")
    assert wait_until(lambda: client.stats()["account_sequence_gaps"] >= 1 and seen, 15)
    assert seen[-1].reauthenticated
    client.wait_authenticated(10)


def test_dead_man_switch_cancels_orders_when_the_connection_drops(emulator, make_client):
    client = authenticated(make_client, emulator.url, dms=True)
    client.account.submit_order("tBTCUSD", "0.01", "20000").result(10)
    assert len(emulator.account(DEMO_KEY).orders) == 1
    emulator.drop_connections()
    assert wait_until(lambda: emulator.account(DEMO_KEY).orders == (), 10)
    client.wait_authenticated(15)
    assert wait_until(lambda: not client.account.snapshot().orders, 10)


def test_maintenance_refuses_orders(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    emulator.start_maintenance()
    try:
        assert wait_until(lambda: client.maintenance)
        with pytest.raises(errors.MaintenanceError):
            client.account.submit_order("tBTCUSD", "0.01", "20000")
    finally:
        emulator.end_maintenance()


@pytest.mark.callback_errors_expected
def test_blocking_result_is_refused_in_a_callback(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    refused = []

    def on_order(message):
        try:
            request.result(1)
        except errors.CallbackThreadError as err:
            refused.append(err)

    client.account.on_orders(on_order)
    request = client.account.submit_order("tBTCUSD", "0.01", "20000")
    request.result(10)
    assert wait_until(lambda: refused)


def test_the_secret_and_signature_never_reach_logs_reprs_or_errors(emulator, make_client, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level
    client = authenticated(make_client, emulator.url, sequence=True)
    client.account.submit_order("tBTCUSD", "0.01", "20000").result(10)
    with pytest.raises(errors.OrderError) as refused_order:
        client.account.submit_order("tBTCUSD", "1000", "30000").result(10)
    before = sum(r.getMessage().startswith("authenticated on connection") for r in caplog.records)
    emulator.drop_connections()
    assert wait_until(lambda: sum(r.getMessage().startswith("authenticated on connection")
                                  for r in caplog.records) > before, timeout=15), "signed in again after the drop"
    client.wait_authenticated(15)
    bad = make_client(emulator.url, FAST, api_key=DEMO_KEY, api_secret="another-secret")
    with pytest.raises(errors.AuthenticationError) as refused_auth:
        bad.wait_authenticated(10)
    # The client's side: bfxsync and websocket-client (the emulator plays the server, which sees the frame).
    ours = [r for r in caplog.records
            if (r.name.startswith("bfxsync") and not r.name.startswith("bfxsync.emulator")) or r.name == "websocket"]
    texts = [record.getMessage() for record in ours]
    # The capture worked and holds the records about signing in, whichever reader ran (the stock
    # reader logs fewer records of its own, so a count would say nothing).
    assert any(text.startswith("authenticated on connection") for text in texts), texts
    assert any(text.startswith("authentication refused: server error 10100") for text in texts), texts
    texts += [logging.Formatter().formatException(r.exc_info) for r in ours if r.exc_info]
    texts += [repr(client), repr(client.account), repr(bad.account), str(refused_order.value),
              str(refused_auth.value), repr(client.account._session.credentials), str(client.stats())]
    blob = "\n".join(texts)
    assert DEMO_SECRET not in blob and "another-secret" not in blob
    assert not re.search(r"\b[0-9a-f]{96}\b", blob), "an HMAC-SHA384 signature was logged"
    assert "authSig" not in blob


@pytest.fixture
def tls_emulator(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(certfile, append=True)
    cert.private_key_pem.write_to_path(keyfile)
    with Emulator(seed=3, rate=40.0, heartbeat_interval=1.0, certfile=str(certfile), keyfile=str(keyfile)) as emu:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        yield emu, context


def test_trading_over_wss(tls_emulator, make_client):
    emu, context = tls_emulator
    client = make_client(emu.url, bfxsync.Config(ssl_context=context, backoff=FAST.backoff), **DEMO)
    client.wait_authenticated(10)
    order = client.account.submit_order("tBTCUSD", "0.01", "20000").result(10)
    assert client.account.cancel_order(order.id).result(10).status_word == "CANCELED"


def test_account_state_reads_are_consistent_from_another_thread(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    stop, problems = threading.Event(), []

    def read():
        while not stop.is_set():
            snapshot = client.account.snapshot()
            if any(key != (w.wallet_type, w.currency) for key, w in snapshot.wallets.items()):
                problems.append(snapshot)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(5):
            client.account.submit_order("tBTCUSD", "0.001", type="EXCHANGE MARKET").result(10)
    finally:
        stop.set()
        reader.join(5)
    assert not problems


def test_margin_orders_open_and_close_a_position(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    positions = []
    client.account.on_positions(positions.append)
    client.account.submit_order("tBTCUSD", "0.01", type="MARKET").result(10)
    assert wait_until(lambda: "tBTCUSD" in client.account.snapshot().positions, 10)
    assert client.account.snapshot().positions["tBTCUSD"].amount == Decimal("0.01")
    client.account.submit_order("tBTCUSD", "-0.01", type="MARKET", reduce_only=True).result(10)
    assert wait_until(lambda: "tBTCUSD" not in client.account.snapshot().positions, 10)
    assert {m.tag for m in positions} >= {"pn", "pc"}


def test_group_cancel_multi_op_funding_and_callbacks(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    account = client.account
    done = []
    first = account.submit_order("tBTCUSD", "0.01", "20000", gid=7)
    first.add_done_callback(done.append)
    second = account.submit_order("tBTCUSD", "0.01", "20001", gid=7).result(10)
    first.result(10)
    assert wait_until(lambda: done == [first])
    account.cancel_orders(gids=[7]).result(10)
    assert wait_until(lambda: not account.snapshot().orders, 10) and second.id
    multi = account.order_multi_op([("on", {"cid": 99, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD",
                                            "amount": "0.01", "price": "20000"})])
    multi.result(10)
    assert wait_until(lambda: any(o.cid == 99 for o in account.snapshot().orders.values()), 10)
    offer = account.submit_funding_offer("fUSD", "100", "0.0002", 7).result(10)
    assert offer.ok
    assert wait_until(lambda: account.snapshot().funding_offers, 10)
    offer_id = next(iter(account.snapshot().funding_offers))
    account.cancel_funding_offer(offer_id).result(10)
    assert wait_until(lambda: not account.snapshot().funding_offers, 10)
    with pytest.raises(errors.OrderError, match="not found"):
        account.cancel_order(123456789).result(10)


def test_bad_filters_are_refused_at_construction():
    with pytest.raises(ValueError, match="bogus"):
        bfxsync.Client("ws://127.0.0.1:1/ws/2", **DEMO, filters=["bogus"])


def test_a_refusal_at_reauthentication_is_reported_and_not_retried(emulator, make_client):
    client = authenticated(make_client, emulator.url)
    errors_seen = []
    client.on_error(errors_seen.append)
    emulator.reject_auth(10100)
    emulator.drop_connections()
    with pytest.raises(errors.AuthenticationError):
        assert wait_until(lambda: client.account._session.refused is not None, 10)
        client.wait_authenticated(5)
    link = client._pool.account_link()
    assert wait_until(lambda: not link.connection.alive(), 5)
    assert any(isinstance(e.error, errors.AuthenticationError) for e in errors_seen)
    with pytest.raises(errors.AuthenticationError):
        client.account.submit_order("tBTCUSD", "0.01", "20000")


def test_an_auth_refusal_sent_as_an_error_event_is_understood():
    """Some refusals come as {"event":"error","code":10100,"msg":"auth: invalid"} instead of an auth event."""
    from bfxsync._engine.callback_runner import Handlers
    from bfxsync._engine.pool import Pool
    from bfxsync._engine.runtime import Runtime
    from bfxsync.auth import Credentials

    from test_link import FakeConnection

    runtime = Runtime(bfxsync.Config(), Handlers(), on_end=lambda: None)
    from bfxsync._engine.account_session import AccountSession

    session = AccountSession(Credentials(DEMO_KEY, DEMO_SECRET), lambda: 7, False, None, runtime.callbacks)
    pool = Pool("ws://test", runtime, wake=lambda delay: None, account=session, auth_url="ws://127.0.0.1:1/ws/2")
    link = pool.account_link()
    link.connection = fake = FakeConnection()
    link.on_open()
    link.on_frame('{"event":"info","version":2,"platform":{"status":1}}')
    assert fake.sent[-1]["event"] == "auth" and fake.sent[-1]["authNonce"] == 7
    link.on_frame('{"event":"error","code":10100,"msg":"auth: invalid"}')
    assert session.refused is not None and session.refused.code == 10100 and fake.stopped
