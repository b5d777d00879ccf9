"""The nats sink against a real nats-server with JetStream: messages, Nats-Msg-Id, the window, an outage."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client

from formats import Event
from gateway.config import SinkConfig, config_from_dict
from gateway.errors import ConfigError, SinkError
from gateway.sinks import Outgoing, open_sinks
from gateway.sinks.nats import NatsOptions, NatsSink
from tests.integration.harness import Trapgate
from tests.nats_server import NatsServer
from tests.redis_servers import HOST
from tests.sink_load import check_complete_and_ordered, drive
from tests.toml_render import render_toml

pytestmark = pytest.mark.integration
FORMATS = ("syslog", "snmp", "custom")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def outgoing(fmt: str, n: int, **fields: Any) -> Outgoing:
    event = Event(fmt, ("10.0.0.9", 514), 1_700_000_000.0 + n, {"msg": f"m{n}", **fields}, b"", (n,))
    event_id = f"{n:016x}-1-1"
    line = orjson.dumps({"id": event_id, "fingerprint": f"{n:016x}", "format": fmt, **event.fields},
                        option=orjson.OPT_APPEND_NEWLINE)
    return Outgoing(event, f"{n:016x}", event_id, line)


def sink_of(server: NatsServer, **options: Any) -> NatsSink:
    table = {"type": "nats", "servers": [server.url], "subject": "tg.{format}", "stream": "TG",
             "create": True, **options}
    config = config_from_dict({"sinks": {"n": table}}, FORMATS)
    (sink,) = open_sinks(config.sinks).values()
    assert isinstance(sink, NatsSink)
    return sink


async def stored(server: NatsServer, stream: str = "TG") -> list[tuple[str, dict[str, str], bytes]]:
    """(subject, headers, data) of every message of `stream`, in order."""
    nc = Client()
    await nc.connect(servers=[server.url])
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        out = []
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append((msg.subject or "", dict(msg.headers or {}), msg.data or b""))
        return out
    finally:
        await nc.close()


def test_events_arrive_whole_each_with_its_id_as_nats_msg_id_on_its_format_subject(
        nats_server: NatsServer) -> None:
    batch = [outgoing("syslog", 1, app="sshd", severity=3), outgoing("custom", 2, ok=True),
             outgoing("syslog", 3, sd={"a": ["b"]})]

    async def main() -> list[tuple[str, dict[str, str], bytes]]:
        sink = sink_of(nats_server)
        await sink.start()
        await sink.send(batch)
        await sink.close()
        return await stored(nats_server)

    messages = asyncio.run(main())
    assert [m[0] for m in messages] == ["tg.syslog", "tg.custom", "tg.syslog"]
    assert [m[1]["Nats-Msg-Id"] for m in messages] == [o.id for o in batch]
    assert [orjson.loads(m[2]) for m in messages] == [orjson.loads(o.line) for o in batch]


def test_a_batch_published_again_within_the_duplicate_window_is_stored_once(nats_server: NatsServer) -> None:
    batch = [outgoing("syslog", n) for n in range(300)]

    async def main() -> NatsSink:
        sink = sink_of(nats_server)
        await sink.send(batch)  # without start(): the first send connects
        await sink.send(batch)  # as the forwarder does after a lost ack, or the other node after a failover
        await sink.close()
        return sink

    sink = asyncio.run(main())
    assert sink.counters.dropped == {"duplicate_at_destination": 300}
    messages = asyncio.run(stored(nats_server))
    assert [m[1]["Nats-Msg-Id"] for m in messages] == [o.id for o in batch]


def test_a_stream_whose_duplicate_window_is_shorter_than_the_dedup_window_is_warned_of_once(
        nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        short = sink_of(nats_server, duplicate_window=5.0, dedup_window=30.0)
        await short.start()  # creates TG with a 5 s window
        await short.send([outgoing("syslog", 1)])
        await short.close()
        assert "stream TG drops a repeated Nats-Msg-Id within 5s" in caplog.text
        assert caplog.text.count("duplicate_window") == 1
        caplog.clear()
        unnamed = sink_of(nats_server, stream="", create=False, dedup_window=2.0)  # the acks name the stream
        await unnamed.start()
        await unnamed.send([outgoing("syslog", 2)])
        await unnamed.close()
        assert "duplicate_window" not in caplog.text
        unnamed = sink_of(nats_server, stream="", create=False)  # W: [dedup] window's default, 30 s
        await unnamed.start()
        await unnamed.send([outgoing("syslog", 3)])
        await unnamed.send([outgoing("syslog", 4)])
        await unnamed.close()
        assert caplog.text.count("stream TG drops a repeated Nats-Msg-Id within 5s") == 1

    with caplog.at_level(logging.WARNING, logger="gateway.sinks.nats"):
        asyncio.run(main())


def test_a_server_down_at_start_is_no_error_and_sends_work_once_it_is_up(tmp_path: Path) -> None:
    server = NatsServer(tmp_path)

    async def main() -> None:
        sink = sink_of(server, connect_timeout=0.5, reconnect_wait=0.2)
        started = time.monotonic()
        await sink.start()
        assert time.monotonic() - started < 2
        with pytest.raises(SinkError, match="not connected to NATS"):
            await sink.send([outgoing("syslog", 1)])
        server.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                await sink.send([outgoing("syslog", 2)])
                break
            except SinkError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        await sink.close()

    try:
        asyncio.run(main())
        assert [orjson.loads(m[2])["msg"] for m in asyncio.run(stored(server))] == ["m2"]
    finally:
        server.stop()


def test_bad_options_are_config_errors() -> None:
    for table, key in (({"servers": []}, "servers"), ({"servers": ["http://x"]}, "servers"),
                       ({"create": True}, "stream"), ({"subject": "a b"}, "subject"),
                       ({"storage": "disk"}, "storage"), ({"duplicate_window": 0}, "n")):
        with pytest.raises(ConfigError, match=key):
            config_from_dict({"sinks": {"n": {"type": "nats", **table}}}, FORMATS)
    options = config_from_dict({"sinks": {"n": {"type": "nats"}}}, FORMATS).sinks["n"].options
    assert options == NatsOptions(dedup_window=30.0)  # W: [dedup] window, unless the sink names its own
    config = config_from_dict({"dedup": {"window": 90}, "sinks": {"n": {"type": "nats"},
                                                                  "m": {"type": "nats", "dedup_window": 5}}},
                              FORMATS)
    assert (config.sinks["n"].options.dedup_window, config.sinks["m"].options.dedup_window) == (90.0, 5.0)


@pytest.mark.outage
def test_a_nats_server_stopped_for_30s_under_load_loses_nothing_and_keeps_each_sources_order(
        nats_server: NatsServer) -> None:
    config = SinkConfig("nats", timeout=2.0, retry_max=1.0)
    options = NatsOptions(servers=(nats_server.url,), subject="tg.{format}", stream="TG", create=True,
                          reconnect_wait=0.5)
    sink = NatsSink("n", config, options)

    async def outage() -> None:
        await asyncio.sleep(5)
        nats_server.stop()
        await asyncio.sleep(30)
        nats_server.start()  # file storage: the stream is still there

    async def main() -> int:
        await sink.start()
        produced = await drive(sink, config, rate=200, seconds=45, outage=outage)
        await sink.close()
        return produced

    produced = asyncio.run(main())
    by_source: dict[int, list[int]] = {}
    for _, _, data in asyncio.run(stored(nats_server)):
        event = orjson.loads(data)
        by_source.setdefault(event["source"], []).append(event["seq"])
    assert produced > 8000
    assert check_complete_and_ordered(by_source, produced) == 0  # Nats-Msg-Id: no copies
    assert sink.counters.failed > 0 and sink.counters.sent >= produced


def test_a_trapgate_process_forwards_the_syslog_messages_it_receives_to_jetstream(
        tmp_path: Path, nats_server: NatsServer) -> None:
    node = Trapgate(tmp_path)
    doc = tomllib.loads(node.config.read_text())
    del doc["sink"]
    doc["sinks"] = {"js": {"type": "nats", "servers": [nats_server.url], "subject": "trapgate.{format}",
                           "stream": "TRAPGATE", "create": True, "batch_size": 64}}
    node.config.write_text(render_toml(doc))
    node.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in range(50):
                s.sendto(f"<13>Oct 11 22:14:15 host app[1]: message {n}".encode(), (HOST, node.syslog_port))
        deadline = time.monotonic() + 10
        while True:
            try:
                messages = asyncio.run(stored(nats_server, "TRAPGATE"))
            except Exception:  # the stream is created once the node connects
                messages = []
            if len(messages) >= 50 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err
    events = [orjson.loads(m[2]) for m in messages]
    assert sorted(e["msg"] for e in events) == sorted(f"message {n}" for n in range(50))
    assert {m[0] for m in messages} == {"trapgate.syslog"}
    assert [m[1]["Nats-Msg-Id"] for m in messages] == [e["id"] for e in events]
    assert all(e["format"] == "syslog" and e["node"] == "test-node" for e in events)
