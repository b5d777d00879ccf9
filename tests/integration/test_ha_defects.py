"""Defects of the HA data path, each reproduced with the real loops running against a real Redis.

Each test mirrors a script of `shared/repro/ha/` (named in its docstring)
or a defect of the HA issue, and failed on the code that had the defect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from dedup import Mode, StoreError, fingerprint
from dedup.redis import RedisSettings, RedisStore
from gateway.config import SinkConfig
from gateway.errors import SinkError
from gateway.forward import Forwarder
from gateway.ha import HaStage, Lease, Role
from gateway.roles import Roles
from gateway.spool import Spool
from tests.integration.ha_parts import SlowFor, StuckSink, ev, ids_in_store, lease, stage, until
from tests.memory_sink import DownUntil, ListSink
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.integration


def test_promotion_flush_and_the_standby_loop_never_take_the_same_entries(redis: RedisServer) -> None:
    """promotion_race.py: promotion used to flush beside the reconcile loop, which popped the same ids."""

    async def main() -> tuple[ListSink, HaStage, dict[str, object]]:
        sink = ListSink()
        b = stage(redis, "b", Role.STANDBY, sink, epoch=0, grace=5.0, check_after=5.0)
        roles = Roles(b, b.store, None, redis.url, "")  # type: ignore[arg-type]
        b.start()
        await roles.start("standby")
        for i in range(0, 20_000, 1000):
            await b.handle([ev(f"m{j}") for j in range(i, i + 1000)])
        await until(lambda: len(b.pending) == 20_000, 10, "the standby to number 20,000 events")
        state = await roles.set_role("master")
        await until(lambda: len(sink.lines) >= 20_000, 10, "the flush")
        await b.master.wait_marked()
        await roles.stop()
        await b.stop()
        await b.store.close()  # type: ignore[attr-defined]
        return sink, b, state

    sink, b, state = asyncio.run(main())
    msgs = sink.msgs()
    assert len(msgs) == 20_000 and len(set(msgs)) == 20_000
    assert state["role"] == "master" and state["flushed"] == 20_000 and state["epoch"] >= 1
    assert b.pending_count() == 0


def test_a_watermark_never_covers_a_batch_still_in_the_sink(redis: RedisServer) -> None:
    """watermark_early.py and writer_twice.py: after a lapse and renewal two master paths ran at once;
    the later batch's watermark marked the earlier one forwarded while it was still in its sink write."""

    async def main() -> tuple[list[bool], list[bool], list[str]]:
        sink = SlowFor(b'"x', 1.0)
        a = stage(redis, "a", Role.MASTER, sink)
        standby_view = RedisStore(RedisSettings(port=redis.port))
        a.start()
        xs = [ev(f"x{i}") for i in range(3)]
        await a.handle([ev("first")])
        a.lease = Lease(Role.MASTER, 1, until=0.0)  # the lease lapses; the role stays
        await a.handle(xs)  # held while the lease had lapsed
        a.lease = lease(Role.MASTER)  # renewed
        await asyncio.sleep(0.05)  # the standby loop forwards the held batch (slowly)
        late = asyncio.create_task(a.handle([ev("y0")]))  # and the pipeline goes on meanwhile
        await asyncio.sleep(0.3)
        ids = ids_in_store(redis, xs)
        during = await standby_view.forwarded(ids)
        await late
        await until(lambda: len(sink.lines) == 5, 5, "every batch in the sink")
        await a.master.wait_marked()
        after = await standby_view.forwarded(ids)
        await a.stop()
        await standby_view.close()
        await a.store.close()  # type: ignore[attr-defined]
        return during, after, sink.msgs()

    during, after, msgs = asyncio.run(main())
    assert during == [False, False, False], "marked forwarded while still in the sink write"
    assert after == [True, True, True]
    assert sorted(msgs) == ["first", "x0", "x1", "x2", "y0"]


def test_both_nodes_number_an_occurrence_alike_across_the_end_of_the_window(redis: RedisServer) -> None:
    """window_split.py: each node opened its own window; an occurrence between the two ends got
    different ids on the two nodes, and two real occurrences were forwarded three times.

    Now the window is the store's, opened by the first copy: the second
    occurrence falls after its end on both nodes and is occurrence 1 of a new
    window on both.
    """
    window = 2.0

    async def main() -> tuple[list[str], HaStage]:
        sink = ListSink()
        a = stage(redis, "a", Role.MASTER, sink, window=window)
        b = stage(redis, "b", Role.STANDBY, ListSink(), window=window, grace=0.3, check_after=0.05)
        for s in (a, b):
            s.start()
        await a.handle([ev("same")])  # occurrence 1: the master numbers it at t
        await asyncio.sleep(0.05)
        await b.handle([ev("same")])  # the standby 50 ms later
        await asyncio.sleep(window - 0.025)  # occurrence 2 lands between the two ends
        await a.handle([ev("same")])
        await b.handle([ev("same")])
        await asyncio.sleep(1.5)
        for s in (a, b):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return [line.split(b'"id":"')[1].split(b'"')[0].decode() for line in sink.lines], b

    ids, b = asyncio.run(main())
    assert len(ids) == 2 and all(i.endswith("-1") for i in ids), ids
    assert b.counters.handed_over["rescued"] == 0 and b.pending_count() == 0


@pytest.mark.parametrize("spooled", [True, False])
def test_a_master_restarted_after_dying_mid_batch_forwards_that_batch_once(
    redis: RedisServer, tmp_path: Path, spooled: bool
) -> None:
    """restart_livelock.py: the dead master's claims refused the standby's rescues and its own
    spool's, and nothing was forwarded for 4 windows."""

    async def main() -> tuple[list[str], HaStage]:
        b = stage(redis, "b", Role.STANDBY, ListSink(), window=4.0, grace=0.3, check_after=0.05)
        b.start()
        await b.handle([ev("x1"), ev("x2")])
        await until(lambda: len(b.pending) == 2, 5, "the standby to number its copies")
        a1 = stage(redis, "a", Role.MASTER, StuckSink(), Spool(tmp_path / "spool"), window=4.0)
        if spooled:  # claimed, spooled, stuck in the sink when killed
            crash = asyncio.create_task(a1.handle([ev("x1"), ev("x2")]))
            await asyncio.sleep(0.2)
            crash.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await crash
        else:  # killed while awaiting the claim's reply: claimed on the server, nothing spooled
            fps = [fingerprint(ev("x1")), fingerprint(ev("x2"))]
            await a1.store.claim("a", fps, Mode.EXACT, 4.0, time.time(), seq=1)
        assert a1.spool is not None
        a1.spool.close()
        await a1.store.close()  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)  # the restart takes a moment; the standby rescues meanwhile
        sink = ListSink()
        a2 = stage(redis, "a", Role.MASTER, sink, Spool(tmp_path / "spool"), epoch=2, window=4.0, grace=0.3)
        await a2.recover_spool()
        a2.start()
        await until(lambda: len(sink.lines) >= 2, 5, "the restarted master to forward x1 and x2")
        await until(lambda: b.pending_count() == 0, 5, "the standby to see them forwarded")
        await asyncio.sleep(0.5)  # room for a repeat to show
        for s in (a2, b):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return sink.msgs(), b

    msgs, b = asyncio.run(main())
    assert sorted(msgs) == ["x1", "x2"]
    assert b.counters.dropped["pending_expired"] == 0


def test_a_write_refused_for_a_lower_epoch_steps_the_master_down_and_it_forwards_nothing(
    redis: RedisServer,
) -> None:
    async def main() -> tuple[ListSink, HaStage, list[str]]:
        sink = ListSink()
        a = stage(redis, "a", Role.MASTER, sink)
        a.start()
        await a.handle([ev("before")])
        await a.master.wait_marked()
        successor = RedisStore(RedisSettings(port=redis.port))
        await successor.raise_epoch(2, "b")  # b was promoted meanwhile
        await a.handle([ev("after-1"), ev("after-2")])
        await asyncio.sleep(0.3)
        held = sorted(e.event.fields["msg"] for e in a.pending.entries.values())
        await a.stop()
        for store in (successor, a.store):
            await store.close()  # type: ignore[attr-defined]
        return sink, a, held

    sink, a, held = asyncio.run(main())
    assert sink.msgs() == ["before"]
    assert a.lease.role is Role.STANDBY and a.lease.epoch == 2
    assert a.counters.errors["fenced"] == 1
    assert held == ["after-1", "after-2"]
    assert a.counters.handed_over["stopping"] == 2  # handed to the master on stopping, not lost


class RefusedLate(RedisStore):
    """A real store whose next numbering runs on the server at once but whose answer (a refusal,
    when the epoch rose meanwhile) reaches the caller only once `deliver` is set."""

    def __init__(self, redis: RedisServer) -> None:
        super().__init__(RedisSettings(port=redis.port))
        self.ran = asyncio.Event()
        self.deliver = asyncio.Event()

    async def number(self, *args: Any, **kwargs: Any) -> list[str]:
        try:
            return await super().number(*args, **kwargs)
        finally:
            if not self.ran.is_set():
                self.ran.set()
                await self.deliver.wait()


def test_a_standby_write_refused_across_its_own_promotion_does_not_step_the_new_master_down(
    redis: RedisServer,
) -> None:
    """A standby's numbering went out at epoch 1 just before its promotion raised the store to 2;
    the refusal (FENCED 2) came back once it was master at 2. It stepped the new master down, and
    the controller's promotion then waited 30 s for a flush a standby never makes (seen in CI:
    both nodes restarted at once, a standby at epoch 2 for 10 s). A refusal at the node's own epoch
    answers a write from before its term: nothing to step down for."""

    async def main() -> tuple[HaStage, list[str]]:
        sink = ListSink()
        store = RefusedLate(redis)
        b = HaStage("b", store, Forwarder("b", sink), Mode.EXACT, 30.0, lease(Role.STANDBY),
                    grace=0.2, check_after=0.05)
        b.start()
        await store.raise_epoch(2, "b")  # the promotion's first step; the standby's epoch is still 1
        await b.handle([ev("m1"), ev("m2")])
        await asyncio.wait_for(store.ran.wait(), 5)
        store.epoch = 2  # the rest of the promotion (as Roles._become_master does it)
        b.lease = lease(Role.MASTER, 2)
        store.deliver.set()
        await until(lambda: len(sink.lines) == 2, 10, "the new master to forward what it held")
        await asyncio.sleep(0.2)
        await b.stop()
        await store.close()
        return b, sink.msgs()

    b, msgs = asyncio.run(main())
    assert b.lease.role is Role.MASTER and b.lease.epoch == 2, b.lease
    assert sorted(msgs) == ["m1", "m2"]


class FailingUntil(ListSink):
    """Refuses every write until `ok` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.ok = False
        self.attempts = 0

    async def write(self, lines: list[bytes]) -> None:
        self.attempts += 1
        if not self.ok:
            raise SinkError("the manager is down")
        self.lines += lines


def test_the_lease_is_checked_before_every_sink_retry(redis: RedisServer) -> None:
    async def main() -> tuple[FailingUntil, list[str], HaStage, list[str]]:
        sink = FailingUntil()
        a = stage(redis, "a", Role.MASTER, sink)
        a.lease = Lease(Role.MASTER, 1, until=time.monotonic() + 0.3)
        a.start()
        task = asyncio.create_task(a.handle([ev("e1")]))
        await asyncio.sleep(0.5)  # retried while the lease ran out
        sink.ok = True
        await asyncio.sleep(0.5)
        lapsed = sink.msgs()  # nothing may be written without a lease
        a.lease = Lease(Role.STANDBY, 2)  # stepped down: the batch goes back to the standby side
        await task
        await asyncio.sleep(0.2)
        held = [e.event.fields["msg"] for e in a.pending.entries.values()]
        await a.stop()
        await a.store.close()  # type: ignore[attr-defined]
        return sink, lapsed, a, held

    sink, lapsed, a, held = asyncio.run(main())
    assert lapsed == [] and sink.msgs() == []
    assert sink.attempts >= 2
    assert held == ["e1"] and a.counters.handed_over["stopping"] == 1


def test_pending_entries_leave_at_the_end_of_the_window_and_rescues_back_off(redis: RedisServer) -> None:
    """An entry nobody forwards (no master) was rescued every `grace`, forever, and never left."""

    async def main() -> HaStage:
        b = stage(redis, "b", Role.STANDBY, ListSink(), window=1.2, grace=0.1, check_after=0.05)
        b.start()
        await b.handle([ev(f"e{i}") for i in range(10)])
        await until(lambda: b.pending_count() == 0, 5, "the entries to age out")
        await b.stop()
        await b.store.close()  # type: ignore[attr-defined]
        return b

    b = asyncio.run(main())
    assert b.counters.dropped["pending_expired"] == 10
    # grace 0.1 and doubling within 1.2 s: rescued at about 0.1, 0.2, 0.4, 0.8 s
    assert 10 <= b.counters.handed_over["rescued"] <= 50
    assert b.counters.sent == 0 and "rescued" not in b.counters.dropped


def test_rescue_entries_a_dead_master_read_are_forwarded_by_the_next(redis: RedisServer) -> None:
    async def main() -> ListSink:
        b = stage(redis, "b", Role.STANDBY, ListSink(), grace=0.1, check_after=0.05)
        b.start()
        await b.handle([ev("r1"), ev("r2")])
        await until(lambda: b.counters.handed_over["rescued"] >= 2, 5, "the rescue")
        dead = RedisStore(RedisSettings(port=redis.port))
        assert len(await dead.rescue_read("a", 10)) == 2  # read by a master that then died
        await dead.close()
        await b.stop()
        sink = ListSink()
        c = stage(redis, "c", Role.MASTER, sink, epoch=2, grace=0.1)
        c.start()
        await until(lambda: len(sink.lines) >= 2, 5, "the next master to reclaim them")
        for s in (b, c):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return sink

    assert sorted(asyncio.run(main()).msgs()) == ["r1", "r2"]


def test_a_store_outage_on_the_standby_is_one_log_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> HaStage:
        store = RedisStore(RedisSettings(port=1, connect_timeout=0.05))
        b = HaStage("b", store, Forwarder("b", ListSink()), Mode.EXACT, 30.0, lease(Role.STANDBY))
        b.start()
        for _ in range(10):
            await b.handle([ev("e")])
            await asyncio.sleep(0.1)
        await b.stop()
        await store.close()
        return b

    with caplog.at_level(logging.INFO):
        b = asyncio.run(main())
    records = [r for r in caplog.records if r.name.startswith("gateway")]
    assert all(r.exc_info is None for r in records), [r.getMessage() for r in records]
    messages = [r.getMessage() for r in records]
    assert len(messages) == 2 and "store error" in messages[0], messages  # one line while it runs,
    assert "could not be handed to the master" in messages[1], messages  # one when it stops
    assert b.counters.errors["store_unavailable"] >= 5


def test_a_master_holds_what_it_receives_for_degrade_after_when_its_store_fails(redis: RedisServer) -> None:
    """The master's Redis killed under a controller: the master forwarded ~0.6 s in degraded mode before
    handing over, and the new master forwarded the same events again under other ids (1,857 doubled)."""

    async def main() -> tuple[list[str], list[str], bool]:
        sink = ListSink()
        store = RedisStore(RedisSettings(port=redis.port, socket_timeout=0.2))
        a = HaStage("a", store, Forwarder("a", sink), Mode.EXACT, 30.0, lease(Role.MASTER), degrade_after=1.0)
        a.start()
        with redis.client() as c:
            c.execute_command("CLIENT", "PAUSE", 700, "WRITE")  # the store is gone for 0.7 s
        await a.handle([ev("during-1"), ev("during-2")])
        await asyncio.sleep(0.3)
        during = sink.msgs()
        degraded = a.master.degraded
        await until(lambda: len(sink.lines) >= 2, 5, "the held events after the store came back")
        await a.stop()
        await store.close()
        return during, sink.msgs(), degraded

    during, after, degraded = asyncio.run(main())
    assert degraded and during == []  # held, not forwarded with ids of its own
    assert sorted(after) == ["during-1", "during-2"]


class LosesReplies(RedisStore):
    """A real store whose next `numbers` numbering calls, `claims` claims and `takes` takes run on
    the server, but whose replies never arrive: the caller sees a timeout after its request went out."""

    def __init__(self, redis: RedisServer, numbers: int = 0, claims: int = 0, takes: int = 0) -> None:
        super().__init__(RedisSettings(port=redis.port))
        self.to_lose = {"number": numbers, "claim": claims, "take_ids": takes}

    def _lose(self, call: str) -> None:
        """After `call` ran: raise a timeout if its next reply is to be lost."""
        if self.to_lose[call]:
            self.to_lose[call] -= 1
            raise StoreError("the reply was lost", "timeout")

    async def take_ids(self, *args: Any, **kwargs: Any) -> list[int]:
        taken = await super().take_ids(*args, **kwargs)
        self._lose("take_ids")
        return taken

    async def number(self, *args: Any, **kwargs: Any) -> list[str]:
        ids = await super().number(*args, **kwargs)
        self._lose("number")
        return ids

    async def claim_replicated(self, *args: Any, **kwargs: Any) -> tuple[list[str], list[bool], int]:
        result = await super().claim_replicated(*args, **kwargs)
        self._lose("claim")
        return result


def test_a_standby_that_lost_the_reply_to_its_numbering_numbers_those_copies_alike_again(
    redis: RedisServer,
) -> None:
    """A numbering whose reply was lost was counted on the server; numbered again, the standby's
    copies became occurrences 2 that only it had, and the master forwarded them as new events."""

    async def main() -> tuple[list[str], HaStage]:
        sink = ListSink()
        a = stage(redis, "a", Role.MASTER, sink)
        b = HaStage("b", LosesReplies(redis, numbers=1), Forwarder("b", ListSink()), Mode.EXACT, 30.0,
                    lease(Role.STANDBY), grace=0.2, check_after=0.05)
        for s in (a, b):
            s.start()
        events = [ev(f"m{i}") for i in range(20)]
        await a.handle(events)
        await b.handle(events)
        await until(lambda: b.pending_count() == 0 and b.counters.errors["store_timeout"] == 1, 10,
                    "the standby to number its copies again and see them forwarded")
        await asyncio.sleep(0.3)  # room for a rescue to show
        for s in (a, b):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return sink.msgs(), sink.ids(), b

    msgs, forwarded, b = asyncio.run(main())
    assert sorted(msgs) == sorted(f"m{i}" for i in range(20))
    assert sorted(b.local.numbered_ids()) == sorted(forwarded)  # the same ids on both nodes
    assert b.counters.handed_over["rescued"] == 0


def test_a_master_that_lost_the_reply_to_its_claim_and_stepped_down_numbers_that_batch_alike(
    redis: RedisServer,
) -> None:
    """The paused master of tests/ha: its claim ran on the server, the reply timed out at SIGCONT,
    and as standby it numbered the batch again as occurrences 2, which its successor then
    forwarded beside its own copies (15 events doubled under new ids)."""

    async def main() -> tuple[list[str], list[str], HaStage]:
        sink_a, sink_b = ListSink(), ListSink()
        a = HaStage("a", LosesReplies(redis, claims=1), Forwarder("a", sink_a), Mode.EXACT, 30.0,
                    lease(Role.MASTER), grace=0.2, check_after=0.05)
        b = stage(redis, "b", Role.STANDBY, sink_b, grace=0.2, check_after=0.05)
        for s in (a, b):
            s.start()
        events = [ev(f"m{i}") for i in range(15)]
        await b.handle(events)
        await until(lambda: len(b.pending) == 15, 5, "the standby to number its copies")
        await a.handle(events)  # claimed on the server, the reply lost: held
        assert sink_a.lines == []
        a.lease = lease(Role.STANDBY, 2)  # b is promoted
        b.lease = lease(Role.MASTER, 2)
        await until(lambda: len(sink_b.lines) >= 15, 5, "the new master to forward its copies")
        await until(lambda: a.pending_count() == 0, 5, "the old master to see its copies forwarded")
        await asyncio.sleep(0.3)  # room for a rescue to show
        for s in (a, b):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return sink_a.msgs(), sink_b.msgs(), sink_b.ids(), a

    msgs_a, msgs_b, forwarded, a = asyncio.run(main())
    assert msgs_a == []
    assert sorted(msgs_b) == sorted(f"m{i}" for i in range(15))
    assert sorted(a.local.numbered_ids()) == sorted(forwarded)
    assert a.counters.handed_over["rescued"] == 0


def test_a_promoted_master_that_lost_the_reply_to_its_take_forwards_those_events_once(
    redis: RedisServer,
) -> None:
    """Taken on the server, the reply lost: the next take found them claimed at this master's own
    epoch, as if in its hands, and the promotion flush dropped them as forwarded already."""

    async def main() -> tuple[list[str], HaStage]:
        sink = ListSink()
        b = await standby_with_copies_only_it_got(LosesReplies(redis, takes=1), sink)
        b.lease = lease(Role.MASTER, 2)
        return await forwarded_once_master(b, sink), b

    assert_each_forwarded_once(*asyncio.run(main()))


ONLY_B = [f"only-b-{i}" for i in range(10)]


async def standby_with_copies_only_it_got(store: RedisStore, sink: ListSink) -> HaStage:
    """A running standby b that numbered `ONLY_B`, events the old master never got."""
    b = HaStage("b", store, Forwarder("b", sink), Mode.EXACT, 30.0, lease(Role.STANDBY), grace=5.0,
                check_after=5.0)
    b.start()
    await b.handle([ev(msg) for msg in ONLY_B])
    await until(lambda: len(b.pending) == len(ONLY_B), 5, "the standby to number its copies")
    return b


async def forwarded_once_master(b: HaStage, sink: ListSink) -> list[str]:
    """What b (now master) forwarded, once it forwarded `ONLY_B` and settled; b stopped."""
    await until(lambda: len(sink.lines) >= len(ONLY_B), 5, "the new master to forward them")
    await asyncio.sleep(0.3)
    await b.stop()
    await b.store.close()  # type: ignore[attr-defined]
    return sink.msgs()


def assert_each_forwarded_once(msgs: list[str], b: HaStage) -> None:
    assert sorted(msgs) == sorted(ONLY_B)
    assert b.counters.dropped["forwarded_already"] == 0


class HangsAfterNumbering(RedisStore):
    """A real store whose first numbering call runs on the server and then hangs on its reply."""

    def __init__(self, redis: RedisServer) -> None:
        super().__init__(RedisSettings(port=redis.port))
        self.hung = False

    async def number(self, *args: Any, **kwargs: Any) -> list[str]:
        ids = await super().number(*args, **kwargs)
        if not self.hung:
            self.hung = True
            await asyncio.sleep(30)
        return ids


def test_a_standby_stopped_while_its_numbering_hangs_hands_those_copies_over_under_their_ids(
    redis: RedisServer,
) -> None:
    """Both nodes restarted at once: the standby's loop, cancelled in a numbering call that had run,
    numbered the same copies again on stopping (occurrences 2), and the master forwarded them
    beside its own (about 14 events doubled under new ids)."""

    async def main() -> tuple[list[str], HaStage]:
        sink = ListSink()
        a = stage(redis, "a", Role.MASTER, sink)
        b = HaStage("b", HangsAfterNumbering(redis), Forwarder("b", ListSink()), Mode.EXACT, 30.0,
                    lease(Role.STANDBY), grace=0.2, check_after=0.05)
        for s in (a, b):
            s.start()
        events = [ev(f"m{i}") for i in range(14)]
        await a.handle(events)
        await a.master.wait_marked()
        await b.handle(events)
        await asyncio.sleep(0.2)  # b's numbering ran on the server; its reply hangs
        await b.stop()
        await asyncio.sleep(1.0)  # a takes what b handed over
        await a.stop()
        for s in (a, b):
            await s.store.close()  # type: ignore[attr-defined]
        return sink.msgs(), b

    msgs, b = asyncio.run(main())
    assert sorted(msgs) == sorted(f"m{i}" for i in range(14))
    assert b.counters.handed_over["stopping"] == 14


class SlowTakes(RedisStore):
    """A real store whose first `take_ids` call takes `delay` seconds after it ran on the server."""

    def __init__(self, redis: RedisServer, delay: float) -> None:
        super().__init__(RedisSettings(port=redis.port))
        self.delay = delay
        self.slowed = False

    async def take_ids(self, *args: Any, **kwargs: Any) -> list[int]:
        taken = await super().take_ids(*args, **kwargs)
        if not self.slowed:
            self.slowed = True
            await asyncio.sleep(self.delay)
        return taken


def test_a_promotion_flush_whose_lease_lapsed_after_the_take_forwards_those_events_once_renewed(
    redis: RedisServer,
) -> None:
    """netns, master isolated: the promoted standby's first term lapsed between the take of its
    pending events and their sink write. The take had noted them as forwarded here, so once the
    term was renewed the next flush dropped them as forwarded already: every event only the standby
    had received before the cut was lost (24 in CI)."""

    async def main() -> tuple[list[str], HaStage]:
        sink = ListSink()
        b = await standby_with_copies_only_it_got(SlowTakes(redis, delay=0.3), sink)
        b.lease = Lease(Role.MASTER, 2, until=time.monotonic() + 0.1)  # lapses during the take
        await asyncio.sleep(0.5)
        b.lease = lease(Role.MASTER, 2)  # the controller's next renewal
        return await forwarded_once_master(b, sink), b

    assert_each_forwarded_once(*asyncio.run(main()))


@contextlib.asynccontextmanager
async def silent_server() -> Any:
    """A TCP server that accepts connections and never answers (a Redis whose node was cut off
    after the connection was made: requests go out, no reply comes back); yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()


def test_a_master_whose_peer_redis_never_answers_keeps_its_lease(redis: RedisServer) -> None:
    """netns, master isolated: the promoted standby's lease keeper waited for the cut-off peer's
    Redis for a whole socket timeout each round, so each renewal, dated from the round's start,
    came after the lease had run out: the new master forwarded nothing until the cut healed."""

    async def main() -> list[bool]:
        async with silent_server() as port:
            peer = RedisStore(RedisSettings(port=port, socket_timeout=1.5))
            b = stage(redis, "b", Role.STANDBY, ListSink())
            roles = Roles(b, b.store, peer, redis.url, f"redis://127.0.0.1:{port}",  # type: ignore[arg-type]
                          lease=0.8)
            b.start()
            await roles.set_role("master")
            roles._keeper = asyncio.get_running_loop().create_task(roles._keep())
            await asyncio.sleep(0.5)
            seen = []
            for _ in range(60):  # 3 s, about four socket timeouts of the peer
                seen.append(b.forwarding())
                await asyncio.sleep(0.05)
            await roles.stop()
            await b.stop()
            await b.store.close()  # type: ignore[attr-defined]
            await peer.close()
            return seen

    seen = asyncio.run(main())
    assert all(seen), f"not forwarding in {seen.count(False)} of {len(seen)} samples"


def test_a_master_sends_a_batch_only_once_the_replica_holds_its_claim(tmp_path: Path) -> None:
    """netns, master isolated: the master's last batch before the cut opened windows its replica
    never saw; the promoted standby numbered its late copies of that batch in windows of its own,
    and those events went out twice under two ids (within one batch, but under new ids)."""
    with RedisServer(tmp_path / "p") as primary, RedisServer(tmp_path / "r", replicaof=primary) as replica:
        replica.wait_replica_link()

        async def main() -> tuple[list[str], list[str], HaStage]:
            sink = ListSink()
            a = stage(primary, "a", Role.MASTER, sink, replica_wait=2.0)
            a.master.replicas = 1
            assert replica.proc is not None
            replica.proc.send_signal(signal.SIGSTOP)  # the replica's link is cut
            try:
                task = asyncio.create_task(a.handle([ev("x1"), ev("x2")]))
                await asyncio.sleep(0.5)
                before = sink.msgs()  # the claim waits for the replica: nothing is sent yet
            finally:
                replica.proc.send_signal(signal.SIGCONT)
            await task
            await a.master.wait_marked()
            await a.stop()
            await a.store.close()  # type: ignore[attr-defined]
            return before, sink.msgs(), a

        before, after, a = asyncio.run(main())
        assert before == [] and sorted(after) == ["x1", "x2"]
        assert not a.master.replica_lagging  # confirmed within replica_wait


async def a_master_with_a_down_sink(redis: RedisServer, batches: int, grace: float,
                                   ) -> tuple[ListSink, DownUntil, HaStage, ListSink, HaStage]:
    """Master a with two sinks, `good` and `down` (its destination down), standby b; both started
    and given the same `batches` of 10 events."""
    good, down = ListSink(), DownUntil("down")
    good.counters.component = "good"
    config = SinkConfig("list", retry_initial=0.02, retry_max=0.1)
    a = HaStage("a", RedisStore(RedisSettings(port=redis.port)),
                Forwarder("a", [good, down], configs=[config, config]), Mode.EXACT, 30.0,
                lease(Role.MASTER), grace=grace, check_after=0.05)
    b_sink = ListSink()
    b = stage(redis, "b", Role.STANDBY, b_sink, grace=grace, check_after=0.05)
    for s in (a, b):
        s.start()
    for k in range(batches):
        batch = [ev(f"b{k}-{i}") for i in range(10)]
        await a.handle(batch)
        await b.handle(batch)
    return good, down, a, b_sink, b


def test_a_masters_sink_that_is_down_holds_up_no_other_and_its_batches_are_marked_once_it_took_them(
    redis: RedisServer,
) -> None:
    """One sink down used to stop a pair's master for every sink (one batch at a time, marked once
    all took it). Now the others go on; the batches the down sink holds up are marked, in order,
    once it took them; the standby holds its copies until then, and nothing is forwarded twice."""

    async def main() -> tuple[ListSink, DownUntil, HaStage, HaStage, int]:
        good, down, a, _, b = await a_master_with_a_down_sink(redis, 5, grace=5.0)
        await until(lambda: len(good.lines) == 50, 5, "the sink that is up to take every batch")
        await until(lambda: b.pending_count() == 50, 5, "the standby to hold its copies")
        behind = a.master.behind()
        await asyncio.sleep(0.3)
        held = b.pending_count()  # nothing is marked while the down sink has not taken it
        down.up = True
        await until(lambda: b.pending_count() == 0, 10, "the standby to see every batch marked")
        await a.master.wait_settled()
        for s in (a, b):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return good, down, a, b, behind * 1000 + held

    good, down, a, b, figures = asyncio.run(main())
    assert divmod(figures, 1000) == (50, 50)  # 50 behind on the master, 50 held by the standby
    expected = [f"b{k}-{i}" for k in range(5) for i in range(10)]
    assert good.msgs() == expected and down.msgs() == expected and good.ids() == down.ids()
    assert a.counters.sent == 50 and a.master.behind() == 0
    assert b.counters.handed_over["rescued"] == 0


def test_a_master_that_steps_down_with_batches_a_down_sink_held_up_hands_them_back(
    redis: RedisServer,
) -> None:
    """The master's sink is down; the standby is promoted (its sinks up). What the old master's
    down sink held up is handed back to its standby side at once (not after a backoff), and the new
    master forwards it: its sink gets every event, and under the ids the old master's other sink has."""

    async def main() -> tuple[ListSink, ListSink, DownUntil, HaStage, float]:
        good, down, a, b_sink, b = await a_master_with_a_down_sink(redis, 3, grace=0.3)
        await until(lambda: len(good.lines) == 30 and a.master.behind() == 30, 5,
                    "the sink that is up to take every batch, the down one none")
        await asyncio.sleep(0.5)  # the down sink in a longer backoff
        started = time.monotonic()
        await RedisStore(RedisSettings(port=redis.port)).raise_epoch(2, "b")
        b.lease = lease(Role.MASTER, 2)
        a.step_down_at(2)
        await asyncio.wait_for(a.master.wait_settled(), 5)
        handed_back_in = time.monotonic() - started
        await until(lambda: len(b_sink.lines) >= 30, 10, "the new master to forward what it held")
        await asyncio.sleep(0.3)
        for s in (a, b):
            await s.stop()
            await s.store.close()  # type: ignore[attr-defined]
        return good, b_sink, down, a, handed_back_in

    good, b_sink, down, a, handed_back_in = asyncio.run(main())
    assert handed_back_in < 0.5, handed_back_in
    assert not down.lines and a.master.behind() == 0
    assert sorted(b_sink.msgs()) == sorted(f"b{k}-{i}" for k in range(3) for i in range(10))
    assert sorted(b_sink.ids()) == sorted(good.ids())
