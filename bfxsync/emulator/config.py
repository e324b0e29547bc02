"""Emulator settings (a frozen attrs class) and the synthetic instruments it knows."""
from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import attrs

from bfxsync.protocol import is_funding

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEMO_KEY",
    "DEMO_SECRET",
    "DEFAULT_SYMBOLS",
    "EmulatorAccount",
    "EmulatorConfig",
    "SubscribeReply",
    "SymbolSpec",
    "UnsubscribeReply",
    "is_well_formed_symbol",
    "symbol_spec",
]

#: Wallet types of the exchange (docs: ws-auth-wallets).
WALLET_TYPES = ("exchange", "margin", "funding")
WalletKey = tuple[str, str]  # (wallet type, currency), e.g. ("exchange", "USD")

#: How the emulator answers ``subscribe`` (see ``Emulator.set_subscribe_reply``).
SubscribeReply = Literal["ok", "none"]
#: How the emulator answers ``unsubscribe`` (see ``Emulator.set_unsubscribe_reply``).
UnsubscribeReply = Literal["ok", "none", "error_no_chanid"]

#: Symbols served by default; anything else is answered with ``symbol: invalid``.
DEFAULT_SYMBOLS: tuple[str, ...] = (
    "tBTCUSD",
    "tETHUSD",
    "tLTCBTC",
    "tSHIB:USD",
    "tBTCF0:USTF0",
    "tETHF0:USTF0",
    "fUSD",
    "fBTC",
)


@attrs.frozen
class SymbolSpec:
    """How to synthesise one instrument.

    ``base`` is the starting mid price (rate for funding), ``tick`` the grid new orders are
    placed on (one P0 step or a multiple), ``size`` the typical order amount.
    """

    base: Decimal
    tick: Decimal
    size: Decimal


# The values are chosen so the wire regularly carries the numbers that break naive
# checksum code (docs: ws-websocket-checksum): integer prices (tBTCUSD: 30000, 29999), prices and rates below
# 1e-5 in fixed notation (tSHIB:USD 0.0000082013), rates below 1e-6 that JavaScript writes
# in exponent notation (fBTC 9.9e-7), and tiny amounts (1e-8, 0.0000082, see market.py).
_SPECS = {
    "tBTCUSD": SymbolSpec(Decimal(30000), Decimal(1), Decimal(1)),
    "tETHUSD": SymbolSpec(Decimal(2000), Decimal("0.1"), Decimal(10)),
    "tLTCBTC": SymbolSpec(Decimal("0.0025"), Decimal("0.0000001"), Decimal(50)),
    "tSHIB:USD": SymbolSpec(Decimal("0.0000082"), Decimal("0.0000000001"), Decimal(100000)),
    "tBTCF0:USTF0": SymbolSpec(Decimal(30010), Decimal(1), Decimal(1)),
    "tETHF0:USTF0": SymbolSpec(Decimal(2001), Decimal("0.1"), Decimal(10)),
    "fUSD": SymbolSpec(Decimal("0.0002"), Decimal("0.00000001"), Decimal(10000)),
    "fBTC": SymbolSpec(Decimal("0.00000105"), Decimal("0.000000001"), Decimal(5)),
}


def symbol_spec(symbol: str) -> SymbolSpec:
    """The spec of a configured symbol; unknown ones get a generic instrument."""
    spec = _SPECS.get(symbol)
    if spec is not None:
        return spec
    if is_funding(symbol):
        return SymbolSpec(Decimal("0.0001"), Decimal("0.00000001"), Decimal(1000))
    return SymbolSpec(Decimal(100), Decimal("0.01"), Decimal(10))


# Upper-case letters and digits after the prefix, one optional colon for long names
# (tSHIB:USD, tBTCF0:USTF0), as the docs (ws-general) spell them. Funding currencies have no colon.
_SYMBOL = re.compile(r"t[A-Z0-9]{3,}(:[A-Z0-9]{2,})?|f[A-Z0-9]{2,}")


def is_well_formed_symbol(symbol: object) -> bool:
    """Whether ``symbol`` looks like a Bitfinex symbol (``tBTCUSD``, ``tBTCF0:USTF0``, ``fUSD``).

    This is the test ``EmulatorConfig.any_symbol`` applies before creating a market.
    """
    return isinstance(symbol, str) and _SYMBOL.fullmatch(symbol) is not None


def _wallets(value: Any) -> tuple[tuple[WalletKey, Decimal], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    wallets: dict[WalletKey, Decimal] = {}
    for key, amount in items:
        wallet_type, currency = key
        if wallet_type not in WALLET_TYPES:
            raise ValueError(f"wallet type must be one of {', '.join(WALLET_TYPES)}, not {wallet_type!r}")
        if not isinstance(currency, str) or not currency or not currency.isupper():
            raise ValueError(f"currency must be upper case, like 'USD', not {currency!r}")
        if isinstance(amount, float):
            amount = repr(amount)  # 0.1 means 0.1, not 0.1000000000000000055511151231257827
        balance = Decimal(amount)
        if not balance.is_finite() or balance < 0:
            raise ValueError(f"wallet balance must be a finite amount >= 0, not {amount!r}")
        wallets[(wallet_type, currency)] = balance
    return tuple(wallets.items())


@attrs.frozen
class EmulatorAccount:
    """One emulated API key: its secret and starting wallets.

    ``wallets`` maps ``(wallet type, currency)`` to a starting balance (a decimal string, an
    int or a Decimal); it is stored as a tuple of pairs so the account stays hashable::

        EmulatorAccount("my-key", "my-secret", wallets={("exchange", "USD"): "10000",
                                                ("exchange", "BTC"): "1"})

    ``user_id`` is what ``auth`` answers as ``userId`` (default: derived from the key).
    """

    key: str = attrs.field(validator=attrs.validators.min_len(1))
    secret: str = attrs.field(validator=attrs.validators.min_len(1), repr=False)
    wallets: tuple[tuple[WalletKey, Decimal], ...] = attrs.field(default=(), converter=_wallets)
    user_id: int | None = None

    def starting_wallets(self) -> dict[WalletKey, Decimal]:
        """The starting balances as a dict."""
        return dict(self.wallets)


#: The demo account's API key and secret: the CLI and the examples trade offline with them.
DEMO_KEY = "demo-key"
DEMO_SECRET = "demo-secret"
#: ``EmulatorConfig.accounts`` by default: the demo account alone.
DEFAULT_ACCOUNTS: tuple[EmulatorAccount, ...] = (
    EmulatorAccount(DEMO_KEY, DEMO_SECRET, user_id=1000001, wallets={
        ("exchange", "USD"): "100000", ("exchange", "BTC"): "2", ("exchange", "ETH"): "20",
        ("margin", "USD"): "50000", ("margin", "USTF0"): "50000", ("funding", "USD"): "20000",
    }),
)


def _check_accounts(instance: object, attribute: attrs.Attribute[Any], value: tuple[EmulatorAccount, ...]) -> None:
    keys = [a.key for a in value]
    if not all(isinstance(a, EmulatorAccount) for a in value):
        raise TypeError("accounts must be Account instances")
    if len(set(keys)) != len(keys):
        raise ValueError("two accounts share an API key")


def _check_fee(instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if not value.is_finite() or not Decimal(0) <= value < Decimal(1):
        raise ValueError(f"{attribute.name} must be a rate in [0, 1), not {value}")


def _check_symbols(instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    for symbol in value:
        if not isinstance(symbol, str) or len(symbol) < 2 or symbol[0] not in "tf":
            raise ValueError(f"symbols must start with 't' (trading) or 'f' (funding): {symbol!r}")


def _check_limit(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"connect_limit must be a positive int or None, not {value!r}")


@attrs.frozen(kw_only=True)
class EmulatorConfig:
    """Everything an :class:`~bfxsync.emulator.Emulator` can be told at construction.

    Attributes:
        host, port: where to listen; port 0 picks a free port (read it from ``Emulator.port``).
        seed: market data seed; the same seed gives the same sequence of ticks.
        rate: market ticks per second; 0 disables the market thread (drive it with ``step``).
        heartbeat_interval: seconds without traffic on a channel before ``[CHAN_ID,"hb"]``.
        f1_interval: seconds between update batches of ``freq: F1`` books.
        status_interval: seconds between ``status`` frames (converted to ticks).
        max_subscriptions: per connection; one more gets 10305 ``subscribe: limit``.
        symbols: the known symbols (``t`` trading, ``f`` funding). The default,
            :data:`DEFAULT_SYMBOLS`, is ``tBTCUSD``, ``tETHUSD``, ``tLTCBTC``, ``tSHIB:USD``,
            ``tBTCF0:USTF0``, ``tETHF0:USTF0`` (perpetuals, with ``deriv:`` status),
            ``fUSD`` and ``fBTC``. A subscribe naming another symbol gets 10300
            ``symbol: invalid``, unless ``any_symbol`` is set.
        any_symbol: create a market on the fly for any well-formed symbol a client subscribes
            to (see :func:`is_well_formed_symbol`) instead of answering ``symbol: invalid``.
            Its data is seeded from ``seed`` and the symbol, so it is the same on every run.
        version, platform_status: what the ``info`` frame on connect says.
        certfile, keyfile, ssl_context: serve ``wss://`` (give a cert/key pair or a context).
        path: the path put in ``url`` (any path is served).
        book_depth: orders (offers) kept per book side.
        close_timeout: seconds a graceful close waits for the client's close frame.
        max_pending_frames: frames queued for one connection before it is dropped as too slow.
        connect_limit, connect_window: at most ``connect_limit`` handshakes per client IP
            within any ``connect_window`` seconds; past that the upgrade is refused with HTTP
            429, as api-pub does past 20 per minute (docs: ws-public). Only admitted handshakes
            count, so a client retrying while refused gets in once its oldest admitted
            handshake is ``connect_window`` old. None disables the limit.
        accounts: the API keys that ``auth`` accepts, with their starting wallets. The
            default is the demo account (key :data:`DEMO_KEY`, secret :data:`DEMO_SECRET`;
            100000 USD, 2 BTC and 20 ETH on exchange, 50000 USD and USTF0 on margin,
            20000 USD funding). Pass ``()`` to reject every key.
        maker_fee, taker_fee: fee rates charged on account fills (default 0 and 0.001, i.e.
            0.1% taker). Exchange buys pay the fee in the currency bought, sells in the
            currency received; margin and derivative fills in the quote currency.
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    rate: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    heartbeat_interval: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))
    f1_interval: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    status_interval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    max_subscriptions: int = attrs.field(default=25, validator=attrs.validators.ge(0))
    symbols: tuple[str, ...] = attrs.field(default=DEFAULT_SYMBOLS, converter=tuple, validator=_check_symbols)
    any_symbol: bool = False
    version: int = 2
    platform_status: int = 1
    certfile: str | None = None
    keyfile: str | None = None
    ssl_context: ssl.SSLContext | None = None
    path: str = "/ws/2"
    book_depth: int = attrs.field(default=200, validator=attrs.validators.ge(30))
    close_timeout: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    max_pending_frames: int = attrs.field(default=10_000, validator=attrs.validators.ge(1))
    connect_limit: int | None = attrs.field(default=20, validator=_check_limit)
    connect_window: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    accounts: tuple[EmulatorAccount, ...] = attrs.field(default=DEFAULT_ACCOUNTS, converter=tuple,
                                                validator=_check_accounts)
    maker_fee: Decimal = attrs.field(default=Decimal(0), converter=Decimal, validator=_check_fee)
    taker_fee: Decimal = attrs.field(default=Decimal("0.001"), converter=Decimal, validator=_check_fee)

    def make_ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or None for plain ``ws://``."""
        if self.ssl_context is not None:
            return self.ssl_context
        if self.certfile is None:
            if self.keyfile is not None:
                raise ValueError("keyfile given without certfile")
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context
