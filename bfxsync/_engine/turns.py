"""Turns between the readers of one process, so that busy connections do not starve a quiet one.

Every connection reads on a thread of its own, and all of them share the GIL. CPython hands
the GIL to a waiting thread in one of two ways: the holder releases it and the waiter, woken
by that, takes it before anyone else does; or the waiter has waited a whole switch interval
(``sys.getswitchinterval()``, 5 ms by default) with no other thread taking it meanwhile, and
asks the holder to drop it. A reader with a backlog releases the GIL at every ``recv`` and
takes it straight back (the data is already there), so the waiter it woke finds it taken and
starts a fresh wait. A quiet connection (an account, a ticker) beside one saturating
connection waited 3-4 ms at the median for each message, and beside five, 40-50 ms.

So a reader with a backlog (its reads fill the buffer) gives a turn (:func:`give_turn`)
when another reader of the process keeps up (its last read did not fill its buffer: it is
blocked in ``recv`` or has just a few messages), which leaves the GIL free long enough for
a woken thread to take it. Then it reads on for :data:`TURN` before the next turn. Readers
that share one CPU (:mod:`~bfxsync._engine.cpu_sharing`) give it by yielding the CPU,
others by a sleep of :data:`PAUSE`. A reader alone never gives one, so one connection keeps
all of its throughput; neither do readers that all have a backlog, which share the GIL as
equals anyway (and read wider batches meanwhile: see
:class:`~bfxsync._engine.transport.WebSocketAppTransport`).
"""
from __future__ import annotations

import os
import sys
import threading
import time

#: Seconds a reader with a backlog reads between two pauses (its batches, at most
#: WebSocketAppTransport.read_size bytes, take a fraction of this).
TURN = 0.0005
#: Seconds of a pause: enough for a thread woken on another core to take the GIL (Linux
#: sleeps at least this plus its 50 µs of timer slack).
PAUSE = 0.00002

#: ``os.sched_yield`` releases the GIL for the call from Python 3.10 on; on 3.9 it holds it,
#: and the thread it gives the CPU to could not take the GIL (there a turn is the sleep).
YIELD_RELEASES_GIL = sys.version_info >= (3, 10) and hasattr(os, "sched_yield")

_FREE, _KEEPING_UP, _BACKLOG = 0, 1, 2


def give_turn(one_cpu: bool) -> None:
    """Reader thread: let a reader that waits for the GIL take it.

    Readers that share one CPU (``one_cpu``, see :mod:`~bfxsync._engine.cpu_sharing`): a
    reader woken for data waits for this CPU, so yielding the CPU with the GIL released runs
    it at once, and costs a microsecond when nobody waits (Python 3.10 and later:
    :data:`YIELD_RELEASES_GIL`). Elsewhere the waiter runs on
    another core, and a sleep of :data:`PAUSE` leaves the GIL free long enough for it to
    take it. In interleaved runs (``bench/many_connections.py``) the yield took the p99 of a
    quiet stream beside five saturating connections from 7.2 to 4.6 ms and from 6.4 to 4.2 ms;
    throughput stayed within the spread of the rounds.
    """
    if one_cpu and YIELD_RELEASES_GIL:
        os.sched_yield()
    else:
        time.sleep(PAUSE)


class Readers:
    """One slot per running reader, saying whether it has a backlog.

    Ownership: a reader thread writes only its own slot (:meth:`mark`); slots are handed out
    and given back under a lock (:meth:`enter`, :meth:`leave`). :meth:`others_keep_up`
    reads the slots without the lock: a stale answer costs one pause, or one turn not given.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots = bytearray()

    def enter(self) -> int:
        """Reader thread: a reader starts; returns its slot."""
        with self._lock:
            slot = self._slots.find(_FREE)
            if slot < 0:
                slot = len(self._slots)
                self._slots.append(_KEEPING_UP)
            else:
                self._slots[slot] = _KEEPING_UP
            return slot

    def leave(self, slot: int) -> None:
        """Reader thread: the reader of ``slot`` ended."""
        with self._lock:
            self._slots[slot] = _FREE

    def mark(self, slot: int, backlog: bool) -> None:
        """Reader thread: whether the reader of ``slot`` has a backlog now."""
        self._slots[slot] = _BACKLOG if backlog else _KEEPING_UP

    def others_keep_up(self) -> bool:
        """True when some other reader has no backlog (the caller has one): it may wait for the GIL."""
        return _KEEPING_UP in self._slots


#: The process's readers (every WebSocketAppTransport's batch reader).
READERS = Readers()
