"""The ``auth`` event: signature and nonce checks, channel filters, the answers (pure).

A client signs ``authPayload`` (``"AUTH" + nonce``) with HMAC-SHA384 keyed by its API
secret and sends the lower-case hex digest as ``authSig`` (docs: ws-auth). The nonce must
grow strictly per API key, across every connection, and stay at most 2**53 - 1
(docs: requirements-and-limitations). Failures are answered as ``event: "auth"`` with
status ``"FAILED"`` (the wire form; the docs' template says ``"FAIL"``).
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "CAPS",
    "MAX_NONCE",
    "AuthFailure",
    "ChannelFilter",
    "check_auth",
    "failure_frame",
    "sign",
]

#: The largest nonce the server takes (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_NONCE = 9_007_199_254_740_991

ERR_AUTH_FAIL = 10100
ERR_AUTH_NONCE = 10114

#: Messages for the codes ``Emulator.reject_auth`` may be given (others get ``auth: invalid``).
AUTH_MESSAGES = {
    10100: "apikey: invalid",
    10111: "auth: invalid payload",
    10112: "auth: invalid signature",
    10113: "auth: encryption failed",
    10114: "nonce: small",
}

#: The permissions ``auth`` reports: a trading key without withdrawal rights (docs: ws-auth).
CAPS: dict[str, dict[str, int]] = {
    "orders": {"read": 1, "write": 1},
    "account": {"read": 1, "write": 0},
    "funding": {"read": 1, "write": 1},
    "history": {"read": 1, "write": 0},
    "wallets": {"read": 1, "write": 1},
    "withdraw": {"read": 0, "write": 0},
    "positions": {"read": 1, "write": 1},
}


def sign(secret: str, payload: str) -> str:
    """``authSig``: the hex HMAC-SHA384 of ``payload`` keyed by ``secret`` (docs: ws-auth)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha384).hexdigest()


@attrs.frozen
class AuthFailure(Exception):
    """Why an ``auth`` request was refused: the code and message of the answer."""

    code: int
    msg: str


def failure_frame(code: int, msg: str) -> dict[str, Any]:
    """``{"event":"auth","status":"FAILED","chanId":0,"code":...,"msg":...}`` as seen on the wire."""
    return {"event": "auth", "status": "FAILED", "chanId": 0, "code": code, "msg": msg}


def _nonce(request: Mapping[str, Any], payload: str) -> int:
    raw = request.get("authNonce")
    if raw is None:
        raw = payload[4:]  # clients that only sign the payload: "AUTH<nonce>"
    # The docs type authNonce as a string; the official clients send a JSON number.
    if type(raw) is int:
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise AuthFailure(ERR_AUTH_NONCE, "nonce: invalid")


def check_auth(request: Mapping[str, Any], secrets: Mapping[str, str], last_nonce: Mapping[str, int]) -> tuple[str, int]:
    """Validate an ``auth`` request; return ``(api_key, nonce)`` or raise :class:`AuthFailure`.

    Order of checks: the key, the signature over the payload sent, then the nonce. The
    signature is checked over whatever ``authPayload`` says, as long as it starts with
    ``AUTH``: bitfinex-api-node signs ``"AUTH" + nonce + nonce`` and is accepted live.
    """
    key, sig, payload = request.get("apiKey"), request.get("authSig"), request.get("authPayload")
    if not isinstance(key, str) or key not in secrets:
        raise AuthFailure(ERR_AUTH_FAIL, "apikey: invalid")
    if not isinstance(payload, str) or not payload.startswith("AUTH") or not isinstance(sig, str):
        raise AuthFailure(ERR_AUTH_FAIL, "apikey: digest invalid")
    if not hmac.compare_digest(sig.lower(), sign(secrets[key], payload)):
        raise AuthFailure(ERR_AUTH_FAIL, "apikey: digest invalid")
    nonce = _nonce(request, payload)
    if not 0 < nonce <= MAX_NONCE:
        raise AuthFailure(ERR_AUTH_NONCE, "nonce: invalid")
    if nonce <= last_nonce.get(key, 0):
        raise AuthFailure(ERR_AUTH_NONCE, "nonce: small")
    return key, nonce


# Which channel-0 tags each filter name covers (docs: ws-auth, "Channel Filters").
_CATEGORIES = {
    "trading": ("os", "on", "ou", "oc", "ps", "pn", "pu", "pc", "te", "tu"),
    "funding": ("fos", "fon", "fou", "foc", "fcs", "fcn", "fcu", "fcc", "fls", "fln", "flu", "flc",
                "fte", "ftu"),
    "wallet": ("ws", "wu"),
    "balance": ("bu", "miu", "fiu"),
    "notify": ("n",),
}
_CATEGORY_OF = {tag: name for name, tags in _CATEGORIES.items() for tag in tags}
_SNAPSHOTS = ("os", "ps", "ws", "fos", "fcs", "fls")


def _item_symbol(tag: str, item: Sequence[Any]) -> str | None:
    """The symbol (trading, funding) or ``type-CCY`` (wallet) a filter suffix is matched to."""
    if tag in ("ws", "wu"):
        return f"{item[0]}-{item[1]}"
    if tag[0] in "op":  # orders carry the symbol at 3, positions at 0
        return str(item[3] if tag[0] == "o" else item[0])
    if tag in ("te", "tu") or tag[0] == "f":
        return str(item[1])
    return None


@attrs.frozen
class ChannelFilter:
    """The ``filter`` of an auth request: which channel-0 frames this connection gets.

    ``names`` None means everything (no filter sent). Granular names (``trading-tBTCUSD``,
    ``funding-fUSD``, ``wallet-exchange-BTC``) admit only that symbol or wallet of their
    category; ``algo`` is accepted and has no effect (there are no algorithmic orders).
    """

    names: frozenset[str] | None = None

    @classmethod
    def parse(cls, raw: Any) -> ChannelFilter:
        """From the request's ``filter`` value; anything but a list of strings means no filter."""
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            return cls(None)
        return cls(frozenset(raw))

    def _allows_item(self, category: str, tag: str, item: Any) -> bool:
        names = self.names
        if names is None or category in names:
            return True
        prefix = category + "-"
        granular = [n[len(prefix):] for n in names if n.startswith(prefix)]
        if not granular or not isinstance(item, list):
            return False
        return _item_symbol(tag, item) in granular

    def apply(self, tag: str, payload: Any) -> Any | None:
        """``payload`` as this connection may see it, or None if it gets no frame at all.

        Snapshots keep only the admitted entries (an empty snapshot still goes out when
        the category is admitted at all). Tags outside every category always pass.
        """
        category = _CATEGORY_OF.get(tag)
        if category is None or self.names is None or category in self.names:
            return payload
        if not any(n.startswith(category + "-") for n in self.names):
            return None
        if tag in _SNAPSHOTS:
            return [item for item in payload if self._allows_item(category, tag, item)]
        return payload if self._allows_item(category, tag, payload) else None
