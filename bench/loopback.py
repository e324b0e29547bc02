"""The loopback server of the benchmarks: costs next to nothing, so a client's own cost dominates.

It answers the upgrade by hand and acks every subscribe. For the first subscription of
each connection it writes, as pre-built frame bytes in one ``sendall``, a first data frame
(the book snapshot, the trades snapshot or a first ticker) and N updates of that channel (a
correct ``cs`` frame after every K book updates to a client that enabled OB_CHECKSUM),
then a ``[chan,"hb"]`` end marker. With ``--together N`` every connection holds its stream
until N connections have subscribed (or 60 s have passed), so that N streams run at once:
a client opening its connections one after another (bfxsync spaces connection attempts
50 ms apart) would otherwise read them more or less in turn.

With ``--pace R`` it instead sends trades one frame at a time at R frames/s for
``--seconds`` seconds, each stamped with ``time.time_ns()`` in its MTS field just before
its ``sendall`` (latency), then the end marker.

  python bench/loopback.py --channel book|trades|ticker --messages N [--cs-every K] [--together N]
                           [--pace R --seconds S] [--certfile F --keyfile F]
prints ``PORT <n>`` once listening and serves until killed.
"""
import argparse
import base64
import hashlib
import json
import random
import socket
import ssl
import struct
import threading
import time
import zlib

CHAN = 17001
FLAG_CHECKSUM = 131_072


def frame(payload, opcode=1):
    n = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, n) if n < 126 else (
        struct.pack("!BBH", 0x80 | opcode, 126, n) if n < 65536 else struct.pack("!BBQ", 0x80 | opcode, 127, n))
    return head + payload


def num(x):
    """A number in the exchange's text form (30000, not 30000.0)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def dumps(value):
    return json.dumps(value, separators=(",", ":")).encode()


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


def book_stream(count, cs_every):
    rnd = random.Random(7)
    bids = {p: a for p, c, a in levels() if a > 0}
    asks = {p: a for p, c, a in levels() if a < 0}
    out = [frame(dumps([CHAN, levels()]))]
    for i in range(count):
        price = num(30000 + rnd.randint(-200, 200) * 0.5)
        cnt = rnd.randint(0, 5)
        amount = round(rnd.uniform(0.01, 3.0), 4) * (1 if price < 30000 else -1)
        if cnt == 0:
            amount = 1 if price < 30000 else -1
        out.append(frame(dumps([CHAN, [price, cnt, amount]])))
        if cs_every:
            side = bids if amount > 0 else asks
            if cnt:
                side[price] = amount
            else:
                side.pop(price, None)
            if (i + 1) % cs_every == 0:
                out.append(frame(dumps([CHAN, "cs", checksum(bids, asks)])))
    return out


def trades_stream(count):
    rnd = random.Random(7)
    out = [frame(dumps([CHAN, [[1, 1700000000000, 0.1, 30000]]]))]
    for i in range(count):
        trade = [1000000 + i, 1700000000000 + i, round(rnd.uniform(-1, 1), 5) or 0.1, 30000 + rnd.randint(-50, 50)]
        out.append(frame(dumps([CHAN, "te", trade])))
    return out


def ticker_stream(count):
    rnd = random.Random(7)
    out = []
    for _ in range(count + 1):  # the first is the "snapshot" every client skips
        p = 30000 + rnd.randint(-50, 50)
        out.append(frame(dumps([CHAN, [p - 1, 10.5, p + 1, 12.25, 10.0, 0.0003, p, 1234.5, p + 100, p - 100]])))
    return out


def blobs(args):
    """Bytes to send after the ack, by (channel, checksums enabled)."""
    end = [frame(dumps([CHAN, "hb"]))]
    if args.channel == "book":
        return {("book", False): b"".join(book_stream(args.messages, 0) + end),
                ("book", True): b"".join(book_stream(args.messages, args.cs_every) + end)}
    if args.channel == "trades":
        return {("trades", False): b"".join(trades_stream(args.messages) + end)}
    return {("ticker", False): b"".join(ticker_stream(args.messages) + end)}


def paced(conn, rate, seconds):
    """Trades at ``rate`` frames/s, each stamped with its send time (ns) as MTS."""
    conn.sendall(frame(dumps([CHAN, [[1, 1700000000000, 0.1, 30000]]])))
    interval, start = 1.0 / rate, time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        conn.sendall(frame(b'[%d,"te",[%d,%d,0.1,30000]]' % (CHAN, 1000000 + i, time.time_ns())))
    conn.sendall(frame(dumps([CHAN, "hb"])))


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


def serve_one(conn, data, args):
    try:
        with conn:
            _serve_one(conn, data, args)
    except OSError:
        pass  # a client that stops reading early (btfxwss reads a part of the stream) resets the connection


def _serve_one(conn, data, args):
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
            op, payload = read_frame(conn, buf)
        except (ConnectionError, OSError):
            return
        if op == 8:
            return
        if op == 9:
            conn.sendall(frame(payload, 10))
        if op != 1:
            continue
        msg = json.loads(payload)
        event = msg.get("event") if isinstance(msg, dict) else None
        if event == "conf":
            flags = int(msg.get("flags", 0))
            conn.sendall(frame(dumps({"event": "conf", "status": "OK", "flags": flags})))
        elif event == "ping":
            conn.sendall(frame(dumps({"event": "pong", "ts": 1, "cid": msg.get("cid")})))
        elif event == "subscribe":
            ack = dict(msg, event="subscribed", chanId=CHAN, pair="BTCUSD")
            conn.sendall(frame(dumps(ack)))
            if not sent:
                sent = True
                if args.pace:
                    paced(conn, args.pace, args.seconds)
                    continue
                channel = msg.get("channel")
                if args.together is not None:
                    try:
                        args.together.wait()
                    except threading.BrokenBarrierError:
                        pass  # a client that never opened all of them: stream anyway
                conn.sendall(data[channel, channel == "book" and bool(flags & FLAG_CHECKSUM)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--channel", choices=("book", "trades", "ticker"), default="book")
    ap.add_argument("--cs-every", type=int, default=50)
    ap.add_argument("--together", type=int, default=0)
    ap.add_argument("--pace", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--certfile")
    ap.add_argument("--keyfile")
    args = ap.parse_args()
    data = {} if args.pace else blobs(args)
    args.together = threading.Barrier(args.together, timeout=60) if args.together > 1 else None
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
        threading.Thread(target=serve_one, args=(conn, data, args), daemon=True).start()


if __name__ == "__main__":
    main()
