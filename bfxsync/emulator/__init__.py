"""A local Bitfinex WebSocket API v2 server: seeded synthetic market data, offline.

Users point examples and the CLI at it; the test suite drives it through its control API
(pause/step, dropped or stalled connections, injected frames). It needs the optional
``websockets`` dependency (``pip install bfxsync[emulator]``), imported only here.

    from bfxsync.emulator import Emulator

    with Emulator(seed=1, rate=20.0) as emu:
        print(emu.url)          # ws://127.0.0.1:PORT/ws/2

Run it standalone with ``python -m bfxsync.emulator --port 8765``.
"""
from __future__ import annotations

from .config import DEFAULT_SYMBOLS, EmulatorConfig
from .server import Emulator

__all__ = ["DEFAULT_SYMBOLS", "Emulator", "EmulatorConfig"]
