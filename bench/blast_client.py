#!/usr/bin/env python3
"""bfxsync end to end against ../shared/tools/blast_server.py, printed like peer_bench.py's RESULT lines.

The server acks one book subscription, sends a snapshot, N updates and a heartbeat as
the end marker. The clock starts at the snapshot (wait_synced) and stops when the
heartbeat is counted, so the figure covers socket reads, websocket-client framing, the
parser and the sorted book. Run it beside peer_bench.py's book-dict (the bare
websocket-client ceiling) on the same server, interleaved:

  python ../shared/tools/blast_server.py --port 0 --messages 200000 &     # prints PORT n
  python ../shared/tools/peer_bench.py book-dict --url ws://127.0.0.1:n --messages 200000 --skip-utf8
  python bench/blast_client.py --url ws://127.0.0.1:n --messages 200000
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import bfxsync  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    # The blast server sends no cs frames; checksums off keeps the comparison like for like.
    with bfxsync.Client(args.url, checksums=False) as client:
        book = client.subscribe_book("tBTCUSD")
        book.wait_synced(30)
        started = time.perf_counter()
        # Poll sparsely: a tight loop here would fight the reader thread for the GIL.
        # The end is seen up to 20 ms late (under 1% of a 200 000-update run).
        while book.heartbeats == 0:
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        stats, synced = client.stats(), book.synced
    if stats.get("malformed") or not synced:
        sys.exit(f"FAIL {stats}")
    print("RESULT bfxsync %d %.4f %.0f" % (args.messages, seconds, args.messages / seconds), flush=True)


if __name__ == "__main__":
    main()
