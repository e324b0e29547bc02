"""``python -m bfxsync.emulator``: serve the emulator until Ctrl-C.

Prints the URL it serves on (one line, on stdout) so scripts can read it.
"""
from __future__ import annotations

import argparse
import logging
import threading

from .config import EmulatorConfig
from .server import Emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bfxsync.emulator",
                                     description="Local Bitfinex WebSocket v2 server with synthetic data.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="market data seed (default 0)")
    parser.add_argument("--rate", type=float, default=10.0, help="market ticks per second (default 10)")
    parser.add_argument("--heartbeat", type=float, default=15.0, metavar="S",
                        help="seconds of channel silence before a heartbeat (default 15)")
    parser.add_argument("--certfile", help="TLS certificate (PEM) to serve wss://")
    parser.add_argument("--keyfile", help="TLS private key (PEM), if not inside --certfile")
    parser.add_argument("--verbose", "-v", action="store_true", help="log connections and requests")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until Ctrl-C and return the exit status (0)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    config = EmulatorConfig(host=args.host, port=args.port, seed=args.seed, rate=args.rate,
                            heartbeat_interval=args.heartbeat, certfile=args.certfile, keyfile=args.keyfile)
    forever = threading.Event()
    with Emulator(config) as emulator:
        print(emulator.url, flush=True)
        try:
            # Event.wait with a timeout, so Ctrl-C is delivered promptly on every platform.
            while not forever.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
