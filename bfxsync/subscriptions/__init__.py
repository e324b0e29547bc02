"""Subscription handles, one class per channel, and the factory that picks it for a spec."""
from typing import Any, Callable, Dict

from ..specs import BookSpec, CandlesSpec, Spec, StatusSpec, TickerSpec, TradesSpec
from .base import Owner, State, Subscription
from .book import BookSubscription
from .channels import CandlesSubscription, StatusSubscription, TickerSubscription, TradesSubscription

_HANDLES: Dict[type, Callable[..., Subscription]] = {
    TickerSpec: TickerSubscription,
    TradesSpec: TradesSubscription,
    BookSpec: BookSubscription,
    CandlesSpec: CandlesSubscription,
    StatusSpec: StatusSubscription,
}


def make_subscription(spec: Spec, owner: Owner, **options: Any) -> Subscription:
    """The handle that reads ``spec``'s channel; ``options`` are channel-specific (``execution_updates``)."""
    return _HANDLES[type(spec)](spec, owner, **options)


__all__ = [
    "BookSubscription", "CandlesSubscription", "Owner", "State", "StatusSubscription", "Subscription",
    "TickerSubscription", "TradesSubscription", "make_subscription",
]
