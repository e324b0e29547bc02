"""Recording every frame of every connection to a JSON Lines file (``Client(record=PATH)``).

Where: at the transport seam. :class:`RecordingTransport` wraps the transport a
connection dials with, and the listener it reports to, so inbound frames are seen exactly
as the transport delivers them and outbound ones exactly as they leave. Without
``record`` nothing is wrapped: the hot path is untouched.

Cost on the reader thread: one ``time.time()`` and one ``deque.append`` per frame. No
formatting, redaction or disk write happens there. A background thread
(``bfxsync-recorder-<n>``) wakes every ``flush_interval`` seconds (never per frame), drains
the queue, redacts credentials (:func:`bfxsync.recording.redact`), writes the lines and
flushes the file, so a crash of the process loses at most that much. The file is
flushed to the operating system, not ``fsync``-ed: a power cut may lose more. Past
``max_bytes`` the file rotates like ``logging.handlers.RotatingFileHandler``
(``PATH.1`` ... ``PATH.<backups>``), and every new file starts with the ``meta`` line.
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Deque, Optional, Tuple, Union

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
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], max_bytes: int = 256 * 1024 * 1024, backups: int = 3,
                 flush_interval: float = 0.5) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.flush_interval = flush_interval
        self._queue: Deque[_Item] = collections.deque()
        #: The one call the hot path makes (``deque.append`` is atomic: no lock needed).
        self.append = self._queue.append
        self._stop = threading.Event()
        self._file: Optional[IO[str]] = None
        self._size = 0
        self._thread: Optional[threading.Thread] = None
        self._failed = False
        #: Lines written so far (frames and open/close events; the meta lines not counted).
        self.written = 0
        #: Files rotated away so far.
        self.rotations = 0

    def start(self) -> None:
        """Open the file and start the writer thread (once). Raises OSError if the file cannot be created."""
        if self._thread is not None:
            return
        self._open()
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

    def event(self, conn: int, direction: str, **fields: Any) -> None:
        """Queue an ``open`` or ``close`` line (any thread)."""
        self.append((time.time(), conn, direction, None, fields))

    # -- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.flush_interval):
                self._drain()
            self._drain()
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _drain(self) -> None:
        queue = self._queue
        if not queue or self._failed:
            queue.clear()
            return
        lines = []
        popleft = queue.popleft
        try:
            while True:
                t, conn, direction, data, fields = popleft()
                if data is None:
                    lines.append(format_meta(t, conn, direction, **fields))
                    continue
                text = data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")
                lines.append(format_frame(t, conn, direction, redact(text, direction == "out")))
        except IndexError:
            pass  # drained
        try:
            for line in lines:
                self._write(line)
            if self._file is not None:
                self._file.flush()
        except OSError as err:  # a full disk must not take the client down with it
            self._failed = True
            logger.error("recording to %s stopped: %s", self.path, err)

    def _write(self, line: str) -> None:
        size = len(line.encode("utf-8")) if not line.isascii() else len(line)
        if self._size + size > self.max_bytes and self.written:
            self._rotate()
        if self._file is not None:  # None only if a rotation could not reopen it (then _failed is set)
            self._file.write(line)
        self._size += size
        self.written += 1

    def _open(self) -> None:
        from .. import __version__  # here, not at import time: the package imports this module first

        self._file = open(self.path, "w", encoding="utf-8")  # closed by the writer thread
        header = format_meta(time.time(), 0, "meta", format=FORMAT, version=FORMAT_VERSION, bfxsync=__version__)
        self._file.write(header)
        self._file.flush()
        self._size = len(header)

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
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
        self._append = recorder.append
        self._url = url
        self.number = listener.number
        self.on_control = listener.on_control
        self.on_error = listener.on_error
        self._on_message = listener.on_message

    def on_open(self) -> None:
        self._recorder.event(self.number, "open", url=self._url)
        self._listener.on_open()

    def on_message(self, data: Any) -> None:
        self._append((time.time(), self.number, "in", data, None))
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
