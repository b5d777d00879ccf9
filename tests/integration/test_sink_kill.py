"""Each sink's destination down while a `jsonl` sink beside it goes on, then trapgate killed with
SIGKILL, every event the destination missed in its spool: started again with the destination back,
the destination gets each event, repeats only under the same id, and the `jsonl` sink none again.

Every destination is a real server started by the test: rsyslog (TCP), snmptrapd (informs), an
aiohttp endpoint (http), a Hinemos-like endpoint, redis-server, nats-server with JetStream.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.harness import Trapgate
from tests.integration.test_sink_http import Endpoint, FakeHinemos, with_sinks
from tests.integration.test_sink_nats import stored
from tests.integration.test_sink_snmp import ENTERPRISE, Snmptrapd, by_oid, v2c_event
from tests.integration.test_sink_syslog import Rsyslog
from tests.nats_server import NatsServer
from tests.redis_servers import RedisServer, require_redis_server

pytestmark = pytest.mark.integration

BEFORE, DURING = 60, 240  # events sent while the destination is up, then while it is down
_MARK = re.compile(r"mark-(\d+)")


class Destination:
    """A real server a sink forwards to: `start`, `stop`, and what it holds as (mark, id) pairs in
    arrival order (id None where the destination does not show it)."""

    format = "syslog"
    server: Any  # with start() and stop()

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def table(self) -> dict[str, Any]:
        raise NotImplementedError

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def got(self) -> list[tuple[int, str | None]]:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()


class ToRsyslog(Destination):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.server = Rsyslog(workdir / "rsyslog", "tcp")

    def table(self) -> dict[str, Any]:
        return {"type": "syslog", "address": self.server.address, "transport": "tcp", "rewrite": True}

    def got(self) -> list[tuple[int, str | None]]:
        out = []
        for message in self.server.messages():
            text = message.decode(errors="replace")
            mark, event_id = _MARK.search(text), re.search(r' id="([^"]+)"', text)
            if mark:
                out.append((int(mark[1]), event_id[1] if event_id else None))
        return out


class ToSnmptrapd(Destination):
    format = "snmp"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.server = Snmptrapd(workdir / "trapd")

    def table(self) -> dict[str, Any]:
        return {"type": "snmp", "address": self.server.address, "inform": True, "inform_timeout": 0.3,
                "inform_retries": 1, "timeout": 2.0, "engine_boots_file": str(self.workdir / "boots")}

    def got(self) -> list[tuple[int, str | None]]:
        out: list[tuple[int, str | None]] = []
        for n in self.server.notifications():
            mark = _MARK.search(by_oid(n).get(f"{ENTERPRISE}.1.1", ""))
            if mark:
                out.append((int(mark[1]), None))
        return out


class ToHttp(Destination):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.server = Endpoint()
        self.server.stop()

    def table(self) -> dict[str, Any]:
        return {"type": "http", "url": f"http://127.0.0.1:{self.server.port}/"}

    def got(self) -> list[tuple[int, str | None]]:
        return [(int(_MARK.search(e["msg"])[1]), e["id"])  # type: ignore[index]
                for _, body in list(self.server.requests) for e in orjson.loads(body)]

    def close(self) -> None:
        self.server.close()


class ToHinemos(ToHttp):
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server = FakeHinemos(queue_size=64)
        self.server.stop()

    def table(self) -> dict[str, Any]:
        return {"type": "hinemos", "url": f"http://127.0.0.1:{self.server.port}/", "facility_id": "web01"}

    def got(self) -> list[tuple[int, str | None]]:
        out: list[tuple[int, str | None]] = []
        for _, entry in list(self.server.entries):  # type: ignore[attr-defined]
            line = json.loads(entry["MSG"])
            out.append((int(_MARK.search(line["msg"])[1]), line["id"]))  # type: ignore[index]
        return out


class ToRedisStream(Destination):
    def __init__(self, workdir: Path) -> None:
        require_redis_server()
        super().__init__(workdir)
        self.server = RedisServer(workdir / "r", args=["--appendonly", "yes"])  # keeps the stream

    def table(self) -> dict[str, Any]:
        return {"type": "redis-stream", "url": self.server.url, "stream": "events", "connect_timeout": 0.5}

    def got(self) -> list[tuple[int, str | None]]:
        with self.server.client(decode_responses=True) as c:
            return [(int(_MARK.search(fields["msg"])[1]), fields["id"])  # type: ignore[index]
                    for _, fields in c.xrange("events")]


class ToNats(Destination):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.server = NatsServer(workdir)

    def table(self) -> dict[str, Any]:
        return {"type": "nats", "servers": [self.server.url], "subject": "tg.{format}", "stream": "TG",
                "create": True, "connect_timeout": 0.5, "reconnect_wait": 0.2}

    def got(self) -> list[tuple[int, str | None]]:
        out: list[tuple[int, str | None]] = []
        for _, headers, data in asyncio.run(stored(self.server)):
            line = orjson.loads(data)
            out.append((int(_MARK.search(line["msg"])[1]), headers.get("Nats-Msg-Id")))  # type: ignore[index]
        return out


DESTINATIONS: dict[str, Callable[[Path], Destination]] = {
    "syslog": ToRsyslog, "snmp": ToSnmptrapd, "http": ToHttp, "hinemos": ToHinemos,
    "redis-stream": ToRedisStream, "nats": ToNats,
}


@pytest.fixture(params=list(DESTINATIONS))
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Destination]:
    dest = DESTINATIONS[request.param](tmp_path / "dest")
    dest.start()
    try:
        yield dest
    finally:
        dest.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def send(node: Trapgate, fmt: str, numbers: range) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in numbers:
            if fmt == "snmp":
                s.sendto(v2c_event(f"mark-{i}").raw, ("127.0.0.1", node.snmp_port))
            else:
                s.sendto(f"<14>1 2024-03-01T12:00:00Z r{i % 4} app - - - mark-{i}".encode(),
                         ("127.0.0.1", node.syslog_port))
            if i % 40 == 39:
                time.sleep(0.02)


@pytest.mark.timeout(120)
def test_a_destination_down_holds_up_no_other_sink_and_a_kill_with_a_full_spool_loses_nothing(
    destination: Destination, tmp_path: Path,
) -> None:
    workdir = tmp_path / "gw"
    workdir.mkdir()
    out = workdir / "file.jsonl"
    sinks = {"file": {"type": "jsonl", "path": str(out)},
             "dest": {"retry_initial": 0.05, "retry_max": 0.3, "batch_size": 64, **destination.table()}}
    node = with_sinks(Trapgate(workdir, {"spool": {"path": str(workdir / "spool")}}), sinks).start()

    def in_file() -> list[tuple[int, str]]:
        if not out.exists():
            return []
        lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        return [(int(_MARK.search(json.dumps(e))[1]), e["id"]) for e in lines]  # type: ignore[index]

    def marks() -> set[int]:
        return {mark for mark, _ in destination.got()}

    total = BEFORE + DURING
    try:
        send(node, destination.format, range(BEFORE))
        wait_for(lambda: marks() == set(range(BEFORE)), "the destination to get the first events")
        destination.stop()
        send(node, destination.format, range(BEFORE, total))
        wait_for(lambda: len(in_file()) == total, "the jsonl sink to take every event while one is down")
        wait_for(lambda: node.metric("trapgate_sink_backlog_events", component="dest") == DURING,
                 "the down sink's backlog to hold what it missed")
        assert node.metric("trapgate_sink_backlog_oldest_seconds", component="dest") > 0
        assert node.status()["components"]["dest"]["backlog_events"] == DURING
        assert node.proc is not None
        node.proc.kill()
        node.proc.communicate()
        file_before = in_file()
        destination.start()
        node.start()
        wait_for(lambda: marks() == set(range(total)), "the destination to get every event after the restart")
        wait_for(lambda: node.status()["gauges"]["spool_batches"] == 0, "the spool to empty")
        assert node.metric("trapgate_handed_over_total", component="dedup", reason="resent") == DURING
        time.sleep(0.5)  # room for a repeat to show
        got = destination.got()
        assert in_file() == file_before  # the jsonl sink had them all: nothing sent to it again
    finally:
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err
    file_ids = dict(file_before)
    assert sorted(file_ids) == list(range(total)) and len(file_before) == total
    ids_seen: dict[int, set[str | None]] = {}
    for mark, event_id in got:
        ids_seen.setdefault(mark, set()).add(event_id)
    repeated = {m: ids for m, ids in ids_seen.items() if [mk for mk, _ in got].count(m) > 1}
    if got[0][1] is not None:  # the destination shows the ids: each is the one the jsonl sink has
        assert all(ids == {file_ids[m]} for m, ids in ids_seen.items()), repeated
    else:
        assert not repeated, repeated
