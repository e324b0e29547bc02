"""WebSocket frame parsing for the receive path (RFC 6455 section 5), pure: no socket, no thread.

:class:`Framer` takes the bytes of a large socket read and handles every complete frame
they hold in one Python loop, so a read of 256 KiB costs one call here instead of
websocket-client's per-frame ``recv_frame`` machinery (header reads, an ``ABNF`` object,
its dispatcher). It checks what a client must check of a server's frames: no mask, RSV
bits 0 (no extension is negotiated), known opcodes, control frames final and at most
125 bytes, continuation frames only inside a fragmented message, a valid close payload,
and a size limit that is checked on the header, before any payload is buffered.

UTF-8 validity of text messages is left to the point of use: the link decodes each
message once with ``bytes.decode`` (C speed) and counts an invalid one as malformed.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from websocket import WebSocketProtocolException

#: Default limit on one frame (or one fragmented message): generous for Bitfinex, whose
#: largest frames are book snapshots of some hundred KiB.
MAX_FRAME_SIZE = 16 * 1024 * 1024

#: Close status codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

OPCODE_CONT, OPCODE_TEXT, OPCODE_BINARY = 0x0, 0x1, 0x2
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x8, 0x9, 0xA

#: Codes a close frame may carry on the wire (1005, 1006 and 1015 are reserved for APIs).
_WIRE_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


class FrameError(WebSocketProtocolException):
    """The server broke the framing rules; the connection must be failed (and redialled).

    Attributes:
        kind: the counter this problem is counted under (``"protocol_error"`` or
            ``"oversized_frame"``).
        status: the close code to send before dropping the socket.
    """

    def __init__(self, message: str, kind: str = "protocol_error", status: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def parse_close(payload: bytes) -> Tuple[Optional[int], str]:
    """The status code and reason of a close frame's payload (``None`` when it has none)."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameError("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if code not in _WIRE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise FrameError(f"close frame with invalid status code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("close frame with an invalid UTF-8 reason", status=CLOSE_INVALID_DATA) from None
    return code, reason


class Framer:
    """Splits a server's byte stream into messages.

    Args:
        on_message: called with each complete text (or binary) message, as ``bytes``.
        on_ping: called with each ping's payload (the caller answers with a pong).
        on_pong: called with each pong's payload.
        on_callback_error: called when ``on_message`` raised; parsing goes on with the
            next frame (websocket-client's ``WebSocketApp`` does the same).
        max_frame_size: largest payload accepted for one frame, and for one fragmented
            message in total; a header announcing more raises :class:`FrameError` at once.

    After a close frame :attr:`closed` holds its ``(code, reason)`` and nothing further is
    parsed.
    """

    def __init__(self, on_message: Callable[[bytes], object], on_ping: Callable[[bytes], object],
                 on_pong: Callable[[bytes], object], on_callback_error: Callable[[Exception], object],
                 max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._on_message = on_message
        self._on_ping = on_ping
        self._on_pong = on_pong
        self._on_callback_error = on_callback_error
        self.max_frame_size = max_frame_size
        #: ``(code, reason)`` once a close frame arrived, else None.
        self.closed: Optional[Tuple[Optional[int], str]] = None
        self._fragments: List[bytes] = []
        self._fragmented = 0  # bytes gathered so far of a fragmented message
        self._in_message = False

    def parse(self, data: bytes) -> Tuple[int, int]:
        """Handle every complete frame at the start of ``data``.

        Returns:
            ``(used, need)``: how many bytes were consumed, and how many bytes (counted
            from ``used``) the next frame needs in total before it can be parsed (at least
            the header's; the whole frame once its header is in). The caller keeps
            ``data[used:]`` and reads until it holds ``need`` bytes.

        Raises:
            FrameError: the stream breaks the protocol or the size limit.
        """
        on_message = self._on_message
        end = len(data)
        pos = 0
        in_message = self._in_message
        # The loop is the receive path's hottest code: one iteration per frame, so the common
        # case (a final, unmasked text frame under 126 bytes) is tested first, with locals only.
        while end - pos >= 2:
            first = data[pos]
            size = data[pos + 1]
            if first == 0x81 and size < 126 and not in_message:
                start = pos + 2
                stop = start + size
                if stop > end:
                    return pos, 2 + size
                pos = stop
                try:
                    on_message(data[start:stop])
                except Exception as err:  # noqa: BLE001 - reported, and the stream goes on
                    self._on_callback_error(err)
                continue
            if size & 0x80:
                raise FrameError("the server sent a masked frame (servers must not mask)")
            if first & 0x70:
                raise FrameError("a frame with RSV bits set (no extension was negotiated)")
            head = 2
            if size == 126:
                if end - pos < 4:
                    return pos, 4
                size = int.from_bytes(data[pos + 2:pos + 4], "big")
                head = 4
            elif size == 127:
                if end - pos < 10:
                    return pos, 10
                size = int.from_bytes(data[pos + 2:pos + 10], "big")
                head = 10
            opcode = first & 0x0F
            self._check_header(first, opcode, size)
            start = pos + head
            stop = start + size
            if stop > end:
                return pos, head + size
            pos = stop
            if opcode == OPCODE_TEXT or opcode == OPCODE_BINARY or opcode == OPCODE_CONT:
                message = self._gather(first & 0x80, data[start:stop])
                in_message = self._in_message
                if message is not None:
                    try:
                        on_message(message)
                    except Exception as err:  # noqa: BLE001 - reported, and the stream goes on
                        self._on_callback_error(err)
            elif opcode == OPCODE_PING:
                self._on_ping(data[start:stop])
            elif opcode == OPCODE_PONG:
                self._on_pong(data[start:stop])
            else:
                self.closed = parse_close(data[start:stop])
                return pos, 0
        return pos, 2

    def _check_header(self, first: int, opcode: int, size: int) -> None:
        """Reject a frame on its header alone, before its payload is read."""
        if opcode >= OPCODE_CLOSE:
            if opcode > OPCODE_PONG:
                raise FrameError(f"a frame with the reserved opcode {opcode:#x}")
            if not first & 0x80:
                raise FrameError("a fragmented control frame")
            if size > 125:
                raise FrameError(f"a control frame of {size} bytes (the limit is 125)")
            return
        if opcode > OPCODE_BINARY:
            raise FrameError(f"a frame with the reserved opcode {opcode:#x}")
        if opcode == OPCODE_CONT:
            if not self._in_message:
                raise FrameError("a continuation frame outside a fragmented message")
        elif self._in_message:
            raise FrameError("a new message inside a fragmented one")
        total = size + self._fragmented
        if total > self.max_frame_size:
            raise FrameError(f"a frame announcing {total} bytes (max_frame_size is {self.max_frame_size})",
                             kind="oversized_frame", status=CLOSE_TOO_BIG)

    def _gather(self, final: int, payload: bytes) -> Optional[bytes]:
        """The complete message once ``payload`` ends it, else None (and the piece is kept)."""
        if final and not self._in_message:
            return payload
        self._fragments.append(payload)
        self._fragmented += len(payload)
        self._in_message = True
        if not final:
            return None
        message = b"".join(self._fragments)
        self._fragments = []
        self._fragmented = 0
        self._in_message = False
        return message
