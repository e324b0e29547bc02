"""Input builders produce the documented frames exactly and refuse bad arguments before anything is sent."""
import json
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bfxsync.account import inputs
from bfxsync.account._checks import _CidSource
from bfxsync.account.inputs import (
    CLOSE,
    HIDDEN,
    NO_VAR_RATES,
    OCO,
    ORDER_TYPES,
    POST_ONLY,
    REDUCE_ONLY,
    RequestRef,
    calc,
    cancel_funding_offer,
    cancel_order,
    cancel_orders,
    cid_date_of,
    new_funding_offer,
    new_order,
    order_multi_op,
    update_order,
)

NOW = 1700000000000  # 2023-11-14 22:13:20 UTC


def wire(result):
    """The compact JSON of a builder's frame."""
    frame, _ = result
    return json.dumps(frame, separators=(",", ":"))


class TestNewOrder:
    def test_documented_examples(self):
        """The docs' three new-order frames (order-new), key order included."""
        assert wire(new_order("tBTCUSD", "0.01", "30000", gid=1, cid=1700000000123, post_only=True, now_ms=NOW)) == (
            '[0,"on",null,{"gid":1,"cid":1700000000123,"type":"EXCHANGE LIMIT","symbol":"tBTCUSD",'
            '"amount":"0.01","price":"30000","flags":4096}]')
        assert wire(new_order("tBTCUSD", Decimal("-0.05"), 2000, cid=1700000000124, oco_stop_price="1000")) == (
            '[0,"on",null,{"cid":1700000000124,"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"-0.05",'
            '"price":"2000","price_oco_stop":"1000","flags":16384}]')
        assert wire(new_order("tBTCF0:USTF0", "0.001", "29000", "LIMIT", cid=1700000000125, lev=5)) == (
            '[0,"on",null,{"cid":1700000000125,"type":"LIMIT","symbol":"tBTCF0:USTF0","amount":"0.001",'
            '"price":"29000","lev":5}]')

    @pytest.mark.parametrize("value, text", [
        ("0.001", "0.001"), (Decimal("30000"), "30000"), (30000, "30000"), ("30000.0", "30000"),
        (Decimal("3E+4"), "30000"), ("1e-8", "0.00000001"), (Decimal("0.00100"), "0.001"), (" 12.5 ", "12.5"),
        ("-0.000002", "-0.000002"), ("123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
    ])
    def test_money_is_plain_decimal_text(self, value, text):
        """Amounts go out as plain decimal strings: no exponent, no trailing zeros, no rounding."""
        frame, _ = new_order("tBTCUSD", value, "1", cid=1)
        assert frame[3]["amount"] == text

    def test_ref(self):
        """The reference names the cid, its UTC date, the gid and the symbol."""
        _, ref = new_order("tBTCUSD", "1", "1", cid=77, gid=3, now_ms=NOW)
        assert ref == RequestRef("on", cid=77, cid_date="2023-11-14", gids=(3,), symbol="tBTCUSD")
        assert (ref.notification_type, ref.gid, ref.id) == ("on-req", 3, None)

    def test_generated_cids_are_unique_and_fit_45_bits(self, monkeypatch):
        """Without a cid, the builder counts up from a random start; a refused order takes none."""
        monkeypatch.setattr(inputs, "_cids", _CidSource(start=1000))  # a fresh source: leave the process-wide one
        cids = [new_order("tBTCUSD", "1", "1", now_ms=NOW)[1].cid for _ in range(3)]
        assert cids == [1001, 1002, 1003]
        with pytest.raises(ValueError):
            new_order("tBTCUSD", "0", "1", now_ms=NOW + 2000)
        assert new_order("tBTCUSD", "1", "1", now_ms=NOW - 5000)[1].cid == 1004  # the clock plays no part

    def test_processes_on_one_key_start_far_apart(self):
        """Fresh sources (as in separate processes) start at random points of a 44-bit range, not the clock."""
        starts = [_CidSource().next() for _ in range(200)]
        assert len(set(starts)) == 200
        assert all(0 < cid < 2**45 for cid in starts)
        # Spread over the range, not clustered at a timestamp: the middle half holds about half of them.
        assert 50 < sum(2**42 < cid < 3 * 2**42 for cid in starts) < 150

    def test_generated_cids_unique_across_threads(self):
        """Threads placing orders at once never share a cid."""
        found = [[] for _ in range(4)]

        def work(out):
            for _ in range(500):
                out.append(new_order("tBTCUSD", "1", "1")[1].cid)

        threads = [threading.Thread(target=work, args=(out,)) for out in found]
        try:
            for t in threads:
                t.start()
        finally:
            for t in threads:
                t.join(10)
        every = [c for out in found for c in out]
        assert len(set(every)) == len(every) == 2000
        assert all(all(a < b for a, b in zip(out, out[1:])) for out in found)

    def test_flags_and_options(self):
        """Booleans add their flag to flags; tif, trailing, aux and meta go in their fields."""
        tif = datetime(2030, 1, 1, 10, 45, 23, tzinfo=timezone(timedelta(hours=2)))
        frame, _ = new_order("tBTCUSD", "1", "100", "STOP LIMIT", cid=1, hidden=True, reduce_only=True, close=True,
                             no_var_rates=True, flags=POST_ONLY, price_aux_limit="99", tif=tif,
                             meta={"aff_code": "x", "make_visible": 1})
        p = frame[3]
        assert p["flags"] == HIDDEN | REDUCE_ONLY | CLOSE | NO_VAR_RATES | POST_ONLY
        assert (p["price_aux_limit"], p["tif"], p["meta"]) == ("99", "2030-01-01 08:45:23", {"aff_code": "x", "make_visible": 1})
        frame, _ = new_order("tBTCUSD", "-1", "100", "TRAILING STOP", cid=1, price_trailing="5", tif="2030-01-01 10:45:23")
        assert (frame[3]["price_trailing"], frame[3]["tif"]) == ("5", "2030-01-01 10:45:23")
        assert "flags" not in frame[3]

    @pytest.mark.parametrize("order_type", ["MARKET", "EXCHANGE MARKET"])
    def test_market_needs_no_price(self, order_type):
        """MARKET orders go without a price."""
        frame, _ = new_order("tBTCUSD", "1", type=order_type, cid=1)
        assert "price" not in frame[3] and frame[3]["type"] == order_type

    def test_all_order_types_known(self):
        """The 14 documented order types."""
        assert len(ORDER_TYPES) == len(set(ORDER_TYPES)) == 14

    @pytest.mark.parametrize("args, kwargs, fragment", [
        (("BTCUSD", "1", "1"), {}, "trading symbol"),
        (("fUSD", "1", "1"), {}, "trading symbol"),
        (("tbtcusd", "1", "1"), {}, "trading symbol"),
        (("tBTCUSD", "0", "1"), {}, "amount must be non-zero"),
        (("tBTCUSD", "-0.0", "1"), {}, "amount must be non-zero"),
        (("tBTCUSD", float("nan"), "1"), {}, "amount must be finite"),
        (("tBTCUSD", "1", float("inf")), {}, "price must be finite"),
        (("tBTCUSD", "1", float("-inf")), {}, "price must be finite"),
        (("tBTCUSD", "abc", "1"), {}, "amount is not a decimal number"),
        (("tBTCUSD", "NaN", "1"), {}, "finite"),
        (("tBTCUSD", "Infinity", "1"), {}, "finite"),
        (("tBTCUSD", True, "1"), {}, "amount must be a number .*got a bool"),
        (("tBTCUSD", "1", False), {}, "price must be a number .*got a bool"),
        (("tBTCUSD", None, "1"), {}, "amount must be a number"),
        (("tBTCUSD", "1", "-5"), {}, "price must be positive"),
        (("tBTCUSD", "1", "0"), {}, "price must be positive"),
        (("tBTCUSD", "1"), {}, "price is required"),
        (("tBTCUSD", "1", "1", "LIMIT ORDER"), {}, "type must be one of"),
        (("tBTCUSD", "1", "1", "STOP LIMIT"), {}, "price_aux_limit is required"),
        (("tBTCUSD", "1", "1"), {"price_aux_limit": "1"}, "price_aux_limit is required for, and only for"),
        (("tBTCUSD", "1", "1", "EXCHANGE TRAILING STOP"), {}, "price_trailing is required"),
        (("tBTCUSD", "1", "1"), {"price_trailing": "1"}, "price_trailing is required for, and only for"),
        (("tBTCUSD", "1", "1"), {"flags": OCO}, "oco_stop_price"),
        (("tBTCUSD", "1", "1"), {"oco_stop_price": "-1"}, "oco_stop_price must be positive"),
        (("tBTCUSD", "1", "1"), {"flags": 3}, "unknown bits"),
        (("tBTCUSD", "1", "1"), {"flags": -1}, "flags must be from 0"),
        (("tBTCUSD", "1", "1"), {"lev": 5}, "derivatives only"),
        (("tBTCF0:USTF0", "1", "1"), {"lev": 0}, "lev must be from 1 to 100"),
        (("tBTCF0:USTF0", "1", "1"), {"lev": 101}, "lev must be from 1 to 100"),
        (("tBTCF0:USTF0", "1", "1"), {"lev": "5"}, "lev must be an int"),
        (("tBTCUSD", "1", "1"), {"cid": 0}, "cid must be from 1"),
        (("tBTCUSD", "1", "1"), {"cid": "5"}, "cid must be an int"),
        (("tBTCUSD", "1", "1"), {"gid": 2**31}, "gid must be from 1"),
        (("tBTCUSD", "1", "1"), {"tif": "2030-01-01T10:45:23"}, "tif must be"),
        (("tBTCUSD", "1", "1"), {"tif": 1893456000}, "tif must be"),
        (("tBTCUSD", "1", "1"), {"tif": "2020-01-01 10:45:23", "now_ms": NOW}, "not in the future"),
        (("tBTCUSD", "1", "1"), {"meta": ["x"]}, "meta must be a mapping"),
        (("tBTCUSD", "1", "1"), {"meta": {"x": float("nan")}}, "meta.x must be finite"),
        (("tBTCUSD", "1"), {"type": "MARKET", "post_only": True}, "post_only cannot apply to a MARKET"),
        (("tBTCUSD", "1"), {"type": "EXCHANGE MARKET", "flags": POST_ONLY}, "post_only cannot apply to a MARKET"),
        (("tBTCUSD", "1", "1"), {"now_ms": -1}, "now_ms"),
    ])
    def test_invalid(self, args, kwargs, fragment):
        """Each wrong argument is a ValueError that says what is wrong."""
        with pytest.raises(ValueError, match=fragment):
            new_order(*args, **kwargs)


class TestUpdateAndCancel:
    def test_documented_updates(self):
        """The docs' ou frames."""
        assert wire(update_order(1149698545, amount="0.1", price="500")) == (
            '[0,"ou",null,{"id":1149698545,"amount":"0.1","price":"500"}]')
        frame, ref = update_order(1149698545, delta=Decimal("0.1"), price=6500)
        assert json.dumps(frame, separators=(",", ":")) == '[0,"ou",null,{"id":1149698545,"delta":"0.1","price":"6500"}]'
        assert (ref.tag, ref.id, ref.notification_type) == ("ou", 1149698545, "ou-req")

    def test_update_everything(self):
        """Every optional field of ou goes on the wire."""
        frame, ref = update_order(5, cid=7, cid_date=date(2024, 1, 31), gid=2, lev=3, price_aux_limit="1",
                                  price_trailing="2", flags=0, tif="2030-01-01 00:00:00")
        assert frame[3] == {"id": 5, "cid": 7, "cid_date": "2024-01-31", "gid": 2, "lev": 3, "price_aux_limit": "1",
                            "price_trailing": "2", "flags": 0, "tif": "2030-01-01 00:00:00"}
        assert (ref.cid, ref.cid_date, ref.gids) == (7, "2024-01-31", (2,))

    @pytest.mark.parametrize("kwargs, fragment", [
        ({}, "nothing to update"),
        ({"amount": "1", "delta": "1"}, "not both"),
        ({"amount": "0"}, "non-zero"),
        ({"price": float("nan")}, "price must be finite"),
        ({"amount": True}, "amount must be a number"),
        ({"cid": 5}, "cid and cid_date go together"),
        ({"cid": 5, "cid_date": "31-01-2024"}, "cid_date must be"),
        ({"lev": 200}, "lev"),
        ({"flags": 1 << 30}, "unknown bits"),
    ])
    def test_update_invalid(self, kwargs, fragment):
        """ou refuses contradictory or empty updates."""
        with pytest.raises(ValueError, match=fragment):
            update_order(1149698545, **kwargs)

    def test_update_needs_an_int_id(self):
        """The order id is a positive int."""
        for bad in (None, "5", 0, True):
            with pytest.raises(ValueError, match="id"):
                update_order(bad, price="1")

    def test_documented_cancels(self):
        """The docs' oc and oc_multi frames."""
        assert wire(cancel_order(123456789)) == '[0,"oc",null,{"id":123456789}]'
        assert wire(cancel_order(cid=555, cid_date="2024-01-31")) == '[0,"oc",null,{"cid":555,"cid_date":"2024-01-31"}]'
        assert wire(cancel_orders(ids=[1185815098, 1185815099])) == '[0,"oc_multi",null,{"id":[1185815098,1185815099]}]'
        assert wire(cancel_orders(cids=[(555, "2024-01-31"), (556, date(2024, 1, 31))])) == (
            '[0,"oc_multi",null,{"cid":[[555,"2024-01-31"],[556,"2024-01-31"]]}]')
        assert wire(cancel_orders(gids=[11, 12])) == '[0,"oc_multi",null,{"gid":[11,12]}]'
        assert wire(cancel_orders(all=True)) == '[0,"oc_multi",null,{"all":1}]'

    def test_cancel_refs(self):
        """Cancel references carry what the answers are matched by."""
        assert cancel_order(5)[1] == RequestRef("oc", ids=(5,))
        assert cancel_order(cid=9, cid_date="2024-01-31")[1] == RequestRef("oc", cid=9, cid_date="2024-01-31")
        assert cancel_orders(cids=[(1, "2024-01-31")])[1].cids == ((1, "2024-01-31"),)
        assert cancel_orders(all=True)[1].all is True

    @pytest.mark.parametrize("args, kwargs, fragment", [
        ((), {}, "give the order id"),
        ((5,), {"cid": 1, "cid_date": "2024-01-31"}, "not both"),
        ((), {"cid": 1}, "both cid and cid_date"),
        ((), {"cid_date": "2024-01-31"}, "both cid and cid_date"),
        ((), {"cid": 1, "cid_date": "2024-02-30"}, "cid_date must be"),
        (("5",), {}, "id must be an int"),
    ])
    def test_cancel_invalid(self, args, kwargs, fragment):
        """oc takes an id, or a cid with its date."""
        with pytest.raises(ValueError, match=fragment):
            cancel_order(*args, **kwargs)

    @pytest.mark.parametrize("kwargs, fragment", [
        ({}, "exactly one"),
        ({"ids": [1], "gids": [2]}, "exactly one"),
        ({"ids": [1], "all": True}, "exactly one"),
        ({"ids": []}, "non-empty"),
        ({"ids": "12"}, "non-empty"),
        ({"ids": [1, "2"]}, "ids\\[1\\]"),
        ({"cids": [(1,)]}, "pair"),
        ({"cids": [(1, "2024/01/31")]}, "cid_date"),
        ({"cids": []}, "non-empty"),
    ])
    def test_cancel_multi_invalid(self, kwargs, fragment):
        """oc_multi takes exactly one non-empty selection."""
        with pytest.raises(ValueError, match=fragment):
            cancel_orders(**kwargs)

    def test_cid_date_of(self):
        """The UTC date of a ms cid, across midnight."""
        assert cid_date_of(1706745599999) == "2024-01-31"
        assert cid_date_of(1706745600000) == "2024-02-01"
        with pytest.raises(ValueError):
            cid_date_of(-1)
        with pytest.raises(ValueError, match="not a millisecond timestamp"):
            cid_date_of(1700000000000000)  # a µs value


class TestMultiOpCalcFunding:
    def test_documented_multi_op(self):
        """The docs' ox_multi frame, from raw (tag, payload) pairs."""
        frame, ref = order_multi_op([
            ("on", {"cid": 1, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "1", "price": "200"}),
            ("oc", {"id": 123}), ("ou", {"id": 456, "price": Decimal("210")}), ("oc_multi", {"id": [7, 8]}),
        ])
        assert json.dumps(frame, separators=(",", ":")) == (
            '[0,"ox_multi",null,[["on",{"cid":1,"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"1","price":"200"}],'
            '["oc",{"id":123}],["ou",{"id":456,"price":"210"}],["oc_multi",{"id":[7,8]}]]]')
        assert [(r.tag, r.cid, r.ids) for r in ref.ops] == [("on", 1, ()), ("oc", None, (123,)), ("ou", None, (456,)),
                                                             ("oc_multi", None, (7, 8))]

    def test_multi_op_from_builders(self):
        """Builder results (pairs or frames) nest as ops; their refs are kept."""
        placed = new_order("tBTCUSD", "1", "200", cid=42, now_ms=NOW)
        frame, ref = order_multi_op([placed, cancel_order(123)[0]])
        assert frame[3][0] == ["on", placed[0][3]] and frame[3][1] == ["oc", {"id": 123}]
        assert ref.ops[0] is placed[1] and ref.ops[1].ids == (123,) and ref.tag == "ox_multi"

    @pytest.mark.parametrize("ops, fragment", [
        ([], "non-empty"),
        ([("oc", {"id": i}) for i in range(16)], "at most 15"),
        ([("fon", {"id": 1})], "tag must be one of"),
        ([("oc", {})], "non-empty mapping"),
        ([("oc", [1])], "non-empty mapping"),
        ([("ou", {"id": 1, "price": float("inf")})], r"ops\[0\].price must be finite"),
        (["oc"], "pair"),
    ])
    def test_multi_op_invalid(self, ops, fragment):
        """At most 15 known operations with mapping payloads, and no NaN or infinity."""
        with pytest.raises(ValueError, match=fragment):
            order_multi_op(ops)

    def test_fifteen_ops_accepted(self):
        """Exactly 15 operations fit in one frame."""
        assert len(order_multi_op([("oc", {"id": i}) for i in range(1, 16)])[0][3]) == 15

    def test_documented_calc(self):
        """The docs' calc frame."""
        assert wire(calc(["margin_sym_tBTCUSD", "funding_sym_fUSD", "position_tBTCUSD", "wallet_exchange_USD",
                          "balance"])) == (
            '[0,"calc",null,[["margin_sym_tBTCUSD"],["funding_sym_fUSD"],["position_tBTCUSD"],'
            '["wallet_exchange_USD"],["balance"]]]')
        assert calc(["margin_base"])[1] == RequestRef("calc")

    @pytest.mark.parametrize("requests, fragment", [
        ([], "non-empty"), ("balance", "non-empty"), (["balance"] * 31, "at most 30"), (["margin_tBTCUSD"], "not a calc"),
        (["wallet_spot_USD"], "not a calc"), (["position_fUSD"], "not a calc"), ([None], "not a calc"),
    ])
    def test_calc_invalid(self, requests, fragment):
        """calc takes 1-30 requests with a known prefix."""
        with pytest.raises(ValueError, match=fragment):
            calc(requests)

    def test_documented_funding_offers(self):
        """The docs' fon and foc frames."""
        assert wire(new_funding_offer("fUSD", "50", "0.0002", 7)) == (
            '[0,"fon",null,{"type":"LIMIT","symbol":"fUSD","amount":"50","rate":"0.0002","period":7,"flags":0}]')
        assert wire(new_funding_offer("fUSD", -50, Decimal("0.0001"), 7, "FRRDELTAVAR", hidden=True)) == (
            '[0,"fon",null,{"type":"FRRDELTAVAR","symbol":"fUSD","amount":"-50","rate":"0.0001","period":7,"flags":64}]')
        assert wire(cancel_funding_offer(123456)) == '[0,"foc",null,{"id":123456}]'
        assert cancel_funding_offer(123456)[1] == RequestRef("foc", ids=(123456,))

    @pytest.mark.parametrize("args, kwargs, fragment", [
        (("tBTCUSD", "50", "0.0002", 7), {}, "funding symbol"),
        (("fUSD", "0", "0.0002", 7), {}, "non-zero"),
        (("fUSD", "50", "0.0002", 1), {}, "period must be from 2 to 30"),
        (("fUSD", "50", "0.0002", 31), {}, "period must be from 2 to 30"),
        (("fUSD", "50", float("nan"), 7), {}, "rate must be finite"),
        (("fUSD", "50", float("nan"), 7, "FRRDELTAVAR"), {}, "rate must be finite"),
        (("fUSD", "50", "-0.0002", 7), {}, "rate must be positive"),
        (("fUSD", "50", "0.0002", 7, "FRR"), {}, "type must be one of"),
    ])
    def test_funding_offer_invalid(self, args, kwargs, fragment):
        """fon checks symbol, amount, rate, period and type."""
        with pytest.raises(ValueError, match=fragment):
            new_funding_offer(*args, **kwargs)

    def test_frr_delta_may_be_negative(self):
        """An FRR delta may be below FRR."""
        assert new_funding_offer("fUSD", "50", "-0.00001", 2, "FRRDELTAFIX")[0][3]["rate"] == "-0.00001"
