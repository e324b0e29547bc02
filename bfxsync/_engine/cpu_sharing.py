"""The readers of one process share one CPU once there are two or more of them.

Only one thread of a process runs Python at a time (the GIL), so readers on several cores do
not parse in parallel: they hand the GIL to each other, and every hand-off to a thread on
another core is a cross-core wake-up, often a migration as well. With 20 connections at
2,000 messages/s each (``bench/many_connections.py``, case 20x2k) the process made 50,800
context switches and 23,000 migrations a second for 38,000 messages; a third of its CPU time
was the kernel switching tasks and waking threads (``perf record``), and a quiet connection
beside them waited 10 ms at the 99th percentile. On one CPU a reader woken for data runs as
soon as the GIL's holder blocks in its next read, on the same core: in interleaved runs the
quiet connection's p50/p99 went from 0.9/8.2 ms to 0.06/0.6 ms, and 20 saturating
connections read 1.37 times as much (as much as one connection does).

A reader with a backlog on the shared CPU runs as ``SCHED_BATCH`` (:class:`ReaderPolicy`):
Linux never lets a batch thread that wakes preempt the one running. Every read releases the
GIL, and a woken reader that preempted the running one took the GIL there: 20 readers with
a backlog handed it over after nearly every batch, each time with a context switch (7,072
in a 20-connection run of ``bench/many_connections.py``'s throughput scenario; 2,504 with
batch threads and wide reads, see :class:`~bfxsync._engine.transport.WebSocketAppTransport`).
A reader that keeps up (an account, a ticker) stays a normal thread, so it still preempts a
busy one as soon as its data arrives; made batch threads as well, order events next to five
saturating connections came later at the 99th percentile (35-40 ms against 20-21 ms).

A lone reader is never pinned: it hands the GIL to nobody, and the kernel may run it where
it likes. When the second-to-last reader leaves, the last one gets its own affinity back.
A thread started by a pinned reader (a callback thread, or one a callback starts) inherits
the pin, and the batch policy while that reader has a backlog, as Linux does for every new
thread.
The CPU is ``Config.reader_cpu``: by default the highest-numbered one the process may run
on (CPU 0 takes most device interrupts on many machines). Nothing is pinned without
``os.sched_setaffinity`` (it is Linux's), on a process allowed a single CPU, or without a
GIL (a free-threaded build, where readers do run in parallel).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Dict, Optional, Set, Union

logger = logging.getLogger("bfxsync")

#: ``Config.reader_cpu``'s default: the highest-numbered CPU the process may run on.
AUTO = "auto"

#: What ``Config.reader_cpu`` takes: ``"auto"``, a CPU number, or None (never pin).
CPUSetting = Union[str, int, None]


def _gil_enabled() -> bool:
    enabled = getattr(sys, "_is_gil_enabled", None)  # Python 3.13+; earlier builds always have the GIL
    return enabled is None or bool(enabled())


def shares(setting: CPUSetting) -> bool:
    """Whether readers with ``setting`` may share a CPU at all (here, in this interpreter)."""
    return setting is not None and hasattr(os, "sched_setaffinity") and _gil_enabled()


def shared_cpu(setting: CPUSetting, allowed: Set[int]) -> Optional[int]:
    """The CPU that readers allowed on ``allowed`` share under ``setting``, or None for none."""
    if not shares(setting):
        return None
    if setting == AUTO:
        return max(allowed) if len(allowed) > 1 else None
    if setting not in allowed:
        _warn_once(f"Config.reader_cpu is {setting}, a CPU this process may not run on "
                   f"(it may use {sorted(allowed)}): readers are not pinned")
        return None
    return int(setting)


_warned: Set[str] = set()


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        logger.warning("%s", text)


class _Member:
    """One reader thread: where it shares, and the affinity it had before."""

    __slots__ = ("tid", "cpu", "own", "pinned")

    def __init__(self, tid: int, cpu: int, own: Set[int]) -> None:
        self.tid = tid
        self.cpu = cpu
        self.own = own
        self.pinned = False


class CPUSharing:
    """The process's reader threads that share a CPU.

    Ownership: the members, and whether each is pinned, are written under ``_lock`` only, by
    reader threads as they join and leave. Pinning another thread is one syscall on its
    thread id; a thread that has just ended makes it fail, which is ignored.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: Dict[int, _Member] = {}
        self._pid = os.getpid()

    def join(self, setting: CPUSetting) -> Optional[int]:
        """Reader thread: this thread reads from now on; returns its token for :meth:`leave`
        (None: it takes no part). With two members or more, every member is pinned."""
        if not shares(setting):
            return None
        tid = threading.get_native_id()
        try:
            own = os.sched_getaffinity(0)
        except OSError as err:  # a sandbox that forbids it: read on, unpinned
            logger.debug("reader thread %d: CPU affinity unknown: %s", tid, err)
            return None
        with self._lock:
            if os.getpid() != self._pid:  # a forked child: the parent's readers are not here
                self._members.clear()
                self._pid = os.getpid()
            for other in self._members.values():
                if other.pinned and own == {other.cpu}:
                    own = other.own  # started by a pinned reader, whose pin it inherited: not its own
                    break
            cpu = shared_cpu(setting, own)
            if cpu is None:
                return None
            member = _Member(tid, cpu, own)
            self._members[tid] = member
            if len(self._members) > 1:
                for each in self._members.values():
                    self._set(each, pinned=True)
        return tid

    def leave(self, token: Optional[int]) -> None:
        """Reader thread: the reader that joined with ``token`` ends; a last one left alone is unpinned."""
        if token is None:
            return
        with self._lock:
            if self._members.pop(token, None) is not None and len(self._members) == 1:
                self._set(next(iter(self._members.values())), pinned=False)

    def pinned(self) -> bool:
        """Whether the calling thread is a reader pinned to the shared CPU now (read without the
        lock: a stale answer costs one turn given the other way, see :func:`turns.give_turn`)."""
        member = self._members.get(threading.get_native_id())
        return member is not None and member.pinned

    @staticmethod
    def _set(member: _Member, pinned: bool) -> None:
        if member.pinned is pinned:
            return
        try:
            os.sched_setaffinity(member.tid, {member.cpu} if pinned else member.own)
        except OSError as err:  # the thread has just ended, or a container forbids it
            logger.debug("reader thread %d: CPU affinity not changed: %s", member.tid, err)
            return
        member.pinned = pinned


#: The process's readers (every connection's reader thread joins while it runs).
CPU_SHARING = CPUSharing()


class ReaderPolicy:
    """Reader thread: its scheduling policy, ``SCHED_BATCH`` while it has a backlog on the
    shared CPU and the default ``SCHED_OTHER`` otherwise (see the module's docstring).

    A reader of any other policy (real-time, idle) keeps it. A reader started on a reader
    that had a backlog inherited its batch policy, and starts as a normal thread again.
    """

    __slots__ = ("_managed", "_batch")

    def __init__(self) -> None:
        self._batch = False
        try:
            policy = os.sched_getscheduler(0)
            self._managed = policy in (os.SCHED_OTHER, os.SCHED_BATCH)
        except (AttributeError, OSError):  # not Linux, or a sandbox that forbids it
            self._managed = False
        if self._managed and policy == os.SCHED_BATCH:
            self._managed = self._set(False)

    def backlog(self) -> None:
        """Reader thread: this reader has a backlog (called now and then while it lasts: whether
        it is pinned may change meanwhile)."""
        batch = self._managed and CPU_SHARING.pinned()
        if batch is not self._batch:
            self._managed = self._set(batch)

    def keeping_up(self) -> None:
        """Reader thread: this reader keeps up again (its last read did not fill its buffer)."""
        if self._batch:
            self._managed = self._set(False)

    def _set(self, batch: bool) -> bool:
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH if batch else os.SCHED_OTHER, os.sched_param(0))
        except OSError as err:  # a sandbox that forbids it: leave the policy alone from now on
            logger.debug("reader thread: scheduling policy not changed: %s", err)
            return False
        self._batch = batch
        return True
