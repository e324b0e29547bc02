"""One consistent API (issue 16 section 2), against the emulator: callbacks by keyword only,
one name for the book length, polling without callbacks, order events lossless under a lossy
client-wide default, and order options named by the public method."""
import inspect
import pydoc
import time

import pytest

import bfxsync
from bfxsync.account import inputs
from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator
from bfxsync.models import DerivativesStatus, Liquidation, Trade, TradingTicker
from bfxsync.subscriptions import CandlesSubscription, StatusSubscription, TickerSubscription, TradesSubscription
from bfxsync.trading import ORDER_OPTIONS, UPDATE_OPTIONS

from conftest import FAST, wait_until

DEMO = {"api_key": DEMO_KEY, "api_secret": DEMO_SECRET}

# What you subscribe to is positional; how you receive it is keyword-only.
POSITIONAL = {
    "subscribe": ["spec"],
    "subscribe_ticker": ["symbol"],
    "subscribe_trades": ["symbol"],
    "subscribe_book": ["symbol", "prec", "freq", "length"],
    "subscribe_raw_book": ["symbol", "length"],
    "subscribe_candles": ["symbol_or_key", "timeframe", "period"],
    "subscribe_status": ["key"],
}
CALLS = [
    ("subscribe", (bfxsync.TickerSpec("tETHUSD"),)),
    ("subscribe_ticker", ("tBTCUSD",)),
    ("subscribe_trades", ("tBTCUSD",)),
    ("subscribe_book", ("tBTCUSD",)),
    ("subscribe_book", ("tETHUSD", "P1")),
    ("subscribe_raw_book", ("tBTCUSD",)),
    ("subscribe_candles", ("tBTCUSD", "1m")),
    ("subscribe_status", ("deriv:tBTCF0:USTF0",)),
]


class TestCallbacksByKeyword:
    @pytest.mark.parametrize("method, args", CALLS, ids=[f"{m}{len(a)}" for m, a in CALLS])
    def test_a_callback_by_position_is_refused_with_the_call_to_write(self, emulator, make_client, method, args):
        """``subscribe_book("tBTCUSD", cb)`` is a TypeError naming the right call, not "invalid prec"; nothing is subscribed."""
        client = make_client(emulator.url)

        def on_message(message):
            pass

        with pytest.raises(TypeError) as caught:
            getattr(client, method)(*args, on_message)
        shown = ", ".join(repr(a) for a in args)
        assert str(caught.value) == (f"{method}() takes its callback as a keyword argument: "
                                     f"{method}({shown}, on_data=on_message) (argument {len(args) + 1} is callable)")
        assert client.subscriptions == []
        got = []
        getattr(client, method)(*args, on_data=got.append)  # the call the message names works
        assert wait_until(lambda: got, 10)

    @pytest.mark.parametrize("method", sorted(POSITIONAL))
    def test_every_subscribe_follows_one_rule(self, method):
        """Only the channel's key is positional; on_data and the delivery options are keyword-only everywhere."""
        parameters = list(inspect.signature(getattr(bfxsync.Client, method)).parameters.values())[1:]
        positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        keyword_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert positional == POSITIONAL[method]
        assert {"on_data", "dispatch", "overflow", "queue_size"} <= keyword_only
        # help() shows the real signature, not the checking wrapper's (*args, **kwargs)
        # (Python 3.13 puts a long signature one parameter per line: compare with whitespace collapsed).
        page = " ".join(pydoc.render_doc(getattr(bfxsync.Client, method), renderer=pydoc.plaintext).split())
        assert "*, on_data: " in page and "*args, **kwargs" not in page


class TestPollingWithoutCallbacks:
    def test_trades_keep_a_bounded_recent_list(self, emulator, make_client):
        """Without a callback, trades keep the snapshot plus each executed trade once, newest last, bounded."""
        client = make_client(emulator.url)
        trades = client.subscribe_trades("tBTCUSD")
        assert trades.recent_size == 100
        assert wait_until(lambda: trades.recent(), 10)
        first = {t.id for t in trades.recent()}
        assert wait_until(lambda: {t.id for t in trades.recent()} - first, 10)  # a live trade was added
        recent = trades.recent()
        assert all(isinstance(t, Trade) for t in recent) and len({t.id for t in recent}) == len(recent)
        assert [t.mts for t in recent] == sorted(t.mts for t in recent)
        assert trades.last == recent[-1] and trades.recent(2) == recent[-2:] and trades.recent(0) == ()
        trades.recent_size = 3
        assert wait_until(lambda: len(trades.recent()) == 3, 10)  # applied at the next trade
        with pytest.raises(ValueError, match="recent_size"):
            trades.recent_size = 0

    def test_recent_trades_survive_a_reconnect_without_duplicates(self, emulator, make_client):
        """After a drop, the fresh snapshot merges by trade id: older trades kept, none twice."""
        client = make_client(emulator.url)
        snapshots = []
        trades = client.subscribe_trades("tETHUSD", on_data=lambda m: snapshots.append(m) if m.snapshot else None)
        trades.recent_size = 1000
        assert wait_until(lambda: snapshots and len(trades.recent()) > len(snapshots[0].items), 10)
        before = trades.recent()
        emulator.drop_connections()
        assert wait_until(lambda: len(snapshots) == 2, 15)
        after = trades.recent()
        ids = [t.id for t in after]
        assert len(set(ids)) == len(ids) and {t.id for t in before} <= set(ids)
        assert [t.mts for t in after] == sorted(t.mts for t in after)

    def test_a_polling_thread_only_ever_sees_whole_lists(self, make_client):
        """The reader publishes each list whole: a user thread never sees one out of order, duplicated or over its bound."""
        with Emulator(seed=3, rate=200.0, heartbeat_interval=1.0) as emu:
            client = make_client(emu.url)
            trades = client.subscribe_trades("tBTCUSD")
            trades.recent_size = 8
            seen, deadline = set(), time.monotonic() + 15
            while len(seen) < 40 and time.monotonic() < deadline:  # polls as fast as it can, as a legacy loop would
                recent = trades.recent()
                ids = [t.id for t in recent]
                assert len(recent) <= 8 and len(set(ids)) == len(ids)
                assert [t.mts for t in recent] == sorted(t.mts for t in recent)
                seen.add(ids[-1] if ids else None)
            assert len(seen) >= 40, "the trades did not move"

    def test_ticker_candles_and_status_keep_their_last_value(self, emulator, make_client):
        """ticker.last, candles.last, status.last (and recent) fill without a callback."""
        client = make_client(emulator.url)
        ticker = client.subscribe_ticker("tBTCUSD")
        candles = client.subscribe_candles("tBTCUSD", "1m")
        deriv = client.subscribe_status("deriv:tBTCF0:USTF0")
        liquidations = client.subscribe_status("liq:global")
        assert wait_until(lambda: ticker.last is not None and candles.last is not None, 10)
        assert isinstance(ticker.last, TradingTicker) and candles.last == candles.candles(1)[0]
        assert wait_until(lambda: len(deriv.recent()) >= 2, 15)
        statuses = deriv.recent()
        assert all(isinstance(s, DerivativesStatus) for s in statuses) and deriv.last is statuses[-1]
        assert statuses[-2].mts <= statuses[-1].mts
        assert wait_until(lambda: liquidations.last is not None, 20)  # about one a second at this rate
        assert isinstance(liquidations.last, Liquidation) and liquidations.recent()[-1] is liquidations.last

    @pytest.mark.parametrize("cls, names", [
        (TickerSubscription, ["last"]),
        (TradesSubscription, ["last", "recent", "recent_size"]),
        (CandlesSubscription, ["last", "candles"]),
        (StatusSubscription, ["last", "recent", "recent_size"]),
    ])
    def test_the_polling_state_is_documented_in_help(self, cls, names):
        """``help()`` shows each value with its docstring: properties and methods, not attributes set in __init__."""
        page = pydoc.render_doc(cls, renderer=pydoc.plaintext)
        for name in names:
            member = inspect.getattr_static(cls, name)
            assert isinstance(member, property) or callable(member), name
            assert inspect.getdoc(member), name
            assert f"\n |  {name}" in page, name  # listed by help(), with its docstring
        assert "any thread" in inspect.getdoc(inspect.getattr_static(cls, "last"))


class TestAccountEventsStayLossless:
    def test_a_lossy_global_default_leaves_order_events_on_block(self, emulator, make_client):
        """Client(dispatch="queued", queue_overflow="latest"): a burst of order events all reach a slow callback, in order."""
        client = make_client(emulator.url, FAST, **DEMO, dispatch="queued", queue_overflow="latest", sequence=True)
        account = client.account
        events = []

        @account.on_orders
        def slow(message):
            time.sleep(0.005)  # a slow consumer: a latest queue would fold this burst
            events.append(message)

        client.wait_authenticated(10)
        assert account.queue("orders").overflow == "block" and account.queue("all").overflow == "block"
        assert account.queue("wallets").overflow == "latest"  # state streams follow the global policy
        account.order_multi_op([inputs.new_order("tBTCUSD", "0.01", str(1000 + i)) for i in range(15)]).result(10)
        assert wait_until(lambda: len(account.snapshot().orders) == 15, 10)
        account.cancel_orders(all=True).result(10)
        assert wait_until(lambda: sum(m.tag == "oc" for m in events) == 15, 15)
        live = [m for m in events if not m.snapshot]
        assert [m.tag for m in live] == ["on"] * 15 + ["oc"] * 15
        assert {m.item.id for m in live[:15]} == {m.item.id for m in live[15:]}
        sequence = [m.auth_seq for m in live]
        assert sequence == sorted(sequence) and len(set(sequence)) == 30
        stats = account.queue("orders")
        assert (stats.conflated, stats.dropped, stats.discarded) == (0, 0, 0)

    def test_a_lossy_policy_for_orders_must_be_asked_for_per_stream(self, emulator, make_client):
        """set_dispatch("orders", "queued") keeps block; naming overflow="latest" for the stream gets it."""
        client = make_client(emulator.url, FAST, **DEMO, dispatch="queued", queue_overflow="drop_oldest")
        account = client.account
        account.set_dispatch("orders", "queued")
        assert account.queue("orders").overflow == "block"
        account.set_dispatch("orders", "queued", overflow="latest")
        assert account.queue("orders").overflow == "latest"
        account.set_dispatch("balance", "queued")
        assert account.queue("balance").overflow == "drop_oldest"


class TestOrderOptions:
    def test_an_unknown_option_names_the_public_method_and_the_valid_ones(self, emulator, make_client):
        """submit_order(postonly=True) says submit_order() and suggests post_only; nothing is sent."""
        client = make_client(emulator.url, FAST, **DEMO)
        client.wait_authenticated(10)
        with pytest.raises(TypeError) as caught:
            client.account.submit_order("tBTCUSD", "0.01", "20000", postonly=True)
        message = str(caught.value)
        assert message.startswith("submit_order() got an unexpected option 'postonly' (did you mean 'post_only'?)")
        assert "new_order" not in message and all(name in message for name in ORDER_OPTIONS)
        with pytest.raises(TypeError, match=r"^update_order\(\) got an unexpected option 'pricee' \(did you mean 'price'\?\)"):
            client.account.update_order(1, pricee="1")
        assert emulator.received_inputs(DEMO_KEY) == []
        client.account.submit_order("tBTCUSD", "0.01", "20000", post_only=True).result(10)
        assert [i.payload["flags"] for i in emulator.received_inputs(DEMO_KEY)] == [inputs.POST_ONLY]

    @pytest.mark.parametrize("method, options", [("submit_order", ORDER_OPTIONS), ("update_order", UPDATE_OPTIONS)])
    def test_every_option_is_documented_where_users_look(self, method, options):
        """The method's own docstring (what help() shows) names every option it takes."""
        doc = inspect.getdoc(getattr(bfxsync.Account, method))
        assert [name for name in options if f"{name}" not in doc] == []
