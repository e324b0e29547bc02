"""Client.stats(): every counter is present from the start, so reading one never raises KeyError."""
import re
from pathlib import Path

from bfxsync._engine.link import PROBLEM_KINDS, STAT_KEYS
from bfxsync._engine.pool import CLIENT_PROBLEM_KINDS

ROOT = Path(__file__).resolve().parents[1]


class TestCountersFromTheStart:
    def test_a_fresh_client_lists_every_counter_with_zero(self, make_client, emulator):
        """Before any bad input, every bad-input kind (oversized_frame included) and every event counter reads 0."""
        client = make_client(emulator.url)
        client.wait_connected(10)
        stats = client.stats()
        for key in STAT_KEYS + CLIENT_PROBLEM_KINDS:
            if key != "dials":  # the one dial that connected
                assert stats[key] == 0, key
        assert stats["oversized_frame"] == 0 and stats["unknown_channel"] == 0 and stats["unknown_tag"] == 0
        assert stats["dials"] >= 1
        for info in client.connections():  # each connection's own figures too
            assert info.stats["oversized_frame"] == 0 and info.stats["protocol_error"] == 0

    def test_a_counted_problem_adds_to_its_listed_counter(self, make_client, emulator):
        """A frame for an unknown chanId counts under its kind, which was listed (0) before."""
        client = make_client(emulator.url)
        client.wait_connected(10)
        assert client.stats()["unknown_channel"] == 0
        emulator.inject("[987654,[1,2,3]]")
        client.ping()  # the pong comes after the injected frame: it has been read
        assert client.stats()["unknown_channel"] == 1

    def test_every_kind_the_code_counts_is_listed(self):
        """Each literal kind passed to problem() in the package is one of the listed kinds, and so is every
        FrameError kind: a new kind added without listing it would appear only after its first case."""
        listed = set(PROBLEM_KINDS) | set(CLIENT_PROBLEM_KINDS)
        found = set()
        for path in (ROOT / "bfxsync").rglob("*.py"):
            if "emulator" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            found |= set(re.findall(r"problem\(\"([a-z_]+)\"", text))
            found |= set(re.findall(r"_bad_frame\(\"([a-z_]+)\"", text))
            found |= set(re.findall(r"kind=\"([a-z_]+)\"", text))
            found |= set(re.findall(r"kind: str = \"([a-z_]+)\"", text))
        assert found and found <= listed, found - listed
