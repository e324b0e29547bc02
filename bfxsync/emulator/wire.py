"""JSON text as the Bitfinex server writes it (pure, no I/O).

Python's :func:`json.dumps` writes floats with ``repr`` (``1e-08``, ``30000.0``); the real
server is JavaScript and writes ``1e-8`` and ``30000``. Clients that hash the wire text of
book numbers (docs: ws-websocket-checksum) only agree with the server if the emulator writes exactly the
JavaScript text, so every float goes through :func:`bfxsync.protocol.checksum.js_number_str`, and the
emulator's own checksums use that same function.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bfxsync.protocol.checksum import js_number_str

__all__ = ["decimal_strings", "encode", "number_text"]

# Book prices, rates and amounts repeat a lot from tick to tick; formatting through Decimal
# costs a few microseconds, so remember recent values.
number_text: Callable[[float], str] = lru_cache(maxsize=1 << 16)(js_number_str)


def encode(value: Any) -> str:
    """Serialise ``value`` compactly, with floats (and Decimals) in JavaScript number text.

    Tuples encode as arrays, like lists. Strings keep non-ASCII characters unescaped, as
    ``JSON.stringify`` does.
    """
    parts: list[str] = []
    _encode(value, parts.append)
    return "".join(parts)


def _encode(value: Any, out: Callable[[str], None]) -> None:
    # bool before int: True is an int in Python.
    if value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif isinstance(value, int):
        out(str(value))
    elif isinstance(value, float):
        out(number_text(value))
    elif isinstance(value, str):
        out(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Decimal):
        out(number_text(float(value)))
    elif isinstance(value, (list, tuple)):
        out("[")
        for i, item in enumerate(value):
            if i:
                out(",")
            _encode(item, out)
        out("]")
    elif isinstance(value, dict):
        out("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out(",")
            out(json.dumps(str(key), ensure_ascii=False))
            out(":")
            _encode(item, out)
        out("}")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def decimal_strings(value: Any) -> Any:
    """Copy of a channel payload with every float replaced by its number text (the DEC_S flag).

    Integers (IDs, counts, periods, timestamps) stay numbers: DEC_S is about decimals.
    """
    if isinstance(value, float):
        return number_text(value)
    if isinstance(value, Decimal):
        return number_text(float(value))
    if isinstance(value, (list, tuple)):
        return [decimal_strings(item) for item in value]
    return value
