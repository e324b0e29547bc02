"""Order-book checksums (https://docs.bitfinex.com/docs/ws-websocket-checksum) and JavaScript number text.

The server computes its CRC-32 over the numbers' JavaScript text (``30000``, ``1e-8``,
``0.0000082``), which Python's float formatting does not reproduce. bfxsync therefore
keeps every book number as its wire token: floats are decoded with ``parse_float=str``
so their text survives untouched, and integers (``json`` keeps them exact) are turned
back with ``str``, which matches JavaScript below 2**53. :func:`js_number_str` is the
fallback for values that only exist as floats, and what the emulator writes on the wire.
"""
from __future__ import annotations

import zlib
from decimal import Decimal
from typing import Sequence, Tuple, Union

#: A number as decoded from a frame: an ``int``, or a float's original text.
Token = Union[int, str]

#: Only the best 25 entries of each side enter the checksum, whatever the book length.
CHECKSUM_DEPTH = 25


def js_number_str(value: Union[int, float]) -> str:
    """Format ``value`` exactly as JavaScript's ``Number.prototype.toString`` does.

    JavaScript writes the shortest round-trip digits (as Python's ``repr``), never a
    trailing ``.0``, and switches to exponent notation only below 1e-6 or from 1e21 on,
    written without zero padding (``1e-8``, ``1.5e+21``).
    """
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} has no JSON text")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + js_number_str(-value)
    _, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = int(exponent) + k  # value == 0.<digits> * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"


def token_text(token: Token) -> str:
    """The checksum text of a decoded token (a float's wire text, or an int)."""
    return token if isinstance(token, str) else str(token)


def signed_crc32(text: str) -> int:
    """CRC-32 (IEEE) of ``text`` as the signed 32-bit integer the server sends."""
    crc = zlib.crc32(text.encode("utf-8"))
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def checksum_text(bids: Sequence[Tuple[Token, Token]], asks: Sequence[Tuple[Token, Token]]) -> str:
    """The string the server hashes: best-first ``(key, amount)`` pairs, bid and ask interleaved.

    ``key`` is the price (rate for funding) on P0-P4 books and the order or offer ID on
    raw books; ``amount`` keeps its wire sign. Sides shorter than 25 are not padded.
    """
    parts = []
    for i in range(CHECKSUM_DEPTH):
        if i < len(bids):
            key, amount = bids[i]
            parts.append(token_text(key))
            parts.append(token_text(amount))
        if i < len(asks):
            key, amount = asks[i]
            parts.append(token_text(key))
            parts.append(token_text(amount))
    return ":".join(parts)


def book_checksum(bids: Sequence[Tuple[Token, Token]], asks: Sequence[Tuple[Token, Token]]) -> int:
    """The signed checksum of a book given best-first ``(key, amount)`` tokens per side."""
    return signed_crc32(checksum_text(bids, asks))


def same_checksum(server_value: int, local_value: int) -> bool:
    """Compare checksums whatever their signedness (some servers or proxies send unsigned)."""
    return (server_value & 0xFFFFFFFF) == (local_value & 0xFFFFFFFF)
