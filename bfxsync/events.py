"""Frozen payloads handed to user callbacks: every handler receives exactly one of these.

Adding a field to a payload breaks no handler, which is why callbacks take one object
instead of positional arguments.
"""
from __future__ import annotations

from typing import Any, Generic, Mapping, Optional, Tuple, TypeVar

from attrs import field, frozen

from .errors import BfxError

# A payload's ``subscription`` is the :class:`bfxsync.Subscription` handle concerned (a
# :class:`bfxsync.BookSubscription` for the book events). It is annotated ``Any``, not
# imported: the handles import this module to build their payloads, and the package has
# no import circles, not even for annotations (tests/test_layout.py).
T = TypeVar("T")


@frozen
class Connected:
    """The server's ``info`` frame arrived on a new connection; flags and subscriptions are being replayed.

    Attributes:
        url: the endpoint.
        server_id: the server instance id from the ``info`` frame.
        platform_status: 1 operative, 0 maintenance.
        reconnect: False for the first connection of the client, True afterwards.
    """

    url: str
    server_id: Optional[str]
    platform_status: Optional[int]
    reconnect: bool
    connection: Optional[int] = None


@frozen
class Disconnected:
    """A connection ended. ``will_reconnect`` tells whether it will dial again; ``connection`` numbers it."""

    reason: str
    code: Optional[int]
    will_reconnect: bool
    connection: Optional[int] = None


@frozen
class Reconnecting:
    """A connection waits about ``delay`` seconds before its attempt number ``attempt``."""

    attempt: int
    delay: float
    connection: Optional[int] = None


@frozen
class Info:
    """An ``info`` event with a code (20051 restart, 20060/20061 maintenance, ...)."""

    code: Optional[int]
    msg: str
    raw: Mapping[str, Any] = field(repr=False)


@frozen
class Recovery:
    """The client repaired something by itself, without any action from the user.

    Attributes:
        kind: ``"resubscribe"`` (a channel fell silent and is subscribed afresh),
            ``"redial"`` (the server completed the upgrade but sent no ``info``, so the
            connection is dialled again), ``"unsubscribe_timeout"`` (an unsubscribe was
            never confirmed; the channel is treated as gone) or ``"reauthenticate"`` (the
            account connection redials to authenticate again: an ``auth`` went unanswered,
            or ``nonce: small`` is retried with a fresh nonce).
        reason: what was seen.
        subscription: the :class:`~bfxsync.Subscription` concerned, if one.
        connection: the number of the connection concerned.
    """

    kind: str
    reason: str
    subscription: Any = None
    connection: Optional[int] = None


@frozen
class ConnectionInfo:
    """One connection of a client, as listed by ``Client.connections()``.

    Attributes:
        number: the connection's number (its reader thread is ``bfxsync-reader-<number>``).
        url: the endpoint.
        state: ``"connected"``, ``"connecting"`` (dialling, or waiting to redial) or ``"closed"``.
        subscriptions: subscriptions placed on it.
        last_frame_age: seconds since it last received anything (measured about once a second).
        stats: its own counters (disconnects, reconnects, stalls, timeouts, bad input by kind).
    """

    number: int
    url: str
    state: str
    subscriptions: int
    last_frame_age: float
    stats: Mapping[str, Any] = field(repr=False)


@frozen
class Authenticated:
    """The account connection authenticated (again after each reconnect; then ``reauthenticated``).

    Attributes:
        user_id: the account's user id.
        caps: the key's permissions as sent (``{"orders": {"read": 1, "write": 1}, ...}``).
        reauthenticated: True after a reconnect or an account sequence gap: the account
            state is being rebuilt from fresh snapshots.
        connection: the number of the account connection.
    """

    user_id: Optional[int]
    caps: Mapping[str, Any] = field(repr=False)
    reauthenticated: bool
    connection: Optional[int] = None


@frozen
class AccountMessage:
    """Data from one channel-0 frame.

    Attributes:
        stream: ``orders``, ``positions``, ``trades``, ``funding_trades``, ``wallets``,
            ``balance``, ``margin``, ``funding_info``, ``funding_offers``,
            ``funding_credits``, ``funding_loans`` or ``notifications``.
        items: the models (several for a snapshot).
        snapshot: True for the snapshot after each authentication.
        tag: the wire tag (``os``, ``on``, ``te``, ``n``, ...).
        seq, auth_seq: the connection's and the account's sequence numbers when ``sequence`` is on.
    """

    stream: str
    items: Tuple[Any, ...]
    snapshot: bool
    tag: str
    seq: Optional[int] = None
    auth_seq: Optional[int] = None

    @property
    def item(self) -> Any:
        """The first (for updates: the only) item."""
        return self.items[0]


@frozen
class OrderReconciled:
    """An order whose request failed with an unknown outcome (the connection dropped) was found in the
    fresh orders snapshot after re-authentication: it was placed."""

    order: Any
    cid: int
    cid_date: str


@frozen
class ErrorEvent:
    """Something went wrong off the caller's thread: a server error, a bad frame, a raising callback.

    ``subscription`` is set (the :class:`~bfxsync.Subscription`) when the error concerns one subscription.
    """

    error: BfxError
    subscription: Any = None


@frozen
class Subscribed:
    """A subscription (the :class:`~bfxsync.Subscription` in ``subscription``) was acknowledged
    (also after every reconnect and resync)."""

    subscription: Any


@frozen
class Unsubscribed:
    """A subscription (the :class:`~bfxsync.Subscription` in ``subscription``) ended at the user's request."""

    subscription: Any


@frozen
class BookSynced:
    """A book applied a fresh snapshot. ``resync`` is True when it replaced a book that had failed or gone stale."""

    subscription: Any  # the BookSubscription
    resync: bool


@frozen
class ChecksumMismatch:
    """A book disagreed with the server's checksum. ``resyncing`` tells whether it is being rebuilt."""

    subscription: Any  # the BookSubscription
    server: int
    local: int
    resyncing: bool


# A dict class, not slotted: attrs fills a frozen dict class's __dict__ directly, which
# builds this object (one per data frame) in two thirds of the time of a slotted one.
@frozen(slots=False)
class ChannelMessage(Generic[T]):
    """Data from one channel frame.

    Attributes:
        subscription: the handle the data belongs to (a :class:`~bfxsync.Subscription`).
        items: the models in the frame (one for an update, several for a snapshot or bulk update).
        snapshot: True for the snapshot that follows each (re)subscription.
        tag: ``"te"``/``"tu"``/``"fte"``/``"ftu"`` for trade frames, else ``None``.
        seq: the sequence number when the ``sequence`` option is on.
        mts: the server timestamp (ms) when the ``timestamps`` option is on.
        conflated: under the ``latest`` overflow policy of a queued subscription, how many
            earlier messages this one stands for (they were superseded, not lost). A
            conflated book message carries the whole current book (bids, then asks, best
            first) with ``snapshot=True``: replace your copy with it.
    """

    subscription: Any
    items: Tuple[T, ...]
    snapshot: bool
    tag: Optional[str] = None
    seq: Optional[int] = None
    mts: Optional[int] = None
    conflated: int = 0

    @property
    def item(self) -> T:
        """The first (for updates: the only) item."""
        return self.items[0]
