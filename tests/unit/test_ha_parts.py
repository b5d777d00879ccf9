"""The HA stage's parts on their own: lease, local record, pending buffer."""

from __future__ import annotations

import math

from formats import Event
from gateway.ha import Lease, Role
from gateway.ha._local import LocalRecord
from gateway.ha._pending import PendingBuffer


def ev(msg: str, at: float) -> Event:
    return Event("syslog", ("10.0.0.9", 514), at, {"msg": msg}, b"", (msg,))


def test_a_lease_forwards_only_as_master_before_both_its_ends() -> None:
    assert Lease(Role.MASTER, 1, until=10.0).forwarding(9.9)
    assert not Lease(Role.MASTER, 1, until=10.0).forwarding(10.0)
    assert not Lease(Role.MASTER, 1, until=10.0, term=5.0).forwarding(5.0)
    assert not Lease(Role.STANDBY, 1, until=math.inf).forwarding(0.0)
    assert not Lease(Role.MASTER).forwarding(0.0)  # a lease never confirmed forwards nothing
    assert Lease(Role.MASTER, 1, until=10.0, term=5.0).remaining(4.0) == 1.0
    assert Lease(Role.MASTER, 1, until=10.0).remaining(11.0) == 0.0


def test_local_record_knows_an_occurrence_forwarded_under_another_window_tag() -> None:
    now = [1000.0]
    record = LocalRecord("a", 30.0, 100, lambda: now[0])
    record.add_forwarded(["f-3e8000-1", "g-3e8000-2"])  # windows opened at t=4096 s (0x3e8000 ms)
    # The standby numbered the same occurrences in windows it saw open 20 s later; another
    # fingerprint, another occurrence, and a window a full window later are other events.
    ids = ["f-3ed620-1", "g-3ed620-1", "h-3ed620-1", "f-3f2440-1"]
    assert record.choose(ids) == [False, True, True, True]
    assert record.choose(["f-3e8000-1"]) == [False]


def test_local_record_chooses_an_id_once_until_it_is_forwarded_or_released() -> None:
    record = LocalRecord("a", 30.0, 100, lambda: 1000.0)
    assert record.choose(["f-3e8000-1", "g-3e8000-1"]) == [True, True]
    assert record.choose(["f-3e8000-1", "g-3e8000-1"]) == [False, False]  # in hand
    record.release(["f-3e8000-1"])  # its sink write did not happen
    record.add_forwarded(["g-3e8000-1"])
    assert record.choose(["f-3e8000-1", "g-3e8000-1"]) == [True, False]


def test_pending_entries_are_checked_rescued_with_backoff_and_leave_at_the_end_of_the_window() -> None:
    pending = PendingBuffer(max_pending=10, check_after=0.3, grace=1.0, max_age=8.0, now=0.0)
    pending.progress_at = -100.0  # the master has stalled: age alone decides
    assert pending.add([ev("a", 0.0), ev("b", 0.0)], ["fa", "fb"], ["fa-1-1", "fb-1-1"]) == 0
    assert pending.due(0.2, 100) == []
    due = pending.due(0.5, 100)
    assert due == ["fa-1-1", "fb-1-1"]
    assert pending.settle(due, [True, False], 0.5) == ([], 0)  # a forwarded; b waits for grace
    rescued_at = []
    for t in [x / 10 for x in range(5, 100)]:
        due = pending.due(t, 100)
        if due:
            rescue, expired = pending.settle(due, [False], t)
            rescued_at += [t] * len(rescue)
            if expired:
                break
    assert rescued_at == [1.0, 2.0, 4.0, 8.0][: len(rescued_at)] and len(rescued_at) == 3
    assert len(pending) == 0


def test_pending_buffer_sheds_its_oldest_beyond_its_bound() -> None:
    pending = PendingBuffer(max_pending=2, check_after=0.3, grace=1.0, max_age=8.0, now=0.0)
    events = [ev(m, 0.0) for m in "abc"]
    assert pending.add(events, ["fa", "fb", "fc"], ["fa-1-1", "fb-1-1", "fc-1-1"]) == 1
    assert list(pending.entries) == ["fb-1-1", "fc-1-1"]
