"""The sinks' lanes (`Forwarder.submit`): one sink down holds up no other, each lane is bounded,
and what a full lane drops is counted, never taken for sent."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from dedup import Deduplicator, MemoryStore, Mode
from formats import Event
from gateway.config import SinkConfig, config_from_dict
from gateway.errors import ConfigError
from gateway.forward import DedupStage, Forwarder
from gateway.spool import Spool
from tests.memory_sink import DownUntil, ListSink
from tests.unit.test_config import FORMATS

_QUICK = SinkConfig(type="any", retry_initial=0.01, retry_max=0.02)


def named(name: str) -> ListSink:
    sink = ListSink()
    sink.counters.component = name
    return sink


def events(prefix: str, n: int) -> tuple[list[Event], list[str], list[str]]:
    evs = [Event("syslog", ("10.0.0.9", 514), time.time(), {"msg": f"{prefix}{i}"}, b"", (f"{prefix}{i}",))
           for i in range(n)]
    return evs, [f"fp{prefix}{i}" for i in range(n)], [f"id{prefix}{i}" for i in range(n)]


async def until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_sink_that_is_down_holds_up_no_other_and_gets_everything_once_back() -> None:
    async def main() -> None:
        good, down = named("good"), DownUntil("down")
        f = Forwarder("n", [good, down], configs=[_QUICK, _QUICK])
        deliveries = [await f.submit(*events(f"b{k}-", 10)) for k in range(5)]
        await until(lambda: len(good.lines) == 50)
        assert not down.lines and all(not d.done.done() for d in deliveries)
        assert down.counters.backlog is not None and down.counters.backlog()[0] == 50
        down.up = True
        await asyncio.wait_for(asyncio.gather(*(d.done for d in deliveries)), 5)
        assert down.msgs() == good.msgs() == [f"b{k}-{i}" for k in range(5) for i in range(10)]
        assert all(sorted(d.acked) == ["down", "good"] and not d.dropped for d in deliveries)
        await f.close()

    asyncio.run(main())


def test_a_full_lane_that_blocks_makes_submit_wait_until_it_has_room() -> None:
    async def main() -> None:
        down = DownUntil("down")
        f = Forwarder("n", [down], configs=[dataclasses.replace(_QUICK, backlog=25)])
        for k in range(2):
            await f.submit(*events(f"b{k}-", 10))
        third = asyncio.ensure_future(f.submit(*events("b2-", 10)))
        await asyncio.sleep(0.2)
        assert not third.done() and down.counters.errors["backlog_full"] >= 1
        down.up = True
        await asyncio.wait_for((await asyncio.wait_for(third, 5)).done, 5)
        assert len(down.lines) == 30 and not down.counters.dropped
        await f.close()

    asyncio.run(main())


def test_a_full_lane_that_drops_the_oldest_counts_them_and_never_as_sent() -> None:
    async def main() -> None:
        down = DownUntil("down")
        f = Forwarder("n", [down], configs=[dataclasses.replace(_QUICK, backlog=25, overflow="drop_oldest")])
        deliveries = [await f.submit(*events("b0-", 10))]
        await asyncio.sleep(0.05)  # b0 is being sent (retried): a batch in flight is never shed
        deliveries += [await f.submit(*events(f"b{k}-", 10)) for k in range(1, 4)]
        # b1 and b2 were shed for b2 and b3 to fit.
        assert down.counters.dropped["overflow"] == 20
        assert [d.dropped for d in deliveries[1:3]] == [["down"], ["down"]]
        down.up = True
        await asyncio.wait_for(asyncio.gather(*(d.done for d in deliveries)), 5)
        assert down.msgs() == [f"b{k}-{i}" for k in (0, 3) for i in range(10)]
        assert down.counters.sent == 20
        await f.close()

    asyncio.run(main())


def test_a_single_node_killed_while_one_sink_is_down_sends_its_spool_only_to_that_sink(
    tmp_path: Path,
) -> None:
    """The spool records each sink's progress: after a kill (no close, no ack), the next start
    sends the kept batches again to the sink that had not taken them, and only to it."""

    def stage(sinks: list[ListSink], spool: Spool) -> DedupStage:
        dedup = Deduplicator(MemoryStore(), node="n", mode=Mode.EXACT, window=30.0)
        return DedupStage(dedup, Forwarder("n", sinks, configs=[_QUICK] * len(sinks)), spool)

    async def first_run() -> ListSink:
        good, down = named("good"), DownUntil("down")
        s = stage([good, down], Spool(tmp_path / "spool"))
        for k in range(3):
            await s.handle(events(f"b{k}-", 10)[0])
        await until(lambda: len(good.lines) == 30)
        assert not down.lines
        await s.forwarder.close()  # the process dies here: the spool is never acknowledged or closed
        return good

    async def second_run() -> tuple[ListSink, ListSink, int]:
        good, back = named("good"), named("down")
        s = stage([good, back], Spool(tmp_path / "spool"))
        resent = await asyncio.wait_for(s.resend_spooled(), 5)
        await s.forwarder.close()
        return good, back, resent

    good1 = asyncio.run(first_run())
    good2, back, resent = asyncio.run(second_run())
    assert resent == 30
    assert not good2.lines  # it had them all: nothing repeated
    assert back.ids() == good1.ids() and back.msgs() == good1.msgs()
    assert not Spool(tmp_path / "spool").recover_batches()


@pytest.mark.parametrize("overflow", ["sideways", ""])
def test_an_unknown_overflow_policy_is_a_config_error_naming_the_key(overflow: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"sinks": {"x": {"type": "jsonl", "path": "-", "overflow": overflow}}}, FORMATS)
    assert caught.value.key == "sinks.x.overflow"


def test_the_forwarding_latency_is_recorded_per_event_until_every_sink_took_it() -> None:
    async def main() -> dict[str, float]:
        down = DownUntil("down")
        f = Forwarder("n", [named("good"), down], configs=[_QUICK, _QUICK])
        evs, fps, ids = events("b", 10)
        delivery = await f.submit(evs, fps, ids)
        await asyncio.sleep(0.3)
        assert f.latency_gauges()["forward_latency_events"] == 0  # not taken by every sink yet
        down.up = True
        await asyncio.wait_for(delivery.done, 5)
        await asyncio.sleep(0)
        await f.close()
        return f.latency_gauges()

    gauges = asyncio.run(main())
    assert gauges["forward_latency_events"] == 10
    assert 0.3 <= gauges["forward_latency_p50_seconds"] <= gauges["forward_latency_p999_seconds"] < 2.0


def test_a_sink_that_raises_something_unexpected_is_retried_and_its_lane_goes_on() -> None:
    class Buggy(ListSink):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        async def write(self, lines: list[bytes]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("a bug in the sink")
            self.lines += lines

    async def main() -> Buggy:
        sink = Buggy()
        f = Forwarder("n", [sink], configs=[_QUICK])
        first = await f.submit(*events("a", 3))
        second = await f.submit(*events("b", 3))
        await asyncio.wait_for(asyncio.gather(first.done, second.done), 5)
        await f.close()
        return sink

    sink = asyncio.run(main())
    assert sink.msgs() == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert sink.counters.errors["bug"] == 1
