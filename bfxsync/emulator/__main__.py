"""``python -m bfxsync.emulator``: serve the emulator until Ctrl-C.

Prints the URL it serves on (one line, on stdout) so scripts can read it. Exits with 2,
after one line on stderr, when the optional ``websockets`` package is missing.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading

from .config import DEFAULT_SYMBOLS, DEMO_KEY, DEMO_SECRET, EmulatorConfig


def _symbol_list(text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip() for s in text.split(",") if s.strip())
    if not symbols:
        raise argparse.ArgumentTypeError("give at least one symbol")
    return symbols


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bfxsync.emulator",
                                     description="Local Bitfinex WebSocket v2 server with synthetic data.",
                                     epilog=f"Trading: authenticate with API key {DEMO_KEY!r} and secret"
                                            f" {DEMO_SECRET!r} (the demo account).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="market data seed (default 0)")
    parser.add_argument("--rate", type=float, default=10.0, help="market ticks per second (default 10)")
    parser.add_argument("--heartbeat", type=float, default=15.0, metavar="S",
                        help="seconds of channel silence before a heartbeat (default 15)")
    parser.add_argument("--symbols", type=_symbol_list, default=DEFAULT_SYMBOLS, metavar="LIST",
                        help=f"comma-separated symbols to serve (default: {','.join(DEFAULT_SYMBOLS)})")
    parser.add_argument("--any-symbol", action="store_true",
                        help="also serve any well-formed symbol a client asks for (tXXXYYY, tXXX:YYY, fXXX),"
                             " created on first subscribe, instead of answering 'symbol: invalid'")
    parser.add_argument("--connect-limit", type=int, default=20, metavar="N",
                        help="handshakes per client IP per minute before HTTP 429 (default 20, as"
                             " api-pub; 0 disables)")
    parser.add_argument("--certfile", help="TLS certificate (PEM) to serve wss://")
    parser.add_argument("--keyfile", help="TLS private key (PEM), if not inside --certfile")
    parser.add_argument("--verbose", "-v", action="store_true", help="log connections and requests")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until Ctrl-C and return the exit status (0; 2 without websockets)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        from .server import Emulator
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "websockets":
            raise
        from . import INSTALL_HINT

        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    try:
        config = EmulatorConfig(host=args.host, port=args.port, seed=args.seed, rate=args.rate,
                                heartbeat_interval=args.heartbeat, symbols=args.symbols,
                                any_symbol=args.any_symbol, connect_limit=args.connect_limit or None,
                                certfile=args.certfile, keyfile=args.keyfile)
    except ValueError as exc:  # a bad symbol or a negative number: a usage error, exit 2
        parser.error(str(exc))
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
