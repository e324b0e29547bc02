"""Account models read real channel-0 frames by index, in every length seen on the wire, and reject bad shapes."""
import json
from decimal import Decimal

import pytest

from bfxsync.account.models import (
    AccountFundingTrade,
    BalanceInfo,
    FundingCredit,
    FundingInfo,
    FundingLoan,
    FundingOffer,
    MarginInfo,
    Notification,
    Order,
    Position,
    SymbolMarginInfo,
    UserTrade,
    Wallet,
    status_word,
)
from bfxsync.errors import ProtocolError

from conftest import cpu_seconds


def payload(frame_text):
    """The payload of a channel-0 frame, decoded as the engine does (floats kept as their text)."""
    return json.loads(frame_text, parse_float=str)[2]


# docs: ws-auth-orders (32 fields)
ON = payload('[0,"on",[16662905539,0,4,"tLTCBTC",1536659719189,1536659719212,0.2001,0.2001,"EXCHANGE LIMIT",null,null,'
             'null,0,"ACTIVE",null,null,0.0085489,0,null,null,null,null,null,0,0,0,null,null,"API>BFX",null,null,null]]')
# docs: ws-auth-trades (tu, 12 fields)
TU = payload('[0,"tu",[738045455,"tTESTBTC:TESTUSD",1622169615771,66635385225,0.001,38175,"EXCHANGE LIMIT",39000,-1,'
             '-0.000002,"TESTBTC",1622169615685]]')
# docs: ws-auth-wallets (wu, 7 fields, real frame)
WU = payload('[0,"wu",["exchange","LTC",0.06729727,0,0.06729727,"Exchange 0.4 LTC for UST @ 65.075",{"reason":"TRADE",'
             '"order_id":96596397973,"order_id_oppo":96596632735,"trade_price":"65.075","trade_amount":"-0.4",'
             '"order_cid":1654636218766,"order_gid":null}]]')
# docs: ws-auth-notifications
N_OC_OK = payload('[0,"n",[1575291219660,"oc-req",null,null,[1185815100,null,1575289350475,"tETHUSD",1575289351944,'
                  '1575289447644,-3,-3,"LIMIT","LIMIT",null,null,0,"ACTIVE",null,null,240,0,0,0,null,null,null,0,0,null,'
                  'null,null,"API>BFX",null,null,null],null,"SUCCESS","Submitted for cancellation; waiting for '
                  'confirmation (ID: 1185815100)."]]')
N_ON_ERR = payload('[0,"n",[1523955674172,"on-req",null,null,[null,null,1523955674030000,null,null,null,-5.95861881,null,'
                   '"LIMIT",null,null,null,null,null,null,null,68.856,null,null,null,null,null,null,0,0,null,null,null,'
                   'null,null,null,null],null,"ERROR","amount: invalid"]]')
N_OC_ERR = payload('[0,"n",[1536136851766,"oc-req",null,null,[null,null,1,null,null,null,null,null,null,null,null,null,'
                   'null,null,null,null,null,null,null,null,null,null,null,0,null,null,null,null,null,null,null,null],'
                   'null,"ERROR","Order not found."]]')
N_OX_ERR = payload('[0,"n",[1566490238285,"ox_multi-req",null,null,null,null,"ERROR","input: invalid"]]')

POSITION = payload('[0,"pu",["tBTCUSD","ACTIVE",0.5,30000.5,0,0,12.5,0.0008,25000,2.5,null,142639051,1575290000000,'
                   '1575290001000,null,0,null,1500,null,{"reason":"TRADE"}]]')
OFFER = payload('[0,"fon",[41238905,"fUSD",1575026670000,1575026670000,5000,5000,"LIMIT",null,null,0,"ACTIVE",null,null,'
                'null,0.006,2,0,0,null,0,null]]')
CREDIT = payload('[0,"fcu",[26222883,"fUSD",1,1574013661000,1574079687000,350,0,"ACTIVE","FIXED",null,null,0.0024,2,'
                 '1574013661000,1574079687000,0,0,null,0,null,0,"tBTCUSD"]]')


class TestOrder:
    def test_documented_on_frame(self):
        """The docs' 32-field order reads field by field, money as exact Decimals from the wire text."""
        o = Order.from_wire(ON)
        assert (o.id, o.gid, o.cid, o.symbol, o.mts_create, o.mts_update) == (
            16662905539, 0, 4, "tLTCBTC", 1536659719189, 1536659719212)
        assert (o.amount, o.amount_orig, o.price, o.price_avg) == (
            Decimal("0.2001"), Decimal("0.2001"), Decimal("0.0085489"), Decimal(0))
        assert (o.order_type, o.type_prev, o.mts_tif, o.flags, o.status) == ("EXCHANGE LIMIT", None, None, 0, "ACTIVE")
        assert (o.price_trailing, o.price_aux_limit, o.notify, o.hidden, o.placed_id, o.routing, o.meta) == (
            None, None, False, False, 0, "API>BFX", None)
        assert o.is_open and o.status_word == "ACTIVE" and o.cid_date == "2018-09-11"

    def test_26_field_order_before_2018(self):
        """A 26-field order (before 2018) reads; ROUTING and META are None."""
        o = Order.from_wire(ON[:26])
        assert (o.id, o.price, o.routing, o.meta) == (16662905539, Decimal("0.0085489"), None, None)

    def test_31_fields_and_extra_trailing_fields(self):
        """A hand-trimmed 31-field order and one with extra fields both read."""
        assert Order.from_wire(ON[:31]).meta is None
        assert Order.from_wire(ON[:31] + [{"lev": 10}, "extra", 1]).meta == {"lev": 10}

    def test_floats_go_through_repr(self):
        """Rows decoded with plain floats give the same Decimals as the wire text."""
        o = Order.from_wire(json.loads(json.dumps(ON).replace('"0.2001"', "0.2001")))
        assert o.amount == Decimal("0.2001")

    def test_hidden_and_meta(self):
        """HIDDEN (idx 24) and a META object are read; the model stays hashable with a dict meta."""
        row = list(ON)
        row[12], row[24], row[31] = 64, 1, {"$F7": 1}
        o = Order.from_wire(row)
        assert (o.flags, o.hidden, o.meta) == (64, True, {"$F7": 1})
        assert hash(o) == hash(Order.from_wire(row))

    @pytest.mark.parametrize("status, word, is_open", [
        ("ACTIVE", "ACTIVE", True),
        ("ACTIVE (note:POSCLOSE)", "ACTIVE", True),
        ("EXECUTED @ 107.6(-0.2)", "EXECUTED", False),
        ("EXECUTED @ 30000.0(0.1): was PARTIALLY FILLED @ 30000.0(0.05)", "EXECUTED", False),
        ("PARTIALLY FILLED @ 107.6(-0.1)", "PARTIALLY FILLED", True),
        ("CANCELED", "CANCELED", False),
        ("CANCELED was: PARTIALLY FILLED @ 107.6(-0.1)", "CANCELED", False),
        ("POSTONLY CANCELED", "POSTONLY CANCELED", False),
        ("IOC CANCELED", "IOC CANCELED", False),
        ("FILLORKILL CANCELED", "FILLORKILL CANCELED", False),
        ("INSUFFICIENT BALANCE (G1)", "INSUFFICIENT BALANCE", False),
        ("INSUFFICIENT BALANCE (G1) was: PARTIALLY FILLED @ 1(1)", "INSUFFICIENT BALANCE", False),
        ("INSUFFICIENT MARGIN was: PARTIALLY FILLED @ 1(1)", "INSUFFICIENT MARGIN", False),
        ("RSN_DUST", "RSN_DUST", False),
        ("RSN_BOOK_SLIP was: PARTIALLY FILLED @ 1(1)", "RSN_BOOK_SLIP", False),
        ("RSN_POS_REDUCE_FLIP", "RSN_POS_REDUCE_FLIP", False),
    ])
    def test_status_words(self, status, word, is_open):
        """Status texts with suffixes and histories reduce to their leading word(s)."""
        row = list(ON)
        row[13] = status
        o = Order.from_wire(row)
        assert (o.status_word, o.is_open) == (word, is_open)

    def test_status_word_helper(self):
        """Funding statuses say 'at'; None and empty give ''."""
        assert status_word("EXECUTED at FRR delta (50.0)") == "EXECUTED"
        assert status_word(None) == status_word("") == ""

    def test_cid_date_ignores_the_cid_scale(self):
        """cid_date comes from MTS_CREATE whether the cid is ms, µs or a small integer."""
        for cid in (4, 1536659719000, 1536659719000000):
            row = list(ON)
            row[2] = cid
            assert Order.from_wire(row).cid_date == "2018-09-11"

    @pytest.mark.parametrize("index, value", [
        (0, None), (0, "id"), (0, 1.5), (0, "1.5"), (3, None), (3, 5), (6, None), (6, "NaN"), (6, "Infinity"),
        (6, float("nan")), (6, True), (6, "abc"), (6, [1]), (8, None), (13, None),
    ])
    def test_bad_fields(self, index, value):
        """A wrong type or a null in a required field is a ProtocolError."""
        row = list(ON)
        row[index] = value
        with pytest.raises(ProtocolError):
            Order.from_wire(row)

    @pytest.mark.parametrize("row", [None, 5, "x", {}, [], ON[:13], [ON]])
    def test_bad_shapes(self, row):
        """Not a list, too short, or a list of lists (a snapshot) is a ProtocolError."""
        with pytest.raises(ProtocolError):
            Order.from_wire(row)


class TestTrades:
    def test_documented_tu(self):
        """The docs' 12-field tu: fee, fee currency and cid; MAKER -1 is taker."""
        t = UserTrade.from_wire(TU)
        assert (t.id, t.symbol, t.mts, t.order_id, t.exec_amount, t.exec_price) == (
            738045455, "tTESTBTC:TESTUSD", 1622169615771, 66635385225, Decimal("0.001"), Decimal(38175))
        assert (t.order_type, t.order_price, t.maker, t.fee, t.fee_currency, t.cid) == (
            "EXCHANGE LIMIT", Decimal(39000), False, Decimal("-0.000002"), "TESTBTC", 1622169615685)

    def test_11_field_tu_and_9_field_te(self):
        """tu without CID (to 2020) and the 9-field te of 2017 read; missing fields are None."""
        assert UserTrade.from_wire(TU[:11]).cid is None
        te = UserTrade.from_wire(TU[:8] + [1])
        assert (te.maker, te.fee, te.fee_currency, te.cid) == (True, None, None, None)

    def test_te_with_null_fee_and_fractional_mts(self):
        """te has FEE null; a fractional MTS is truncated to ms."""
        row = list(TU)
        row[2], row[9], row[10] = "1622169615771.25", None, None
        t = UserTrade.from_wire(row)
        assert (t.mts, t.fee) == (1622169615771, None)

    def test_funding_trade(self):
        """An 8-field funding trade; MAKER null reads as taker."""
        ft = AccountFundingTrade.from_wire([636854, "fUSD", 1575282446000, 41238905, -1000, "0.002", 7, None])
        assert (ft.offer_id, ft.amount, ft.rate, ft.period, ft.maker) == (
            41238905, Decimal(-1000), Decimal("0.002"), 7, False)

    def test_short_trade(self):
        """A trade without EXEC_PRICE is a ProtocolError."""
        with pytest.raises(ProtocolError):
            UserTrade.from_wire(TU[:5])


class TestWallet:
    def test_documented_wu(self):
        """The real 7-field wu with its reason object."""
        w = Wallet.from_wire(WU)
        assert (w.wallet_type, w.currency, w.balance, w.unsettled_interest, w.balance_available) == (
            "exchange", "LTC", Decimal("0.06729727"), Decimal(0), Decimal("0.06729727"))
        assert w.description.startswith("Exchange 0.4 LTC") and w.meta["reason"] == "TRADE"
        assert w.key == ("exchange", "LTC")

    @pytest.mark.parametrize("row, available", [
        (["exchange", "BTC", "1.5", 0], None),
        (["margin", "USD", 100, 0, None], None),
        (["funding", "USD", 100, 0, "99.5"], Decimal("99.5")),
    ])
    def test_old_short_wallets(self, row, available):
        """4- and 5-field wallets (before 2019); BALANCE_AVAILABLE may be null."""
        w = Wallet.from_wire(row)
        assert (w.balance_available, w.description, w.meta) == (available, None, None)

    def test_bad_wallet(self):
        """A numeric wallet type or a missing balance is a ProtocolError."""
        for row in ([1, "BTC", 1], ["exchange", "BTC"], ["exchange", "BTC", None]):
            with pytest.raises(ProtocolError):
                Wallet.from_wire(row)


class TestPositionsAndFunding:
    def test_position_20_fields(self):
        """A 20-field position: pl/leverage Decimals, COLLATERAL_MIN null, META object."""
        p = Position.from_wire(POSITION)
        assert (p.symbol, p.status, p.amount, p.base_price, p.pl, p.leverage) == (
            "tBTCUSD", "ACTIVE", Decimal("0.5"), Decimal("30000.5"), Decimal("12.5"), Decimal("2.5"))
        assert (p.position_id, p.mts_create, p.type, p.collateral, p.collateral_min, p.meta) == (
            142639051, 1575290000000, 0, Decimal(1500), None, {"reason": "TRADE"})

    def test_position_10_fields_with_nulls(self):
        """A 10-field position (2018) with PL and friends still null."""
        p = Position.from_wire(["tBTCUSD", "ACTIVE", -0.1, 9000, 0, 0, None, None, None, None])
        assert (p.pl, p.price_liq, p.position_id, p.mts_update, p.meta) == (None, None, None, None, None)

    def test_funding_offer(self):
        """A 21-field offer."""
        o = FundingOffer.from_wire(OFFER)
        assert (o.id, o.symbol, o.amount, o.offer_type, o.flags, o.status, o.rate, o.period) == (
            41238905, "fUSD", Decimal(5000), "LIMIT", 0, "ACTIVE", Decimal("0.006"), 2)
        assert (o.notify, o.hidden, o.renew, o.rate_real, o.status_word) == (False, False, False, None, "ACTIVE")

    def test_credit_and_loan(self):
        """A 22-field credit has POSITION_PAIR; a 21-field loan reads the same shared fields."""
        c = FundingCredit.from_wire(CREDIT)
        assert (c.id, c.side, c.amount, c.rate_type, c.rate, c.period, c.position_pair) == (
            26222883, 1, Decimal(350), "FIXED", Decimal("0.0024"), 2, "tBTCUSD")
        assert (c.mts_opening, c.mts_last_payout, c.no_close) == (1574013661000, 1574079687000, False)
        loan = FundingLoan.from_wire(CREDIT[:21])
        assert (loan.id, loan.rate, loan.status) == (26222883, Decimal("0.0024"), "ACTIVE")

    def test_balance_margin_funding_info(self):
        """bu, miu (base with 5 or 4 values, sym with trailing nulls) and fiu."""
        assert BalanceInfo.from_wire(["1000.5", None]) == BalanceInfo(Decimal("1000.5"), None)
        m = MarginInfo.from_wire(["base", ["-13.014640000000007", 0, "49331.70267297", "49318.68803297", 27]])
        assert (m.user_pl, m.margin_min) == (Decimal("-13.014640000000007"), Decimal(27))
        assert MarginInfo.from_wire(["base", [1, 2, 3, 4]]).margin_min is None
        assert MarginInfo.from_wire([1, 2, 3, 4, 5]).margin_min == Decimal(5)
        s = SymbolMarginInfo.from_wire(["sym", "tBTCUSD", ["60.9", "60.9", 61, None, None, None, None, None]])
        assert (s.symbol, s.tradable_balance, s.buy, s.sell) == ("tBTCUSD", Decimal("60.9"), Decimal(61), None)
        f = FundingInfo.from_wire(["sym", "fUSD", ["0.0002", "0.0003", "1.5", 30]])
        assert (f.symbol, f.yield_lend, f.duration_lend) == ("fUSD", Decimal("0.0003"), Decimal(30))

    @pytest.mark.parametrize("cls, row", [
        (MarginInfo, ["base"]), (MarginInfo, ["base", [1, 2]]), (SymbolMarginInfo, ["base", [1, 2, 3, 4]]),
        (SymbolMarginInfo, ["sym", "tBTCUSD"]), (FundingInfo, ["sym", 5, [1, 2, 3, 4]]), (BalanceInfo, [1]),
        (FundingOffer, OFFER[:15]), (FundingCredit, CREDIT[:12]), (Position, ["tBTCUSD", "ACTIVE", 1]),
    ])
    def test_bad_shapes(self, cls, row):
        """Short or mistyped rows are ProtocolErrors."""
        with pytest.raises(ProtocolError):
            cls.from_wire(row)


class TestNotification:
    def test_oc_req_success_carries_the_order(self):
        """A successful oc-req carries the whole order."""
        n = Notification.from_wire(N_OC_OK)
        assert (n.mts, n.type, n.message_id, n.code, n.status, n.ok) == (
            1575291219660, "oc-req", None, None, "SUCCESS", True)
        assert n.order.id == 1185815100 and n.order.symbol == "tETHUSD" and n.orders == (n.order,)
        assert n.text.endswith("(ID: 1185815100).")

    @pytest.mark.parametrize("row, kind, text", [
        (N_ON_ERR, "on-req", "amount: invalid"),
        (N_OC_ERR, "oc-req", "Order not found."),
        (N_OX_ERR, "ox_multi-req", "input: invalid"),
    ])
    def test_errors_have_no_order(self, row, kind, text):
        """ERROR notifications (order rows without an id, or no info) give no order."""
        n = Notification.from_wire(row)
        assert (n.type, n.status, n.ok, n.text, n.order, n.orders, n.offer) == (kind, "ERROR", False, text, None, (), None)

    def test_error_info_is_kept_raw(self):
        """The raw NOTIFY_INFO stays available, e.g. the CID of a failed on-req (index 2)."""
        assert Notification.from_wire(N_ON_ERR).info[2] == 1523955674030000
        assert Notification.from_wire(N_OX_ERR).info is None

    def test_oc_multi_list_of_orders(self):
        """oc_multi-req carries a list of orders."""
        second = list(N_OC_OK[4])
        second[0] = 1185815101
        n = Notification.from_wire([1575291219660, "oc_multi-req", None, None, [N_OC_OK[4], second], None, "SUCCESS", "ok"])
        assert n.order is None and [o.id for o in n.orders] == [1185815100, 1185815101]

    def test_fon_req_offer(self):
        """A fon-req carries an offer, not an order."""
        n = Notification.from_wire([1575026670000, "fon-req", None, None, OFFER, None, "SUCCESS", "Submitting"])
        assert n.offer.id == 41238905 and n.order is None

    @pytest.mark.parametrize("mts, expected", [
        (1575291219660, 1575291219660), ("1575287438.515", 1575287438515), (1575287438.515, 1575287438515),
        (1575287438, 1575287438000), (None, None),
    ])
    def test_mts_units(self, mts, expected):
        """MTS in ms, seconds with a fraction, whole seconds or null all give ms (or None)."""
        assert Notification.from_wire([mts, "on-req", None, None, None, None, "SUCCESS", "x"]).mts == expected

    def test_short_and_custom(self):
        """Missing trailing fields read as None; a ucm-* info dict is kept as is."""
        n = Notification.from_wire([1575291219660, "ucm-test", None, None, {"foo": 1}])
        assert (n.info, n.status, n.text, n.ok, n.order) == ({"foo": 1}, None, None, False, None)

    @pytest.mark.parametrize("row", [None, [1575291219660], [1575291219660, None], [True, "on-req"], ["x", "on-req"]])
    def test_bad_notifications(self, row):
        """No TYPE, or an unreadable MTS, is a ProtocolError."""
        with pytest.raises(ProtocolError):
            Notification.from_wire(row)


#: Numbers that cost seconds of GIL inside ``int(Decimal(text))`` (or absurd state) before they were bounded.
ABSURD = ["1e250000", "1e1000000", "-1e1000000", "1e401", "1e-401", "1" * 65, "0." + "0" * 70 + "1", 10 ** 21,
          -10 ** 21, 10 ** 4000, "1e21", "1E+21"]
#: (model, row, indexes of integer fields, indexes of money fields).
INTEGER_FIELDS = [
    (Order, ON, [0, 1, 2, 4, 5, 10, 12, 25], [6, 7, 16]),
    (Position, POSITION, [5, 11, 12, 13, 15], [2, 3, 6]),
    (UserTrade, TU, [0, 2, 3, 11], [4, 5, 9]),
    (FundingOffer, OFFER, [0, 2, 3, 9, 15], [4, 5, 14]),
    (FundingCredit, CREDIT, [0, 2, 3, 4, 6, 12, 13, 14], [5, 11]),
    (FundingLoan, CREDIT[:21], [0, 2, 3, 4, 6, 12], [5, 11]),
    (AccountFundingTrade, [1, "fUSD", 1575026670000, 2, "10", "0.0002", 2, 1], [0, 2, 3, 6], [4, 5]),
    (Wallet, WU, [], [2, 3, 4]),
    (Notification, N_OC_OK, [0], []),
]


class TestNumberBounds:
    @pytest.mark.parametrize("model, row, index, integer", [
        (model, row, index, index in ints) for model, row, ints, money in INTEGER_FIELDS for index in ints + money])
    def test_absurd_numbers_are_refused_in_constant_time(self, model, row, index, integer):
        """Every integer and money field refuses huge exponents, long texts and integers of 1e21 or more, at once."""
        for value in ABSURD:
            if not integer and value in ("1e21", "1E+21"):
                continue  # money may be written that large; integers stop below 1e21
            bad = list(row)
            bad[index] = value
            def refuse(bad=bad):
                with pytest.raises(ProtocolError):
                    model.from_wire(bad)

            cost = cpu_seconds(refuse)
            assert cost < 0.05, (value, "took", cost)

    @pytest.mark.parametrize("value, expected", [
        ("1e20", 10 ** 20), (10 ** 21 - 1, 10 ** 21 - 1), ("-999999999999999999999", -(10 ** 21 - 1)), ("5.0", 5),
        ("1.7e12", 1_700_000_000_000),
    ])
    def test_large_sane_integers_still_read(self, value, expected):
        """The bound is far above any id or timestamp: 1e20 and 21-digit integers read exactly."""
        row = list(ON)
        row[0] = value
        assert Order.from_wire(row).id == expected

    @pytest.mark.parametrize("value", ["1e400", "-1.5e-400", "1" * 64, "-0.00000001", "1.2345678901234567e-308"])
    def test_money_keeps_every_javascript_number(self, value):
        """Money up to 64 characters and exponents within +-400 (every double) reads exactly."""
        row = list(ON)
        row[16] = value
        assert Order.from_wire(row).price == Decimal(value)

    def test_notification_seconds_and_loose_integers(self):
        """A huge MTS is refused at once; MESSAGE_ID and CODE of 1e21 or more read as None, not as state."""
        with pytest.raises(ProtocolError):
            Notification.from_wire(["1e1000000", "on-req"])
        n = Notification.from_wire([1575291219660, "on-req", 10 ** 21, None, None, 10 ** 4000, "SUCCESS", "x"])
        assert (n.message_id, n.code) == (None, None)
