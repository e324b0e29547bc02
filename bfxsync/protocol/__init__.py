"""The Bitfinex WebSocket API v2 as data: constants, frame codec and book checksums (pure, no I/O)."""
from .codec import decode, decode_tokens, encode, encode_conf, encode_ping, encode_subscribe, encode_unsubscribe
from .constants import *  # noqa: F401,F403 - the constants are this package's namespace
from .constants import is_funding

__all__ = [
    "decode", "decode_tokens", "encode", "encode_conf", "encode_ping", "encode_subscribe", "encode_unsubscribe",
    "is_funding",
]
