"""Frame decoding and request encoding for the Bitfinex WebSocket API v2 (pure, no I/O).

Message shapes follow the public documentation: https://docs.bitfinex.com/docs/ws-general
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping

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
_TOKENS = json.JSONDecoder(parse_float=str)
#: Decode a channel frame keeping every float as its wire text (book checksums, exact money).
decode_tokens = _fast_decoder(_TOKENS)
#: The C scanner of :data:`decode_tokens`: ``scan_tokens(text, 0)`` returns ``(value, end)``
#: and raises StopIteration when no JSON value starts the text; for the receive hot path,
#: which falls back to :data:`decode_tokens` when ``end`` is not the end of the text.
scan_tokens = _TOKENS.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__


def encode(message: Any) -> str:
    """Serialise an outgoing event (an object) or account input (an array) compactly."""
    return json.dumps(message, separators=_COMPACT)


def encode_conf(flags: int) -> str:
    """The ``conf`` event carrying the complete flag set."""
    return encode({"event": "conf", "flags": flags})


def encode_subscribe(channel: str, fields: Mapping[str, Any], sub_id: str) -> str:
    """A ``subscribe`` event for one channel; ``sub_id`` is echoed in the ack ."""
    message: Dict[str, Any] = {"event": "subscribe", "channel": channel}
    message.update(fields)
    message["subId"] = sub_id
    return encode(message)


def encode_unsubscribe(chan_id: int) -> str:
    """An ``unsubscribe`` event."""
    return encode({"event": "unsubscribe", "chanId": chan_id})


def encode_ping(cid: int) -> str:
    """An application ``ping``; the server answers ``pong`` with the same ``cid``."""
    return encode({"event": "ping", "cid": cid})
