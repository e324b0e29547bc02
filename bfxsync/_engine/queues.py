"""Queued callbacks: bounded per-subscription queues drained by a small pool of callback threads.

A subscription (or account stream) in ``queued`` mode owns a :class:`Lane`: the reader
thread only appends to it, and a :class:`Workers` thread later runs the callbacks. A
lane is run by at most one worker at a time, so its callbacks stay serial and in frame
order; lanes with pending work wait in one ready queue and are served round-robin, a
lane giving its worker back after a short slice (:data:`SLICE_ITEMS` messages or
:data:`SLICE_SECONDS`), so one busy lane cannot hold a worker for long while others wait.

Why a small pool rather than one thread: with one worker, a callback that sleeps 100 ms
delays every other queued subscription by up to 100 ms per turn. With up to
``Config.dispatch_threads`` workers (4 by default) a slow lane occupies one of them and
the others keep pace. Workers start on demand (the first when a lane first has work, a
further one only when work is waiting and every worker is busy), so a client that never
queues anything starts no thread at all.

Overflow policies when a lane holds ``maxsize`` messages:

- ``block``: the reader waits for room (backpressure: nothing is lost, but frames behind
  it, heartbeats included, wait too). It waits in slices and gives up when the client
  ends, when the queue is closed (its subscription was unsubscribed), or when its
  connection drops the socket (the watchdog found it silent for ``heartbeat_timeout``):
  the message is then counted as discarded and the reader goes on to notice the drop,
  report ``Disconnected`` and redial.
- ``drop_oldest``: the oldest pending message is discarded and counted in ``dropped``.
- ``latest``: a pending update is replaced by the newer message and counted in
  ``conflated`` (a lane holds at most a snapshot and one update); the message finally
  delivered says how many it stands for.

Locks: each lane has its own, the pool has one; neither is held while the other is
taken, and none while user code runs.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import weakref
from typing import Any, Callable, Deque, List, Optional

from attrs import field, frozen
from attrs.validators import ge, in_

from .threads import mark_bfxsync_thread

logger = logging.getLogger("bfxsync")

MODES = ("inline", "queued")
OVERFLOWS = ("block", "drop_oldest", "latest")

#: A lane gives its worker back after this many messages...
SLICE_ITEMS = 32
#: ... or after this many seconds of callbacks, whichever comes first.
SLICE_SECONDS = 0.005
#: How long a blocked reader waits between two looks at whether the client ended or its socket was dropped.
_BLOCK_STEP = 0.1

_numbers = itertools.count(1)
_local = threading.local()


@frozen
class Delivery:
    """How one subscription's (or account stream's) callbacks are run.

    Attributes:
        mode: ``inline`` (on the reader thread, in frame order) or ``queued``.
        overflow: ``block``, ``drop_oldest`` or ``latest`` (queued only).
        maxsize: pending messages a queue may hold (queued only).
    """

    mode: str = field(default="inline", validator=in_(MODES))
    overflow: str = field(default="block", validator=in_(OVERFLOWS))
    maxsize: int = field(default=1000, validator=ge(1))

    @property
    def queued(self) -> bool:
        """True for the ``queued`` mode."""
        return self.mode == "queued"


def resolve(default: Delivery, dispatch: Optional[str], overflow: Optional[str],
            queue_size: Optional[int]) -> Delivery:
    """The delivery a ``subscribe_*(dispatch=..., overflow=..., queue_size=...)`` call asks for.

    Unset arguments take the client's defaults (``Config.dispatch``, ``queue_overflow``,
    ``queue_size``). Raises ``ValueError`` for an unknown mode or policy, and for
    ``overflow``/``queue_size`` given with ``dispatch="inline"``, where they would mean nothing.
    """
    mode = default.mode if dispatch is None else dispatch
    if mode not in MODES:
        raise ValueError(f"dispatch must be one of {', '.join(MODES)}, got {dispatch!r}")
    if mode == "inline":
        if overflow is not None or queue_size is not None:
            raise ValueError("overflow and queue_size apply to dispatch='queued' only")
        return Delivery()
    if overflow is not None and overflow not in OVERFLOWS:
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOWS)}, got {overflow!r}")
    return Delivery(mode, default.overflow if overflow is None else overflow,
                    default.maxsize if queue_size is None else queue_size)


def default_delivery(config: Any) -> Delivery:
    """The client's defaults (``Config.dispatch``, ``queue_overflow``, ``queue_size``)."""
    return Delivery(config.dispatch, config.queue_overflow, config.queue_size)


def check_same(existing: Delivery, wanted: Delivery, what: str) -> None:
    """Raise ``ValueError`` when an existing handle's delivery is not the one asked for."""
    if existing != wanted:
        raise ValueError(f"{what} already runs its callbacks {existing.mode}"
                         f"{f' ({existing.overflow}, {existing.maxsize})' if existing.queued else ''}; "
                         "unsubscribe it first to change how")


@frozen
class QueueStats:
    """A queue's figures at one moment (``Subscription.queue``, ``Client.stats()["queues"]``).

    Attributes:
        name: what the queue serves (the subscription, or ``account:<stream>``).
        overflow: its overflow policy.
        maxsize: its bound.
        depth: messages waiting now.
        lag: seconds the oldest waiting message has waited (0 when empty).
        max_lag: the largest ``lag`` seen when a message was taken.
        enqueued: messages the reader thread handed to the queue.
        delivered: messages handed to the callbacks (a conflated one counts once).
        dropped: messages discarded by ``drop_oldest`` (or by ``block`` from a callback thread).
        conflated: messages replaced by a newer one under ``latest`` (not lost: superseded).
        discarded: messages still waiting when the client closed or the subscription was
            unsubscribed, and messages a blocked reader gave up when its socket was dropped.
        blocked: times the reader waited for room under ``block``.
        blocked_seconds: the total of those waits.

    ``enqueued == delivered + dropped + conflated + discarded + depth`` at every moment.
    """

    name: str
    overflow: str
    maxsize: int
    depth: int
    lag: float
    max_lag: float
    enqueued: int
    delivered: int
    dropped: int
    conflated: int
    discarded: int
    blocked: int
    blocked_seconds: float


class _Entry:
    __slots__ = ("at", "item", "snapshot", "conflated")

    def __init__(self, at: float, item: Any, snapshot: bool) -> None:
        self.at = at
        self.item = item
        self.snapshot = snapshot
        self.conflated = 0


#: Runs one queued message on a worker: ``run(item, conflated)``.
Runner = Callable[[Any, int], None]


class Lane:
    """One bounded queue, run serially by the workers. Created with :meth:`Workers.lane`."""

    def __init__(self, name: str, delivery: Delivery, run: Runner, workers: "Workers") -> None:
        self.name = name
        self.delivery = delivery
        self._run = run
        self._workers = workers
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._items: Deque[_Entry] = collections.deque()
        self._scheduled = False  # in the ready queue or being run by a worker
        self._closed = False
        self.enqueued = self.delivered = self.dropped = self.conflated = self.discarded = self.blocked = 0
        self.blocked_seconds = 0.0
        self.max_lag = 0.0

    def __repr__(self) -> str:
        return f"<Lane {self.name} {self.delivery.overflow} depth={len(self._items)}>"

    def put(self, item: Any, snapshot: bool = False) -> None:
        """Queue ``item`` (reader thread); never blocks except under ``block`` with the queue full."""
        now = time.monotonic()
        overflow = self.delivery.overflow
        with self._lock:
            if self._closed:
                return
            self.enqueued += 1
            items = self._items
            if overflow == "latest" and items and (snapshot or not items[-1].snapshot):
                # A snapshot is never folded into an update; anything else is superseded by the newer message.
                last = items[-1]
                last.item, last.snapshot = item, snapshot
                last.conflated += 1
                self.conflated += 1
                return  # already scheduled: the lane is not empty
            if len(items) >= self.delivery.maxsize:
                if overflow == "block" and not on_worker_thread():
                    if not self._wait_for_room(now):
                        self.discarded += 1  # closed, or the socket dropped, while the reader waited
                        return
                else:  # drop_oldest; also block on a worker thread, which must never wait for itself
                    items.popleft()
                    self.dropped += 1
            items.append(_Entry(now, item, snapshot))
            if self._scheduled:
                return
            self._scheduled = True
        self._workers.schedule(self)

    def _wait_for_room(self, since: float) -> bool:
        """Backpressure (lock held): wait until a worker takes a message (True), or until the
        lane closes or this reader's socket is dropped (False: the message is discarded)."""
        self.blocked += 1
        given_up = False
        while len(self._items) >= self.delivery.maxsize and not self._closed:
            if _interrupted():
                given_up = True
                break
            self._room.wait(_BLOCK_STEP)
        self.blocked_seconds += time.monotonic() - since
        return not self._closed and not given_up

    def run_slice(self) -> bool:
        """Worker: run pending messages for one slice; True if the lane still has work (stays scheduled)."""
        started = time.monotonic()
        for _ in range(SLICE_ITEMS):
            with self._lock:
                if not self._items or self._closed:
                    self._scheduled = False
                    return False
                entry = self._items.popleft()
                self.delivered += 1  # counted as it leaves, so the figures always add up
                self.max_lag = max(self.max_lag, time.monotonic() - entry.at)
                self._room.notify()
            try:
                self._run(entry.item, entry.conflated)  # the callback runner already isolates user callbacks
            except Exception:  # noqa: BLE001 - a bug of ours must not leave the lane scheduled for ever
                logger.exception("running a queued message of %r failed", self)
            if time.monotonic() - started >= SLICE_SECONDS:
                break
        with self._lock:
            if self._items and not self._closed:
                return True
            self._scheduled = False
            return False

    def close(self) -> None:
        """Discard what is waiting, take nothing more, and wake a blocked reader (client ended, or unsubscribed)."""
        with self._lock:
            self._closed = True
            self.discarded += len(self._items)
            self._items.clear()
            self._room.notify_all()

    def stats(self) -> QueueStats:
        """The queue's figures now."""
        with self._lock:
            depth = len(self._items)
            oldest = self._items[0].at if depth else None
            lag = time.monotonic() - oldest if oldest is not None else 0.0
            return QueueStats(self.name, self.delivery.overflow, self.delivery.maxsize, depth, lag,
                              max(self.max_lag, lag), self.enqueued, self.delivered, self.dropped,
                              self.conflated, self.discarded, self.blocked, self.blocked_seconds)


class reserve:  # noqa: N801 - used as a context manager, like contextlib's lower-case ones
    """Hand ``delivery`` to the subscription handle created on this thread inside the ``with``.

    ``Client.subscribe`` knows the mode but the pool creates the handle and sends the
    subscribe request at once; the handle must have its queue before the reader can
    deliver the snapshot, so it takes the mode in its constructor, on this same thread.
    """

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery

    def __enter__(self) -> None:
        _local.reserved = self._delivery

    def __exit__(self, *exc_info: Any) -> None:
        _local.reserved = None


def take_reserved() -> Delivery:
    """The delivery reserved on this thread (once), else inline."""
    delivery: Optional[Delivery] = getattr(_local, "reserved", None)
    _local.reserved = None
    return delivery if delivery is not None else Delivery()


def interrupt_waits_with(event: threading.Event) -> None:
    """Reader thread: a ``block`` wait on this thread gives up while ``event`` is set (its socket was dropped)."""
    _local.interrupt = event


def _interrupted() -> bool:
    event: Optional[threading.Event] = getattr(_local, "interrupt", None)
    return event is not None and event.is_set()


def on_worker_thread() -> bool:
    """True on a callback thread."""
    return getattr(_local, "worker", False)


class Workers:
    """The callback threads of one client (``bfxsync-callbacks-<n>``), at most ``max_threads``."""

    def __init__(self, max_threads: int) -> None:
        self._max = max_threads
        self._cond = threading.Condition()
        self._ready: Deque[Lane] = collections.deque()
        self._threads: List[threading.Thread] = []
        self._idle = 0
        self._stopped = False
        self._lanes: "weakref.WeakSet[Lane]" = weakref.WeakSet()

    def lane(self, name: str, delivery: Delivery, run: Runner) -> Lane:
        """A new lane (starts no thread: the first worker starts when work first arrives)."""
        lane = Lane(name, delivery, run, self)
        with self._cond:
            self._lanes.add(lane)
            stopped = self._stopped
        if stopped:
            lane.close()
        return lane

    def schedule(self, lane: Lane) -> None:
        """``lane`` has work: queue it, and start a worker if none is free and the pool has room."""
        with self._cond:
            if self._stopped:
                return
            self._ready.append(lane)
            if self._idle == 0 and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"bfxsync-callbacks-{next(_numbers)}")
                self._threads.append(thread)
                thread.start()  # under the lock: a started thread only waits for it, and join() never sees it unstarted
            else:
                self._cond.notify()

    def _work(self) -> None:
        mark_bfxsync_thread()
        _local.worker = True
        while True:
            with self._cond:
                while not self._ready and not self._stopped:
                    self._idle += 1
                    self._cond.wait(1.0)
                    self._idle -= 1
                if self._stopped:
                    return
                lane = self._ready.popleft()
            if lane.run_slice():
                self.schedule(lane)  # to the back of the ready queue: round-robin between lanes

    def stop(self) -> None:
        """Stop the workers after their current callback and discard pending messages (any thread)."""
        with self._cond:
            self._stopped = True
            self._ready.clear()
            lanes = list(self._lanes)
            self._cond.notify_all()
        for lane in lanes:
            lane.close()

    def join(self, timeout: float) -> None:
        """Wait for the workers to end (after :meth:`stop`), skipping the calling thread."""
        deadline = time.monotonic() + timeout
        for thread in self.threads():
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def threads(self) -> List[threading.Thread]:
        """The workers started so far."""
        with self._cond:
            return list(self._threads)
