"""BookSubscription: a ``book`` subscription that keeps a verified local order book.

The book is rebuilt from every snapshot and checked against every ``cs`` frame
(https://docs.bitfinex.com/docs/ws-websocket-checksum). On a mismatch (or a malformed
update) the handle clears the book and returns a verdict; the link that carries it then
resubscribes that one channel, with back-off if it keeps failing. Methods starting with
``_on`` run on the reader thread, except the transitions of :mod:`.base`.

The book has one writer at a time: every write (a snapshot or update from the reader,
an invalidation from a resync on the scheduler thread, a close from a user thread)
happens under the carrying link's lock, so the book's sequence lock, which assumes one
writer, always sees whole writes. The reader takes the bare lock around the write only,
and delivers to callbacks after releasing it.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Mapping, Optional, Tuple

import attrs

from .._engine.ownership import check
from .._engine.threads import wait_event as wait
from ..errors import BfxTimeoutError, ChecksumMismatchError, ProtocolError, SubscriptionError
from ..events import BookSynced, ChecksumMismatch
from ..orderbook import BookSnapshot, Level, OrderBook
from ..protocol import FLAG_BULK_UPDATES
from ..protocol.checksum import same_checksum
from ..specs import BookSpec
from .base import Owner, State, Subscription

logger = logging.getLogger(__name__)


class BookSubscription(Subscription):
    """``book``: keeps a local :class:`OrderBook`, verified against every ``cs`` checksum.

    On a mismatch the book is dropped and rebuilt from a fresh snapshot (unsubscribe,
    wait for ``unsubscribed``, subscribe again) without any action from the user; a
    book that keeps failing is rebuilt with growing pauses.
    Messages carry the levels of each snapshot or update; read the book itself for state.

    Attributes:
        book: the local book (safe to read from any thread).
        checks_passed: checksums that matched.
        checks_failed: checksums that did not.
        resyncs: times the book was rebuilt after a mismatch or a bad frame.
    """

    spec: BookSpec

    def __init__(self, spec: BookSpec, owner: Owner) -> None:
        super().__init__(spec, owner)
        self.book = OrderBook(spec.symbol, spec.prec)
        self._synced = threading.Event()
        self._level = self.book.level
        self.checks_passed = 0
        self.checks_failed = 0
        self.resyncs = 0
        self.checks_skipped = 0
        self._was_synced = False  # reader thread only
        self._mismatch_logged = False

    def wait_synced(self, timeout: float = 10.0) -> "BookSubscription":
        """Block until the book holds a fresh snapshot, and return ``self``.

        Raises:
            SubscriptionError: the subscription was rejected.
            SubscriptionClosedError: it was unsubscribed meanwhile.
            BfxTimeoutError: not synced within ``timeout`` seconds (the message names the
                last connection failure, if any).
            NotConnectedError: the client ended meanwhile.
            CallbackThreadError: called from a callback.
        """
        self._owner.refuse_wait("wait_synced")
        if not wait(self._synced, timeout):
            if self._error is not None:
                raise self._error
            raise BfxTimeoutError(f"book {self.spec!r} not synced within {timeout:g} s{self._owner.failure_hint()}")
        if self._state is State.CLOSED or not self.book.synced:  # woken by a rejection, an unsubscribe or close()
            self._raise_if_over()
        return self

    @property
    def synced(self) -> bool:
        """True while the book holds a snapshot plus every update since."""
        return self.book.synced

    # Read API, forwarded so scripts can use the handle as the book.
    def best_bid(self) -> Optional[Level]:
        """The best bid (see :meth:`OrderBook.best_bid`)."""
        return self.book.best_bid()

    def best_ask(self) -> Optional[Level]:
        """The best ask (see :meth:`OrderBook.best_ask`)."""
        return self.book.best_ask()

    def spread(self) -> Optional[float]:
        """Best ask minus best bid."""
        return self.book.spread()

    def mid(self) -> Optional[float]:
        """Midpoint of best bid and ask."""
        return self.book.mid()

    def top(self, n: int = 10) -> Tuple[Tuple[Level, ...], Tuple[Level, ...]]:
        """The best ``n`` bids and asks."""
        return self.book.top(n)

    def snapshot(self) -> BookSnapshot:
        """A consistent copy of the book with its checksum."""
        return self.book.snapshot()

    def checksum(self) -> int:
        """The book's current checksum."""
        return self.book.checksum()

    def counters(self) -> Mapping[str, int]:
        """Checksum results and rebuilds, added up by ``Client.stats()``."""
        return {"checks_passed": self.checks_passed, "checks_failed": self.checks_failed, "resyncs": self.resyncs}

    def _conflate(self, message: Any, conflated: int) -> Any:
        """Callback thread, ``latest``: the current book (if synced) in place of the superseded messages.

        Book levels are absolute states, so an update that arrives after this and which
        the copy already reflects changes nothing when applied again.
        """
        snap = self.book.snapshot()
        if not snap.synced:  # dropped for a resync: the newest message, until the fresh snapshot comes
            return attrs.evolve(message, conflated=conflated)
        return attrs.evolve(message, items=snap.bids + snap.asks, snapshot=True, conflated=conflated)

    # -- reader thread ----------------------------------------------------------------

    def _on_detached(self) -> None:
        super()._on_detached()
        self._expect_snapshot = False  # a snapshot still in flight for the old channel must not apply
        self._synced.clear()
        self.book.invalidate()

    def _on_stale(self) -> None:
        """Maintenance began: keep the rows for reference, but the book is no longer synced."""
        super()._on_stale()
        self._synced.clear()
        self.book.invalidate()

    def _on_failed(self, error: SubscriptionError) -> None:
        super()._on_failed(error)
        self._synced.set()  # wake wait_synced(), which raises the error

    def _on_unsubscribing(self) -> None:
        super()._on_unsubscribing()
        self._synced.set()  # wake wait_synced(), which raises

    def _on_closed(self) -> bool:
        first = super()._on_closed()
        self.book.invalidate()
        self._synced.set()  # wake wait_synced(), which raises
        return first

    def _wake(self) -> None:
        super()._wake()
        self._synced.set()

    def _on_payload(self, payload: Any, tag: Optional[str], seq: Optional[int], mts: Optional[int],
                    flags: int) -> None:
        if tag is not None:  # book data is never tagged: "te" or an unknown tag is no level
            self._foreign_tag(tag)
            return
        # The bare RLock of the link (C-level acquire and release, this is the hot path): the
        # write must not interleave with an invalidation from another thread. Nothing in
        # the block runs user code or checks ownership. A channel detached since the reader
        # looked it up has an invalid book and expects no snapshot (see _on_detached), so
        # its frame changes nothing.
        lock = self._guard.raw
        lock.acquire()
        try:
            if self._expect_snapshot:
                # The first payload after each ack is the snapshot even when it looks like a
                # bulk update or is empty (BULK_UPDATES makes both shapes alike).
                entries: Any = self.book.apply_snapshot(payload)
                self._expect_snapshot = False
                self._mismatch_logged = False
                self._synced.set()
                snapshot = True
            elif not self.book.synced:
                return  # dropped after a mismatch or stale in maintenance: waiting for a fresh snapshot
            elif payload and type(payload[0]) is list:
                # A batch is legal only once BULK_UPDATES is in force; otherwise a second
                # snapshot-shaped payload breaks the protocol, and merging it would keep stale
                # levels it does not mention. Either way the batch applies all or nothing.
                if not flags & FLAG_BULK_UPDATES:
                    raise ProtocolError(f"snapshot-shaped payload after the snapshot, without BULK_UPDATES: "
                                        f"{payload!r:.200}")
                entries = self.book.apply_updates(payload)
                snapshot = False
            else:
                entries = (self.book.apply_update(payload),)
                snapshot = False
        finally:
            lock.release()
        if snapshot:
            self._owner.callbacks.emit("book_synced", BookSynced(self, self._was_synced))
            self._was_synced = True
        self._deliver(entries, snapshot, tag, seq, mts, self._level)

    def _on_checksum(self, value: int) -> Optional[str]:
        with self._guard.raw:  # see _on_payload
            if not self.book.synced:
                if self._expect_snapshot:  # a cs between the ack and the snapshot breaks the protocol
                    problem = True
                else:  # stale in maintenance, or dropped and waiting for the resync: nothing to check
                    problem = False
                    self.checks_skipped += 1
            else:
                problem = None
                local = self.book.checksum_from_writer()
                if same_checksum(value, local):
                    self.checks_passed += 1
                    return None
                self.checks_failed += 1
                resync = not self.book.is_funding or self._owner.config.verify_funding_checksums
                if resync:
                    self._drop_book()
        if problem is not None:
            if problem:
                self._owner.problem("checksum_unsynced", f"cs frame for {self.spec!r} before its snapshot")
            return None
        # Logged-only funding books would repeat the warning on every cs: warn once per snapshot.
        level = logging.WARNING if resync or not self._mismatch_logged else logging.DEBUG
        self._mismatch_logged = True
        logger.log(
            level, "checksum mismatch on %s %s: server %d, local %d%s", self.spec.symbol, self.spec.prec,
            value, local, "" if resync else " (funding book: logged only, see Config.verify_funding_checksums)",
        )
        callbacks = self._owner.callbacks
        callbacks.emit("checksum", ChecksumMismatch(self, value, local, resync))
        callbacks.report(ChecksumMismatchError(self.spec.symbol, value, local), self)
        return "checksum mismatch" if resync else None

    def _on_bad_data(self, error: Exception) -> Optional[str]:
        """A rejected snapshot or update means the book lost data: drop it and ask the link to resubscribe.

        The rejected payload itself never touched the book (rows are validated before any
        is applied), but the server's stream now has a hole, so only a fresh snapshot is sure.
        """
        with self._guard.raw:  # see _on_payload
            self._drop_book()
        return f"bad update: {error}"

    def _drop_book(self) -> None:
        """Clear the book for a resync (the link's lock is held)."""
        check(self._guard, "BookSubscription.book")
        self.resyncs += 1
        self._synced.clear()
        self.book.invalidate(clear=True)
