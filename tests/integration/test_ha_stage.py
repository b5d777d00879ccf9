"""The HA stage in-process against a real Redis: spool recovery and rescue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedup import Mode, fingerprint
from dedup.redis import RedisSettings, RedisStore
from formats import Event
from gateway.forward import Forwarder
from gateway.ha import HaStage, Lease, Role, encode_rescue
from gateway.spool import Spool
from tests.memory_sink import ListSink
from tests.redis_servers import RedisServer, require_redis_server


def ev(msg: str) -> Event:
    return Event("syslog", ("10.0.0.9", 514), time.time(), {"msg": msg}, b"", (msg,))


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer(tmp_path / "r") as server:
        yield server


def stage(redis: RedisServer, node: str, role: Role, sink: ListSink, spool: Spool | None = None) -> HaStage:
    store = RedisStore(RedisSettings(port=redis.port))
    return HaStage(node, store, Forwarder(node, sink), Mode.EXACT, 30.0, Lease(role), spool=spool)


def test_master_killed_between_claim_and_sink_hands_its_spool_to_the_next_master(
    redis: RedisServer, tmp_path: Path
) -> None:
    async def main() -> tuple[ListSink, ListSink]:
        sink_a, sink_b = ListSink(), ListSink()
        a = stage(redis, "a", Role.MASTER, sink_a, Spool(tmp_path / "spool-a"))
        # a forwards "done" normally; then claims "lost-1", "lost-2", spools them and dies
        # before its sink takes them (only a ever received these two).
        await a.handle([ev("done")])
        events = [ev("lost-1"), ev("lost-2")]
        fps = [fingerprint(e) for e in events]
        ids, won = await a.store.claim("a", fps, Mode.EXACT, 30.0, time.time())
        assert won == [True, True]
        assert a.spool is not None
        spooled = [encode_rescue(e, f, i, claimed=True) for e, f, i in zip(events, fps, ids, strict=True)]
        a.spool.append(spooled)
        a.spool.close()
        await a.store.close()
        # b becomes master; a restarts as standby and recovers its spool.
        b = stage(redis, "b", Role.MASTER, sink_b)
        a2 = stage(redis, "a", Role.STANDBY, ListSink(), Spool(tmp_path / "spool-a"))
        assert await a2.recover_spool() == 2
        await b.rescue_once(block_ms=100)
        await b.rescue_once(block_ms=100)  # nothing more: each event once
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
        a.spool.append([encode_rescue(event, fp, ids[0], claimed=True)])
        await a.store.mark_forwarded(ids, 30.0)  # the kill came after the mark, before the ack
        a.spool.close()
        sink_b = ListSink()
        b = stage(redis, "b", Role.MASTER, sink_b)
        a2 = stage(redis, "a", Role.STANDBY, ListSink(), Spool(tmp_path / "spool-a"))
        assert await a2.recover_spool() == 1
        await b.rescue_once(block_ms=100)
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
        standby.grace = standby.check_after = 0.0
        await standby.reconcile_once()
        await master.rescue_once(block_ms=100)
        await standby.reconcile_once()
        for s in (master, standby):
            await s.store.close()
        return sink, standby

    sink, standby = asyncio.run(main())
    assert sorted(sink.msgs()) == ["both", "only-b"]
    assert standby.pending == {}
