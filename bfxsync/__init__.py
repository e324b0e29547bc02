"""bfxsync: a synchronous, threaded client for the Bitfinex WebSocket API v2.

Callbacks run on the client's reader thread; local order books are verified against
the server's checksums and rebuilt by themselves; the client reconnects by itself.
``bfxsync.emulator`` (needs ``websockets``, the ``emulator`` extra) serves a local exchange for tests
and offline use.
"""
import logging

from . import numbers as numbers  # the number policy: bfxsync.numbers.to_decimal(), .plain()
from ._engine.requests import Request
from ._engine.runtime import warn_without_gil as _warn_without_gil
from ._version import __version__
from .account import AccountSnapshot
from .account.models import (
    AccountFundingTrade,
    BalanceInfo,
    ClosedOrder,
    FundingCredit,
    FundingInfo,
    FundingLoan,
    FundingOffer,
    MarginInfo,
    Notification,
    Order,
    Position,
    SymbolMarginInfo,
    UserTrade,
    Wallet,
)
from .auth import Credentials, MicrosecondNonce, NonceSource, default_nonce
from .backoff import Backoff
from .client import Client
from .config import Config
from .errors import (
    AuthenticationError,
    BfxError,
    BfxTimeoutError,
    CallbackError,
    CallbackThreadError,
    CertificateError,
    ChecksumMismatchError,
    ForkedClientError,
    MaintenanceError,
    NotAuthenticatedError,
    NotConnectedError,
    NotSentError,
    OrderError,
    OutcomeUnknownError,
    ProtocolError,
    ServerError,
    SubscriptionClosedError,
    SubscriptionError,
    VersionMismatchError,
)
from .events import (
    AccountMessage,
    Authenticated,
    BookSynced,
    ChannelMessage,
    ChecksumMismatch,
    Connected,
    ConnectionInfo,
    Disconnected,
    ErrorEvent,
    Info,
    OrderReconciled,
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
from .trading import Account

__all__ = [
    "Account", "AccountFundingTrade", "AccountMessage", "AccountSnapshot", "Authenticated",
    "AuthenticationError", "Backoff", "BalanceInfo", "BfxError", "BfxTimeoutError", "BookLevel",
    "BookSnapshot", "BookSpec", "BookSubscription", "BookSynced", "CallbackError", "CallbackThreadError",
    "Candle", "CandlesSpec", "CandlesSubscription", "CertificateError", "ChannelMessage", "ChecksumMismatch",
    "ChecksumMismatchError", "Client", "ClosedOrder", "Config", "Connected", "ConnectionInfo", "Credentials",
    "DerivativesStatus", "Disconnected", "ErrorEvent", "ForkedClientError", "FundingBookLevel", "FundingCredit",
    "FundingInfo", "FundingLoan", "FundingOffer", "FundingTicker", "FundingTrade", "Info", "Liquidation", "MaintenanceError",
    "MarginInfo", "MicrosecondNonce", "NonceSource", "NotAuthenticatedError", "NotConnectedError",
    "NotSentError", "Notification", "Order", "OrderBook", "OrderError", "OrderReconciled", "OutcomeUnknownError",
    "Position",
    "ProtocolError", "RawBookOrder", "RawFundingOffer", "Reconnecting", "Recovery", "Request", "ServerError",
    "State", "StatusSpec", "StatusSubscription", "Subscribed", "Subscription", "SubscriptionClosedError",
    "SubscriptionError", "SymbolMarginInfo", "TickerSpec", "TickerSubscription", "Trade", "TradesSpec",
    "TradesSubscription", "TradingTicker", "Unsubscribed", "UserTrade", "VersionMismatchError", "Wallet",
    "candle_key", "default_nonce", "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
_warn_without_gil()
