#!/usr/bin/env python3
"""Receive hot path, in-process: bfxsync's parser + verified book against a bare json+dict floor.

Feeds the same pre-encoded book update frames (as bytes, as websocket-client hands them
with skip_utf8_validation) to:

  floor    json.loads + a plain dict book (price -> (count, amount)), the least any client does
  bfxsync  Link.on_frame: one token-preserving decode, chanId routing, sorted verified book

Rounds are interleaved so both see the same machine state; the best round of each is
reported, with bfxsync's cost as a ratio of the floor's. The socket is left out: see
../shared/tools/peer_bench.py for end-to-end runs against other clients.

  python bench/hot_path.py [--messages 200000] [--rounds 5]
"""
import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bfxsync import Config  # noqa: E402
from bfxsync._engine.callback_runner import Handlers  # noqa: E402
from bfxsync._engine.pool import Pool  # noqa: E402
from bfxsync._engine.runtime import Runtime  # noqa: E402
from bfxsync.specs import BookSpec  # noqa: E402

CHAN = 17001


class _Recorder:
    """Stands in for the connection: the link's sends go nowhere."""

    dials = 1
    stopped = False
    is_open = True
    frames = 0
    opened_at = None

    def send(self, text):
        self.last = json.loads(text)

    def thread(self):
        return "not started"

    def mark_healthy(self):
        pass

    def drop(self, reason):
        raise RuntimeError(reason)


def frames(count, seed=7):
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        price = 30000 + rnd.randint(-200, 200) * 0.5
        cnt = rnd.randint(0, 5)
        amount = round(rnd.uniform(0.01, 3.0), 4) * (1 if price < 30000 else -1)
        if cnt == 0:
            amount = 1 if price < 30000 else -1
        out.append(json.dumps([CHAN, [price, cnt, amount]], separators=(",", ":")).encode())
    return out


SNAPSHOT = json.dumps([CHAN, [[30000 - 0.5 * i, 1, 0.5] for i in range(1, 26)]
                       + [[30000 + 0.5 * i, 1, -0.5] for i in range(1, 26)]]).encode()


def run_floor(data):
    loads, book = json.loads, {}
    t0 = time.perf_counter()
    for raw in data:
        msg = loads(raw)
        price, count, amount = msg[1]
        if count:
            book[price] = (count, amount)
        else:
            book.pop(price, None)
    return time.perf_counter() - t0


def run_bfxsync(data):
    pool = Pool("ws://bench", Runtime(Config(), Handlers(), on_end=lambda: None), wake=lambda delay: None)
    pool._started = True
    link = pool._new_link()
    link.connection = recorder = _Recorder()
    link.on_frame(b'{"event":"info","version":2,"platform":{"status":1}}')
    link.on_frame(b'{"event":"conf","status":"OK","flags":131072}')
    book = pool.subscribe(BookSpec("tBTCUSD"), {})
    link.on_frame(json.dumps({"event": "subscribed", "channel": "book", "chanId": CHAN,
                              "subId": recorder.last["subId"]}).encode())
    link.on_frame(SNAPSHOT)
    feed = link.on_frame
    t0 = time.perf_counter()
    for raw in data:
        feed(raw)
    elapsed = time.perf_counter() - t0
    assert book.synced and not pool.stats().get("malformed"), pool.stats()
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = frames(args.messages)
    best = {"floor": float("inf"), "bfxsync": float("inf")}
    for _ in range(args.rounds):
        best["floor"] = min(best["floor"], run_floor(data))
        best["bfxsync"] = min(best["bfxsync"], run_bfxsync(data))
    for name, seconds in best.items():
        print(f"{name:8s} {args.messages / seconds:12,.0f} msg/s  {seconds / args.messages * 1e6:6.2f} us/msg")
    print(f"bfxsync costs {best['bfxsync'] / best['floor']:.2f}x the floor per message")


if __name__ == "__main__":
    main()
