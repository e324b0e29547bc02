"""The benchmark clients, one per process: ``python bench/clients.py NAME --url URL --channel C --messages N``.

Throughput clients, timed from the ``subscribed`` ack (btfxwss: from its subscribe call)
to the last update handled; each skips the channel's first data frame (the snapshot) and
checks it got exactly N updates. Prints ``RESULT NAME N SECONDS``.

  wsapp-raw   websocket-client WebSocketApp, skip_utf8_validation, on_message only counts
  bfxapi      bitfinex-api-py 4.x, counting t_book_update / t_trade_execution / t_ticker_update
  btfxwss     btfxwss 1.2.4, reading its books/trades/tickers queue
  bfxsync     bfxsync.Client with its defaults: checksums verified, a sorted book, one user
              callback per update

Latency clients (against ``loopback.py --pace``): each trade's MTS is its send time in ns;
the callback takes ``time.time_ns()`` first thing. Prints ``LATENCY NAME N P50_US P99_US``.

  lat-wsapp   WebSocketApp (skip_utf8_validation) + json.loads
  lat-bfxsync bfxsync.Client, subscribe_trades, one user callback per trade

  mem-bfxsync bfxsync book (cs every 50) of N updates; RSS and thread count after the first
              10,000 and after the last. Prints ``MEMORY RSS0_KB RSS1_KB THREADS0 THREADS1``.

bfxapi and btfxwss run from the peers' own venv (see compare.py) and import no bfxsync.
"""
import argparse
import json
import os
import ssl
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
now = time.perf_counter
SYMBOL_ARGS = {"book": {"prec": "P0", "len": "25"}, "trades": {}, "ticker": {}}


def fail(why):
    print("FAIL", why, flush=True)
    os._exit(1)


def subscribe_message(channel):
    return json.dumps(dict({"event": "subscribe", "channel": channel, "symbol": "tBTCUSD"}, **SYMBOL_ARGS[channel]))


def run_wsapp_raw(url, channel, n, cafile):
    import websocket
    state = {"count": 0, "t0": None, "t1": None, "phase": 0}
    done = threading.Event()

    def on_message(app, raw):
        if state["phase"] == 2:
            if raw.endswith(b'"hb"]'):
                state["t1"] = now()
                done.set()
            else:
                state["count"] += 1
        elif state["phase"] == 1:
            state["phase"] = 2  # the snapshot
        elif b'"subscribed"' in raw:
            state["t0"], state["phase"] = now(), 1

    app = websocket.WebSocketApp(url, on_open=lambda app: app.send(subscribe_message(channel)), on_message=on_message)
    sslopt = {"ca_certs": cafile} if cafile else None
    threading.Thread(target=app.run_forever, kwargs={"skip_utf8_validation": True, "sslopt": sslopt},
                     daemon=True).start()
    if not done.wait(600):
        fail("wsapp-raw timed out")
    return state["count"], state["t1"] - state["t0"]


def run_bfxapi(url, channel, n, cafile):
    from bfxapi import Client
    if cafile:
        os.environ["SSL_CERT_FILE"] = cafile
    bfx = Client(wss_host=url)
    event = {"book": "t_book_update", "trades": "t_trade_execution", "ticker": "t_ticker_update"}[channel]
    target = n + 1 if channel == "ticker" else n  # bfxapi has no ticker snapshot: the first is an update
    state = {"count": 0, "t0": None}

    @bfx.wss.on("open")
    async def on_open():
        await bfx.wss.subscribe(channel, symbol="tBTCUSD", **SYMBOL_ARGS[channel])

    @bfx.wss.on("subscribed")
    def on_subscribed(sub):
        state["t0"] = now()

    @bfx.wss.on(event)
    def on_update(sub, data):
        state["count"] += 1
        if state["count"] == target:
            print("RESULT bfxapi %d %.4f" % (n, now() - state["t0"]), flush=True)
            os._exit(0)

    threading.Timer(600, lambda: fail("bfxapi timed out at %d" % state["count"])).start()
    bfx.wss.run()
    fail("bfxapi ended early at %d" % state["count"])


def run_btfxwss(url, channel, n, cafile):
    import queue

    from btfxwss import BtfxWss
    wss = BtfxWss(url=url)
    conn = wss.conn
    # btfxwss 1.2.4 registers bound methods taking (message) etc.; websocket-client >= 0.58
    # calls every callback as f(ws, *args), so unadapted it dies on the first message.
    for name in ("_on_open", "_on_message", "_on_error", "_on_close"):
        setattr(conn, name, (lambda f: lambda ws, *a: f(*a))(getattr(conn, name)))
    if cafile:
        conn.sslopt = {"ca_certs": cafile}
    wss.start()
    deadline = now() + 30
    while not conn.connected.is_set():
        if now() > deadline:
            fail("btfxwss never connected")
        time.sleep(0.01)
    subscribe, get_queue = {"book": (wss.subscribe_to_order_book, wss.books),
                            "trades": (wss.subscribe_to_trades, wss.trades),
                            "ticker": (wss.subscribe_to_ticker, wss.tickers)}[channel]
    t0 = now()
    subscribe("BTCUSD")
    try:
        deadline = now() + 30
        while True:  # the queue exists once the subscription is acked
            try:
                q = get_queue("BTCUSD")
                break
            except KeyError:
                if now() > deadline:
                    raise queue.Empty from None
                time.sleep(0.0005)
        q.get(timeout=30)  # the snapshot (or first ticker)
        count, get = 0, q.get
        while count < n:
            get(timeout=10)
            count += 1
    except queue.Empty:
        fail("btfxwss stalled")
    return count, now() - t0


def bfxsync_client(url, cafile):
    sys.path.insert(0, os.path.join(HERE, ".."))
    import bfxsync
    options = {}
    if cafile:
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    return bfxsync.Client(url, **options)


def run_bfxsync(url, channel, n, cafile):
    state = {"count": 0, "t0": None, "t1": None}
    target = n + 1 if channel == "ticker" else n  # a ticker "snapshot" may or may not be flagged: count all
    done = threading.Event()
    with bfxsync_client(url, cafile) as client:
        client.on_subscribed(lambda event: state.__setitem__("t0", now()))

        def on_data(message):
            if channel == "ticker" or not message.snapshot:
                state["count"] += len(message.items)
                if state["count"] >= target:
                    state["t1"] = now()
                    done.set()

        if channel == "book":
            sub = client.subscribe_book("tBTCUSD", prec="P0", length=25, on_data=on_data)
        elif channel == "trades":
            sub = client.subscribe_trades("tBTCUSD", on_data=on_data)
        else:
            sub = client.subscribe_ticker("tBTCUSD", on_data=on_data)
        if not done.wait(600):
            fail("bfxsync timed out at %d" % state["count"])
        if channel == "book" and (not sub.synced or sub.checks_failed):
            fail("bfxsync book synced=%s checks_failed=%d" % (sub.synced, sub.checks_failed))
        return state["count"] - (target - n), state["t1"] - state["t0"]


def percentiles(samples):
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def run_lat_wsapp(url, cafile):
    import websocket
    loads, clock, samples = json.loads, time.time_ns, []
    done = threading.Event()

    def on_message(app, raw):
        received = clock()
        msg = loads(raw)
        if isinstance(msg, list) and msg[1] == "te":
            samples.append(received - msg[2][1])
        elif msg[1:] == ["hb"]:
            done.set()

    app = websocket.WebSocketApp(url, on_open=lambda app: app.send(subscribe_message("trades")), on_message=on_message)
    threading.Thread(target=app.run_forever, kwargs={"skip_utf8_validation": True}, daemon=True).start()
    if not done.wait(600):
        fail("lat-wsapp timed out")
    app.close()
    return samples


def run_lat_bfxsync(url, cafile):
    clock, samples = time.time_ns, []
    done = threading.Event()
    with bfxsync_client(url, cafile) as client:
        def on_data(message):
            received = clock()
            if not message.snapshot:
                samples.append(received - message.items[0].mts)

        client.on_subscribed(lambda event: None)
        client.subscribe_trades("tBTCUSD", on_data=on_data)
        last, quiet = -1, 0
        while quiet < 10:  # the end marker is a heartbeat, which bfxsync does not deliver: wait for quiet
            time.sleep(0.1)
            quiet = quiet + 1 if len(samples) == last and samples else 0
            last = len(samples)
    done.set()
    return samples


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_mem_bfxsync(url, n, cafile):
    marks = []
    state = {"count": 0}
    done = threading.Event()
    with bfxsync_client(url, cafile) as client:
        def on_data(message):
            if not message.snapshot:
                state["count"] += len(message.items)
                if state["count"] in (10_000, n):
                    marks.append((status("VmRSS"), status("Threads"), threading.active_count()))
                if state["count"] >= n:
                    done.set()

        book = client.subscribe_book("tBTCUSD", prec="P0", length=25, on_data=on_data)
        if not done.wait(1200):
            fail("mem-bfxsync timed out at %d" % state["count"])
        if not book.synced or book.checks_failed:
            fail("mem-bfxsync book synced=%s checks_failed=%d" % (book.synced, book.checks_failed))
    (rss0, threads0, py0), (rss1, threads1, py1) = marks
    print("MEMORY %d %d %d %d %d %d" % (rss0, rss1, threads0, threads1, py0, py1), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--url", required=True)
    ap.add_argument("--channel", default="book")
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--cafile")
    args = ap.parse_args()
    if args.name.startswith("lat-"):
        samples = {"lat-wsapp": run_lat_wsapp, "lat-bfxsync": run_lat_bfxsync}[args.name](args.url, args.cafile)
        p50, p99 = percentiles(samples)
        print("LATENCY %s %d %.1f %.1f" % (args.name, len(samples), p50, p99), flush=True)
        os._exit(0)
    if args.name == "mem-bfxsync":
        run_mem_bfxsync(args.url, args.messages, args.cafile)
        os._exit(0)
    run = {"wsapp-raw": run_wsapp_raw, "bfxapi": run_bfxapi, "btfxwss": run_btfxwss, "bfxsync": run_bfxsync}[args.name]
    count, seconds = run(args.url, args.channel, args.messages, args.cafile)
    if count != args.messages:
        fail("%s got %d updates" % (args.name, count))
    print("RESULT %s %d %.4f" % (args.name, count, seconds), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
