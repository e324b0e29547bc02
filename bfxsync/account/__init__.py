"""The authenticated half of the Bitfinex WebSocket API v2 (docs: ws-auth), as pure building blocks.

- :mod:`bfxsync.account.models`: frozen models of the channel-0 streams (orders, positions,
  trades, wallets, funding, balance, margin, notifications), each with ``from_wire``.
- :mod:`bfxsync.account.state`: :class:`AccountState`, the account rebuilt from channel 0,
  readable from any thread through immutable :class:`AccountSnapshot` objects.
- :mod:`bfxsync.account.inputs`: builders of the channel-0 inputs (new/update/cancel orders,
  multi-op, calc, funding offers) that validate before anything is sent.

No module here opens a socket or starts a thread.
"""
from .inputs import (
    CLOSE,
    HIDDEN,
    NO_VAR_RATES,
    OCO,
    ORDER_TYPES,
    POST_ONLY,
    REDUCE_ONLY,
    RequestRef,
    calc,
    cancel_funding_offer,
    cancel_order,
    cancel_orders,
    cid_date_of,
    new_funding_offer,
    new_order,
    order_multi_op,
    update_order,
)
from .models import (
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
    status_word,
)
from .state import MAX_CLOSED_ORDERS, SNAPSHOT_TAGS, STREAMS, AccountSnapshot, AccountState

__all__ = [
    "CLOSE", "HIDDEN", "MAX_CLOSED_ORDERS", "NO_VAR_RATES", "OCO", "ORDER_TYPES", "POST_ONLY", "REDUCE_ONLY",
    "SNAPSHOT_TAGS", "STREAMS", "AccountFundingTrade", "AccountSnapshot", "AccountState", "BalanceInfo", "ClosedOrder",
    "FundingCredit", "FundingInfo", "FundingLoan", "FundingOffer", "MarginInfo", "Notification", "Order", "Position",
    "RequestRef", "SymbolMarginInfo", "UserTrade", "Wallet", "calc", "cancel_funding_offer", "cancel_order", "cancel_orders",
    "cid_date_of", "new_funding_offer", "new_order", "order_multi_op", "status_word", "update_order",
]
