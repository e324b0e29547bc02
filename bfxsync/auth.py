"""Authentication building blocks (pure; docs: ws-auth).

The ``auth`` event proves ownership of an API key with an HMAC-SHA384 signature of
``"AUTH" + nonce``. Bitfinex requires the nonce to strictly increase *per API key*, across
every connection and REST too (docs: requirements-and-limitations), so the nonce source is a
process-wide object shared by every client by default: :data:`default_nonce`.

Nothing here touches a socket. The only lock is the nonce source's, because several
client threads may authenticate at once.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from attrs import field, frozen

__all__ = [
    "AUTH_ERROR_HINTS", "DMS_CANCEL_ON_DISCONNECT", "MAX_NONCE", "Credentials", "MicrosecondNonce",
    "NonceSource", "auth_error_hint", "auth_event", "default_nonce", "sign",
]

#: Largest nonce the server accepts (JavaScript's ``Number.MAX_SAFE_INTEGER``).
MAX_NONCE = 9_007_199_254_740_991

#: The only ``dms`` value: cancel every order of the account when this socket closes.
DMS_CANCEL_ON_DISCONNECT = 4

#: A callable returning the next nonce; must strictly increase for a given API key.
NonceSource = Callable[[], int]


def _not_blank(instance: Any, attribute: Any, value: Any) -> None:
    # Validation messages name the field only: never echo a value that might be a secret.
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"Credentials.{attribute.name} must be a non-empty string")


@frozen(repr=False)
class Credentials:
    """An API key and its secret.

    ``repr()``/``str()`` show the first four characters of the key only, never the secret,
    so credentials can appear in logs and tracebacks safely.
    """

    api_key: str = field(validator=_not_blank)
    api_secret: str = field(validator=_not_blank, repr=False)

    def __repr__(self) -> str:
        return f"Credentials(api_key='{self.api_key[:4]}…')"

    __str__ = __repr__

    @classmethod
    def from_env(
        cls, key_var: str = "BFX_API_KEY", secret_var: str = "BFX_API_SECRET",
        environ: Optional[Mapping[str, str]] = None,
    ) -> "Credentials":
        """Read the key and secret from environment variables (``os.environ`` by default).

        Raises:
            ValueError: a variable is missing or empty; the message names it, never a value.
        """
        env = os.environ if environ is None else environ
        missing = [name for name in (key_var, secret_var) if not env.get(name, "").strip()]
        if missing:
            raise ValueError(f"environment variable(s) not set or empty: {', '.join(missing)}")
        return cls(env[key_var].strip(), env[secret_var].strip())


class MicrosecondNonce:
    """Thread-safe nonce source: microseconds since the epoch, strictly increasing.

    Each call returns ``max(int(clock() * 1e6), last + 1)``, so a clock that stands still or
    goes backwards (NTP step) still yields increasing nonces. Share one instance between every
    client that uses the same API key (:data:`default_nonce` does this within a process).
    Another *process* using the same key still collides: use one key per process.

    Args:
        clock: seconds since the epoch (``time.time``); injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        """The next nonce. Raises ValueError once past :data:`MAX_NONCE` (a new key is needed then)."""
        with self._lock:
            nonce = max(int(self._clock() * 1_000_000), self._last + 1)
            if nonce > MAX_NONCE:
                raise ValueError(f"nonce would exceed {MAX_NONCE}; this API key cannot authenticate any more")
            self._last = nonce
            return nonce

    @property
    def last(self) -> int:
        """The last nonce handed out (0 before the first)."""
        return self._last

    def advance_past(self, nonce: int) -> None:
        """Make every later nonce larger than ``nonce`` (for example after a 10114 ``nonce: small``)."""
        if isinstance(nonce, bool) or not isinstance(nonce, int):
            raise TypeError("nonce must be an int")
        with self._lock:
            self._last = max(self._last, nonce)

    def __repr__(self) -> str:
        return f"MicrosecondNonce(last={self._last})"


#: The process-wide nonce source every client uses unless given another.
default_nonce = MicrosecondNonce()


def sign(secret: str, payload: str) -> str:
    """Lower-case hex HMAC-SHA384 of ``payload`` keyed with ``secret`` (both UTF-8)."""
    return hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha384).hexdigest()


_SYMBOLIC_FILTERS = frozenset({"trading", "funding", "wallet", "algo", "balance", "notify"})
_FILTER_RE = re.compile(
    r"trading-t[A-Z0-9]+(?::[A-Z0-9]+)?|funding-f[A-Z0-9]+|wallet-(?:exchange|margin|funding)-[A-Z0-9]+"
)


def _check_filter(name: Any) -> str:
    if not isinstance(name, str) or not (name in _SYMBOLIC_FILTERS or _FILTER_RE.fullmatch(name)):
        raise ValueError(
            f"unknown auth filter {name!r}: use trading, trading-<tSYMBOL>, funding, funding-<fSYMBOL>, "
            "wallet, wallet-<exchange|margin|funding>-<CCY>, algo, balance or notify"
        )
    return name


def auth_event(
    credentials: Credentials, nonce: int, dms: Optional[int] = None, filters: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """The ``auth`` event for ``credentials`` with ``nonce`` (docs: ws-auth).

    Args:
        credentials: the key is sent; the secret only signs and is never part of the event.
        nonce: from a :data:`NonceSource`; 1 to :data:`MAX_NONCE`.
        dms: ``4`` (dead-man switch: the server cancels all account orders when this socket closes),
            or None. It is per authentication: send it again on every re-authentication.
        filters: restrict the account streams (``trading``, ``trading-tBTCUSD``, ``funding``,
            ``funding-fUSD``, ``wallet``, ``wallet-exchange-BTC``, ``algo``, ``balance``, ``notify``);
            None receives everything.

    Raises:
        ValueError: a bad nonce, dms or filter.
    """
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 1 <= nonce <= MAX_NONCE:
        raise ValueError(f"nonce must be an int from 1 to {MAX_NONCE}, got {nonce!r}")
    if dms is not None and (isinstance(dms, bool) or dms != DMS_CANCEL_ON_DISCONNECT):
        raise ValueError(f"dms must be None or {DMS_CANCEL_ON_DISCONNECT} (cancel all orders on disconnect), got {dms!r}")
    if filters is not None:
        if isinstance(filters, (str, bytes)):
            raise ValueError("filters must be a list of filter names, not one string")
        checked = [_check_filter(name) for name in filters]
        if not checked:
            raise ValueError("filters must not be empty (pass None to receive every stream)")
    payload = f"AUTH{nonce}"
    event: Dict[str, Any] = {
        "event": "auth",
        "apiKey": credentials.api_key,
        "authSig": sign(credentials.api_secret, payload),
        "authPayload": payload,
        "authNonce": nonce,
    }
    if dms is not None:
        event["dms"] = dms
    if filters is not None:
        event["filter"] = checked
    return event


#: What to tell the user for each authentication error code (docs: ws-auth, glossary).
AUTH_ERROR_HINTS: Mapping[int, str] = MappingProxyType({
    10100: "bad API key or signature (check the key and secret)",
    10101: "already authenticated on this connection",
    10111: "malformed auth payload (must be AUTH<nonce>)",
    10112: "bad signature (HMAC-SHA384 of the payload with the API secret, lower-case hex)",
    10113: "bad signature encoding (HMAC-SHA384 of the payload with the API secret, lower-case hex)",
    10114: "nonce too small: another client shares this key's nonce; use one key per client or share the nonce source",
    10200: "unauth failed",
    10201: "not authenticated",
    20000: "the user behind this API key is invalid (treated as an authentication failure)",
})


def auth_error_hint(code: Optional[int]) -> str:
    """The hint for an auth error ``code``, or a generic one for unknown codes."""
    generic = "check the API key and secret, the key's permissions and that no other client shares its nonce"
    if code is None:
        return f"the server gave no error code; {generic}"
    return AUTH_ERROR_HINTS.get(code, f"code {code} is not documented; {generic}")
