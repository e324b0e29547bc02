"""The bfxsync exception hierarchy.

Every error bfxsync raises while it runs derives from :class:`BfxError`; invalid
arguments are refused at call time with ``ValueError``/``TypeError``. Builtins are mixed in
(``BfxTimeoutError`` is also a ``TimeoutError``, ``ProtocolError`` a ``ValueError``) so
code that already catches the builtin keeps working. Errors that happen on the reader
thread are never raised there; they are delivered to ``on_error`` handlers as
:class:`bfxsync.events.ErrorEvent` and logged.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Tuple


class BfxError(Exception):
    """Root of every bfxsync error."""


class CallbackError(BfxError):
    """A user callback raised. ``handler`` is the callback; the original exception is ``error`` (and ``__cause__``)."""

    def __init__(self, handler: Any, error: BaseException) -> None:
        super().__init__(f"callback {getattr(handler, '__qualname__', handler)!r} raised {error!r}")
        self.handler = handler
        self.error = error


class NotConnectedError(BfxError):
    """An operation needs a live connection (or a started client) and there is none.

    Also raised by waits once the client has ended (closed, or stopped by a fatal problem).
    """


class CertificateError(NotConnectedError):
    """The server's TLS certificate did not verify (unknown issuer, wrong host name, expired).

    A configuration problem that a redial cannot fix, so the client ends at once instead
    of retrying: trust the right CA with ``Config(ssl_context=...)`` or fix the URL's host.
    The ``ssl.SSLCertVerificationError`` is the ``__cause__``.
    """


class ForkedClientError(BfxError, RuntimeError):
    """A client was used in a process forked from the one that created it.

    Its connections and threads belong to the parent: create a new client in the child
    (gunicorn ``post_fork``, a multiprocessing initializer). ``close()`` in the child only
    releases the child's copies of the sockets; the parent's connections are untouched.
    """


class CallbackThreadError(BfxError, RuntimeError):
    """A blocking helper (``wait_*``, ``ping``, ``run_forever``) was called on a bfxsync thread.

    Waiting there would block the very thread that delivers the answer; hand the work to
    your own thread or queue instead.
    """


class BfxTimeoutError(BfxError, TimeoutError):
    """A synchronous wait ran out of time. Safe to retry."""


class ProtocolError(BfxError, ValueError):
    """A frame could not be understood. ``raw`` holds (a prefix of) its text."""

    def __init__(self, message: str, raw: Optional[str] = None) -> None:
        super().__init__(message)
        self.raw = raw


class VersionMismatchError(ProtocolError):
    """The server announced an API version other than 2."""


class ChecksumMismatchError(ProtocolError):
    """A local order book disagreed with the server's ``cs`` checksum."""

    def __init__(self, symbol: str, expected: int, actual: int) -> None:
        super().__init__(f"checksum mismatch on {symbol}: server {expected}, local {actual}")
        self.symbol = symbol
        self.expected = expected
        self.actual = actual


class ServerError(BfxError):
    """The server answered with ``{"event": "error"}``.

    Attributes:
        code: the Bitfinex error code (for example 10300).
        msg: the server's message text (informational; only the code is protocol).
        request: the fields the server echoed back, if any.
    """

    def __init__(self, code: Optional[int], msg: str, request: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"server error {code}: {msg}" if code is not None else msg)
        self.code = code
        self.msg = msg
        self.request = dict(request or {})


class SubscriptionError(ServerError):
    """A subscribe or unsubscribe request was rejected (codes 10300, 10302, 10305, ...)."""


class SubscriptionClosedError(SubscriptionError):
    """A wait on a subscription that was unsubscribed (by the user) before it could succeed."""

    def __init__(self, msg: str, request: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(None, msg, request)


class AuthenticationError(ServerError):
    """The server refused to authenticate (``code``/``msg`` as sent; ``hint`` says what usually causes it).

    A refused authentication is not retried: fix the key, secret or nonce and create a new client.
    """

    def __init__(self, code: Optional[int], msg: str, hint: str = "", request: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(code, f"{msg} ({hint})" if hint else msg, request)
        self.msg = msg
        self.hint = hint


class NotAuthenticatedError(BfxError):
    """An account call was made on a client without credentials, or before authentication succeeded."""


#: ``OrderError.reason`` for each kind of refusal the exchange's texts tell apart, tried in order
#: (texts seen on the wire, docs: ws-auth-notifications; ``code`` is null in every real frame).
ORDER_ERROR_REASONS: Tuple[Tuple[str, "re.Pattern[str]"], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE)) for reason, pattern in (
        ("insufficient_balance", r"not enough .*balance|insufficient (?:balance|margin|funds)"),
        ("minimum_size", r"minimum size"),
        ("not_found", r"not found"),
        ("post_only_would_take", r"post.?only"),
        ("invalid_price", r"^price(?:_[a-z_]+)?: invalid|invalid price"),
        ("invalid_amount", r"^(?:amount|delta): invalid|invalid amount"),
        ("invalid_symbol", r"^symbol: invalid|cannot be traded"),
        ("permission", r"permission"),
        ("invalid_input", r"^[a-z_]+: invalid"),
    ))


def order_error_reason(text: Optional[str]) -> str:
    """The kind of an order refusal from the server's text: one of the names of
    :data:`ORDER_ERROR_REASONS`, or ``"other"``."""
    for reason, pattern in ORDER_ERROR_REASONS:
        if text and pattern.search(text):
            return reason
    return "other"


class OrderError(ServerError):
    """The server answered an account request (order, cancel, update, funding offer) with ERROR or FAILURE.

    Attributes:
        reason: a stable kind to act on, read from the server's text (which stays in the message):
            ``insufficient_balance``, ``minimum_size``, ``not_found``, ``post_only_would_take``,
            ``invalid_price``, ``invalid_amount``, ``invalid_symbol``, ``permission``,
            ``invalid_input`` (another field refused) or ``other``.
        cid, cid_date, order_id: what identified the request.
        notification: the server's notification (``bfxsync.account.Notification``), if one came.
    """

    def __init__(self, msg: str, cid: Optional[int] = None, cid_date: Optional[str] = None,
                 order_id: Optional[int] = None, notification: Any = None) -> None:
        super().__init__(None, msg)
        self.reason = order_error_reason(msg)
        self.cid = cid
        self.cid_date = cid_date
        self.order_id = order_id
        self.notification = notification


class RequestEndedError(BfxError):
    """An account request ended without the server's answer (base of the two cases below).

    Attributes:
        cid, cid_date, order_id: what identified the request.
    """

    def __init__(self, msg: str, cid: Optional[int] = None, cid_date: Optional[str] = None,
                 order_id: Optional[int] = None) -> None:
        super().__init__(msg)
        self.cid = cid
        self.cid_date = cid_date
        self.order_id = order_id


class OutcomeUnknownError(RequestEndedError):
    """A request was sent and its answer will not come: it may or may not have been executed.

    Raised when the connection dropped with the request in flight, or when no answer came
    within the request's deadline. It is never sent again. After re-authentication, an order
    with this ``cid`` found in the fresh orders snapshot is reported through
    ``Client.on_order_reconciled``.
    """


class NotSentError(RequestEndedError):
    """The request's input never left this client (the connection dropped, or its deadline passed,
    while it waited for the input pacer): nothing happened on the exchange, so sending it again is safe.
    """


class MaintenanceError(BfxError):
    """The exchange announced maintenance (info 20060): orders are refused until it ends (20061)."""
