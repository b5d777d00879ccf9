"""The `http` and `hinemos` sinks against real HTTP servers: a recording endpoint and a fake Hinemos manager.

The fake Hinemos behaves like the manager's custom-trap endpoint: it reads a
body line by line up to the first empty line (and no further than its body
limit), parses what it read as one JSON body, answers 200 even when it
silently dropped entries (bad JSON, bad entries, what followed the empty
line), queues each body for one worker, and closes the connection without any
response when the queue is full.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
import tomllib
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from formats import Event
from gateway.config import SinkConfig
from gateway.errors import SinkError
from gateway.forward import Forwarder
from gateway.sinks import Outgoing, Sink
from gateway.sinks.hinemos import HinemosOptions, HinemosSink
from gateway.sinks.http import HttpOptions, HttpSink, batch_key
from tests.integration.harness import Trapgate, free_port
from tests.integration.test_custom_http import curl
from tests.redis_servers import write_tls_files
from tests.toml_render import render_toml

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Served:
    """An aiohttp handler served on a loopback port by a loop in a thread of its own.

    `stop()` closes the port (and its connections); `start()` opens it again,
    on the same port.
    """

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.handler = handler
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._runner: web.AppRunner | None = None

    def call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    def start(self) -> None:
        async def start() -> None:
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("POST", "/{tail:.*}", self.handler)
            self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls).start()

        self.call(start())

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
            self._runner = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class FakeHinemos(Served):
    """A Hinemos custom-trap endpoint (see the module docstring); `entries` are what its worker took."""

    def __init__(self, queue_size: int = 20, work_seconds: float = 0.0, max_body: int = 65536) -> None:
        super().__init__(self._handle)
        self.queue_size = queue_size
        self.work_seconds = work_seconds
        self.max_body = max_body
        self.bodies: list[bytes] = []  # every body received
        self.entries: list[tuple[str, dict[str, Any]]] = []  # (FacilityID, entry), as the worker took them
        self.closed = 0  # requests closed without a response: queue full
        self.stall: set[int] = set()  # numbers of the requests (0, 1, ...) held stall_seconds, then closed
        self.stall_seconds = 1.0
        self._queue: asyncio.Queue[tuple[str, list[dict[str, Any]]]] = asyncio.Queue(queue_size)
        self._worker = asyncio.run_coroutine_threadsafe(self._work(), self.loop)
        self.start()

    async def _work(self) -> None:
        while True:
            facility_id, entries = await self._queue.get()
            if self.work_seconds:
                await asyncio.sleep(self.work_seconds)
            self.entries += [(facility_id, e) for e in entries]

    async def _handle(self, request: web.Request) -> web.Response:
        number = len(self.bodies)
        body = await request.read()
        self.bodies.append(body)
        if number in self.stall:
            await asyncio.sleep(self.stall_seconds)
            _close(request)
            return web.Response()
        lines = []
        for line in body[: self.max_body].split(b"\n"):
            if not line.strip():
                break
            lines.append(line)
        try:
            doc = json.loads(b"\n".join(lines))
        except ValueError:
            return web.Response()
        if not isinstance(doc, dict) or not isinstance(doc.get("FacilityID"), str):
            return web.Response()
        entries = [e for e in doc.get("DATA") or () if _valid(e)]
        try:
            self._queue.put_nowait((doc["FacilityID"], entries))
        except asyncio.QueueFull:
            self.closed += 1
            _close(request)
        return web.Response()

    def wait_entries(self, n: int, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len(self.entries) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything more (a duplicate) would show now
        return list(self.entries)

    def close(self) -> None:
        self._worker.cancel()
        super().close()


def _valid(entry: Any) -> bool:
    return (isinstance(entry, dict) and entry.get("TYPE") in ("NUM", "STRING")
            and isinstance(entry.get("KEY"), str) and "MSG" in entry)


def _close(request: web.Request) -> None:
    if request.transport is not None:  # None: the client gave up first
        request.transport.close()


class Endpoint(Served):
    """Records each request (headers, body); answers each as `script` says, then 200."""

    def __init__(self, script: Sequence[int | str] = (), tls: ssl.SSLContext | None = None) -> None:
        super().__init__(self._handle, tls)
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        action = self.script.pop(0) if self.script else 200
        if action == "close":
            _close(request)
            return web.Response()
        assert isinstance(action, int)
        return web.Response(status=action, text="no" if action >= 300 else "ok")


@pytest.fixture
def fake() -> Iterator[FakeHinemos]:
    server = FakeHinemos()
    yield server
    server.close()


T0 = 1_709_294_400.0


def custom(i: int, facility_id: str = "web01", msg: str = "") -> Event:
    fields = {"facility_id": facility_id, "date": "2024-03-01 12:00:00", "type": "STRING", "key": "app",
              "msg": msg or f"m{i}"}
    return Event("custom", ("10.0.0.5", 40000), T0 + i, fields, b"", (facility_id, i))


def syslog(i: int, msg: str) -> Event:
    return Event("syslog", ("10.0.0.6", 514), T0 + i, {"hostname": "r1", "msg": msg}, b"", (i,))


def ids(n: int) -> list[str]:
    return [f"{i:016x}-1-1" for i in range(n)]


def forward(sink: Sink, config: SinkConfig, events: list[Event]) -> bool:
    async def main() -> bool:
        await sink.start()
        try:
            forwarder = Forwarder("gw", [sink], configs=[config])
            return await forwarder.forward(events, ["f"] * len(events), ids(len(events)))
        finally:
            await sink.close()

    return asyncio.run(main())


def hinemos(fake: FakeHinemos, **options: Any) -> tuple[HinemosSink, SinkConfig]:
    config = SinkConfig("hinemos", batch_size=options.pop("batch_size", 512),
                        timeout=options.pop("timeout", 5.0), retry_initial=0.01, retry_max=0.1)
    return HinemosSink("hin", config, HinemosOptions(url=f"http://127.0.0.1:{fake.port}",
                                                     facility_id="gw", **options)), config


def expected_custom(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.fields["facility_id"], {"DATE": e.fields["date"], "TYPE": e.fields["type"],
                                       "KEY": e.fields["key"], "MSG": e.fields["msg"]}) for e in events]


def test_the_fake_hinemos_drops_silently_what_follows_an_empty_line_or_its_body_limit() -> None:
    fake = FakeHinemos(max_body=200)
    try:
        entry = {"TYPE": "STRING", "KEY": "k", "MSG": "x"}
        pretty = json.dumps({"FacilityID": "a", "DATA": [entry]}, indent=1)
        empty_line = pretty.replace('\n "DATA"', '\n\n"DATA"')
        for body in (empty_line, json.dumps({"FacilityID": "a", "DATA": [entry] * 20})):
            code, _ = curl_status(fake.port, body.encode())
            assert code == 200
        assert fake.wait_entries(1, 0.5) == []
    finally:
        fake.close()


def curl_status(port: int, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body)
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, r.read()


def test_hinemos_entries_arrive_complete_in_bodies_within_the_limits(fake: FakeHinemos) -> None:
    fake.max_body = 4096
    events = [custom(i, f"web0{i // 7 % 3}", f"m{i} " + "é\n\n\"x" * (i * 13 % 150)) for i in range(150)]
    events += [syslog(1000 + i, f"s{i}\n\nafter an empty line") for i in range(30)]
    events.append(custom(2000, "big", "y" * 10_000))
    sink, config = hinemos(fake, max_entries=25, max_body_bytes=4096, batch_size=100)
    assert forward(sink, config, events)
    got = fake.wait_entries(len(events), 10)
    assert got[:150] == expected_custom(events[:150])
    syslogs = zip(got[150:180], events[150:180], ids(180)[150:], strict=True)
    for (facility_id, entry), event, event_id in syslogs:
        line = json.loads(entry["MSG"])
        assert (facility_id, entry["KEY"], entry["TYPE"]) == ("gw", "syslog", "STRING")
        assert (line["msg"], line["id"], line["hostname"]) == (event.fields["msg"], event_id, "r1")
        assert entry["DATE"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.received_at))
    assert len(got) == 181 and got[180][0] == "big"
    assert got[180][1]["MSG"].startswith("yyyy") and got[180][1]["MSG"].endswith("...[truncated]")
    assert sink.counters.errors == {"truncated": 1}
    for body in fake.bodies:
        assert len(body) <= 4096 and body.endswith(b"}\n") and body.count(b"\n") == 1
        assert len(json.loads(body)["DATA"]) <= 25
    assert len(fake.bodies) > 181 // 25 + 1  # split by size as well as by count


def test_hinemos_closing_without_a_response_when_its_queue_is_full_is_retried_and_nothing_is_lost() -> None:
    fake = FakeHinemos(queue_size=20, work_seconds=0.005)
    try:
        events = [custom(i, f"web0{i // 50 % 2}") for i in range(1000)]
        sink, config = hinemos(fake, max_entries=5, batch_size=100)
        assert forward(sink, config, events)
        assert fake.wait_entries(1000, 20) == expected_custom(events)
        assert fake.closed > 0 and sink.counters.errors["send"] == fake.closed
        assert sink.counters.sent == 1000 and not sink.counters.dropped
    finally:
        fake.close()


def test_hinemos_timeout_is_retried_from_the_body_that_timed_out(fake: FakeHinemos) -> None:
    fake.stall = {1, 2}
    events = [custom(i) for i in range(30)]
    sink, config = hinemos(fake, max_entries=10, timeout=0.3)
    assert forward(sink, config, events)
    assert fake.wait_entries(30, 5) == expected_custom(events)  # each once: body 0 is not sent again
    assert len(fake.bodies) == 5 and fake.bodies[1] == fake.bodies[2] == fake.bodies[3]
    assert sink.counters.errors == {"timeout": 2}


def http(endpoint: Endpoint, **options: Any) -> tuple[HttpSink, SinkConfig]:
    config = SinkConfig("http", timeout=2.0, retry_initial=0.01, retry_max=0.1)
    return HttpSink("web", config, HttpOptions(url=f"http://127.0.0.1:{endpoint.port}/in", **options)), config


def test_http_batch_keeps_its_idempotency_key_across_retries_after_a_5xx_and_a_bare_close() -> None:
    endpoint = Endpoint([503, "close"])
    try:
        events = [syslog(i, f"s{i}") for i in range(3)]
        sink, config = http(endpoint, headers={"Authorization": "Bearer t"})
        assert forward(sink, config, events)
        keys = {headers["Idempotency-Key"] for headers, _ in endpoint.requests}
        outgoing = [Outgoing(e, "f", i, b"") for e, i in zip(events, ids(3), strict=True)]
        assert len(endpoint.requests) == 3 and keys == {batch_key(outgoing)}
        headers, body = endpoint.requests[-1]
        assert (headers["Content-Type"], headers["Authorization"]) == ("application/json", "Bearer t")
        assert [(e["id"], e["msg"]) for e in json.loads(body)] == [(i, f"s{n}") for n, i in enumerate(ids(3))]
        assert sink.counters.errors == {"send": 2} and sink.counters.sent == 3
    finally:
        endpoint.close()


def test_http_per_event_keys_are_the_event_ids_and_a_retry_resumes_at_the_failed_event() -> None:
    endpoint = Endpoint([200, 503])
    try:
        sink, config = http(endpoint, idempotency="event", body="ndjson")
        assert forward(sink, config, [syslog(i, f"s{i}") for i in range(3)])
        i0, i1, i2 = ids(3)
        assert [h["Idempotency-Key"] for h, _ in endpoint.requests] == [i0, i1, i1, i2]
        assert all(h["Content-Type"] == "application/x-ndjson" for h, _ in endpoint.requests)
        assert [orjson.loads(b)["msg"] for _, b in endpoint.requests] == ["s0", "s1", "s1", "s2"]
    finally:
        endpoint.close()


def test_http_4xx_rejects_the_batch_once_counted_as_dropped_but_401_is_retried() -> None:
    endpoint = Endpoint([400, 401])
    try:
        sink, config = http(endpoint, idempotency="none")
        assert forward(sink, config, [syslog(i, f"s{i}") for i in range(3)])
        assert len(endpoint.requests) == 1 and "Idempotency-Key" not in endpoint.requests[0][0]
        assert sink.counters.dropped == {"rejected": 3} and not sink.counters.errors
        sink, config = http(endpoint)
        assert forward(sink, config, [syslog(i, f"s{i}") for i in range(3)])
        assert len(endpoint.requests) == 3 and sink.counters.errors == {"send": 1}
    finally:
        endpoint.close()


def test_http_over_tls_trusts_tls_ca_and_refuses_an_unknown_ca_unless_tls_verify_is_off(
        tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(files.cert, files.key)
    endpoint = Endpoint(tls=tls)
    config = SinkConfig("http", retry_initial=0.01)
    url = f"https://127.0.0.1:{endpoint.port}/in"
    batch = [Outgoing(syslog(0, "s0"), "f", "f-1-1", b'{"msg":"s0"}\n')]

    async def send(options: HttpOptions) -> None:
        sink = HttpSink("web", config, options)
        await sink.start()
        try:
            await sink.send(batch)
        finally:
            await sink.close()

    try:
        asyncio.run(send(HttpOptions(url=url, tls_ca=str(files.ca))))
        with pytest.raises(SinkError, match="certificate verify failed"):
            asyncio.run(send(HttpOptions(url=url)))
        asyncio.run(send(HttpOptions(url=url, tls_verify=False)))
        assert [body for _, body in endpoint.requests] == [b'[{"msg":"s0"}]'] * 2
    finally:
        endpoint.close()


def with_sinks(node: Trapgate, sinks: dict[str, dict[str, Any]]) -> Trapgate:
    """`node` with `[sinks.*]` tables instead of the harness's `[sink]` file."""
    doc = tomllib.loads(node.config.read_text())
    del doc["sink"]
    doc["sinks"] = sinks
    node.config.write_text(render_toml(doc))
    return node


def test_trapgate_forwards_a_custom_trap_and_a_syslog_message_to_hinemos(tmp_path: Path,
                                                                         fake: FakeHinemos) -> None:
    sink = {"type": "hinemos", "url": f"http://127.0.0.1:{fake.port}", "facility_id": "gw",
            "retry_initial": 0.05}
    node = with_sinks(Trapgate(tmp_path), {"hin": sink}).start()
    try:
        entries = [{"DATE": "2024-03-01 12:00:00", "TYPE": "STRING", "KEY": "app", "MSG": "disk full"},
                   {"TYPE": "NUM", "KEY": "load", "MSG": "4.5"}]
        code, _ = curl(node.http_port, json.dumps({"FacilityID": "web01", "DATA": entries}).encode())
        assert code == 200
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            message = b"<14>1 2024-03-01T12:00:00Z r1 sshd - - - login failed"
            s.sendto(message, ("127.0.0.1", node.syslog_port))
        got = fake.wait_entries(3, 10)
        assert got[0] == ("web01", entries[0])
        assert got[1][0] == "web01" and got[1][1]["MSG"] == "4.5" and len(got[1][1]["DATE"]) == 19
        assert got[2][0] == "gw" and json.loads(got[2][1]["MSG"])["msg"] == "login failed"
        assert node.metric("trapgate_sent_total", component="hin") == 3
    finally:
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err


def order_report(seqs: list[int], n: int) -> str:
    """"ok" when `seqs` is 0 .. n-1 in order, else what is wrong with it."""
    if seqs == list(range(n)):
        return "ok"
    missing = sorted(set(range(n)) - set(seqs))
    twice = sorted(k for k in set(seqs) if seqs.count(k) > 1)
    back = next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None)
    return (f"{len(seqs)} of {n}, missing {missing[:5]} ({len(missing)}), twice {twice[:5]} ({len(twice)}), "
            f"first step back at {back}: {seqs[max(0, (back or 0) - 3):(back or 0) + 3]}")


SOURCES, RATE, SECONDS = 3, 200, 40
TOTAL = RATE * SECONDS // SOURCES * SOURCES


def through_a_30s_outage(node: Trapgate, server: Served) -> None:
    """Send `TOTAL` syslog lines over `SOURCES` TCP connections at `RATE`/s for `SECONDS` s; the
    destination `server` is stopped from 5 s to 35 s."""

    def send() -> None:
        conns = [socket.create_connection(("127.0.0.1", node.syslog_port)) for _ in range(SOURCES)]
        started = time.monotonic()
        for n in range(TOTAL):
            time.sleep(max(0.0, started + n / RATE - time.monotonic()))
            s = n % SOURCES
            conns[s].sendall(f"<14>1 2024-03-01T12:00:00Z h{s} app - - - seq={n // SOURCES}\n".encode())
        for conn in conns:
            conn.close()

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(5)
    server.stop()
    time.sleep(30)
    server.start()
    sender.join()


def each_sources_order(lines: list[dict[str, Any]]) -> dict[str, str]:
    """Per source (hostname): "ok" when its seqs arrived 0 .. n-1 in order, a repeat under the same
    id (a resend) counted once."""
    seen: dict[str, list[int]] = {f"h{s}": [] for s in range(SOURCES)}
    ids: set[str] = set()
    for line in lines:
        if line["id"] not in ids:
            ids.add(line["id"])
            seen[line["hostname"]].append(int(line["msg"].removeprefix("seq=")))
    return {h: order_report(n, TOTAL // SOURCES) for h, n in seen.items()}


@pytest.mark.outage
def test_hinemos_down_30s_under_200_events_per_second_loses_nothing_and_keeps_each_sources_order(
        tmp_path: Path) -> None:
    fake = FakeHinemos(queue_size=2048)
    sink = {"type": "hinemos", "url": f"http://127.0.0.1:{fake.port}", "facility_id": "gw",
            "timeout": 2.0, "retry_max": 1.0}
    node = with_sinks(Trapgate(tmp_path), {"hin": sink}).start()
    try:
        through_a_30s_outage(node, fake)
        lines = [json.loads(entry["MSG"]) for _, entry in fake.wait_entries(TOTAL, 60)]
        assert each_sources_order(lines) == dict.fromkeys(each_sources_order(lines), "ok")
        assert node.metric("trapgate_failed_total", component="hin") > 0
    finally:
        fake.close()
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.outage
def test_http_down_30s_under_200_events_per_second_loses_nothing_and_keeps_each_sources_order(
        tmp_path: Path) -> None:
    endpoint = Endpoint()
    sink = {"type": "http", "url": f"http://127.0.0.1:{endpoint.port}/", "timeout": 2.0, "retry_max": 1.0}
    node = with_sinks(Trapgate(tmp_path), {"h": sink}).start()
    try:
        through_a_30s_outage(node, endpoint)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = [e for _, body in list(endpoint.requests) for e in orjson.loads(body)]
            if len({line["id"] for line in lines}) >= TOTAL:
                break
            time.sleep(0.2)
        assert each_sources_order(lines) == dict.fromkeys(each_sources_order(lines), "ok")
        assert node.metric("trapgate_failed_total", component="h") > 0
    finally:
        endpoint.close()
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err


def test_a_single_node_killed_with_a_batch_in_its_spool_sends_it_again_under_the_same_ids(
    tmp_path: Path,
) -> None:
    """The destination answers 503 while trapgate is killed with its batches in the spool (the one
    being retried, and any queued behind it in the sink's lane); restarted (the destination
    answering again), it sends all 20 events, those it had tried under the ids of that attempt."""
    endpoint = Endpoint(script=[503] * 1000)
    sink = {"type": "http", "url": f"http://127.0.0.1:{endpoint.port}/", "retry_initial": 0.05,
            "retry_max": 0.1}
    node = with_sinks(Trapgate(tmp_path, {"spool": {"path": str(tmp_path / "spool")}}), {"h": sink})
    node.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(20):
                s.sendto(f"<14>1 2024-03-01T12:00:00Z r1 app - - - event {i}".encode(),
                         ("127.0.0.1", node.syslog_port))
        deadline = time.monotonic() + 10
        while len(endpoint.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.status()["gauges"]["spool_batches"] >= 1
        assert node.proc is not None
        node.proc.kill()
        node.proc.communicate()
        refused = {e["id"]: e["msg"] for _, body in endpoint.requests for e in orjson.loads(body)}
        endpoint.script, endpoint.requests = [], []
        node.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            delivered = {e["id"]: e["msg"] for _, body in endpoint.requests for e in orjson.loads(body)}
            if len(delivered) >= 20:
                break
            time.sleep(0.05)
        assert refused and delivered.items() >= refused.items()
        assert sorted(delivered.values()) == sorted(f"event {i}" for i in range(20))
        assert node.metric("trapgate_handed_over_total", component="dedup", reason="resent") == 20
    finally:
        code, err = node.stop()
        endpoint.close()
    assert code == 0 and "Traceback" not in err, err


def test_a_stop_with_a_destination_that_never_answers_ends_within_stop_timeout(tmp_path: Path) -> None:
    sink = {"type": "http", "url": f"http://127.0.0.1:{free_port()}/", "retry_initial": 0.05,
            "retry_max": 0.1}
    node = with_sinks(Trapgate(tmp_path, {"node": {"stop_timeout": 2.0}}), {"h": sink}).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(10):
            s.sendto(f"<14>1 2024-03-01T12:00:00Z r1 app - - - event {i}".encode(),
                     ("127.0.0.1", node.syslog_port))
    time.sleep(0.5)  # the first batch is being retried: nothing listens there
    started = time.monotonic()
    code, err = node.stop()
    took = time.monotonic() - started
    assert code == 0 and took < 2.0 + 2.5, (took, err)
    # The lanes get most of stop_timeout, then the node says what the sinks did not take.
    assert "the sinks did not take 10 events within 1.6 s of the stop: lost (no [spool] path)" in err, err
    assert "Traceback" not in err, err
