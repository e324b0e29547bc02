#!/usr/bin/env python3
"""bfxsync against its peers on one loopback stream, interleaved rounds, medians and ratios.

One process serves (``--serve``): it answers the upgrade by hand and, for the first book
subscription of each connection, writes a snapshot, N P0 updates (a correct ``cs`` frame
after every K of them to a client that enabled OB_CHECKSUM) and a ``hb`` end marker, as
pre-built frame bytes, so the server costs next to nothing. Each client run is a fresh
process (``--client NAME``) timed from the ``subscribed`` ack to its last update:

  wsapp-raw   websocket-client WebSocketApp, skip_utf8_validation, on_message only counts
  bfxapi      bitfinex-api-py 4.x, counting t_book_update events (if installed)
  bfxsync     bfxsync.Client with its defaults: checksums verified, a sorted book, one
              user callback per update

Every round runs each client once in a shuffled order. Peers are measured, never
installed by this project: put them in a separate venv (``pip install
bitfinex-api-py==4.0.0``) together with an editable bfxsync and run from there.

  python bench/compare.py [--messages 200000] [--rounds 3] [--cs-every 50] [--tls]
"""
import argparse
import base64
import hashlib
import json
import os
import random
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CHAN = 17001
SUB = json.dumps({"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "P0", "len": "25"})
now = time.perf_counter


# -- server ---------------------------------------------------------------------------------

def frame(payload, opcode=1):
    n = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, n) if n < 126 else (
        struct.pack("!BBH", 0x80 | opcode, 126, n) if n < 65536 else struct.pack("!BBQ", 0x80 | opcode, 127, n))
    return head + payload


def num(x):
    """A number in the exchange's text form (30000, not 30000.0)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def levels():
    return [[num(30000 - 0.5 * i), 1, 0.5] for i in range(1, 26)] + [[num(30000 + 0.5 * i), 1, -0.5] for i in range(1, 26)]


def checksum(bids, asks):
    """The documented book checksum over the top 25 levels, from this script's own book."""
    b, a = sorted(bids.items(), reverse=True)[:25], sorted(asks.items())[:25]
    parts = []
    for i in range(25):
        for side in (b, a):
            if i < len(side):
                parts += [json.dumps(side[i][0]), json.dumps(side[i][1])]
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def stream(count, cs_every):
    rnd = random.Random(7)
    bids = {p: a for p, c, a in levels() if a > 0}
    asks = {p: a for p, c, a in levels() if a < 0}
    out = [frame(json.dumps([CHAN, levels()], separators=(",", ":")).encode())]
    for i in range(count):
        price = num(30000 + rnd.randint(-200, 200) * 0.5)
        cnt = rnd.randint(0, 5)
        amount = round(rnd.uniform(0.01, 3.0), 4) * (1 if price < 30000 else -1)
        if cnt == 0:
            amount = 1 if price < 30000 else -1
        out.append(frame(json.dumps([CHAN, [price, cnt, amount]], separators=(",", ":")).encode()))
        if cs_every:
            side = bids if amount > 0 else asks
            if cnt:
                side[price] = amount
            else:
                side.pop(price, None)
            if (i + 1) % cs_every == 0:
                out.append(frame(json.dumps([CHAN, "cs", checksum(bids, asks)]).encode()))
    out.append(frame(json.dumps([CHAN, "hb"]).encode()))
    return b"".join(out)


def read_frame(conn, buf):
    def need(k):
        while len(buf) < k:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError
            buf.extend(chunk)
    need(2)
    n, off = buf[1] & 0x7F, 2
    if n == 126:
        need(4)
        n, off = struct.unpack("!H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        need(10)
        n, off = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
    need(off + 4 + n)
    mask = bytes(buf[off:off + 4])
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[off + 4:off + 4 + n]))
    op = buf[0] & 0x0F
    del buf[:off + 4 + n]
    return op, data


def serve_one(conn, blobs):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = conn.recv(65536)
            if not chunk:
                return
            req += chunk
        key = [ln.split(b":", 1)[1].strip() for ln in req.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        conn.sendall(frame(b'{"event":"info","version":2,"serverId":"bench","platform":{"status":1}}'))
        buf, flags, sent = bytearray(), 0, False
        while True:
            try:
                op, data = read_frame(conn, buf)
            except (ConnectionError, OSError):
                return
            if op == 8:
                return
            if op == 9:
                conn.sendall(frame(data, 10))
            if op != 1:
                continue
            msg = json.loads(data)
            event = msg.get("event") if isinstance(msg, dict) else None
            if event == "conf":
                flags = int(msg.get("flags", 0))
                conn.sendall(frame(json.dumps({"event": "conf", "status": "OK", "flags": flags}).encode()))
            elif event == "ping":
                conn.sendall(frame(json.dumps({"event": "pong", "ts": 1, "cid": msg.get("cid")}).encode()))
            elif event == "subscribe":
                ack = dict(msg, event="subscribed", chanId=CHAN, pair="BTCUSD")
                conn.sendall(frame(json.dumps(ack).encode()))
                if not sent:
                    sent = True
                    conn.sendall(blobs[bool(flags & 131072)])


def serve(args):
    blobs = {False: stream(args.messages, 0), True: stream(args.messages, args.cs_every)}
    srv = socket.create_server(("127.0.0.1", 0))
    context = None
    if args.certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.certfile, args.keyfile)
    print("PORT", srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        if context is not None:
            try:
                conn = context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                continue
        threading.Thread(target=serve_one, args=(conn, blobs), daemon=True).start()


# -- clients ----------------------------------------------------------------------------------

def run_wsapp_raw(url, n, cafile):
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

    app = websocket.WebSocketApp(url, on_open=lambda app: app.send(SUB), on_message=on_message)
    sslopt = {"ca_certs": cafile} if cafile else None
    threading.Thread(target=app.run_forever, kwargs={"skip_utf8_validation": True, "sslopt": sslopt},
                     daemon=True).start()
    if not done.wait(600):
        sys.exit("FAIL wsapp-raw timed out")
    return state["count"], state["t1"] - state["t0"]


def run_bfxapi(url, n, cafile):
    from bfxapi import Client
    if cafile:
        os.environ["SSL_CERT_FILE"] = cafile
    bfx = Client(wss_host=url)
    state = {"count": 0, "t0": None}

    @bfx.wss.on("open")
    async def on_open():
        await bfx.wss.subscribe("book", symbol="tBTCUSD", prec="P0", len="25")

    @bfx.wss.on("subscribed")
    def on_subscribed(sub):
        state["t0"] = now()

    @bfx.wss.on("t_book_update")
    def on_update(sub, level):
        state["count"] += 1
        if state["count"] == n:
            seconds = now() - state["t0"]
            print("RESULT bfxapi %d %.4f" % (n, seconds), flush=True)
            os._exit(0)

    bfx.wss.run()
    sys.exit("FAIL bfxapi ended early")


def run_bfxsync(url, n, cafile):
    sys.path.insert(0, os.path.join(HERE, ".."))
    import bfxsync
    state = {"count": 0, "t0": None, "t1": None}
    done = threading.Event()
    options = {}
    if cafile:
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    with bfxsync.Client(url, **options) as client:
        client.on_subscribed(lambda event: state.__setitem__("t0", now()))

        def on_data(message):
            if not message.snapshot:
                state["count"] += len(message.items)
                if state["count"] >= n:
                    state["t1"] = now()
                    done.set()

        book = client.subscribe_book("tBTCUSD", prec="P0", length=25, on_data=on_data)
        if not done.wait(600):
            sys.exit("FAIL bfxsync timed out at %d" % state["count"])
        if not book.synced or book.checks_failed:
            sys.exit("FAIL bfxsync book synced=%s checks_failed=%d" % (book.synced, book.checks_failed))
        return state["count"], state["t1"] - state["t0"]


CLIENTS = {"wsapp-raw": run_wsapp_raw, "bfxapi": run_bfxapi, "bfxsync": run_bfxsync}


# -- orchestration ----------------------------------------------------------------------------

def make_cert(directory):
    """A self-signed certificate for 127.0.0.1 (needs the 'trustme' test extra)."""
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = (os.path.join(directory, name) for name in ("cert.pem", "key.pem", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    ca.cert_pem.write_to_path(cafile)
    return certfile, keyfile, cafile


def start_server(args, tls, directory):
    cmd = [sys.executable, __file__, "--serve", "--messages", str(args.messages), "--cs-every", str(args.cs_every)]
    cafile = None
    if tls:
        certfile, keyfile, cafile = make_cert(directory)
        cmd += ["--certfile", certfile, "--keyfile", keyfile]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().split()[1])
    return server, ("wss" if tls else "ws") + "://127.0.0.1:%d/ws/2" % port, cafile


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cs-every", type=int, default=50, help="a cs frame after every K updates (0: none)")
    ap.add_argument("--tls", action="store_true", help="also run bfxsync over wss:// (loopback TLS) for a ws/wss ratio")
    ap.add_argument("--clients", default="wsapp-raw,bfxapi,bfxsync")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--cafile", help=argparse.SUPPRESS)
    ap.add_argument("--certfile", help=argparse.SUPPRESS)
    ap.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    if args.client:
        count, seconds = CLIENTS[args.client](args.url, args.messages, args.cafile)
        if count != args.messages:
            sys.exit("FAIL %s got %d updates" % (args.client, count))
        print("RESULT %s %d %.4f" % (args.client, count, seconds), flush=True)
        os._exit(0)

    configs = [(name, False) for name in args.clients.split(",")] + ([("bfxsync", True)] if args.tls else [])
    rates = {config: [] for config in configs}
    with tempfile.TemporaryDirectory() as directory:
        servers = {False: start_server(args, False, directory)}
        if args.tls:
            servers[True] = start_server(args, True, directory)
        try:
            for round_number in range(1, args.rounds + 1):
                order = list(configs)
                random.Random(round_number).shuffle(order)
                for name, tls in order:
                    _, url, cafile = servers[tls]
                    cmd = [sys.executable, __file__, "--client", name, "--url", url, "--messages", str(args.messages)]
                    if cafile:
                        cmd += ["--cafile", cafile]
                    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                    lines = [ln.split() for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
                    label = name + (" wss" if tls else "")
                    if not lines:
                        print("round %d  %-14s FAILED %s" % (round_number, label,
                                                              (result.stdout + result.stderr).strip()[-300:]))
                        continue
                    rate = args.messages / float(lines[-1][3])
                    rates[name, tls].append(rate)
                    print("round %d  %-14s %10.0f updates/s" % (round_number, label, rate), flush=True)
        finally:
            for server, _, _ in servers.values():
                server.kill()
    medians = {config: statistics.median(r) for config, r in rates.items() if r}
    print("\n%d updates, cs every %d, %d rounds (median; min-max spread in %% of median)"
          % (args.messages, args.cs_every, args.rounds))
    for (name, tls), rate in medians.items():
        spread = (max(rates[name, tls]) - min(rates[name, tls])) / rate * 100
        print("  %-14s %10.0f updates/s  (spread %4.1f%%)" % (name + (" wss" if tls else ""), rate, spread))
    mine = medians.get(("bfxsync", False))
    if mine:
        for (name, tls), rate in medians.items():
            if tls:
                print("  bfxsync wss / ws         %.2fx" % (rate / mine))
            elif name != "bfxsync":
                print("  bfxsync / %-14s %.2fx" % (name, mine / rate))


if __name__ == "__main__":
    main()
