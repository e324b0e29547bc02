"""``bfxsync record`` and ``bfxsync replay``: capture a session to a file, serve it again.

    bfxsync record --out session.jsonl --seconds 60 book:tBTCUSD trades:tBTCUSD ticker:fUSD
    bfxsync replay session.jsonl --port 8765 --speed 10     # prints ws://127.0.0.1:8765/ws/2

Subscriptions are ``CHANNEL:ARGS`` (:func:`bfxsync.specs.parse_spec`): ``book:SYMBOL[:PREC[:LENGTH[:FREQ]]]``
(``book:tBTCUSD:P0:25``, ``book:tSHIB:USD``), ``ticker:SYMBOL``, ``trades:SYMBOL``, ``candles:KEY``
(``candles:trade:1m:tBTCUSD``) and ``status:KEY`` (``status:deriv:tBTCF0:USTF0``). The file format is described in
:mod:`bfxsync.recording`; credentials never reach it.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from typing import Any, List

import bfxsync

from .cli_common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, connect, subscribe
from .specs import parse_spec

#: The subcommands this module runs.
COMMANDS = ("record", "replay")


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``record`` and ``replay`` to the ``bfxsync`` subcommands."""
    record = commands.add_parser("record", parents=[common], help="write every frame of a session to a JSON Lines file")
    record.add_argument("--out", required=True, metavar="PATH", help="the recording to write (replaced if it exists)")
    record.add_argument("subscriptions", nargs="+", metavar="SUBSCRIPTION",
                        help="book:SYMBOL[:PREC[:LENGTH[:FREQ]]] (book:tBTCUSD:P0:25:F0), trades:tETHUSD, ticker:fUSD, "
                             "candles:trade:1m:tBTCUSD, status:deriv:tBTCF0:USTF0; symbols may contain a colon "
                             "(book:tSHIB:USD:P0)")
    replay = commands.add_parser("replay", help="serve a recording on a local emulator (prints its URL)")
    replay.add_argument("path", help="a recording (bfxsync record, Client(record=...))")
    replay.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    replay.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    replay.add_argument("--speed", type=float, default=1.0,
                        help="1 = recorded pace, 10 = ten times faster, 0 = as fast as possible (default: %(default)s)")
    replay.add_argument("--seconds", type=float, metavar="N", help="stop serving after N seconds (default: until Ctrl-C)")
    replay.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")


def run(args: argparse.Namespace) -> int:
    """Run ``record`` or ``replay``; returns the exit status."""
    if args.command == "replay":
        return _replay(args)
    try:
        specs = [parse_spec(text) for text in args.subscriptions]
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    return _record(args, specs)


def _record(args: argparse.Namespace, specs: List[Any]) -> int:
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    with contextlib.ExitStack() as stack:
        url = args.url
        if args.emulator:
            url = stack.enter_context(_emulator_class()(any_symbol=True)).url
        try:
            client = connect(stack, url, args.connect_timeout, record=args.out)
        except OSError as err:
            raise CliError(f"cannot write {args.out}: {err}", EXIT_USAGE) from None
        for spec in specs:
            subscribe(client, spec, lambda message: None, args.connect_timeout)
        print(f"bfxsync: recording {len(specs)} subscription(s) from {url} to {args.out}"
              + ("" if deadline is None else f" for {args.seconds:g} s") + "; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            interrupted = client.run_forever(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except bfxsync.BfxError as err:
            raise CliError(f"recording ended: {err}", EXIT_FAILURE) from None
    # run_forever takes Ctrl-C over (to close cleanly) and says so; the status is every command's.
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    if args.speed < 0:
        raise CliError("--speed must be 0 (as fast as possible) or more", EXIT_USAGE)
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(_emulator_class()(host=args.host, port=args.port, rate=0.0))
        try:
            replay = emulator.replay(args.path, args.speed)
        except (OSError, ValueError) as err:
            raise CliError(f"cannot replay {args.path}: {err}", EXIT_USAGE) from None
        print(emulator.url, flush=True)
        print(f"bfxsync: serving {replay.episode_count} recorded subscription(s) from {args.path} "
              f"at speed {args.speed:g}; Ctrl-C stops", file=sys.stderr, flush=True)
        # Until --seconds or Ctrl-C (a KeyboardInterrupt ends main with 130; the emulator stops on the way out).
        # Waits of a second at most: a signal is seen between them even where a long wait would hide it.
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        idle = threading.Event()
        while deadline is None or time.monotonic() < deadline:
            idle.wait(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))
    return EXIT_OK


def _emulator_class() -> Any:
    """``bfxsync.emulator.Emulator``, or a usage error naming the missing extra."""
    try:
        from bfxsync.emulator.server import Emulator
    except ImportError as err:
        raise CliError(f'this command needs websockets 15 or newer: pip install "websockets>=15" ({err})',
                       EXIT_USAGE) from None
    return Emulator
