"""Serving a recording (``Emulator.replay(path)``): clients get the recorded frames, not the market's.

A recording (:mod:`bfxsync.recording`) is cut into *episodes*: one recorded subscription
each, from its ``subscribed`` ack to its ``unsubscribed`` (or to the end of its socket or
of the recording), with every frame of its chanId in between. Episodes are keyed by what
identifies a subscription: channel plus symbol, or key, plus ``prec``/``freq``/``len``.

When a client subscribes, its request is matched to the next episode of the same
identity not yet played on that connection: the first subscribe gets the first recorded
one, a resubscribe (a book resync) the second, and so on; past the last recorded one the
last is played again. The client gets the recorded ack (with its own ``subId`` and a new
chanId), then the episode's frames in recorded order, with the chanId rewritten and the
rest of the text untouched, so recorded ``cs`` frames still match. An unsubscribe is
answered ``unsubscribed`` and ends the episode; a subscription the recording lacks is
refused with a 10300 error.

Pace: each frame is due ``(t - t0) / speed`` seconds after the connection's first
subscribe, ``t0`` being the first ack of the recording, so the channels keep their
recorded interleaving; ``speed`` 0 sends everything at once (in recorded order). Once an
episode is played out its channel gets an ``hb`` every ``heartbeat_interval``, so the
client keeps the final state instead of resubscribing a silent channel.

Everything else is the emulator's own: ``info`` on connect, ``conf``, ``ping``, ``auth``.
Recorded ``info`` events, channel 0 and sequence numbers are not replayed (a client with
``sequence=True`` sees the recorded numbers, which skip those of channels it did not
subscribe to).

Threads: one ``bfxsync-emulator-replay-<n>`` per connection that subscribed, joined when
the connection ends. Lock order: player lock, then the connection's lock (frames are
queued under the player lock, so an ``unsubscribed`` is never followed by a frame of the
channel it ended).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Union

import attrs

from bfxsync import protocol
from bfxsync.recording import RecordedFrame, read_recording

from .channels import error_frame
from .session import Session

__all__ = ["Episode", "Replay", "load_episodes", "subscription_identity"]

logger = logging.getLogger(__name__)

_CHAN = re.compile(r"\[\s*(\d+)\s*(?=[,\]])")
#: Frames a connection may have queued before the player waits for its writer.
_BURST = 500

Identity = tuple[Any, ...]


def subscription_identity(fields: Mapping[str, Any]) -> Identity | None:
    """What makes two subscriptions the same, from a subscribe request or its ack; None if unknown."""
    channel = fields.get("channel")
    if channel in (protocol.BOOK, protocol.TICKER, protocol.TRADES):
        symbol = fields.get("symbol")
        if not isinstance(symbol, str):
            return None
        if not symbol.startswith(("t", "f")):
            symbol = "t" + symbol  # "BTCUSD" is acked as "tBTCUSD"
        if channel != protocol.BOOK:
            return (channel, symbol)
        return (channel, symbol, fields.get("prec", "P0"), fields.get("freq", "F0"), str(fields.get("len", "25")))
    if channel in (protocol.CANDLES, protocol.STATUS):
        key = fields.get("key")
        return (channel, key) if isinstance(key, str) else None
    return None


@attrs.define(eq=False)
class Episode:
    """One recorded subscription: its ack and its frames, ``(t, text after the chanId)``."""

    identity: Identity
    ack: dict[str, Any]
    t: float
    frames: list[tuple[float, str]] = attrs.field(factory=list)


def load_episodes(lines: Iterable[RecordedFrame]) -> dict[Identity, list[Episode]]:
    """Cut a recording into episodes, in the order they were acknowledged, by identity."""
    episodes: dict[Identity, list[Episode]] = {}
    channels: dict[int, dict[int, Episode]] = {}  # per recorded connection: chanId -> open episode
    for line in lines:
        if line.direction in ("open", "close"):
            channels.pop(line.conn, None)  # chanIds belong to one socket
            continue
        if line.direction != "in":
            continue
        text = line.frame
        if text.startswith("["):
            match = _CHAN.match(text)
            episode = channels.get(line.conn, {}).get(int(match.group(1))) if match else None
            if episode is not None and match is not None:
                episode.frames.append((line.t, text[match.end():]))
        elif text.startswith("{"):
            _on_event(line, text, channels.setdefault(line.conn, {}), episodes)
    return episodes


def _on_event(line: RecordedFrame, text: str, open_episodes: dict[int, Episode],
              episodes: dict[Identity, list[Episode]]) -> None:
    try:
        event = json.loads(text)
    except ValueError:
        return
    if not isinstance(event, dict) or type(event.get("chanId")) is not int:
        return
    if event.get("event") == "subscribed":
        identity = subscription_identity(event)
        if identity is not None:
            episode = Episode(identity, event, line.t)
            open_episodes[event["chanId"]] = episode
            episodes.setdefault(identity, []).append(episode)
    elif event.get("event") == "unsubscribed":
        open_episodes.pop(event["chanId"], None)


class _Stream:
    """One episode being played on one connection."""

    def __init__(self, episode: Episode, chan_id: int) -> None:
        self.episode = episode
        self.chan_id = chan_id
        self.prefix = f"[{chan_id}"
        self.index = 0
        self.last_sent = time.monotonic()

    @property
    def done(self) -> bool:
        return self.index >= len(self.episode.frames)


class _Player:
    """Plays the episodes subscribed on one connection, from its own thread."""

    def __init__(self, replay: Replay, session: Session) -> None:
        self._replay = replay
        self._session = session
        self._cond = threading.Condition()
        self._streams: dict[int, _Stream] = {}
        self._played: dict[Identity, int] = {}
        self._chan_ids = itertools.count(replay.first_chan_id, 7)
        self._closed = False
        self._anchor = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"bfxsync-emulator-replay-{session.id}")
        self._thread.start()

    def subscribe(self, request: Mapping[str, Any]) -> None:
        identity = subscription_identity(request)
        found = self._replay.episodes.get(identity, []) if identity is not None else []
        with self._cond:
            if identity is None or not found:
                self._session.send_event(error_frame(request, "subscribe: not in the recording", protocol.ERR_SUB_FAIL))
                return
            if any(stream.episode.identity == identity for stream in self._streams.values()):
                self._session.send_event(error_frame(request, "subscribe: dup", protocol.ERR_SUB_MULTI))
                return
            played = self._played.get(identity, 0)
            self._played[identity] = played + 1
            episode = found[min(played, len(found) - 1)]
            stream = _Stream(episode, next(self._chan_ids))
            ack = dict(episode.ack, chanId=stream.chan_id)
            ack.pop("subId", None)
            if "subId" in request:
                ack["subId"] = request["subId"]
            self._session.send_event(ack)
            self._streams[stream.chan_id] = stream
            if stream.done:
                self._replay.finished(episode)
            self._cond.notify_all()

    def unsubscribe(self, chan_id: Any) -> bool:
        with self._cond:
            stream = self._streams.pop(chan_id, None) if type(chan_id) is int else None
            if stream is None:
                return False
            self._session.send_event({"event": "unsubscribed", "status": "OK", "chanId": chan_id})
            self._replay.finished(stream.episode)
            self._cond.notify_all()
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _due(self, stream: _Stream) -> tuple[float, float]:
        """When the stream's next frame (or heartbeat) is due, and its recorded time (the tie-break)."""
        if stream.done:
            return stream.last_sent + self._replay.heartbeat_interval, float("inf")
        t = stream.episode.frames[stream.index][0]
        speed = self._replay.speed
        return (self._anchor + (t - self._replay.t0) / speed if speed > 0 else 0.0), t

    def _run(self) -> None:
        burst = 0
        while True:
            with self._cond:
                stream = self._next_due()
                if stream is None:
                    return
                self._send(stream)
            burst += 1
            if burst >= _BURST:  # let the writer catch up: the session drops a client with too much queued
                burst = 0
                self._session.wait_flushed(10.0)

    def _next_due(self) -> _Stream | None:
        """Wait (player lock held) until a stream has a frame due; None once closed."""
        while not self._closed:
            now = time.monotonic()
            due = min(((self._due(stream), stream) for stream in self._streams.values()),
                      key=lambda pair: pair[0], default=None)
            if due is not None and due[0][0] <= now:
                return due[1]
            self._cond.wait(None if due is None else due[0][0] - now)
        return None

    def _send(self, stream: _Stream) -> None:
        """Queue the stream's next frame, or a heartbeat once it is played out (player lock held)."""
        stream.last_sent = time.monotonic()
        if stream.done:
            self._session.send_raw(f'{stream.prefix},"{protocol.HEARTBEAT}"]')
            return
        frames = stream.episode.frames
        self._session.send_raw(stream.prefix + frames[stream.index][1])
        stream.index += 1
        self._replay.sent += 1
        if stream.index == len(frames):
            self._replay.finished(stream.episode)


class Replay:
    """A recording being served by an emulator (returned by ``Emulator.replay``).

    Args:
        lines: the recording's lines.
        speed: 1.0 plays at the recorded pace, 2.0 twice as fast, 0 as fast as possible.
        heartbeat_interval: seconds between ``hb`` frames on a played-out channel.
    """

    def __init__(self, lines: Iterable[RecordedFrame], speed: float = 1.0, heartbeat_interval: float = 15.0) -> None:
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or more, not {speed!r}")
        self.speed = speed
        self.heartbeat_interval = heartbeat_interval
        self.episodes = load_episodes(lines)
        starts = [episode.t for found in self.episodes.values() for episode in found]
        self.t0 = min(starts, default=0.0)
        self.first_chan_id = 70_001
        #: Recorded channel frames sent so far, to every connection.
        self.sent = 0
        self._lock = threading.Condition()
        self._players: dict[int, _Player] = {}
        self._finished: set[int] = set()

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike[str]], speed: float = 1.0,
                  heartbeat_interval: float = 15.0) -> Replay:
        """Load the recording at ``path`` (and its rotated predecessors)."""
        return cls(read_recording(path), speed, heartbeat_interval)

    @property
    def episode_count(self) -> int:
        """Recorded subscriptions (every resubscribe counts)."""
        return sum(len(found) for found in self.episodes.values())

    def wait_finished(self, timeout: float) -> bool:
        """Wait until every recorded episode has been played out (or unsubscribed) on some connection.

        "Played out" is the emulator's side: every frame has been queued for the client's
        socket, not yet read by the client. To wait for the client too, call its
        ``ping()`` afterwards: the pong is queued after the last frame, so when ``ping()``
        returns the client has handled every one of them (on that connection).

        Returns:
            False if ``timeout`` seconds passed first.
        """
        with self._lock:
            return self._lock.wait_for(lambda: len(self._finished) >= self.episode_count, timeout)

    def finished(self, episode: Episode) -> None:
        """An episode ended on a connection (called by the players)."""
        with self._lock:
            self._finished.add(id(episode))
            self._lock.notify_all()

    # -- hooks called by the hub (connection handler threads) ----------------------------------

    def handle(self, session: Session, request: Mapping[str, Any]) -> bool:
        """Answer ``subscribe`` and ``unsubscribe`` from the recording; False leaves a request to the hub."""
        event = request.get("event")
        if event == "subscribe":
            self._player(session).subscribe(request)
            return True
        if event == "unsubscribe":
            with self._lock:
                player = self._players.get(session.id)
            return player is not None and player.unsubscribe(request.get("chanId"))
        return False

    def session_closed(self, session: Session) -> None:
        """The connection ended: stop (and join) its player."""
        with self._lock:
            player = self._players.pop(session.id, None)
        if player is not None:
            player.close()

    def _player(self, session: Session) -> _Player:
        with self._lock:
            player = self._players.get(session.id)
            if player is None:
                player = self._players[session.id] = _Player(self, session)
            return player
