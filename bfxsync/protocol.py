"""Wire constants and request encoders for the Bitfinex WebSocket API v2 (pure, no I/O).

Numbers and names follow ``bitfinex-ws-v2.md`` (the protocol reference); section
numbers in comments point into it.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping

PUBLIC_URL = "wss://api-pub.bitfinex.com/ws/2"
AUTH_URL = "wss://api.bitfinex.com/ws/2"
API_VERSION = 2

# conf flags (§5). Each conf frame replaces the whole set, so always send the sum.
FLAG_DEC_S = 8
FLAG_TIME_S = 32
FLAG_TIMESTAMP = 32_768
FLAG_SEQ_ALL = 65_536
FLAG_CHECKSUM = 131_072
FLAG_BULK_UPDATES = 536_870_912

# Frame tags (§4.1).
HEARTBEAT = "hb"
CHECKSUM = "cs"

# Info codes (§3.2).
INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061

# Error codes (§3.1).
ERR_UNKNOWN_EVENT = 10000
ERR_CONF_FAIL = 10050
ERR_SUB_FAIL = 10300
ERR_SUB_MULTI = 10301
ERR_SUB_LIMIT = 10305
ERR_UNSUB_FAIL = 10400
ERR_UNSUB_NOT = 10401

#: Subscriptions one connection may hold (§10.1: sources disagree between 25 and 30; 25 is safe).
MAX_SUBSCRIPTIONS = 25

# Channel names.
TICKER = "ticker"
TRADES = "trades"
BOOK = "book"
CANDLES = "candles"
STATUS = "status"

BOOK_PRECISIONS = ("P0", "P1", "P2", "P3", "P4", "R0")
BOOK_FREQUENCIES = ("F0", "F1")
BOOK_LENGTHS = (1, 25, 100, 250)
CANDLE_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1D", "1W", "14D", "1M")

_COMPACT = (",", ":")



def _fast_decoder(decoder: json.JSONDecoder) -> Callable[[str], Any]:
    """A decode function that calls the C scanner directly.

    ``JSONDecoder.decode`` runs two regex whitespace matches around the scan; server
    frames carry no surrounding whitespace, so the scanner alone is enough. Anything
    unusual (whitespace, trailing data, errors) falls back to the full decoder, which
    also produces the proper ``JSONDecodeError``.
    """
    scan, full = decoder.scan_once, decoder.decode  # type: ignore[attr-defined]  # set by JSONDecoder.__init__

    def decode(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            return full(text)
        return value if end == len(text) else full(text)

    return decode


#: Decode a frame (prebuilt: ``json.loads`` with options would build a decoder per call).
decode = _fast_decoder(json.JSONDecoder())
#: Decode a book frame keeping every float as its wire text, for the checksum (§6.2).
decode_tokens = _fast_decoder(json.JSONDecoder(parse_float=str))


def encode(message: Mapping[str, Any]) -> str:
    """Serialise an outgoing event compactly."""
    return json.dumps(message, separators=_COMPACT)


def encode_conf(flags: int) -> str:
    """The ``conf`` event carrying the complete flag set."""
    return encode({"event": "conf", "flags": flags})


def encode_subscribe(channel: str, fields: Mapping[str, Any], sub_id: str) -> str:
    """A ``subscribe`` event for one channel; ``sub_id`` is echoed in the ack (§2.1)."""
    message: Dict[str, Any] = {"event": "subscribe", "channel": channel}
    message.update(fields)
    message["subId"] = sub_id
    return encode(message)


def encode_unsubscribe(chan_id: int) -> str:
    """An ``unsubscribe`` event (§2.4)."""
    return encode({"event": "unsubscribe", "chanId": chan_id})


def encode_ping(cid: int) -> str:
    """An application ``ping``; the server answers ``pong`` with the same ``cid`` (§1.5)."""
    return encode({"event": "ping", "cid": cid})
