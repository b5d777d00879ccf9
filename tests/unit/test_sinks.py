"""The forwarder's fan-out to several sinks, and the jsonl sink's rotation and fsync policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from formats import Event
from gateway.config import SinkConfig, config_from_dict
from gateway.errors import SinkError
from gateway.forward import Forwarder
from gateway.metrics import Latency, exposition
from gateway.sinks import Outgoing, open_sinks
from gateway.sinks.jsonl import JsonlOptions, JsonlSink
from tests.memory_sink import ListSink


def ev(fmt: str, msg: str, **fields: str) -> Event:
    return Event(fmt, ("10.0.0.9", 514), time.time(), {"msg": msg, **fields}, b"", (msg,))


class DownFor(ListSink):
    """Fails its first `failures` sends."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def write(self, lines: list[bytes]) -> None:
        if self.failures:
            self.failures -= 1
            raise SinkError("down")
        await super().write(lines)


def test_each_sink_gets_the_events_it_takes_and_a_failing_one_is_retried_until_it_takes_them() -> None:
    everything, only_syslog, sshd = ListSink(), DownFor(2), ListSink()
    configs = [SinkConfig("list"), SinkConfig("list", formats=("syslog",), retry_initial=0.01),
               SinkConfig("list", where={"app": "sshd"})]
    forwarder = Forwarder("a", [everything, only_syslog, sshd], configs=configs)
    events = [ev("syslog", "s1", app="sshd"), ev("custom", "c1", app="sshd"), ev("syslog", "s2", app="cron")]
    assert asyncio.run(forwarder.forward(events, ["f1", "f2", "f3"], ["f1-1-1", "f2-1-1", "f3-1-1"]))
    assert everything.msgs() == ["s1", "c1", "s2"]
    assert only_syslog.msgs() == ["s1", "s2"]
    assert sshd.msgs() == ["s1", "c1"]
    assert (only_syslog.counters.sent, only_syslog.counters.failed, only_syslog.counters.retried) == (2, 4, 4)
    assert only_syslog.counters.errors == {"send": 2}
    text = exposition([s.counters for s in (everything, only_syslog)], dict).decode()
    assert 'trapgate_retried_total{component="list",kind="sink"} 4.0' in text


def test_a_sink_is_sent_batches_of_its_size_and_a_slow_send_times_out_and_is_retried() -> None:
    class SlowOnce(ListSink):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        async def send(self, batch: Sequence[Outgoing]) -> None:
            self.sizes.append(len(batch))
            if len(self.sizes) == 1:
                await asyncio.sleep(1.0)
            await super().send(batch)

    sink = SlowOnce()
    config = SinkConfig("list", batch_size=2, timeout=0.1, retry_initial=0.01)
    forwarder = Forwarder("a", [sink], configs=[config])
    events = [ev("syslog", f"m{i}") for i in range(5)]
    assert asyncio.run(forwarder.forward(events, ["f"] * 5, [f"f-1-{i}" for i in range(5)]))
    assert sink.msgs() == ["m0", "m1", "m2", "m3", "m4"]
    assert sink.sizes == [2, 2, 2, 1]  # the first batch of 2 sent twice
    assert sink.counters.errors == {"timeout": 1}


def test_a_sink_that_may_not_write_any_more_stops_retrying() -> None:
    sink = DownFor(100)
    allowed = [True, True, False]

    async def may_write() -> bool:
        return allowed.pop(0)

    forwarder = Forwarder("a", [sink], configs=[SinkConfig("list", retry_initial=0.01)])
    assert not asyncio.run(forwarder.forward([ev("syslog", "x")], ["f"], ["f-1-1"], may_write))
    assert sink.lines == [] and sink.counters.failed == 2


def test_jsonl_rotates_past_max_bytes_and_keeps_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink("file", SinkConfig("jsonl"), JsonlOptions(path=str(path), max_bytes=200, keep=2,
                                                                  fsync="batch"))
    line = orjson.dumps({"msg": "x" * 80}) + b"\n"

    async def main() -> None:
        for _ in range(7):  # 91 bytes a line: a file takes 3 lines before it passes 200
            await sink.send([Outgoing(ev("syslog", "x"), "f", "f-1-1", line)])
        await sink.close()

    asyncio.run(main())
    sizes = [len((tmp_path / name).read_bytes().splitlines())
             for name in ("out.jsonl", "out.jsonl.1", "out.jsonl.2")]
    assert sizes == [1, 3, 3] and not (tmp_path / "out.jsonl.3").exists()


def test_sinks_config_builds_every_named_sink_and_the_old_sink_table_still_works(tmp_path: Path) -> None:
    formats = ("syslog", "snmp", "custom")
    config = config_from_dict({"sinks": {
        "all": {"type": "jsonl", "path": str(tmp_path / "all.jsonl"), "fsync": "interval"},
        "traps": {"type": "jsonl", "path": str(tmp_path / "traps.jsonl"), "formats": ["snmp"],
                  "batch_size": 64},
    }}, formats)
    assert config.sinks["traps"].formats == ("snmp",) and config.sinks["traps"].batch_size == 64
    assert config.sinks["all"].options == JsonlOptions(path=str(tmp_path / "all.jsonl"), fsync="interval")
    sinks = open_sinks(config.sinks)
    assert sorted(sinks) == ["all", "traps"]
    for sink in sinks.values():
        asyncio.run(sink.close())
    legacy = config_from_dict({"sink": {"type": "file", "path": str(tmp_path / "x.jsonl")}}, formats)
    assert list(legacy.sinks) == ["file"]
    assert legacy.sinks["file"].options.path == str(tmp_path / "x.jsonl")
    with pytest.raises(SinkError, match="cannot open sink file"):
        open_sinks(config_from_dict({"sinks": {"x": {"type": "jsonl", "path": str(tmp_path / "no/x")}}},
                                    formats).sinks)


def test_a_sink_gets_at_most_concurrency_sends_at_once_and_backoff_doubles_up_to_retry_max() -> None:
    class Watched(ListSink):
        def __init__(self) -> None:
            super().__init__()
            self.in_flight = self.most = 0
            self.failures_at: list[float] = []

        async def send(self, batch: Sequence[Outgoing]) -> None:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                await asyncio.sleep(0.02)
                if len(self.failures_at) < 4 and batch[0].id == "f-1-0":
                    self.failures_at.append(time.monotonic())
                    raise SinkError("down")
                await super().send(batch)
            finally:
                self.in_flight -= 1

    sink = Watched()
    sink.counters.latency = Latency()
    config = SinkConfig("list", batch_size=2, concurrency=3, retry_initial=0.05, retry_max=0.1)
    forwarder = Forwarder("a", [sink], configs=[config])
    events = [ev("syslog", f"m{i}") for i in range(12)]
    assert asyncio.run(forwarder.forward(events, ["f"] * 12, [f"f-1-{i}" for i in range(12)]))
    assert sorted(sink.msgs()) == sorted(f"m{i}" for i in range(12))
    assert sink.most == 3  # six batches of two, three at a time
    gaps = [b - a for a, b in zip(sink.failures_at, sink.failures_at[1:], strict=False)]
    # Each gap is the backoff plus the 20 ms send: 0.05, then 0.1, then capped at 0.1 (not 0.2).
    assert gaps[0] >= 0.07 and gaps[1] >= 0.12 and 0.12 <= gaps[2] < 0.21, gaps
    text = exposition([sink.counters], dict).decode()
    assert 'trapgate_send_latency_seconds_count{component="list",kind="sink"} 6.0' in text
    slowest = 0.02 * 5 + 0.05 + 0.1 * 3  # the batch that failed four times, with its backoffs
    assert sink.counters.latency.total >= slowest
