"""Recording every frame of every connection to a JSON Lines file (``Client(record=PATH)``).

Where: at the transport seam. :class:`RecordingTransport` wraps the transport a
connection dials with, and the listener it reports to, so inbound frames are seen exactly
as the transport delivers them and outbound ones exactly as they leave. Without
``record`` nothing is wrapped: the hot path is untouched.

Cost on the reader thread: one ``time.time()``, one length check and one ``deque.append``
per frame. No formatting, redaction or disk write happens there. A background thread
(``bfxsync-recorder-<n>``) wakes every ``flush_interval`` seconds (never per frame), drains
the queue, redacts credentials (:func:`bfxsync.recording.redact`), writes the lines and
flushes the file, so a crash of the process loses at most that much. The file is
flushed to the operating system, not ``fsync``-ed: a power cut may lose more. Past
``max_bytes`` the file rotates like ``logging.handlers.RotatingFileHandler``
(``PATH.1`` ... ``PATH.<backups>``), and every new file starts with the ``meta`` line.

A recording never takes the client down, and the recorder never dies:
- the queue is bounded (``max_queued`` lines): past it frames are dropped, counted, and a
  ``dropped`` line in the file marks the gap;
- a frame that cannot be redacted or formatted (a bug, or a hostile frame) becomes an
  ``error`` line without its text, counted, and the rest of its batch is written;
- a write that fails (a full disk) is logged once; recording stops there, the file is
  closed, what was written stays readable, and the client goes on without recording.

Threads: the readers and user threads (sends) only append; every other field is written
by the writer thread alone, except ``dropped``, which any appending thread may count
(under ``_drop_lock``: only on the rare drop path).
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Deque, Dict, Optional, Tuple, Union

from .._version import __version__
from ..recording import FORMAT, FORMAT_VERSION, format_frame, format_meta, redact
from .transport import Transport, TransportFactory, TransportListener, WebSocketAppTransport

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger("bfxsync")

_numbers = itertools.count(1)

#: A queued line: (time, connection, direction, frame text or bytes, extra fields).
_Item = Tuple[float, int, str, Any, Any]


class Recorder:
    """Writes queued frames to ``path`` from its own thread.

    Args:
        path: the JSON Lines file (replaced if it exists).
        max_bytes: size at which the file is rotated.
        backups: rotated files kept (``PATH.1`` newest); 0 starts the file over instead.
        flush_interval: seconds between writes (and flushes) of what was queued.
        max_queued: lines that may wait for the writer; more are dropped and counted.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], max_bytes: int = 256 * 1024 * 1024, backups: int = 3,
                 flush_interval: float = 0.5, max_queued: int = 100_000) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.flush_interval = flush_interval
        self.max_queued = max_queued
        #: Appended by any thread (deque.append is atomic), popped by the writer only.
        self.queue: Deque[_Item] = collections.deque()
        self._stop = threading.Event()
        self._file: Optional[IO[str]] = None
        self._size = 0
        self._thread: Optional[threading.Thread] = None
        #: Set by the writer when a write failed; appending threads read it to stop queueing.
        self.stopped = False
        self._drop_lock = threading.Lock()
        #: Lines the full queue could not take (any appending thread, under ``_drop_lock``).
        self.dropped = 0
        self._dropped_marked = 0  # writer thread: drops already marked in the file
        #: Lines written so far (frames, open/close events and markers; the meta lines not counted).
        self.written = 0
        #: Frames written as an ``error`` line because redacting or formatting them failed.
        self.errors = 0
        #: Files rotated away so far.
        self.rotations = 0

    def start(self) -> None:
        """Open the file and start the writer thread (once). Raises OSError if the file cannot be written."""
        if self._thread is not None:
            return
        try:
            self._open()
        except OSError:  # /dev/full, a read-only directory: the caller says why, once
            handle, self._file = self._file, None
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"bfxsync-recorder-{next(_numbers)}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write everything queued, close the file and join the writer (idempotent).

        From a bfxsync thread (a callback) it does not wait: the writer ends by itself.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def thread(self) -> Optional[threading.Thread]:
        """The writer thread, once started."""
        return self._thread

    def stats(self) -> Dict[str, int]:
        """``record_written``, ``record_dropped``, ``record_errors``, ``record_queued`` and
        ``record_stopped`` (1 once a write error stopped the recording)."""
        return {"record_written": self.written, "record_dropped": self.dropped, "record_errors": self.errors,
                "record_queued": len(self.queue), "record_stopped": int(self.stopped)}

    def append(self, item: _Item) -> None:
        """Queue one line (any thread); dropped and counted when the queue is full."""
        if self.stopped:
            return
        if len(self.queue) < self.max_queued:
            self.queue.append(item)
        else:
            self.drop()

    def drop(self) -> None:
        """Count a line the full queue could not take (any thread)."""
        with self._drop_lock:
            self.dropped += 1
            first = self.dropped == 1
        if first:
            logger.warning("recording to %s cannot keep up: its queue holds %d lines; frames are dropped "
                           "(counted in stats()['record_dropped'], marked in the file)", self.path, self.max_queued)

    def event(self, conn: int, direction: str, **fields: Any) -> None:
        """Queue an ``open`` or ``close`` line (any thread)."""
        self.append((time.time(), conn, direction, None, fields))

    # -- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.flush_interval):
                self._drain_safely()
            self._drain_safely()
        finally:
            self._close_file()
            self.queue.clear()

    def _drain_safely(self) -> None:
        # _drain handles the failures it expects; this is the net under it, so that no bug
        # ends the writer and leaves the queue to grow (it is bounded, but then drops all).
        try:
            self._drain()
        except Exception:  # noqa: BLE001 - anything: the writer must outlive it
            self.errors += 1
            if self.errors == 1:
                logger.exception("recording to %s: unexpected error (counted in stats()['record_errors']); "
                                 "the recorder goes on", self.path)

    def _drain(self) -> None:
        queue = self.queue
        if self.stopped:
            queue.clear()
            return
        # Read before counting the batch: every drop so far happened while the queue was
        # full, i.e. after every line now in it, so its marker goes after this batch.
        dropped = self.dropped - self._dropped_marked
        lines = [self._line(queue.popleft()) for _ in range(len(queue))]  # only the writer pops
        if dropped:
            self._dropped_marked += dropped
            lines.append(format_meta(time.time(), 0, "dropped", lines=dropped))
        if not lines:
            return
        try:
            for line in lines:
                self._write(line)
                if self._file is None:  # a rotation could not close or reopen it: recording stopped
                    return
            if self._file is not None:
                self._file.flush()
        except OSError as err:  # a full disk must not take the client down with it
            self._fail(err)

    def _line(self, item: _Item) -> str:
        t, conn, direction, data, fields = item
        try:
            if data is None:
                return format_meta(t, conn, direction, **fields)
            text = data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")
            return format_frame(t, conn, direction, redact(text, direction == "out"))
        except Exception as err:  # noqa: BLE001 - redact() is robust; this covers what nobody foresaw
            # The marker leaves the frame out (it may hold a secret) and names only the error's type.
            self.errors += 1
            if self.errors == 1:
                logger.error("recording to %s: a frame could not be written (%s); it is marked as an error line "
                             "and counted in stats()['record_errors']", self.path, type(err).__name__)
            return format_meta(t, conn, "error", of=direction, error=type(err).__name__)

    def _fail(self, err: OSError) -> None:
        """A write failed: report it once, stop recording, release the file (writer thread)."""
        self.stopped = True
        self.queue.clear()
        logger.error("recording to %s stopped: %s; the client goes on without recording", self.path, err)
        self._close_file()

    def _close_file(self) -> None:
        handle, self._file = self._file, None
        if handle is None:
            return
        try:
            handle.close()  # flushes what is buffered: after a failed write, that may fail again
        except OSError as err:
            if not self.stopped:
                self._fail(err)

    def _write(self, line: str) -> None:
        size = len(line.encode("utf-8")) if not line.isascii() else len(line)
        if self._size + size > self.max_bytes and self.written:
            self._rotate()
        if self._file is None:
            return
        self._file.write(line)
        self._size += size
        self.written += 1

    def _open(self) -> None:
        self._file = open(self.path, "w", encoding="utf-8")  # closed by the writer thread
        header = format_meta(time.time(), 0, "meta", format=FORMAT, version=FORMAT_VERSION, bfxsync=__version__)
        self._file.write(header)
        self._file.flush()
        self._size = len(header)

    def _rotate(self) -> None:
        self._close_file()
        if self.stopped:
            return
        if self.backups > 0:
            for number in range(self.backups - 1, 0, -1):
                older = f"{self.path}.{number}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{number + 1}")
            os.replace(self.path, f"{self.path}.1")
        self.rotations += 1
        self._open()


class _RecordingListener:
    """Forwards everything to the connection, queueing frames and open/close on the way."""

    def __init__(self, listener: TransportListener, recorder: Recorder, url: str) -> None:
        self._listener = listener
        self._recorder = recorder
        self._queue = recorder.queue
        self._limit = recorder.max_queued
        self._url = url
        self.number = listener.number
        self.on_control = listener.on_control
        self.on_error = listener.on_error
        self._on_message = listener.on_message

    def on_open(self) -> None:
        self._recorder.event(self.number, "open", url=self._url)
        self._listener.on_open()

    def on_message(self, data: Any) -> None:
        # Recorder.append written out: this runs for every frame, on the reader thread.
        recorder = self._recorder
        if len(self._queue) < self._limit and not recorder.stopped:
            self._queue.append((time.time(), self.number, "in", data, None))
        elif not recorder.stopped:
            recorder.drop()
        self._on_message(data)

    def on_close(self, code: Optional[int], reason: Optional[str]) -> None:
        self._recorder.event(self.number, "close", code=code, reason=reason or "")
        self._listener.on_close(code, reason)


class RecordingTransport:
    """A transport that records what ``inner`` receives and sends.

    Outbound frames are queued before they are handed to the socket, so a request always
    precedes its answer in the file.
    """

    def __init__(self, inner: Transport, recorder: Recorder, url: str) -> None:
        self._inner = inner
        self._recorder = recorder
        self._url = url
        self._number = 0

    def run(self, sock: socket.socket, listener: TransportListener) -> None:
        self._number = listener.number
        self._inner.run(sock, _RecordingListener(listener, self._recorder, self._url))

    def send(self, text: str) -> None:
        self._recorder.append((time.time(), self._number, "out", text, None))
        self._inner.send(text)

    def send_close(self) -> None:
        self._inner.send_close()


def recording_factory(recorder: Recorder, max_frame_size: int,
                      inner: Optional[TransportFactory] = None) -> TransportFactory:
    """A :data:`TransportFactory` recording through ``recorder`` around ``inner`` (the default transport)."""
    make = inner or WebSocketAppTransport.factory(max_frame_size)

    def factory(url: str) -> Transport:
        return RecordingTransport(make(url), recorder, url)

    return factory


def recorder_for(config: "Config") -> Tuple[Optional[Recorder], TransportFactory]:
    """The recorder ``config.record`` asks for (None without it) and the transport factory to dial with."""
    if config.record is None:
        return None, WebSocketAppTransport
    recorder = Recorder(config.record, config.record_max_bytes, config.record_backups, config.record_flush_interval)
    return recorder, recording_factory(recorder, config.max_frame_size)
