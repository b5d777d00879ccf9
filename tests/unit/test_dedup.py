"""Dedup behaviour: fingerprints, exact and suppress modes, the memory store."""

from __future__ import annotations

import asyncio

import pytest

from dedup import Deduplicator, MemoryStore, Mode, event_id, fingerprint
from formats import Event


def ev(identity: tuple[object, ...], peer: tuple[str, int] = ("10.0.0.1", 514), t: float = 0.0) -> Event:
    return Event("syslog", peer, t, {}, b"raw", identity)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def decide(d: Deduplicator, events: list[Event]) -> list[bool]:
    return asyncio.run(d.decide(events)).forward


def test_fingerprint_ignores_peer_port_and_receive_time() -> None:
    a = ev(("x", 1), ("10.0.0.1", 514), 1.0)
    b = ev(("x", 1), ("10.0.0.1", 40000), 99.0)
    assert fingerprint(a) == fingerprint(b)


def test_fingerprint_parts_are_unambiguous() -> None:
    assert fingerprint(ev(("ab", "c"))) != fingerprint(ev(("a", "bc")))
    assert fingerprint(ev((b"1",))) != fingerprint(ev(("1",))) != fingerprint(ev((1,)))


def test_fingerprint_depends_on_format() -> None:
    a = ev(("x",))
    b = Event("custom", a.peer, 0.0, {}, b"", ("x",))
    assert fingerprint(a) != fingerprint(b)


def test_fingerprint_is_16_hex_digits() -> None:
    fp = fingerprint(ev(("x",)))
    assert len(fp) == 16 and int(fp, 16) >= 0


def test_event_id_is_fingerprint_and_occurrence() -> None:
    assert event_id("0000000000000abc", 3) == "0000000000000abc-3"


def test_exact_mode_forwards_every_copy_with_increasing_occurrence() -> None:
    clock = Clock()
    d = Deduplicator(MemoryStore(), clock=clock)
    out = asyncio.run(d.decide([ev(("x",)), ev(("x",)), ev(("x",)), ev(("y",))]))
    assert out.forward == [True] * 4
    assert [i.split("-")[1] for i in out.ids] == ["1", "2", "3", "1"]


def test_exact_mode_two_nodes_sharing_a_store_forward_each_occurrence_once() -> None:
    clock = Clock()
    store = MemoryStore()
    node_a = Deduplicator(store, clock=clock)
    node_b = Deduplicator(store, clock=clock)
    copies = [ev(("x",))] * 3
    assert decide(node_a, copies) == [True, True, True]
    # node B lost one copy: its two copies are occurrences 1 and 2, both taken.
    assert decide(node_b, copies[:2]) == [False, False]


def test_exact_mode_node_that_saw_more_copies_forwards_the_extra_one() -> None:
    clock = Clock()
    store = MemoryStore()
    a, b = Deduplicator(store, clock=clock), Deduplicator(store, clock=clock)
    assert decide(a, [ev(("x",))] * 2) == [True, True]
    assert decide(b, [ev(("x",))] * 3) == [False, False, True]


def test_exact_mode_window_restarts_occurrences_after_w() -> None:
    clock = Clock()
    d = Deduplicator(MemoryStore(), window=30.0, clock=clock)
    first = asyncio.run(d.decide([ev(("x",)), ev(("x",))]))
    clock.now += 31
    again = asyncio.run(d.decide([ev(("x",))]))
    fp = first.fingerprints[0]
    assert first.ids == [f"{fp}-1", f"{fp}-2"]
    assert again.forward == [True] and again.ids == [f"{fp}-1"]


def test_suppress_mode_forwards_one_per_window() -> None:
    clock = Clock()
    d = Deduplicator(MemoryStore(), mode=Mode.SUPPRESS, window=30.0, clock=clock)
    assert decide(d, [ev(("x",)), ev(("x",)), ev(("y",))]) == [True, False, True]
    clock.now += 10
    assert decide(d, [ev(("x",))]) == [False]
    clock.now += 21
    assert decide(d, [ev(("x",))]) == [True]


def test_occurrence_table_is_bounded_and_counts_evictions() -> None:
    clock = Clock()
    d = Deduplicator(MemoryStore(), max_entries=10, clock=clock)
    decide(d, [ev((i,)) for i in range(25)])
    decide(d, [ev(("last",))])
    assert d.open_windows() <= 10
    assert d.evicted >= 15


def test_memory_store_rejects_held_key_and_accepts_after_expiry() -> None:
    s = MemoryStore()
    assert s.claim_now([("f1-1", 10.0)], now=0.0) == [True]
    assert s.claim_now([("f1-1", 20.0)], now=5.0) == [False]
    assert s.claim_now([("f1-1", 30.0)], now=10.0) == [True]


def test_memory_store_expired_key_behind_a_longer_lived_one_is_claimable() -> None:
    s = MemoryStore()
    s.claim_now([("f1-1", 100.0), ("f2-5", 10.0)], now=0.0)
    # (2, 5) expired at 10 but sits behind (1, 1), which lives until 100.
    assert s.claim_now([("f2-5", 50.0)], now=20.0) == [True]


def test_memory_store_cap_evicts_oldest_and_counts() -> None:
    s = MemoryStore(max_entries=3)
    s.claim_now([(f"f{i}-1", 100.0) for i in range(5)], now=0.0)
    assert s.stats() == {"entries": 3, "evicted": 2}
    assert s.claim_now([("f0-1", 100.0)], now=1.0) == [True]  # evicted, so won again
    assert s.claim_now([("f4-1", 100.0)], now=1.0) == [False]


def test_memory_store_rejects_zero_cap() -> None:
    with pytest.raises(ValueError):
        MemoryStore(0)
