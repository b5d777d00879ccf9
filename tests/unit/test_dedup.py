"""Dedup behaviour: fingerprints, exact and suppress modes, the memory store."""

from __future__ import annotations

import asyncio

import pytest

from dedup import Deduplicator, MemoryStore, Mode, event_id, fingerprint, split_id, window_tag
from formats import Event

EXACT, SUPPRESS = Mode.EXACT, Mode.SUPPRESS


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
    assert fingerprint(a) != fingerprint(a._replace(format="custom"))


def test_fingerprint_is_16_hex_digits() -> None:
    fp = fingerprint(ev(("x",)))
    assert len(fp) == 16 and int(fp, 16) >= 0


def test_event_id_is_fingerprint_window_and_occurrence() -> None:
    assert window_tag(1795983595.25) == "1a228f6d6f2"
    assert event_id("0000000000000abc", "1a228f6d6f2", 3) == "0000000000000abc-1a228f6d6f2-3"
    assert split_id("0000000000000abc-1a228f6d6f2-3") == ("0000000000000abc", "1a228f6d6f2", 3)


def test_exact_mode_forwards_every_copy_with_increasing_occurrence() -> None:
    d = Deduplicator(MemoryStore(), clock=Clock())
    out = asyncio.run(d.decide([ev(("x",)), ev(("x",)), ev(("x",)), ev(("y",))]))
    assert out.forward == [True] * 4
    assert [i.split("-")[2] for i in out.ids] == ["1", "2", "3", "1"]


def test_exact_mode_two_nodes_sharing_a_store_forward_each_occurrence_once() -> None:
    clock, store = Clock(), MemoryStore()
    node_a = Deduplicator(store, node="a", clock=clock)
    node_b = Deduplicator(store, node="b", clock=clock)
    copies = [ev(("x",))] * 3
    assert decide(node_a, copies) == [True, True, True]
    # node B lost one copy: its two copies are occurrences 1 and 2, both taken.
    assert decide(node_b, copies[:2]) == [False, False]


def test_exact_mode_node_that_saw_more_copies_forwards_the_extra_one() -> None:
    clock, store = Clock(), MemoryStore()
    a, b = Deduplicator(store, node="a", clock=clock), Deduplicator(store, node="b", clock=clock)
    assert decide(a, [ev(("x",))] * 2) == [True, True]
    assert decide(b, [ev(("x",))] * 3) == [False, False, True]


def test_exact_mode_window_restarts_occurrences_after_w() -> None:
    clock = Clock()
    d = Deduplicator(MemoryStore(), window=30.0, clock=clock)
    first = asyncio.run(d.decide([ev(("x",)), ev(("x",))]))
    clock.now += 31
    again = asyncio.run(d.decide([ev(("x",))]))
    fp, opened, reopened = first.fingerprints[0], window_tag(clock.now - 31), window_tag(clock.now)
    assert first.ids == [f"{fp}-{opened}-1", f"{fp}-{opened}-2"]
    # Occurrence 1 of the next window: another id, so a downstream never takes it for a repeat.
    assert again.forward == [True] and again.ids == [f"{fp}-{reopened}-1"]


def test_suppress_mode_forwards_one_per_window() -> None:
    clock = Clock()
    d = Deduplicator(MemoryStore(), mode=SUPPRESS, window=30.0, clock=clock)
    assert decide(d, [ev(("x",)), ev(("x",)), ev(("y",))]) == [True, False, True]
    clock.now += 10
    assert decide(d, [ev(("x",))]) == [False]
    clock.now += 21
    assert decide(d, [ev(("x",))]) == [True]


def test_empty_batch_asks_nothing() -> None:
    assert asyncio.run(Deduplicator(MemoryStore()).decide([])).ids == []


def test_memory_store_rejects_held_id_and_accepts_after_expiry() -> None:
    s = MemoryStore()
    assert s.claim_now("n", ["f"], SUPPRESS, 10.0, now=0.0) == (["f-0-1"], [True])
    assert s.claim_now("n", ["f"], SUPPRESS, 10.0, now=5.0) == (["f-0-1"], [False])
    assert s.claim_now("n", ["f"], SUPPRESS, 10.0, now=10.0) == (["f-2710-1"], [True])


def test_memory_store_expired_claim_behind_a_longer_lived_one_is_claimable() -> None:
    s = MemoryStore()
    s.claim_now("n", ["a"], EXACT, 100.0, now=0.0)
    s.claim_now("n", ["b"], SUPPRESS, 10.0, now=0.0)
    # b's window closed at 10 but sits behind a's, which lives until 100.
    assert s.claim_now("n", ["b"], SUPPRESS, 10.0, now=20.0) == (["b-4e20-1"], [True])


def test_memory_store_windows_and_claims_are_bounded_and_evictions_counted() -> None:
    s = MemoryStore(max_entries=3)
    s.claim_now("n", [f"f{i}" for i in range(5)], EXACT, 100.0, now=0.0)
    stats = s.stats()
    assert stats["entries"] == 3 and stats["evicted"] == 2
    assert stats["windows"] == 3 and stats["windows_evicted"] == 2
    # f0's window and claim were evicted: its next copy is occurrence 1 again and wins.
    assert s.claim_now("n", ["f0"], EXACT, 100.0, now=1.0) == (["f0-3e8-1"], [True])
    assert s.claim_now("n", ["f4"], EXACT, 100.0, now=1.0) == (["f4-0-2"], [True])


def test_memory_store_expiry_frees_windows_and_claims() -> None:
    s = MemoryStore()
    s.claim_now("n", ["a", "b", "a"], EXACT, 10.0, now=0.0)
    s.claim_now("n", [], EXACT, 10.0, now=11.0)
    assert s.stats()["entries"] == 0 and s.open_windows() == 0


def test_memory_store_rejects_zero_cap() -> None:
    with pytest.raises(ValueError):
        MemoryStore(0)


def test_memory_store_count_ids_numbers_after_them_and_claims_nothing() -> None:
    s = MemoryStore()
    s.count_ids("n", ["a-5-3", "b-5-1", "a-5-2", "a-4-9"], 10.0, now=0.0)  # a-4-9: another window
    assert s.counted_ids("n", now=1.0) == ["a-5-3", "b-5-1"]
    assert s.claim_now("n", ["a", "b"], EXACT, 10.0, now=1.0) == (["a-5-4", "b-5-2"], [True, True])
    assert s.claim_ids(["a-5-3", "a-5-4"], 10.0, now=1.0) == [True, False]
    # In the same window; the other node's counter did not move.
    assert s.claim_now("m", ["a"], EXACT, 10.0, now=1.0) == (["a-5-1"], [True])
    assert s.counted_ids("n", now=10.0) == []  # the windows opened at 0 closed


def test_memory_store_without_exact_claims_numbers_alike_and_still_suppresses() -> None:
    with_claims, without = MemoryStore(), MemoryStore(exact_claims=False)
    for now, batch in [(0.0, ["a", "b", "a"]), (5.0, ["a"]), (12.0, ["a", "b"])]:
        expected = with_claims.claim_now("n", batch, EXACT, 10.0, now)
        assert without.claim_now("n", batch, EXACT, 10.0, now) == expected
    assert without.stats()["entries"] == 0 and with_claims.stats()["entries"] > 0
    assert without.claim_now("n", ["s", "s"], SUPPRESS, 10.0, 20.0)[1] == [True, False]


def test_memory_store_a_window_renewed_in_a_later_bucket_outlives_the_bucket_it_left() -> None:
    s = MemoryStore()
    s.claim_now("n", ["f"], EXACT, 10.0, now=0.0)  # closes at 10
    (renewed,), _ = s.claim_now("n", ["f"], EXACT, 10.0, now=10.5)  # a new window, closes at 20.5
    s.claim_now("n", [], EXACT, 10.0, now=11.5)  # the first window's bucket has ended
    assert s.open_windows() == 1
    assert s.claim_now("n", ["f"], EXACT, 10.0, now=12.0) == ([renewed[:-1] + "2"], [True])
    assert s.counted_ids("n", now=12.0) == [renewed[:-1] + "2"]
