"""The emulator's control API for the authenticated half: account state and trading faults.

A base class of ``Emulator``, like :class:`~bfxsync.emulator.faults.FaultControls`. Every
method is thread-safe and returns at once.
"""
from __future__ import annotations

from .account_streams import ReceivedInput
from .accounts import EmulatorAccountSnapshot
from .hub import Hub

__all__ = ["TradingControls"]


class TradingControls:
    """Account inspection and trading faults: refused auth, slow or lost inputs, sequence gaps."""

    _hub: Hub  # set by Emulator.__init__

    def account(self, key: str) -> EmulatorAccountSnapshot:
        """A copy of the account of API key ``key``: wallets, open orders, positions, offers.

        Raises:
            KeyError: no account has that key.
        """
        return self._hub.trading.snapshot(key)

    def received_inputs(self, key: str | None = None) -> list[ReceivedInput]:
        """The channel-0 inputs received so far (of connections authenticated as ``key``), oldest first.

        Each is recorded when it arrives, before ``set_input_delay`` or ``drop_after_next_input``
        act on it, so an input lost to a fault is listed too. The newest 10,000 are kept.
        """
        with self._hub.trading.lock:
            return [r for r in self._hub.trading.received if key is None or r.key == key]

    def authenticated_connections(self, key: str | None = None) -> list[int]:
        """IDs of the connections authenticated (as ``key``, or as anyone), oldest first."""
        return self._hub.trading.linked(key)

    def wait_for_authenticated(self, n: int, key: str | None = None, timeout: float = 5.0) -> bool:
        """Wait until exactly ``n`` connections are authenticated (as ``key``); False on timeout.

        A connection stops counting once its handler has ended, after the dead-man switch
        (if it asked for one) has cancelled its account's orders.
        """
        return self._hub.wait_until(lambda: len(self._hub.trading.linked(key)) == n, timeout)

    def reject_auth(self, code: int | None = 10100, msg: str | None = None) -> None:
        """Answer every ``auth`` with ``{"event":"auth","status":"FAILED","code":code,...}``; None restores.

        ``msg`` defaults to the usual text of the code (10100 ``apikey: invalid``, 10114
        ``nonce: small``, ...). Refused requests do not consume their nonce.
        """
        trading = self._hub.trading
        trading.auth_rejection = None if code is None else trading.rejection(code, msg)

    def set_input_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before applying each channel-0 input, on every connection (0 restores).

        Inputs of one connection stay in order; the wait ends early if the connection ends.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, not {seconds}")
        self._hub.trading.input_delay = seconds

    def drop_after_next_input(self, applied: bool = False, conn: int | None = None) -> None:
        """Drop (1006, no close frame) the connection sending the next order input.

        Order inputs are on, ou, oc, oc_multi, ox_multi, fon and foc (not calc or n). With
        ``applied=False`` the input is lost; with ``applied=True`` it is carried out first,
        and its frames reach only the account's other connections. ``conn`` limits it to one
        connection's inputs. It fires once; a dead-man switch then acts as on any drop.
        """
        self._hub.trading.drop_next_input = (applied, conn)

    def skip_account_sequence(self, conn: int | None = None, count: int = 1) -> None:
        """Make the next account sequence number (the last element of SEQ_ALL channel-0 frames) jump.

        Acts on each authenticated connection (or only ``conn``); the public sequence
        number is unaffected.
        """
        self._hub.trading.skip_sequence(conn, count)
