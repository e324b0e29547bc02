"""Wire constants of the Bitfinex WebSocket API v2 (pure).

Values come from the public documentation (https://docs.bitfinex.com/docs/ws-general,
ws-public, requirements-and-limitations); where the documentation and the official
clients disagree, the comment says which was chosen.
"""
from __future__ import annotations

PUBLIC_URL = "wss://api-pub.bitfinex.com/ws/2"
AUTH_URL = "wss://api.bitfinex.com/ws/2"
API_VERSION = 2

# conf flags. Each conf frame replaces the whole set, so always send the sum.
FLAG_DEC_S = 8
FLAG_TIME_S = 32
FLAG_TIMESTAMP = 32_768
FLAG_SEQ_ALL = 65_536
FLAG_CHECKSUM = 131_072
FLAG_BULK_UPDATES = 536_870_912

# Frame tags.
HEARTBEAT = "hb"
CHECKSUM = "cs"

# Info codes.
INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061

# Error codes.
ERR_UNKNOWN_EVENT = 10000
ERR_CONF_FAIL = 10050
ERR_SUB_FAIL = 10300
ERR_SUB_MULTI = 10301
ERR_SUB_LIMIT = 10305
ERR_UNSUB_FAIL = 10400
ERR_UNSUB_NOT = 10401

# Bounds of numbers read from the wire, checked before any conversion so that a hostile number
# costs no more than a sane one (``int(Decimal("1e1000000"))`` would hold the GIL for half a minute).
#: Integers are below this in magnitude: JavaScript (the server) writes no integer text from
#: 1e21 on (it writes ``1e+21``), and ids, timestamps, counts and flags are far smaller.
INT_LIMIT = 10 ** 21
#: Longest number text read: a JavaScript number's text is at most 25 characters
#: (``-1.2345678901234567e-308``); the rest is margin for decimal strings.
MAX_NUMBER_TEXT = 64
#: Largest decimal exponent (``Decimal.adjusted()``) read, either way: every JavaScript number
#: (a double, 5e-324 to 1.8e308) is within it, and ``int()`` of a number within it takes microseconds.
MAX_EXPONENT = 400

#: Subscriptions one connection may hold: the docs say 25 (elsewhere 30); the official clients use 25.
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

#: Seconds between the server's heartbeats on a quiet channel (docs: ws-general, "Heartbeating").
HEARTBEAT_INTERVAL = 15.0


def is_funding(symbol: str) -> bool:
    """True for funding symbols (``fUSD``), False for trading pairs (``tBTCUSD``)."""
    return symbol.startswith("f")
