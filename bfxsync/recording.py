"""Recordings of WebSocket sessions: the file format, redaction, and reading them back (pure).

A recording is a JSON Lines file, one object per line. Every line has ``t`` (seconds
since the epoch, as ``time.time()``: when the frame was received or handed to the
socket), ``conn`` (the client's connection number, as in ``Client.connections()``) and
``dir``, which says what the line is::

    {"t":1718000000.000000,"conn":0,"dir":"meta","format":"bfxsync-recording","version":1,"bfxsync":"0.4.0"}
    {"t":1718000000.012345,"conn":1,"dir":"open","url":"wss://api-pub.bitfinex.com/ws/2"}
    {"t":1718000000.013001,"conn":1,"dir":"in","frame":"{\\"event\\":\\"info\\",\\"version\\":2}"}
    {"t":1718000000.013302,"conn":1,"dir":"out","frame":"{\\"event\\":\\"subscribe\\",\\"channel\\":\\"book\\"}"}
    {"t":1718000000.254118,"conn":1,"dir":"close","code":1006,"reason":""}

``frame`` is the frame's exact text (a JSON string, not a parsed value), so numbers keep
their wire spelling and book checksums still match when it is replayed. A connection
number is kept across the redials of one connection: ``open`` marks each new socket.

Credentials never reach the file: :func:`redact` runs on every frame before it is
written. Reading (:func:`read_recording`) also accepts a plain text log with one
``DIRECTION TIMESTAMP: FRAME`` line per frame (``in``/``recv``/``<`` or
``out``/``send``/``>``; epoch seconds or milliseconds, or ISO 8601), as other tools write.

The recorder may also write lines that carry no frame: ``dropped`` (``lines``: how many
frames its full queue could not take, at that point) and ``error`` (``of``: the
direction of a frame it could not redact or format, ``error``: why; the frame itself is
left out, since it may hold a secret). Readers skip what they do not use.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from attrs import frozen

logger = logging.getLogger("bfxsync")

__all__ = [
    "FORMAT", "FORMAT_VERSION", "REDACTED", "RecordedFrame", "format_frame", "format_meta", "parse_line",
    "read_recording", "recording_files", "redact",
]

#: The ``format`` named by a recording's first line.
FORMAT = "bfxsync-recording"
#: Bumped when a line changes meaning.
FORMAT_VERSION = 1
#: What replaces every secret.
REDACTED = "<redacted>"

#: Fields that are secret wherever they appear, in either direction.
SECRET_FIELDS = frozenset({"apiKey", "apiSecret", "authSig", "authPayload", "authNonce", "authToken", "secret",
                           "signature", "sig", "nonce", "token", "password"})
#: The only fields an outgoing ``auth`` event keeps in clear: what it asks for, not who asks.
AUTH_KEEP = frozenset({"event", "dms", "filter", "calc"})
# Substrings at least one of which every frame that may carry a secret contains (cheap pre-check).
_SUSPECT = ("auth", "Auth", "apiKey", "apiSecret", "ecret", "ignature", "sig", "nonce", "Nonce", "oken", "assword")


@frozen
class RecordedFrame:
    """One line of a recording.

    Attributes:
        t: seconds since the epoch when it happened.
        conn: the client's connection number (0 for file metadata).
        direction: ``"in"``, ``"out"``, ``"open"``, ``"close"`` or ``"meta"``.
        frame: the frame's text (``in``/``out``), else ``""``.
        fields: the line's other fields (``url``, ``code``, ``reason``, ``format``...).
    """

    t: float
    conn: int
    direction: str
    frame: str = ""
    fields: Any = None


# -- redaction ---------------------------------------------------------------------------

def redact(text: str, outbound: bool) -> str:
    """``text`` with every credential replaced by :data:`REDACTED` (unchanged when there is none).

    An outgoing ``auth`` event keeps only ``event``, ``dms``, ``filter`` and ``calc``; the
    key, signature, payload, nonce and any other field become ``"<redacted>"``. Any
    :data:`SECRET_FIELDS` key anywhere in any frame is redacted too. A frame that looks
    like it may hold a secret but cannot be parsed is replaced whole.
    """
    if not any(word in text for word in _SUSPECT):
        return text  # every channel frame and almost every event: nothing to parse
    try:
        cleaned, changed = _clean(json.loads(text), outbound, _MAX_DEPTH)
    except (ValueError, RecursionError):
        # Not JSON, or nested deeper than the parser (RecursionError) or _MAX_DEPTH (a
        # hostile frame of hundreds of brackets): cannot tell what is in it, keep none of it.
        return json.dumps(REDACTED)
    return json.dumps(cleaned, separators=(",", ":")) if changed else text


# Real frames nest four or five levels. The walk stops far below any interpreter's
# recursion limit (which differs between Python versions and with the caller's stack),
# so whether a deep frame is replaced never depends on how deep the stack already is.
_MAX_DEPTH = 64


def _clean(value: Any, outbound: bool, depth: int) -> Tuple[Any, bool]:
    if depth <= 0 and isinstance(value, (dict, list)):
        raise ValueError("frame nested too deep to redact")
    if isinstance(value, dict):
        auth = outbound and value.get("event") == "auth"
        changed = False
        result = {}
        for key, item in value.items():
            if key in SECRET_FIELDS or (auth and key not in AUTH_KEEP):
                result[key] = REDACTED
                changed = True
            else:
                result[key], inner = _clean(item, outbound, depth - 1)
                changed = changed or inner
        return result, changed
    if isinstance(value, list):
        items = [_clean(item, outbound, depth - 1) for item in value]
        return [item for item, _ in items], any(inner for _, inner in items)
    return value, False


# -- writing ---------------------------------------------------------------------------------

def format_frame(t: float, conn: int, direction: str, text: str) -> str:
    """One ``in``/``out`` line (with its newline); ``text`` must already be redacted."""
    return '{"t":%.6f,"conn":%d,"dir":"%s","frame":%s}\n' % (t, conn, direction, json.dumps(text))


def format_meta(t: float, conn: int, direction: str, **fields: Any) -> str:
    """One ``open``/``close``/``meta`` line (with its newline)."""
    line = {"t": round(t, 6), "conn": conn, "dir": direction}
    line.update(fields)
    return json.dumps(line, separators=(",", ":")) + "\n"


# -- reading ---------------------------------------------------------------------------------

_PLAIN = re.compile(r"^\s*(in|recv|received|rx|<|out|send|sent|tx|>)\s+(\S+?):?\s+(.*?)\s*$", re.IGNORECASE)
_INBOUND = frozenset({"in", "recv", "received", "rx", "<"})


def parse_line(line: str) -> Optional[RecordedFrame]:
    """One line of a recording (JSON Lines, or a plain ``DIRECTION TIMESTAMP: FRAME`` log); None if blank.

    Raises:
        ValueError: the line is neither, or a JSON line's ``t``, ``conn``, ``dir`` or
            ``frame`` has the wrong type (``"t": null``, say).
    """
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and "dir" in data and "t" in data:
            return _json_line(data)
    match = _PLAIN.match(line)
    if match is None:
        raise ValueError(f"not a recording line: {line[:100]!r}")
    word, stamp, frame = match.groups()
    direction = "in" if word.lower() in _INBOUND else "out"
    return RecordedFrame(_timestamp(stamp.rstrip(":")), 1, direction, frame, {})


def _json_line(data: Dict[str, Any]) -> RecordedFrame:
    t, conn, direction, frame = data["t"], data.get("conn", 1), data["dir"], data.get("frame", "")
    # bool is an int subclass: "t": true is as wrong as "t": null.
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise ValueError(f"'t' must be a number of seconds, not {t!r}")
    if isinstance(conn, bool) or not isinstance(conn, int):
        raise ValueError(f"'conn' must be a connection number, not {conn!r}")
    if not isinstance(direction, str):
        raise ValueError(f"'dir' must be a string, not {direction!r}")
    if not isinstance(frame, str):
        raise ValueError(f"'frame' must be the frame's text (a JSON string), not {type(frame).__name__}")
    fields = {k: v for k, v in data.items() if k not in ("t", "conn", "dir", "frame")}
    return RecordedFrame(float(t), conn, direction, frame, fields)


def _timestamp(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        # Python 3.9's fromisoformat wants 3 or 6 fraction digits: pad or cut to 6 first.
        iso = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text.replace("Z", "+00:00"), count=1)
        moment = datetime.datetime.fromisoformat(iso)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()
    return value / 1000 if value > 1e11 else value  # milliseconds, as most exchange tools log


def recording_files(path: Union[str, "os.PathLike[str]"]) -> List[str]:
    """``path`` preceded by its rotated predecessors (``path.N`` ... ``path.1``), oldest first."""
    base = os.fspath(path)
    older = []
    number = 1
    while os.path.exists(f"{base}.{number}"):
        older.append(f"{base}.{number}")
        number += 1
    return older[::-1] + [base]


def read_recording(path: Union[str, "os.PathLike[str]"], include_rotated: bool = True) -> Iterator[RecordedFrame]:
    """Every line of the recording at ``path``, in order.

    With ``include_rotated`` the files rotated away before it (``path.N`` ... ``path.1``)
    come first, so subscriptions acknowledged in an older file are still known.

    A last line cut short (no newline, and not a whole line: the disk filled up, or the
    process died, while it was being written) is skipped with a warning; every complete
    line before it is read.

    Raises:
        ValueError: a line is not a recording line (the message names the file and line).
    """
    files = recording_files(path) if include_rotated else [os.fspath(path)]
    for name in files:
        with open(name, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    frame = parse_line(line)
                except ValueError as err:
                    # Only the last line can lack its newline; only there is "cut short" the likely cause.
                    if not line.endswith("\n"):
                        logger.warning("%s:%d: skipped an incomplete last line (%d characters; the recording "
                                       "was cut while it was written)", name, number, len(line))
                        continue
                    raise ValueError(f"{name}:{number}: {err}") from None
                if frame is not None:
                    yield frame
