"""bfxsync: a synchronous, threaded client for the Bitfinex WebSocket API v2.

Callbacks run on the client's reader thread; local order books are verified against
the server's checksums and rebuilt by themselves; the client reconnects by itself.
``bfxsync.emulator`` (extra ``bfxsync[emulator]``) serves a local exchange for tests
and offline use.
"""
import logging

from .backoff import Backoff
from .client import Client
from .config import Config
from .errors import (
    BfxError,
    BfxTimeoutError,
    CallbackError,
    CallbackThreadError,
    ChecksumMismatchError,
    NotConnectedError,
    ProtocolError,
    ServerError,
    SubscriptionClosedError,
    SubscriptionError,
    VersionMismatchError,
)
from .events import (
    BookSynced,
    ChannelMessage,
    ChecksumMismatch,
    Connected,
    ConnectionInfo,
    Disconnected,
    ErrorEvent,
    Info,
    Reconnecting,
    Recovery,
    Subscribed,
    Unsubscribed,
)
from .models import (
    BookLevel,
    Candle,
    DerivativesStatus,
    FundingBookLevel,
    FundingTicker,
    FundingTrade,
    Liquidation,
    RawBookOrder,
    RawFundingOffer,
    Trade,
    TradingTicker,
)
from .orderbook import BookSnapshot, OrderBook
from .specs import BookSpec, CandlesSpec, StatusSpec, TickerSpec, TradesSpec, candle_key
from .subscriptions import (
    BookSubscription,
    CandlesSubscription,
    State,
    StatusSubscription,
    Subscription,
    TickerSubscription,
    TradesSubscription,
)

__version__ = "0.1.0"

__all__ = [
    "Backoff", "BfxError", "BfxTimeoutError", "BookLevel", "BookSnapshot", "BookSpec", "BookSubscription",
    "BookSynced", "CallbackError", "CallbackThreadError", "Candle", "CandlesSpec", "CandlesSubscription",
    "ChannelMessage", "ChecksumMismatch", "ChecksumMismatchError", "Client", "Config", "Connected",
    "ConnectionInfo", "DerivativesStatus", "Disconnected", "ErrorEvent", "FundingBookLevel", "FundingTicker",
    "FundingTrade", "Info", "Liquidation", "NotConnectedError", "OrderBook", "ProtocolError", "RawBookOrder",
    "RawFundingOffer", "Reconnecting", "Recovery", "ServerError", "State", "StatusSpec", "StatusSubscription",
    "Subscribed", "Subscription", "SubscriptionClosedError", "SubscriptionError", "TickerSpec",
    "TickerSubscription", "Trade", "TradesSpec", "TradesSubscription", "TradingTicker", "Unsubscribed",
    "VersionMismatchError", "candle_key", "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
