"""The HA stage in-process against a real Redis: spool recovery and rescue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from dedup import Mode, StoreError, fingerprint
from dedup.redis import RedisSettings, RedisStore
from gateway.forward import Forwarder
from gateway.ha import HaStage, Role, encode_rescue
from gateway.spool import Spool
from tests.integration.ha_parts import StuckSink, ev, lease, stage, until
from tests.memory_sink import ListSink
from tests.redis_servers import RedisServer


def test_master_killed_between_claim_and_sink_hands_its_spool_to_the_next_master(
    redis: RedisServer, tmp_path: Path
) -> None:
    async def main() -> tuple[ListSink, ListSink]:
        sink_a, sink_b = ListSink(), ListSink()
        a = stage(redis, "a", Role.MASTER, sink_a, Spool(tmp_path / "spool-a"))
        # a forwards "done" normally; then claims "lost-1", "lost-2", spools them and dies
        # before its sink takes them (only a ever received these two).
        await a.handle([ev("done")])
        await a.master.wait_marked()  # marked, replicated and acknowledged in the spool
        events = [ev("lost-1"), ev("lost-2")]
        fps = [fingerprint(e) for e in events]
        ids, won = await a.store.claim("a", fps, Mode.EXACT, 30.0, time.time())
        assert won == [True, True]
        assert a.spool is not None
        spooled = [encode_rescue(e, f, i) for e, f, i in zip(events, fps, ids, strict=True)]
        a.spool.append(spooled)
        a.spool.close()
        await a.store.close()
        # b becomes master; a restarts as standby and recovers its spool.
        b = stage(redis, "b", Role.MASTER, sink_b, epoch=2)
        a2 = stage(redis, "a", Role.STANDBY, ListSink(), Spool(tmp_path / "spool-a"), epoch=2)
        assert await a2.recover_spool() == 2
        await b.rescue_round(block_ms=100)
        await b.rescue_round(block_ms=100)  # nothing more: each event once
        assert await a2.recover_spool() == 0
        for s in (a2, b):
            await s.store.close()
        return sink_a, sink_b

    sink_a, sink_b = asyncio.run(main())
    assert sink_a.msgs() == ["done"]
    assert sorted(sink_b.msgs()) == ["lost-1", "lost-2"]


def test_spooled_batch_already_marked_forwarded_is_not_forwarded_again(
    redis: RedisServer, tmp_path: Path
) -> None:
    async def main() -> ListSink:
        a = stage(redis, "a", Role.MASTER, ListSink(), Spool(tmp_path / "spool-a"))
        event = ev("marked")
        fp = fingerprint(event)
        ids, _ = await a.store.claim("a", [fp], Mode.EXACT, 30.0, time.time())
        assert a.spool is not None
        a.spool.append([encode_rescue(event, fp, ids[0])])
        await a.store.mark_forwarded(ids, 30.0)  # the kill came after the mark, before the ack
        a.spool.close()
        sink_b = ListSink()
        b = stage(redis, "b", Role.MASTER, sink_b, epoch=2)
        a2 = stage(redis, "a", Role.STANDBY, ListSink(), Spool(tmp_path / "spool-a"), epoch=2)
        assert await a2.recover_spool() == 1
        await b.rescue_round(block_ms=100)
        for s in (a, a2, b):
            await s.store.close()
        return sink_b

    assert asyncio.run(main()).lines == []


def test_standby_rescue_of_an_event_the_master_claimed_is_dropped(redis: RedisServer) -> None:
    async def main() -> tuple[ListSink, HaStage]:
        sink = ListSink()
        master = stage(redis, "a", Role.MASTER, sink)
        standby = stage(redis, "b", Role.STANDBY, ListSink())
        await master.handle([ev("both")])
        await standby.handle([ev("both"), ev("only-b")])
        standby.pending.grace = standby.pending.check_after = 0.0
        await standby.standby_round()
        await master.rescue_round(block_ms=100)
        await master.master.wait_marked()
        await standby.standby_round()
        for s in (master, standby):
            await s.store.close()
        return sink, standby

    sink, standby = asyncio.run(main())
    assert sorted(sink.msgs()) == ["both", "only-b"]
    assert len(standby.pending) == 0


def paused(redis: RedisServer, ms: int) -> None:
    """Hold every write on `redis` for `ms` (the master's calls time out meanwhile)."""
    redis.client().execute_command("CLIENT", "PAUSE", ms, "WRITE")


def quick_stage(redis: RedisServer, node: str, role: Role, sink: ListSink) -> HaStage:
    store = RedisStore(RedisSettings(port=redis.port, socket_timeout=0.2))
    forwarder = Forwarder(node, sink)
    # degrade_after 0: these tests are about numbering and write-back in degraded mode itself.
    return HaStage(node, store, forwarder, Mode.EXACT, 30.0, lease(role), grace=0.0, check_after=0.0,
                   degrade_after=0.0)


def test_master_behind_the_standby_forwards_its_own_late_copy_once_through_a_store_timeout(
    redis: RedisServer,
) -> None:
    """The standby rescues an event before the master's own copy arrives; the store then times out.

    Neither the degraded master's local numbering nor the write-back after
    the outage may number the master's late copy after the rescued one.
    """

    async def main() -> tuple[ListSink, HaStage]:
        sink = ListSink()
        master = quick_stage(redis, "a", Role.MASTER, sink)
        standby = quick_stage(redis, "b", Role.STANDBY, ListSink())
        await standby.handle([ev("early"), ev("late")])
        await standby.standby_round()  # both rescued: the master has neither yet
        await master.rescue_round(block_ms=100)
        assert sorted(sink.msgs()) == ["early", "late"]
        paused(redis, 600)
        await master.handle([ev("early")])  # the master's own copy, while the store times out
        assert master.master.degraded
        await asyncio.sleep(0.7)
        await master.handle([ev("other")])  # store back: write-back, then a normal claim
        assert not master.master.degraded
        await master.handle([ev("late")])  # the master's own copy, after the write-back
        await master.master.wait_marked()
        await standby.handle([ev("other")])
        await standby.standby_round()
        for s in (master, standby):
            await s.store.close()
        return sink, standby

    sink, standby = asyncio.run(main())
    assert sorted(sink.msgs()) == ["early", "late", "other"]
    assert len(standby.pending) == 0


def test_write_back_after_an_outage_sends_only_what_the_store_missed(redis: RedisServer) -> None:
    async def main() -> tuple[ListSink, int, int]:
        sink = ListSink()
        master = quick_stage(redis, "a", Role.MASTER, sink)
        assert await master.store.fresh()  # as `start` does: the data set is the pair's
        await master.handle([ev(f"before-{i}") for i in range(50)])
        await master.master.wait_marked()
        paused(redis, 600)
        await master.handle([ev("during-1"), ev("during-2")])
        assert master.master.degraded
        await asyncio.sleep(0.7)
        sets_before = redis.command_calls()["set"]
        await master.handle([ev("after")])
        await master.master.wait_marked()
        sets = redis.command_calls()["set"] - sets_before
        standby = quick_stage(redis, "b", Role.STANDBY, ListSink())
        await standby.handle([ev("during-1"), ev("during-2"), ev("before-7")])
        await standby.standby_round()
        left = len(standby.pending)
        for s in (master, standby):
            await s.store.close()
        return sink, sets, left

    sink, sets, left = asyncio.run(main())
    assert len(sink.msgs()) == 53
    assert left == 0  # the standby sees all three forwarded, so rescues nothing
    # Two ids written back (counter, claim, marker each), then "after" claimed
    # and marked: not the fifty forwarded before the outage.
    assert sets <= 10, sets


def test_store_that_lost_its_data_gets_the_whole_window_back(redis: RedisServer) -> None:
    async def main() -> tuple[ListSink, int]:
        sink = ListSink()
        master = quick_stage(redis, "a", Role.MASTER, sink)
        assert await master.store.fresh()
        await master.handle([ev(f"before-{i}") for i in range(20)])
        redis.client().flushall()  # a restart without persistence
        master.master._store_down(StoreError("gone", "connection"))
        master.master._retry_at = 0.0
        await master.handle([ev("before-3"), ev("after")])  # a real repeat of before-3: its second copy
        standby = quick_stage(redis, "b", Role.STANDBY, ListSink())
        await standby.handle([ev(f"before-{i}") for i in range(20)])
        await standby.standby_round()
        left = len(standby.pending)
        for s in (master, standby):
            await s.store.close()
        return sink, left

    sink, left = asyncio.run(main())
    assert sorted(sink.msgs()) == sorted([f"before-{i}" for i in range(20)] + ["before-3", "after"])
    assert left == 0


def test_standby_rescues_what_the_master_passed_by_and_waits_for_what_it_has_yet_to_reach(
    redis: RedisServer,
) -> None:
    async def main() -> tuple[ListSink, list[int], int]:
        sink = ListSink()
        master = stage(redis, "a", Role.MASTER, sink)
        standby = stage(redis, "b", Role.STANDBY, ListSink())
        standby.pending.grace, standby.pending.check_after = 0.4, 0.05
        for batch in (["e1"], ["only-b"], ["e2"], ["e3", "e4"]):  # the standby receives in this order
            await standby.handle([ev(m) for m in batch])
            await asyncio.sleep(0.06)
        await master.handle([ev("e1")])  # the master lost "only-b" and is behind: e3, e4 are yet to come
        await master.handle([ev("e2")])
        await asyncio.sleep(0.4)
        rescued = []
        await standby.standby_round()
        rescued.append(standby.counters.handed_over["rescued"])  # only-b, not e3 or e4
        await master.rescue_round(block_ms=100)
        await master.handle([ev("e3"), ev("e4")])
        await asyncio.sleep(0.1)
        await standby.standby_round()
        await standby.handle([ev("late")])  # only the standby; the master forwards nothing more
        await asyncio.sleep(0.5)
        await standby.standby_round()  # no progress for `grace`: age alone decides
        rescued.append(standby.counters.handed_over["rescued"])
        await master.rescue_round(block_ms=100)
        await asyncio.sleep(0.45)  # a rescued entry is asked about again after `grace`
        await standby.standby_round()
        for s in (master, standby):
            await s.store.close()
        return sink, rescued, len(standby.pending)

    sink, rescued, left = asyncio.run(main())
    assert rescued == [1, 2]
    assert sorted(sink.msgs()) == ["e1", "e2", "e3", "e4", "late", "only-b"]
    assert left == 0


def test_master_restarted_after_a_crash_mid_batch_forwards_that_batch_from_its_spool(
    redis: RedisServer, tmp_path: Path
) -> None:
    """The restarted master's own watermark must not pass for its previous life's unfinished batch."""

    async def main() -> ListSink:
        a1 = stage(redis, "a", Role.MASTER, StuckSink(), Spool(tmp_path / "spool-a"))
        crash = asyncio.create_task(a1.handle([ev("in-flight")]))
        await asyncio.sleep(0.2)  # claimed and spooled, stuck in the sink
        crash.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await crash
        assert a1.spool is not None
        a1.spool.close()
        await a1.store.close()
        sink = ListSink()
        a2 = stage(redis, "a", Role.MASTER, sink, Spool(tmp_path / "spool-a"), epoch=2)  # a new term
        assert await a2.recover_spool() == 1
        await a2.handle([ev("after-restart")])  # its first batch: a watermark of its own
        await a2.rescue_round(block_ms=100)
        await a2.store.close()
        return sink

    assert sorted(asyncio.run(main()).msgs()) == ["after-restart", "in-flight"]


def test_standby_pending_buffer_is_bounded_and_counts_what_it_sheds(redis: RedisServer) -> None:
    async def main() -> HaStage:
        standby = stage(redis, "b", Role.STANDBY, ListSink())
        standby.max_pending = standby.pending.max_pending = 3
        await standby.handle([ev(f"e{i}") for i in range(5)])
        await standby.standby_round()
        await standby.store.close()
        return standby

    standby = asyncio.run(main())
    assert sorted(e.event.fields["msg"] for e in standby.pending.entries.values()) == ["e2", "e3", "e4"]
    assert standby.counters.dropped["pending_overflow"] == 2


def test_events_held_for_numbering_at_promotion_are_forwarded_once(redis: RedisServer) -> None:
    async def main() -> ListSink:
        sink = ListSink()
        master = stage(redis, "a", Role.MASTER, ListSink())
        standby = stage(redis, "b", Role.STANDBY, sink)
        await master.handle([ev("forwarded-by-a")])
        await master.master.wait_marked()
        await standby.handle([ev("numbered")])
        await standby.standby_round()
        await standby.handle([ev("forwarded-by-a"), ev("held")])  # not numbered yet
        standby.lease = lease(Role.MASTER, epoch=2)  # promoted, as `Roles.set_role` does
        await standby.standby_round()  # the held ones and the pending ones are forwarded as master now
        for s in (master, standby):
            await s.store.close()
        return sink

    assert sorted(asyncio.run(main()).msgs()) == ["held", "numbered"]


def test_the_highest_epoch_seen_is_kept_on_disk_and_a_restart_starts_from_it(
    redis: RedisServer, tmp_path: Path
) -> None:
    async def main() -> tuple[int, int]:
        kept = tmp_path / "spool.epoch"
        store = RedisStore(RedisSettings(port=redis.port))
        first = HaStage("a", store, Forwarder("a", ListSink()), Mode.EXACT, 30.0, lease(Role.MASTER, 4),
                        epoch_file=kept)
        first.lease = lease(Role.STANDBY, 7)  # learned from a successor
        again = HaStage("a", store, Forwarder("a", ListSink()), Mode.EXACT, 30.0, lease(Role.STANDBY, 0),
                        epoch_file=kept)
        await store.close()
        return int(kept.read_text()), again.lease.epoch

    assert asyncio.run(main()) == (7, 7)


def test_a_spool_larger_than_the_rescue_stream_is_handed_over_without_failing_the_start(
    redis: RedisServer, tmp_path: Path
) -> None:
    """A spool that held a down sink's backlog can hold more than the rescue stream takes: the
    restart waited 10 s for room, then failed ("cannot take the role"). Now the start goes on and
    the hand-over finishes in the background as the master takes the entries."""

    async def main() -> tuple[int, float, ListSink, bool]:
        a = stage(redis, "a", Role.MASTER, ListSink(), Spool(tmp_path / "spool-a"))
        events = [ev(f"kept-{i}") for i in range(300)]
        fps = [fingerprint(e) for e in events]
        ids, _ = await a.store.claim("a", fps, Mode.EXACT, 30.0, time.time())
        assert a.spool is not None
        a.spool.append([encode_rescue(e, f, i) for e, f, i in zip(events, fps, ids, strict=True)])
        a.spool.close()  # killed: the batch was never acknowledged
        await a.store.close()
        sink_b = ListSink()
        b = stage(redis, "b", Role.MASTER, sink_b, epoch=2)
        small = RedisStore(RedisSettings(port=redis.port, rescue_maxlen=100))
        a2 = HaStage("a", small, Forwarder("a", ListSink()), Mode.EXACT, 30.0, lease(Role.STANDBY, 2),
                     spool=Spool(tmp_path / "spool-a"))
        started = time.monotonic()
        handed = await a2.recover_spool()
        took = time.monotonic() - started
        b.start()
        await until(lambda: len(sink_b.lines) == 300, 10, "the master to forward the whole spool")
        await until(lambda: not (tmp_path / "spool-a.1").exists(), 5, "the kept segment to be released")
        for s in (a2, b):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return handed, took, sink_b, (tmp_path / "spool-a.1").exists()

    handed, took, sink_b, kept = asyncio.run(main())
    assert handed == 300 and took < 3.0, took
    assert sorted(sink_b.msgs()) == sorted(f"kept-{i}" for i in range(300))
    assert not kept
