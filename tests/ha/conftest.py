"""A two-node trapgate pair on loopback, each node with its own Redis.

Node a listens on 127.0.0.2, node b on 127.0.0.3, like two hosts; a's Redis
is the primary while a is master, b's replicates it. The `Device` sends every
event to both nodes, as a device configured with two trap destinations does,
and can drop each copy on each path independently.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_process import GatewayProcess
from tests.redis_servers import RedisClusterServers, RedisServer, free_port
from tests.toml_render import render_toml

ROOT = Path(__file__).resolve().parents[2]

TOKEN = "ha-test-token"


class Node(GatewayProcess):
    """One trapgate process of the pair."""

    def __init__(self, name: str, host: str, workdir: Path, redis: RedisServer | None,
                 peer_redis: RedisServer | None, role: str, ha: dict[str, Any] | None = None,
                 cluster_url: str = "") -> None:
        self.name, self.host, self.workdir = name, host, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.syslog_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        self.snmp_port = free_port()
        self.out = workdir / "out.jsonl"
        self.config = workdir / "trapgate.toml"
        self.config.write_text(render_toml({
            "node": {"name": name},
            "receivers": {
                "syslog": {"type": "udp", "format": "syslog", "address": f"{host}:{self.syslog_port}"},
                "custom": {"type": "http", "format": "custom", "address": f"{host}:{self.http_port}"},
                "snmp": {"type": "snmp", "address": f"{host}:{self.snmp_port}", "communities": ["public"],
                         "engine_boots_file": str(workdir / "engine-boots")},
            },
            "admin": {"address": f"{host}:{self.admin_port}"},
            "dedup": {"store": "redis", "window": 30.0},
            "redis": {"local": redis.url, "peer": peer_redis.url, "socket_timeout": 0.5}
            if redis is not None and peer_redis is not None
            else {"local": cluster_url, "cluster": True, "socket_timeout": 1.0},
            "ha": {"role": role, "token": TOKEN, "grace": 1.0, "check_after": 0.2,
                   "spool": str(workdir / "spool"), **(ha or {})},
            "sink": {"type": "file", "path": str(self.out)},
            "quarantine": {"path": str(workdir / "quarantine.jsonl")},
            "pipeline": {"flush_ms": 5.0},
        }))
        self.admin_url = f"http://{host}:{self.admin_port}"

    def start(self) -> Node:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(self.config)], cwd=self.workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "stderr.log", "ab"),  # noqa: SIM115
        )
        self.wait_healthy(lambda: (self.workdir / "stderr.log").read_text())
        return self

    def set_role(self, role: str, lease: float | None = None) -> dict[str, Any]:
        """`trapgate role ROLE -c CONFIG [--lease S]`, the operator's command."""
        extra = ["--lease", str(lease)] if lease else []
        r = subprocess.run([sys.executable, "-m", "gateway", "role", role, "-c", str(self.config), *extra],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def events(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_bytes().splitlines() if line]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Device:
    """Sends every event to both nodes; `loss` drops each copy independently."""

    nodes: list[Node]
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    sent: dict[str, set[str]] = field(default_factory=dict)  # seq -> names of nodes that got a copy
    seq: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def _targets(self) -> list[Node]:
        return [n for n in self.nodes if self.rng.random() >= self.loss]

    def syslog(self, text: str | None = None) -> str:
        self.seq += 1
        seq = f"s{self.seq}"
        line = f"<134>1 2026-01-01T00:00:00Z dev1 app - - - {text or seq}".encode()
        targets = self._targets()
        for node in targets:
            self.sock.sendto(line, (node.host, node.syslog_port))
        self.sent.setdefault(text or seq, set()).update(n.name for n in targets)
        return text or seq

    def custom(self) -> str:
        self.seq += 1
        seq = f"c{self.seq}"
        body = json.dumps({"FacilityID": "dev2", "DATA": [{"TYPE": "STRING", "KEY": "k", "MSG": seq}]})
        targets = self._targets()
        for node in targets:
            subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "5", "--data-binary", body,
                            f"http://{node.host}:{node.http_port}/"], check=False)
        self.sent.setdefault(seq, set()).update(n.name for n in targets)
        return seq

    def snmp(self) -> str:
        """A v2c trap from Net-SNMP's snmptrap; the sequence is a varbind and the uptime."""
        self.seq += 1
        seq = f"t{self.seq}"
        targets = self._targets()
        for node in targets:
            subprocess.run(["snmptrap", "-v", "2c", "-c", "public", f"{node.host}:{node.snmp_port}",
                            str(self.seq), "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.2.1", "s", seq],
                           check=False, timeout=5)
        self.sent.setdefault(seq, set()).update(n.name for n in targets)
        return seq

    def run(self, count: int, rate: float, custom_every: int = 0, snmp_every: int = 0) -> None:
        """`count` events at about `rate` per second; every `custom_every`-th a custom
        trap, every `snmp_every`-th an SNMP trap, the rest syslog."""
        start = time.monotonic()
        for i in range(count):
            if custom_every and i % custom_every == 0:
                self.custom()
            elif snmp_every and i % snmp_every == 1:
                self.snmp()
            else:
                self.syslog()
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def forwarded(nodes: list[Node]) -> Counter[str]:
    """How many times each message was forwarded, over both nodes' outputs."""
    return Counter(
        e["varbinds"][0][2] if e["format"] == "snmp" else e["msg"] for n in nodes for e in n.events()
    )


def report(name: str, sent: dict[str, set[str]], seen: Counter[str]) -> tuple[set[str], dict[str, int]]:
    """Print and return what was lost and what was doubled."""
    received = {m for m, got in sent.items() if got}
    lost = received - set(seen)
    doubled = {m: c for m, c in seen.items() if c > 1}
    print(f"{name}: sent {len(sent)} received-by-some {len(received)} forwarded {sum(seen.values())} "
          f"lost {len(lost)} duplicated {len(doubled)}")
    return lost, doubled


def wait_quiet(nodes: list[Node], timeout: float = 20.0) -> None:
    """Until no node has pending events and the outputs stopped growing."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        time.sleep(0.5)
        total = sum(len(n.events()) for n in nodes)
        pending = 0
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                pending += int(n.status()["role"]["pending"])
        if total == last and pending == 0:
            return
        last = total


@dataclass
class Pair:
    a: Node
    b: Node
    redis_a: RedisServer
    redis_b: RedisServer

    @property
    def nodes(self) -> list[Node]:
        return [self.a, self.b]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    redis_a = RedisServer(tmp_path / "ra", host="127.0.0.2").start()
    redis_b = RedisServer(tmp_path / "rb", host="127.0.0.3", replicaof=redis_a).start()
    a = Node("a", "127.0.0.2", tmp_path / "a", redis_a, redis_b, "master").start()
    b = Node("b", "127.0.0.3", tmp_path / "b", redis_b, redis_a, "standby").start()
    p = Pair(a, b, redis_a, redis_b)
    try:
        yield p
    finally:
        for node in (a, b):
            node.stop()
            log = (node.workdir / "stderr.log").read_text()
            assert "Traceback" not in log, log
        redis_b.stop()
        redis_a.stop()


@pytest.fixture
def cluster_pair(tmp_path: Path) -> Iterator[list[Node]]:
    """Both nodes on one shared three-master Redis Cluster."""
    with RedisClusterServers(tmp_path / "cluster") as cluster:
        host, port = cluster.startup
        url = f"redis://{host}:{port}/0"
        a = Node("a", "127.0.0.2", tmp_path / "a", None, None, "master", cluster_url=url).start()
        b = Node("b", "127.0.0.3", tmp_path / "b", None, None, "standby", cluster_url=url).start()
        try:
            yield [a, b]
        finally:
            for node in (a, b):
                node.stop()
