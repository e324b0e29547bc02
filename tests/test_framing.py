"""The batch framer, pure: frames split at every byte offset, fragments, control frames, rule breaks."""
import struct

import pytest

from bfxsync._engine.framing import FrameError, Framer, parse_close


def frame(payload, opcode=0x1, fin=True, rsv=0, mask=None, length=None):
    """One server frame, hand-made (``length`` overrides the announced payload length)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    if n < 126:
        head = struct.pack("!BB", first, n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    if mask is not None:
        head = bytes([head[0], head[1] | 0x80]) + head[2:] + mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


class Recorder:
    """Collects what a framer hands out, in order."""

    def __init__(self, max_frame_size=1 << 20):
        self.events = []
        self.framer = Framer(lambda m: self.events.append(("message", m)),
                             lambda p: self.events.append(("ping", p)),
                             lambda p: self.events.append(("pong", p)),
                             lambda e: self.events.append(("error", e)), max_frame_size)

    def feed(self, pieces):
        """Feed byte pieces the way the transport does: keep the unused tail, parse when enough is held."""
        held, need = b"", 2
        for piece in pieces:
            held += piece
            if len(held) < need or self.framer.closed is not None:
                continue
            used, need = self.framer.parse(held)
            held = held[used:]
            assert need > len(held) or self.framer.closed is not None
        return held


STREAM = [
    (frame(b'[1,"hb"]'), [("message", b'[1,"hb"]')]),
    (frame(b"x" * 200), [("message", b"x" * 200)]),                      # 16-bit length
    (frame(b"y" * 70_000), [("message", b"y" * 70_000)]),                # 64-bit length
    (frame(b"ping!", opcode=0x9), [("ping", b"ping!")]),
    (frame(b'{"ev', fin=False) + frame(b"", opcode=0x9) + frame(b'ent":', opcode=0x0, fin=False)
     + frame(b"", opcode=0xA) + frame(b'"info"}', opcode=0x0),
     [("ping", b""), ("pong", b""), ("message", b'{"event":"info"}')]),  # control frames inside a message
    (frame(b"\xff\xfe", opcode=0x1), [("message", b"\xff\xfe")]),         # UTF-8 is the link's to check
    (frame(b"raw", opcode=0x2), [("message", b"raw")]),
    (frame(struct.pack("!H", 4001) + b"bye", opcode=0x8), []),
]
WHOLE = b"".join(data for data, _ in STREAM)
EXPECTED = [event for _, events in STREAM for event in events]


class TestFramer:
    def test_whole_stream_in_one_read(self):
        """One read holding every frame hands out every message, then stops at the close."""
        rec = Recorder()
        assert rec.feed([WHOLE + frame(b"after close")]) == frame(b"after close")
        assert rec.events == EXPECTED
        assert rec.framer.closed == (4001, "bye")

    def test_split_at_every_byte_offset(self):
        """Two reads split anywhere (inside headers, lengths, payloads, fragments) give the same result."""
        for cut in range(1, len(WHOLE)):
            rec = Recorder()
            rec.feed([WHOLE[:cut], WHOLE[cut:]])
            assert rec.events == EXPECTED, cut
            assert rec.framer.closed == (4001, "bye")

    def test_one_byte_at_a_time(self):
        """A read per byte still gives every message exactly once."""
        small = WHOLE.replace(frame(b"y" * 70_000), frame(b"y" * 300))
        rec = Recorder()
        rec.feed([small[i:i + 1] for i in range(len(small))])
        assert [e for e in rec.events if e[1] != b"y" * 300] == [e for e in EXPECTED if e[1] != b"y" * 70_000]

    def test_callback_error_is_reported_and_parsing_goes_on(self):
        """A raising on_message is reported once per frame; the next frames still arrive."""
        seen, errors = [], []

        def on_message(message):
            if message == b"bad":
                raise RuntimeError("boom")
            seen.append(message)

        framer = Framer(on_message, seen.append, seen.append, errors.append)
        framer.parse(frame(b"a") + frame(b"bad") + frame(b"c"))
        assert seen == [b"a", b"c"] and len(errors) == 1

    @pytest.mark.parametrize("data, match", [
        (frame(b"hi", mask=b"\x01\x02\x03\x04"), "masked"),
        (frame(b"hi", rsv=0x40), "RSV"),
        (frame(b"hi", opcode=0x3), "reserved opcode"),
        (frame(b"hi", opcode=0xB), "reserved opcode"),
        (frame(b"hi", opcode=0x9, fin=False), "fragmented control"),
        (frame(b"p" * 126, opcode=0x9), "control frame of 126"),
        (frame(b"hi", opcode=0x0), "continuation frame outside"),
        (frame(b"a", fin=False) + frame(b"b"), "new message inside"),
        (frame(b"\x03", opcode=0x8), "1-byte"),
        (frame(struct.pack("!H", 1005), opcode=0x8), "invalid status code 1005"),
        (frame(struct.pack("!H", 1000) + b"\xff", opcode=0x8), "UTF-8"),
    ])
    def test_protocol_violations_raise(self, data, match):
        """Each rule a server frame must follow is checked, with a protocol-error status."""
        rec = Recorder()
        with pytest.raises(FrameError, match=match) as info:
            rec.feed([data])
        assert info.value.kind == "protocol_error" and info.value.status in (1002, 1007)

    def test_oversized_header_raises_before_the_payload(self):
        """A header announcing 1 GiB fails at once, with only the header read."""
        rec = Recorder(max_frame_size=1 << 20)
        header = frame(b"", length=1 << 30)
        assert len(header) == 10
        with pytest.raises(FrameError) as info:
            rec.framer.parse(header)
        assert info.value.kind == "oversized_frame" and info.value.status == 1009

    def test_fragmented_message_limit_counts_the_total(self):
        """Fragments that are small one by one but too large together fail on the last header."""
        rec = Recorder(max_frame_size=1024)
        with pytest.raises(FrameError, match="1200 bytes"):
            rec.feed([frame(b"a" * 600, fin=False) + frame(b"b" * 600, opcode=0x0)])

    def test_need_names_the_whole_frame_once_its_header_is_in(self):
        """With a complete header, need is header plus payload: the transport reads that much unparsed."""
        framer = Recorder().framer
        assert framer.parse(frame(b"z" * 1000)[:10]) == (0, 4 + 1000)
        assert framer.parse(b"\x81") == (0, 2)


def test_parse_close():
    """Close payloads: empty, code only, code and reason."""
    assert parse_close(b"") == (None, "")
    assert parse_close(struct.pack("!H", 1000)) == (1000, "")
    assert parse_close(struct.pack("!H", 4000) + "é".encode()) == (4000, "é")
