"""The redis-stream sink against a real redis-server: entries, MAXLEN, IDMP detection, an outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from formats import Event
from gateway.config import SinkConfig, config_from_dict
from gateway.errors import ConfigError, SinkError
from gateway.sinks import Outgoing, open_sinks
from gateway.sinks.redis_stream import RedisStreamOptions, RedisStreamSink, supports_idmp, xadd_args
from tests.redis_servers import RedisServer, free_port, require_redis_server, write_tls_files
from tests.sink_load import check_complete_and_ordered, drive

pytestmark = pytest.mark.integration
FORMATS = ("syslog", "snmp", "custom")


def outgoing(fmt: str, n: int, **fields: Any) -> Outgoing:
    event = Event(fmt, ("10.0.0.9", 514), 1_700_000_000.25 + n, {"msg": f"m{n}", **fields}, b"", (n,))
    event_id = f"{n:016x}-1-1"
    line = orjson.dumps({"id": event_id, "fingerprint": f"{n:016x}", "format": fmt, "peer": "10.0.0.9",
                         "node": "a", "epoch": 0, **event.fields}, option=orjson.OPT_APPEND_NEWLINE)
    return Outgoing(event, f"{n:016x}", event_id, line)


def sink_of(url: str, **options: Any) -> RedisStreamSink:
    config = config_from_dict({"sinks": {"r": {"type": "redis-stream", "url": url, **options}}}, FORMATS)
    (sink,) = open_sinks(config.sinks).values()
    assert isinstance(sink, RedisStreamSink)
    return sink


def entries(server: RedisServer, stream: str) -> list[dict[str, str]]:
    with server.client(decode_responses=True) as c:
        return [fields for _, fields in c.xrange(stream)]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer(tmp_path / "r") as server:
        yield server


def test_events_arrive_as_fields_or_as_one_json_field_each_with_its_id_and_split_by_format(
        redis: RedisServer) -> None:
    batch = [outgoing("syslog", 1, app="sshd", severity=3, sd={"a": ["b"]}), outgoing("custom", 2, ok=True),
             outgoing("syslog", 3, note=None)]

    async def main() -> None:
        flat = sink_of(redis.url, stream="tg:{format}")
        whole = sink_of(redis.url, stream="tg:all", fields="json")
        for sink in (flat, whole):
            await sink.start()
            await sink.send(batch)
            await sink.close()
        assert flat.idmp is False and whole.idmp is False  # Redis 7.0 here

    asyncio.run(main())
    syslog, custom = entries(redis, "tg:syslog"), entries(redis, "tg:custom")
    assert [e["msg"] for e in syslog] == ["m1", "m3"] and [e["msg"] for e in custom] == ["m2"]
    assert syslog[0] == {"id": "0000000000000001-1-1", "fingerprint": "0000000000000001", "format": "syslog",
                         "peer": "10.0.0.9", "node": "a", "epoch": "0", "msg": "m1", "app": "sshd",
                         "severity": "3", "sd": '{"a":["b"]}'}
    assert next(iter(syslog[0])) == "id"
    assert custom[0]["ok"] == "true" and syslog[1]["note"] == "null"
    whole = entries(redis, "tg:all")
    assert [e["id"] for e in whole] == [o.id for o in batch]
    assert [orjson.loads(e["event"]) for e in whole] == [orjson.loads(o.line) for o in batch]


def test_maxlen_trims_the_stream_exactly_or_approximately(redis: RedisServer) -> None:
    async def main() -> None:
        exact = sink_of(redis.url, stream="exact", maxlen=50, approximate=False)
        about = sink_of(redis.url, stream="about", maxlen=50)
        for sink in (exact, about):
            for start in range(0, 1000, 100):
                await sink.send([outgoing("syslog", n) for n in range(start, start + 100)])
            await sink.close()

    asyncio.run(main())
    kept = entries(redis, "exact")
    assert [e["msg"] for e in kept] == [f"m{n}" for n in range(950, 1000)]
    with redis.client() as c:
        about = c.xlen("about")
    assert 50 <= about < 1000 - 100  # MAXLEN ~ trims whole nodes (100 entries each by default)


def test_a_batch_is_one_round_trip_and_a_repeat_without_idmp_adds_entries_with_the_same_id(
        redis: RedisServer) -> None:
    batch = [outgoing("syslog", n) for n in range(200)]

    async def main() -> None:
        sink = sink_of(redis.url)
        await sink.start()
        before = redis.command_calls()
        await sink.send(batch)
        assert redis.command_calls()["xadd"] - before.get("xadd", 0) == 200
        await sink.send(batch)  # as the forwarder would after a lost reply: no IDMP on Redis 7.0
        await sink.close()

    asyncio.run(main())
    ids = [e["id"] for e in entries(redis, "trapgate:events")]
    assert ids == [o.id for o in batch] * 2


def test_idmp_is_used_from_redis_8_6_with_the_event_id_before_maxlen() -> None:
    assert not supports_idmp({"redis_version": "7.0.15"})
    assert not supports_idmp({"redis_version": "8.4.0"})
    assert supports_idmp({"redis_version": "8.6.0"}) and supports_idmp({"redis_version": "10.0.1"})
    assert not supports_idmp({"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "9.0.0"})
    o = outgoing("syslog", 7)
    options = RedisStreamOptions(url="redis://h:1", maxlen=10, fields="json")
    assert xadd_args("s", o, options, idmp=True) == [
        "XADD", "s", "IDMP", "trapgate", o.id, "MAXLEN", "~", 10, "*", "id", o.id, "event", o.line[:-1]]
    exact = RedisStreamOptions(url="redis://h:1", approximate=False, maxlen=3, fields="json")
    assert xadd_args("s", o, exact, idmp=False) == [
        "XADD", "s", "MAXLEN", 3, "*", "id", o.id, "event", o.line[:-1]]


def test_a_rediss_url_with_a_ca_and_a_client_certificate_reaches_a_tls_only_server(tmp_path: Path) -> None:
    require_redis_server()
    files = write_tls_files(tmp_path)
    with RedisServer(tmp_path / "r", tls=files) as server:
        assert server.url.startswith("rediss://")

        async def main() -> None:
            sink = sink_of(server.url, tls_ca=str(files.ca), tls_cert=str(files.cert), tls_key=str(files.key))
            await sink.start()
            await sink.send([outgoing("syslog", 1)])
            await sink.close()

        asyncio.run(main())
        assert [e["msg"] for e in entries(server, "trapgate:events")] == ["m1"]


def test_bad_options_are_config_errors() -> None:
    for options, key in (({"url": "http://x"}, "url"), ({"url": "redis://h:0"}, "url"),
                         ({"url": "redis://h:1", "fields": "xml"}, "fields"),
                         ({"url": "redis://h:1", "idmp_maxsize": 20_000}, "r"),
                         ({"url": "redis://h:1", "maxlen": -1}, "r"),
                         ({"url": "redis://h:1", "tls_ca": "ca.pem"}, "rediss")):
        with pytest.raises(ConfigError, match=key):
            sink_of(**options)  # type: ignore[arg-type]


def test_a_server_down_at_start_is_no_error_and_sends_work_once_it_is_up(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "r", port=free_port())

    async def main() -> None:
        sink = sink_of(server.url)
        started = time.monotonic()
        await sink.start()
        assert time.monotonic() - started < 3
        with pytest.raises(SinkError, match="redis unavailable"):
            await sink.send([outgoing("syslog", 1)])
        server.start()
        await sink.send([outgoing("syslog", 2)])
        await sink.close()

    try:
        asyncio.run(main())
        assert [e["msg"] for e in entries(server, "trapgate:events")] == ["m2"]
    finally:
        server.stop()


@pytest.mark.outage
def test_a_redis_stopped_for_30s_under_load_loses_nothing_and_keeps_each_sources_order(
        tmp_path: Path) -> None:
    require_redis_server()
    # With an append-only file, the stream survives the restart.
    server = RedisServer(tmp_path / "r", args=["--appendonly", "yes"]).start()
    config = SinkConfig("redis-stream", timeout=2.0, retry_max=1.0)
    sink = RedisStreamSink("r", config, RedisStreamOptions(url=server.url))

    async def outage() -> None:
        await asyncio.sleep(5)
        server.stop()
        await asyncio.sleep(30)
        server.start()

    async def main() -> int:
        await sink.start()
        produced = await drive(sink, config, rate=200, seconds=45, outage=outage)
        await sink.close()
        return produced

    try:
        produced = asyncio.run(main())
        by_source: dict[int, list[int]] = {}
        for e in entries(server, "trapgate:events"):
            by_source.setdefault(int(e["source"]), []).append(int(e["seq"]))
    finally:
        server.stop()
    assert produced > 8000
    copies = check_complete_and_ordered(by_source, produced)
    assert copies <= config.batch_size  # only a batch whose replies were lost at the stop is added twice
    assert sink.counters.failed > 0 and sink.counters.sent >= produced
