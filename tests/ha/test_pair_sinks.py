"""A pair forwarding to JetStream across a master SIGKILL: the stream holds each event once; a pair
whose master's http sink is down, then the master killed: nothing lost.

Both nodes have a `nats` sink (beside the `out` file every check reads) to one
nats-server. The master is killed under load while the nats-server is paused,
so that it dies with a batch in its sinks: written to its file, published to
the server's socket, not acknowledged, so not marked forwarded. The promoted
standby forwards that batch again with the same ids (the file sinks show it
twice); whatever of the dead master's publishes the server stored once it went
on, JetStream drops the repeats by `Nats-Msg-Id`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from tests.ha.conftest import (
    Device,
    Pair,
    duplicate_ids,
    fault_report,
    load_in_background,
    running_pair,
    wait_quiet,
)
from tests.integration.test_sink_http import Endpoint
from tests.nats_server import NatsServer

pytestmark = pytest.mark.ha

RATE = 3000
LOSS = 0.01
SUBJECT, STREAM = "tg.events", "TG"


@pytest.fixture
def nats_pair(tmp_path: Path) -> Iterator[tuple[Pair, NatsServer]]:
    server = NatsServer(tmp_path).start()
    sinks = {"js": {"type": "nats", "servers": [server.url], "subject": SUBJECT, "stream": STREAM,
                    "create": True, "duplicate_window": 120.0}}
    try:
        with running_pair(tmp_path, sinks) as pair:
            yield pair, server
    finally:
        server.stop()


async def stream_ids(url: str) -> list[str]:
    """The `Nats-Msg-Id` of every message in the stream, in order."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        total = (await js.stream_info(STREAM)).state.messages
        # No acks: a pull consumer's default holds back past 1,000 unacknowledged messages.
        sub = await js.pull_subscribe(SUBJECT, durable="check", stream=STREAM,
                                      config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        ids: list[str] = []
        while len(ids) < total:
            for message in await sub.fetch(min(1000, total - len(ids)), timeout=5):
                ids.append((message.headers or {})["Nats-Msg-Id"])
        return ids
    finally:
        await client.close()


def test_master_killed_under_load_the_stream_holds_each_event_once(
        nats_pair: tuple[Pair, NatsServer]) -> None:
    pair, server = nats_pair
    a, b = pair.a, pair.b
    device = Device(pair.nodes, loss=LOSS)
    load = load_in_background(device, 4 * RATE, RATE)
    time.sleep(1.5)
    os.kill(server.pid, signal.SIGSTOP)  # a's batch waits in its nats sink: written to its file, not acked
    try:
        time.sleep(0.3)
        a.kill()
        device.nodes = [b]
    finally:
        os.kill(server.pid, signal.SIGCONT)
    in_flight = a.spool_ids()
    promoted = b.set_role("master")
    load.join()
    wait_quiet([b])
    lost, _ = fault_report("master killed, nats sink", device, pair.nodes)
    in_files = duplicate_ids(pair.nodes)
    forwarded = {e["id"] for n in pair.nodes for e in n.events()}
    ids = asyncio.run(stream_ids(server.url))
    repeated = {i: c for i, c in Counter(ids).items() if c > 1}
    print(f"  in flight at kill {len(in_flight)}, ids the file sinks got twice {len(in_files)}, "
          f"stream messages {len(ids)}, distinct ids forwarded {len(forwarded)}")

    assert promoted["role"] == "master" and promoted["forwarding"]
    assert not lost, lost
    assert in_files and set(in_files) <= in_flight, (len(in_files), set(in_files) - in_flight)
    assert not repeated, list(repeated.items())[:10]
    assert set(ids) == forwarded, (len(set(ids) - forwarded), len(forwarded - set(ids)))


def test_a_masters_http_sink_down_holds_up_no_other_and_killing_it_then_loses_nothing(
        tmp_path: Path) -> None:
    """The master's http destination goes down under load: its file sink goes on; the batches the
    http sink holds up stay unmarked, in its spool. The master is killed, the standby promoted, the
    destination comes back, the dead node restarts (and hands its spool to the master): the
    destination gets every event, repeats only under the same id, and the files repeat only what
    the dead master's spool held."""
    endpoint = Endpoint()
    sinks = {"h": {"type": "http", "url": f"http://127.0.0.1:{endpoint.port}/", "retry_initial": 0.05,
                   "retry_max": 0.3}}
    try:
        with running_pair(tmp_path, sinks) as pair:
            a, b = pair.a, pair.b
            device = Device(pair.nodes, loss=LOSS)
            load = load_in_background(device, 6 * RATE, RATE)
            time.sleep(1.0)
            endpoint.stop()
            time.sleep(1.0)
            before = len(a.events())
            time.sleep(1.0)
            grew = len(a.events()) - before  # the file sink, while the http one is down
            behind = a.metric("trapgate_sink_backlog_events", component="h")
            a.kill()
            device.nodes = [b]
            in_flight = a.spool_ids()
            promoted = b.set_role("master")
            endpoint.start()
            load.join()
            wait_quiet([b])
            a.restart()  # joins as standby; what its spool kept goes to the master
            wait_quiet(pair.nodes)
            lost, _ = fault_report("master's http sink down, master killed", device, pair.nodes)
            in_files = duplicate_ids(pair.nodes)
            forwarded = {e["id"] for n in pair.nodes for e in n.events()}
            at_endpoint = Counter(e["id"] for _, body in list(endpoint.requests) for e in orjson.loads(body))
            print(f"  file lines while http was down {grew}, its backlog {behind:.0f}, a's spool at the "
                  f"kill {len(in_flight)}, ids the files got twice {len(in_files)}, endpoint: "
                  f"{len(at_endpoint)} ids, {sum(at_endpoint.values())} events")
    finally:
        endpoint.close()

    assert grew > 0.5 * RATE and behind > 0.5 * RATE, (grew, behind)
    assert promoted["role"] == "master"
    assert not lost, lost
    assert set(in_files) <= in_flight, len(set(in_files) - in_flight)
    assert set(at_endpoint) == forwarded, (len(forwarded - set(at_endpoint)),
                                           len(set(at_endpoint) - forwarded))
