#!/usr/bin/env python3
"""The official bitfinex-api-py 4.0.0 places trailing-stop, OCO and TIF orders on the emulator.

  python bench/official_client_orders.py [--seconds 60] [--rate 20] [--seed 1]

The parent process (the project's Python) starts an emulator with a moving market and the
demo account, then runs the peer client from ``.bench-venv/`` (created and filled by pip on
first run, as ``compare.py`` does; bitfinex-api-py pins websockets 12). The child imports
only ``bfxapi``. It authenticates, then:

  1. EXCHANGE TRAILING STOP, sell 0.01, price_trailing 5 (no price): the stop follows the
     bid (``ou``), then triggers into EXCHANGE MARKET and executes;
  2. EXCHANGE LIMIT sell 0.02 with flag OCO (16384) and price_oco_stop: a limit leg and a
     stop leg, each with the other's ID as PLACED_ID; cancelling the limit cancels both;
  3. the same OCO without price_oco_stop: refused, ``price_oco_stop: invalid``;
  4. EXCHANGE LIMIT buy 0.01 with tif 3 s ahead: MTS_TIF set, cancelled at that time.

It prints every notification and order event it gets, then one CHECK line per expected
behaviour; the parent prints the emulator's open orders at the end. Exit status 0 when
every check passed.
"""
import argparse
import datetime
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_VENV = os.path.join(ROOT, ".bench-venv")
REQUIREMENT = "bitfinex-api-py==4.0.0"
OCO = 16384
TRAIL = 5  # the trailing distance, in USD


# -- parent ----------------------------------------------------------------------------------------
def peer_python():
    """The bench venv's interpreter, with bitfinex-api-py installed (created on first run)."""
    python = os.path.join(PEER_VENV, "bin", "python")
    if not os.path.exists(python):
        print("creating %s (first run)" % PEER_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", PEER_VENV], check=True)
    if subprocess.run([python, "-c", "import bfxapi"], capture_output=True).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "-q", REQUIREMENT], check=True)
    return python


def parent(args):
    sys.path.insert(0, ROOT)
    from bfxsync.emulator import DEMO_KEY, DEMO_SECRET, Emulator
    from bfxsync.emulator.wire import number_text

    python = peer_python()
    version = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('bitfinex-api-py'))"],
                             capture_output=True, text=True).stdout.strip()
    with Emulator(rate=args.rate, seed=args.seed) as emu:
        bids, asks = emu.book_view("tBTCUSD", "R0", 25)
        bid, ask = number_text(bids[0][1]), number_text(asks[0][1])
        print("emulator %s, market %s ticks/s, tBTCUSD bid %s ask %s; bitfinex-api-py %s"
              % (emu.url, args.rate, bid, ask, version), flush=True)
        child = subprocess.run([python, os.path.abspath(__file__), "--child", emu.url, DEMO_KEY, DEMO_SECRET,
                                bid, ask, str(args.seconds)], timeout=args.seconds + 30)
        left = emu.account(DEMO_KEY).orders
        print("emulator: %d open order(s) left%s" % (len(left), "".join(
            "\n  %s %s %s" % (o.id, o.type, o.status) for o in left)))
    return child.returncode


# -- child (bfxapi only) ---------------------------------------------------------------------------
def child(url, key, secret, bid, ask, seconds):
    import asyncio

    from bfxapi import Client

    bid, ask = float(bid), float(ask)
    bfx = Client(key, secret, wss_host=url)
    wss = bfx.wss
    seen = {"notes": [], "new": [], "update": [], "cancel": []}
    start = time.monotonic()

    def show(kind, order, extra=""):
        print("%6.2fs %-12s id=%s cid=%s %s status=%r price=%s trailing=%s aux=%s placed_id=%s mts_tif=%s flags=%s%s"
              % (time.monotonic() - start, kind, order.id, order.cid, order.order_type, order.order_status,
                 order.price, order.price_trailing, order.price_aux_limit, order.placed_id, order.mts_tif,
                 order.flags, extra), flush=True)

    def on_note(note):
        seen["notes"].append(note)
        info = note.data
        print("%6.2fs n %s %r; NOTIFY_INFO: id=%s cid=%s type=%s amount=%r price=%r"
              % (time.monotonic() - start, note.status, note.text, getattr(info, "id", None),
                 getattr(info, "cid", None), getattr(info, "order_type", None), getattr(info, "amount", None),
                 getattr(info, "price", None)), flush=True)

    for name in ("on-req-notification", "ou-req-notification", "oc-req-notification"):
        wss.on(name)(on_note)

    @wss.on("order_new")
    def on_new(order):
        seen["new"].append(order)
        show("order_new", order)

    @wss.on("order_update")
    def on_update(order):
        seen["update"].append(order)
        show("order_update", order)

    @wss.on("order_cancel")
    def on_cancel(order):
        seen["cancel"].append(order)
        show("order_cancel", order)

    tif_at = (datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=3))
    tif = tif_at.strftime("%Y-%m-%d %H:%M:%S")

    def cancelled(cid=None, order_id=None):
        return [o for o in seen["cancel"] if (cid is None or o.cid == cid) and (order_id is None or o.id == order_id)]

    def done():
        trailing = cancelled(cid=101)
        oco = [o for o in seen["new"] if o.flags & OCO]
        return trailing and cancelled(cid=104) and len(oco) == 2 and all(cancelled(order_id=o.id) for o in oco) \
            and any(n.text == "price_oco_stop: invalid" for n in seen["notes"])

    @wss.on("authenticated")
    async def on_auth(_):
        inputs = wss.inputs
        await inputs.submit_order("EXCHANGE TRAILING STOP", "tBTCUSD", "-0.01", None, price_trailing=str(TRAIL), cid=101)
        await inputs.submit_order("EXCHANGE LIMIT", "tBTCUSD", "-0.02", str(ask + 200), price_oco_stop=str(bid - 200),
                                  flags=OCO, cid=102)
        await inputs.submit_order("EXCHANGE LIMIT", "tBTCUSD", "-0.02", str(ask + 200), flags=OCO, cid=103)
        await inputs.submit_order("EXCHANGE LIMIT", "tBTCUSD", "0.01", str(bid - 200), tif=tif, cid=104)
        while not any(o.cid == 102 for o in seen["new"]):
            await asyncio.sleep(0.05)
        limit = next(o for o in seen["new"] if o.cid == 102)
        await inputs.cancel_order(id=limit.id)
        while not done() and time.monotonic() - start < seconds:
            await asyncio.sleep(0.1)
        await wss.close()

    try:
        wss.run()
    except Exception as exc:  # noqa: BLE001 - a bench: report and go on to the checks
        print("bfxapi ended with %s: %s" % (type(exc).__name__, exc), flush=True)
    return report(seen, int(tif_at.timestamp()) * 1000, bid)


def report(seen, mts_tif, bid):
    new = {o.cid: o for o in seen["new"]}
    trailing_updates = [o for o in seen["update"] if o.cid == 101]
    trailing_end = [o for o in seen["cancel"] if o.cid == 101]
    oco = [o for o in seen["new"] if o.flags & OCO]
    refusal = [n for n in seen["notes"] if n.status == "ERROR"]
    tif_end = [o for o in seen["cancel"] if o.cid == 104]
    checks = [
        ("trailing stop accepted, PRICE_TRAILING %d, PRICE near bid - %d" % (TRAIL, TRAIL),
         101 in new and new[101].price_trailing == TRAIL and abs(new[101].price - (bid - TRAIL)) <= 10),
        ("trailing stop triggered into EXCHANGE MARKET (TYPE_PREV EXCHANGE TRAILING STOP)",
         any(o.order_type == "EXCHANGE MARKET" and o.type_prev == "EXCHANGE TRAILING STOP" for o in trailing_updates)),
        ("trailing stop executed", bool(trailing_end) and trailing_end[0].order_status.startswith("EXECUTED")),
        ("OCO placed as two orders, each PLACED_ID the other's ID",
         len(oco) == 2 and oco[0].placed_id == oco[1].id and oco[1].placed_id == oco[0].id
         and sorted(o.order_type for o in oco) == ["EXCHANGE LIMIT", "EXCHANGE STOP"]),
        ("cancelling the OCO limit leg cancelled both legs",
         len(oco) == 2 and all(any(c.id == o.id and c.order_status == "CANCELED" for c in seen["cancel"])
                               for o in oco)),
        ("OCO without price_oco_stop refused: price_oco_stop: invalid, amount echoed as a number",
         any(n.text == "price_oco_stop: invalid" and isinstance(n.data.amount, (int, float)) for n in refusal)),
        ("TIF order has MTS_TIF %d" % mts_tif, 104 in new and new[104].mts_tif == mts_tif),
        ("TIF order cancelled at its time (oc CANCELED, MTS_UPDATE >= MTS_TIF)",
         bool(tif_end) and tif_end[0].order_status == "CANCELED" and tif_end[0].mts_update >= mts_tif),
    ]
    moves = [o.price for o in trailing_updates if o.order_type.endswith("TRAILING STOP")]
    print("INFO trailing stop moved (ou) %d time(s)%s" % (len(moves), ": stop " + " -> ".join(
        str(p) for p in [new[101].price] + moves) if moves and 101 in new else ""))
    for text, ok in checks:
        print("CHECK %-4s %s" % ("ok" if ok else "FAIL", text))
    return 0 if all(ok for _, ok in checks) else 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, key, secret, bid, ask, seconds = sys.argv[2:8]
        sys.exit(child(url, key, secret, bid, ask, float(seconds)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the child waits for every outcome")
    ap.add_argument("--rate", type=float, default=20.0, help="market ticks per second (the trailing stop needs a move)")
    ap.add_argument("--seed", type=int, default=1)
    sys.exit(parent(ap.parse_args()))


if __name__ == "__main__":
    main()
