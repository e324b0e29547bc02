"""SnapshotRepair: re-authenticate at once for damaged state, then with back-off, at most 3 times in 10 minutes."""
import logging

from bfxsync.account.repair import REAUTHS, REPAIR_TRIES, REPAIR_WINDOW, SnapshotRepair
from bfxsync.backoff import Backoff

STEADY = Backoff(initial=2.0, factor=2.0, maximum=30.0, jitter=0.0)  # 4 s before the 2nd, 8 s before the 3rd
OS = frozenset({"os"})


def test_whole_state_asks_for_nothing():
    """No damage, no re-authentication."""
    assert SnapshotRepair(backoff=STEADY).verdict(0.0, 1, frozenset()) is None


def test_first_damage_reauthenticates_at_once_and_once():
    """The first damaged authentication is answered at once; asking again for it gives nothing more."""
    counts = {}
    repair = SnapshotRepair(counts, STEADY)
    reason = repair.verdict(100.0, 1, OS)
    assert reason is not None and "os" in reason and "1 of at most 3" in reason
    assert repair.verdict(100.5, 1, OS) is None and counts[REAUTHS] == 1


def test_back_off_then_give_up(caplog):
    """The 2nd and 3rd re-authentications wait the back-off; the 4th damaged authentication is lived with."""
    repair = SnapshotRepair(backoff=STEADY)
    assert repair.verdict(0.0, 1, OS)
    assert repair.verdict(1.0, 2, OS) is None  # backing off: 4 s after the first
    assert repair.verdict(4.0, 2, OS)
    assert repair.verdict(11.9, 3, OS) is None  # 8 s after the second
    assert repair.verdict(12.0, 3, OS)
    with caplog.at_level(logging.WARNING, logger="bfxsync"):
        assert repair.verdict(100.0, 4, OS) is None
    assert repair.given_up(4) and not repair.given_up(3) and repair.counts[REAUTHS] == REPAIR_TRIES
    assert "going on with the rows that could be read" in caplog.text
    assert repair.verdict(200.0, 4, OS) is None and caplog.text.count("going on") == 1  # said once


def test_the_bound_is_per_window():
    """Once the window has passed since the first re-authentication, damage is repaired again."""
    repair = SnapshotRepair(backoff=STEADY)
    for auth, now in ((1, 0.0), (2, 4.0), (3, 12.0)):
        assert repair.verdict(now, auth, OS)
    assert repair.verdict(REPAIR_WINDOW - 1, 4, OS) is None and repair.given_up(4)
    assert repair.verdict(REPAIR_WINDOW + 5, 5, OS)  # the first one left the window


def test_a_whole_authentication_between_keeps_the_pace():
    """Clean snapshots in between do not reset the count: damage that comes back is still bounded."""
    repair = SnapshotRepair(backoff=STEADY)
    assert repair.verdict(0.0, 1, OS)
    assert repair.verdict(1.0, 2, frozenset()) is None
    assert repair.verdict(2.0, 3, frozenset({"ou"})) is None  # 4 s after the first
    assert repair.verdict(4.0, 3, frozenset({"ou"}))
