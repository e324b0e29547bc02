"""A local Bitfinex WebSocket API v2 server: seeded synthetic market data, offline.

Users point examples and the CLI at it; the test suite drives it through its control API
(pause/step, dropped or stalled connections, injected frames). It needs the optional
``websockets`` dependency (15.0 or newer: ``pip install "websockets>=15"``), imported only here.

    from bfxsync.emulator import Emulator

    with Emulator(seed=1, rate=20.0) as emu:
        print(emu.url)          # ws://127.0.0.1:PORT/ws/2

Run it standalone with ``python -m bfxsync.emulator --port 8765``.

It also trades: ``auth`` with API key :data:`DEMO_KEY` and secret :data:`DEMO_SECRET` (or
the :class:`EmulatorAccount` objects given as ``EmulatorConfig.accounts``) opens channel 0 with
wallets, orders, positions and funding offers, and order inputs are matched against the
market's books.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DEFAULT_SYMBOLS, DEMO_KEY, DEMO_SECRET, EmulatorAccount, EmulatorConfig

if TYPE_CHECKING:
    from .server import Emulator

__all__ = ["DEFAULT_SYMBOLS", "DEMO_KEY", "DEMO_SECRET", "EmulatorAccount", "Emulator", "EmulatorConfig"]

#: What to tell a user whose environment lacks the optional dependency.
#: bfxsync is not on a package index, so no ``bfxsync[emulator]`` can be installed from one: the
#: hint names the package itself, and the extra for an install from a checkout.
INSTALL_HINT = ('bfxsync.emulator needs the "websockets" package, 15.0 or newer: pip install "websockets>=15" '
                '(or, in a bfxsync checkout: pip install ".[emulator]")')


def __getattr__(name: str) -> Any:
    # Emulator is imported on first use, not with the package, so that EmulatorConfig and
    # ``python -m bfxsync.emulator`` can report a missing websockets package in one clear
    # line instead of a traceback ending in "No module named 'websockets'".
    if name != "Emulator":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from .server import Emulator
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "websockets":
            raise
        raise ModuleNotFoundError(INSTALL_HINT, name=exc.name) from exc
    globals()["Emulator"] = Emulator  # later lookups skip this function
    return Emulator
