"""Rendering, quarantine and the pipeline's shedding, in-process."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import orjson

from dedup import Deduplicator, MemoryStore
from formats import Event, FormatError, Peer
from gateway._render import render, rfc3339
from gateway.forward import DedupStage, Forwarder
from gateway.metrics import Counters, exposition
from gateway.pipeline import Pipeline
from gateway.quarantine import Quarantine
from tests.memory_sink import ListSink


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1709287200.25) == "2024-03-01T10:00:00.250Z"
    assert rfc3339(1709287200.2509) == "2024-03-01T10:00:00.250Z"
    assert rfc3339(1709287201.5) == "2024-03-01T10:00:01.500Z"


def test_render_puts_envelope_first_and_envelope_wins_on_clash() -> None:
    e = Event("x", ("10.0.0.1", 5), 0.0, {"msg": "m", "node": "spoofed"}, b"", ("m",))
    doc = orjson.loads(render(e, "00000000000000ff", "00000000000000ff-1", "n1"))
    assert list(doc)[:6] == ["id", "fingerprint", "format", "peer", "received_at", "node"]
    assert doc["node"] == "n1" and doc["msg"] == "m" and doc["fingerprint"] == "00000000000000ff"


def test_quarantine_keeps_raw_bytes_and_rotates_under_its_cap(tmp_path: Path) -> None:
    q = Quarantine(str(tmp_path / "q.jsonl"), max_bytes=4000)
    for i in range(40):
        q.put("r", "syslog", ("10.0.0.1", 99), "bad_pri", "boom", b"\xff\x00raw%d" % i)
    files = list(tmp_path.iterdir())
    assert {f.name for f in files} == {"q.jsonl", "q.jsonl.1"}
    assert sum(f.stat().st_size for f in files) <= 4000
    last = json.loads((tmp_path / "q.jsonl").read_text().splitlines()[-1])
    assert base64.b64decode(last["raw_b64"]) == b"\xff\x00raw39"
    assert last["peer"] == "10.0.0.1:99" and last["reason"] == "bad_pri"
    assert q.counters.sent == 40


def test_quarantine_counts_a_record_too_large_to_keep(tmp_path: Path) -> None:
    q = Quarantine(str(tmp_path / "q.jsonl"), max_bytes=1000)
    q.put("r", "syslog", ("h", 1), "x", "y", b"z" * 2000)
    assert q.counters.dropped["too_large"] == 1 and not (tmp_path / "q.jsonl").exists()


class Parser:
    name = "test"

    def parse(self, data: bytes, peer: Peer, received_at: float) -> Event:
        if data == b"bad":
            raise FormatError("bad input", "bad")
        if data == b"bug":
            raise ZeroDivisionError
        return Event("test", peer, received_at, {"d": data.decode()}, data, (data,))


def make_pipeline(tmp_path: Path, max_queued: int = 1000) -> tuple[Pipeline, ListSink]:
    sink = ListSink()
    stage = DedupStage(Deduplicator(MemoryStore()), Forwarder("n", sink))
    p = Pipeline("n", stage, Quarantine(str(tmp_path / "q"), 10_000),
                 batch_size=4, flush_ms=1.0, max_queued=max_queued)
    return p, sink


def test_pipeline_forwards_counts_errors_and_survives_parser_bugs(tmp_path: Path) -> None:
    async def main() -> tuple[Pipeline, ListSink]:
        p, sink = make_pipeline(tmp_path)
        intake = p.intake("r", Parser(), "udp")
        p.start()
        for data in (b"a", b"bad", b"bug", b"b", b"c"):
            intake.add(data, ("h", 1))
        await p.stop()
        return p, sink

    p, sink = asyncio.run(main())
    assert [orjson.loads(line)["d"] for line in sink.lines] == ["a", "b", "c"]
    counters = p.intakes[0].counters
    assert counters.received == 5 and counters.errors == {"bad": 1, "parser_bug": 1}


def test_pipeline_sheds_batches_past_its_queue_limit_and_counts_them(tmp_path: Path) -> None:
    async def main() -> Pipeline:
        p, _ = make_pipeline(tmp_path, max_queued=8)
        intake = p.intake("r", Parser(), "udp")
        p.start()
        for i in range(20):  # nothing is processed between these calls
            intake.add(b"%d" % i, ("h", 1))
        await p.stop()
        return p

    p = asyncio.run(main())
    c = p.intakes[0].counters
    assert c.dropped["shed"] == 12 and p.stage.counters.sent == 8


def test_pipeline_sheds_new_input_while_its_oldest_batch_waited_longer_than_max_queue_ms(
    tmp_path: Path,
) -> None:
    """At a rate the stage cannot sustain (a batch every 10 ms, 100 ms each to handle) the queue held
    every batch offered (its count bound is far), so the last waited seconds; bounded by time,
    once the worker's pace is known (the first batch queued before it was is worked off), what is
    handled waited about max_queue_ms plus one batch at most, and the rest is shed, counted."""

    class Slow:
        counters = Counters("slow", "stage")

        def __init__(self) -> None:
            self.waited: list[float] = []

        async def handle(self, events: list[Event]) -> None:
            self.waited.append(time.time() - events[0].received_at)
            await asyncio.sleep(0.1)

        def gauges(self) -> dict[str, float]:
            return {}

    async def main() -> tuple[Pipeline, Slow]:
        stage = Slow()
        p = Pipeline("n", stage, Quarantine(str(tmp_path / "q"), 10_000), batch_size=4, flush_ms=1.0,
                     max_queued=100_000, max_queue_ms=150.0)
        intake = p.intake("r", Parser(), "udp")
        p.start()
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 3.0:
            for j in range(4):
                intake.add(b"%d-%d" % (i, j), ("h", 1))
            i += 1
            await asyncio.sleep(0.01)
        await p.stop()
        return p, stage

    p, stage = asyncio.run(main())
    shed = p.intakes[0].counters.dropped["shed"]
    assert shed > 500, shed
    late = stage.waited[len(stage.waited) // 2 :]
    assert max(late) < 0.15 + 0.1 + 0.15, stage.waited  # the bound, one batch, slack


def test_exposition_has_every_component_and_gauge() -> None:
    c = Counters("udp1", "udp", received=3)
    c.dropped["shed"] = 2
    c.live_drops = lambda: {"kernel": 7}
    text = exposition([c], lambda: {"queued_events": 5}).decode()
    assert 'trapgate_received_total{component="udp1",kind="udp"} 3.0' in text
    assert 'trapgate_dropped_total{component="udp1",kind="udp",reason="kernel"} 7.0' in text
    assert 'trapgate_dropped_total{component="udp1",kind="udp",reason="shed"} 2.0' in text
    assert "trapgate_queued_events 5.0" in text
