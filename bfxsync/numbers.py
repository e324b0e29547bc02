"""Numbers: what you read is what you can send (the number policy of bfxsync, in one place).

**Reading.** Market data models (:class:`~bfxsync.Ticker`, :class:`~bfxsync.Trade`,
:class:`~bfxsync.Candle`, book levels, ...) hold ``float``; account models (orders, wallets,
positions, your trades) hold :class:`decimal.Decimal`. The exchange writes every number as the
shortest text that reads back as the same double, which is what Python's ``repr`` prints too,
so a market-data float *is* the server's text: ``repr(book.best_bid().price)`` is the price
as the server sent it (``1e-07`` and ``1e-7`` aside, which are the same number).

**Sending.** Order entry (``submit_order``, ``update_order``, ``submit_funding_offer``,
``order_multi_op`` and the builders of :mod:`bfxsync.account.inputs`) takes ``int``,
``float``, ``str`` or ``Decimal`` for every amount, price and rate, converted by
:func:`to_decimal`:

- a ``float`` is taken by its shortest ``repr``: a price read from a book, a ticker or a
  trade goes out exactly as the server wrote it, and the order reported back carries it
  unchanged. A float you *computed* goes out as Python shows it: ``0.1 + 0.2`` is sent as
  ``0.30000000000000004``, so round it (``round(x, 8)``) or compute in ``Decimal``;
- a ``str`` is read as decimal text (``"0.001"``, ``"3e4"``), a ``Decimal`` or ``int`` as is;
- NaN, infinities, ``bool`` (``True`` is an ``int`` to Python, but a boolean amount is a
  bug) and every other type are refused with a ``ValueError`` naming the argument, before
  anything is sent; so are texts over 64 characters, Decimals of over 64 digits, integers
  of over 256 bits and exponents beyond +-400 (an absurd number costs no more than a sane one).

What goes on the wire is plain decimal text, no exponent, no trailing zeros
(``3E+4`` -> ``"30000"``, ``1e-07`` -> ``"0.0000001"``): :func:`plain` makes it. Money is
never rounded and never passes through binary floating point on the way out.

**Comparing.** An order's ``price`` is a ``Decimal``; ``Decimal`` compares with a ``float``
by the float's binary value, so compare through this module:
``order.price == to_decimal(bid.price)`` (or ``float(order.price) == bid.price``).

**Arithmetic the library exposes.** :meth:`OrderBook.spread() <bfxsync.orderbook.OrderBook.spread>`
and :meth:`~bfxsync.orderbook.OrderBook.mid` are computed in decimal from the server's text of
the two best prices and returned as the nearest ``float``: for 30000.1 / 30000.3 the spread
is exactly ``0.2`` and the mid ``30000.2``, not ``0.1999999999998181``.

**Printing.** ``f"{x:g}"`` keeps six digits and switches to exponents (``-8.2e-06``);
``str(Decimal)`` does too for small values (``1E-7``). :func:`plain` prints any of these
numbers exactly, without exponent: ``plain(-8.2e-06) == "-0.0000082"``.

Pure: no I/O, no threads.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Union

from .protocol.constants import MAX_EXPONENT, MAX_NUMBER_TEXT

__all__ = ["MAX_INT_BITS", "Number", "plain", "to_decimal"]

#: What order entry accepts for an amount, price or rate.
Number = Union[int, float, str, Decimal]
#: Largest integer accepted, in bits (about 77 digits; far beyond any amount or price).
MAX_INT_BITS = 256


def to_decimal(value: Number, name: str = "value") -> Decimal:
    """``value`` as an exact, finite :class:`~decimal.Decimal` (a ``float`` through its shortest ``repr``).

    Args:
        value: an ``int``, ``float``, ``str`` (decimal text, surrounding spaces allowed) or ``Decimal``.
        name: the argument's name, for the error message.

    Raises:
        ValueError: ``value`` is a ``bool``, another type, NaN, infinite, not decimal text, or out
            of bounds (see the module docstring); the message names ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        kind = "a bool (a boolean amount is a bug)" if isinstance(value, bool) else f"{type(value).__name__} {value!r:.50}"
        raise ValueError(f"{name} must be a number (int, float, str or Decimal), got {kind}")
    # Every bound is checked before the conversion, so an absurd argument costs no more than a sane one.
    if isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
        raise ValueError(f"{name} is {len(value)} characters long (at most {MAX_NUMBER_TEXT}): {value:.30}...")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ValueError(f"{name} is out of range: a {value.bit_length()}-bit integer (at most {MAX_INT_BITS})")
    try:
        if isinstance(value, float):
            # float.__repr__, not repr(): a float subclass (numpy.float64) may decorate its repr.
            number = Decimal(float.__repr__(value))
        else:
            number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} is not a decimal number: {value!r:.50}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite (not NaN or an infinity), got {value!r:.50}")
    if not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
        raise ValueError(f"{name} has an exponent out of range (|e| <= {MAX_EXPONENT}): {value!r:.50}")
    if isinstance(value, Decimal) and len(number.as_tuple().digits) > MAX_NUMBER_TEXT:
        raise ValueError(f"{name} has {len(number.as_tuple().digits)} digits (at most {MAX_NUMBER_TEXT}): {value!r:.50}")
    return number


def plain(value: Number) -> str:
    """The exact decimal text of a number without exponent or trailing zeros, as sent on the wire.

    ``plain(3e4) == "30000"``, ``plain(Decimal("0.00100")) == "0.001"``, ``plain(-8.2e-06) ==
    "-0.0000082"``, ``plain(0.1 + 0.2) == "0.30000000000000004"``. Accepts what :func:`to_decimal`
    accepts and raises what it raises.
    """
    text = format(to_decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text

