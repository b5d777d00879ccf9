"""A two-node trapgate pair on loopback, each node with its own Redis.

Node a listens on 127.0.0.2, node b on 127.0.0.3, like two hosts; a's Redis
is the primary while a is master, b's replicates it. The `Device` sends every
event to both nodes, as a device configured with two trap destinations does,
and can drop each copy on each path independently.

For fault scenarios: a `Node` remembers when its process lived (`lives`) and
when it was paused (`deaf`), the `Device` remembers every send (`sends`), so
`fault_report` can tell what each text was owed: the sends that reached a
node which stayed up.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
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
        self.spool = workdir / "spool"
        # (start, end) of each process life and of each SIGSTOP; end None: still so.
        self.lives: list[tuple[float, float | None]] = []
        self.deaf: list[tuple[float, float | None]] = []

    def start(self) -> Node:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(self.config)], cwd=self.workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "stderr.log", "ab"),  # noqa: SIM115
        )
        self.wait_healthy(lambda: (self.workdir / "stderr.log").read_text())
        self.lives.append((time.monotonic(), None))
        return self

    def restart(self) -> Node:
        """Start the process again with the same config; the output file is kept."""
        assert self.proc is None or self.proc.poll() is not None, "still running"
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing."""
        assert self.proc is not None
        self.deaf.append((time.monotonic(), None))
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.proc is not None and self.deaf and self.deaf[-1][1] is None
        self.proc.send_signal(signal.SIGCONT)
        self.deaf[-1] = (self.deaf[-1][0], time.monotonic())

    def stayed_up_at(self, t: float, kernel_drops: int) -> bool:
        """Whether a packet sent at `t` reached a process that is still alive.

        A packet sent while the process was stopped counts only when the kernel
        dropped nothing on its syslog socket (`kernel_drops`, from `udp_drops`),
        so that it sat in the socket buffer.
        """
        if not any(start <= t and end is None for start, end in self.lives):
            return False
        paused = any(start <= t and (end is None or t <= end) for start, end in self.deaf)
        return not paused or kernel_drops == 0

    def udp_drops(self) -> int:
        """Datagrams the kernel dropped on the syslog socket (/proc/net/udp); -1 when it is not open."""
        ip = "".join(f"{int(octet):02X}" for octet in reversed(self.host.split(".")))
        address = f"{ip}:{self.syslog_port:04X}"
        rows = (line.split() for line in Path("/proc/net/udp").read_text().splitlines()[1:])
        drops = [int(row[-1]) for row in rows if row[1] == address]
        return sum(drops) if drops else -1

    def spool_ids(self) -> set[str]:
        """Event ids of the batches in the spool that were never acknowledged (node must be dead)."""
        from gateway.ha import decode_rescue
        from gateway.spool import Spool

        assert self.proc is None or self.proc.poll() is not None, "read the spool of a dead node only"
        if not self.spool.exists():
            return set()
        spool = Spool(self.spool)
        try:
            return {decode_rescue(entry)[2] for entry in spool.recover()}
        finally:
            spool.close()

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
        if self.lives:
            self.lives[-1] = (self.lives[-1][0], time.monotonic())
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.deaf and self.deaf[-1][1] is None:
                self.resume()
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
    sends: list[tuple[str, frozenset[str], float]] = field(default_factory=list)  # (text, got it, when)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def _targets(self) -> list[Node]:
        return [n for n in self.nodes if self.rng.random() >= self.loss]

    def _record(self, text: str, targets: list[Node], when: float) -> None:
        self.sent.setdefault(text, set()).update(n.name for n in targets)
        self.sends.append((text, frozenset(n.name for n in targets), when))

    def syslog(self, text: str | None = None) -> str:
        self.seq += 1
        seq = f"s{self.seq}"
        line = f"<134>1 2026-01-01T00:00:00Z dev1 app - - - {text or seq}".encode()
        targets = self._targets()
        when = time.monotonic()
        for node in targets:
            self.sock.sendto(line, (node.host, node.syslog_port))
        self._record(text or seq, targets, when)
        return text or seq

    def custom(self) -> str:
        self.seq += 1
        seq = f"c{self.seq}"
        body = json.dumps({"FacilityID": "dev2", "DATA": [{"TYPE": "STRING", "KEY": "k", "MSG": seq}]})
        targets = self._targets()
        when = time.monotonic()
        for node in targets:
            subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "5", "--data-binary", body,
                            f"http://{node.host}:{node.http_port}/"], check=False)
        self._record(seq, targets, when)
        return seq

    def snmp(self) -> str:
        """A v2c trap from Net-SNMP's snmptrap; the sequence is a varbind and the uptime."""
        self.seq += 1
        seq = f"t{self.seq}"
        targets = self._targets()
        when = time.monotonic()
        for node in targets:
            subprocess.run(["snmptrap", "-v", "2c", "-c", "public", f"{node.host}:{node.snmp_port}",
                            str(self.seq), "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.2.1", "s", seq],
                           check=False, timeout=5)
        self._record(seq, targets, when)
        return seq

    def run(self, count: int, rate: float, custom_every: int = 0, snmp_every: int = 0,
            repeat_every: int = 0) -> None:
        """`count` events at about `rate` per second; every `custom_every`-th a custom
        trap, every `snmp_every`-th an SNMP trap, every `repeat_every`-th a syslog
        text sent 2 or 3 times in a row (identical occurrences), the rest syslog."""
        start = time.monotonic()
        for i in range(count):
            if custom_every and i % custom_every == 0:
                self.custom()
            elif snmp_every and i % snmp_every == 1:
                self.snmp()
            elif repeat_every and i % repeat_every == repeat_every - 1:
                text = f"r{self.seq + 1}"
                for _ in range(self.rng.choice((2, 3))):
                    self.syslog(text)
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
    """Until no running node has pending events and the outputs stopped growing.

    Raises AssertionError, with the last counts seen, when that does not happen
    within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last = -1
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        time.sleep(0.5)
        total = sum(len(n.events()) for n in nodes)
        pending: dict[str, int] = {}
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                pending[n.name] = int(n.status()["role"]["pending"])
        if total == last and not any(pending.values()):
            return
        seen = {"lines before": last, "lines now": total, "pending": pending}
        last = total
    raise AssertionError(f"not quiet after {timeout:.0f} s: {seen}")


def text_of(event: dict[str, Any]) -> str:
    """The text a `Device` sent, from a forwarded event."""
    return event["varbinds"][0][2] if event["format"] == "snmp" else event["msg"]  # type: ignore[no-any-return]


def forwarders_per_epoch(nodes: Iterable[Node]) -> dict[int, set[str]]:
    """Epoch -> names of the nodes that forwarded something at that epoch (no "epoch" key: 0)."""
    per: dict[int, set[str]] = {}
    for n in nodes:
        for e in n.events():
            per.setdefault(int(e.get("epoch", 0)), set()).add(e["node"])
    return dict(sorted(per.items()))


def duplicate_ids(nodes: Iterable[Node]) -> Counter[str]:
    """Event id -> lines, for the ids forwarded more than once over all outputs."""
    ids = Counter(e["id"] for n in nodes for e in n.events())
    return Counter({i: c for i, c in ids.items() if c > 1})


def reused_ids(nodes: Iterable[Node]) -> dict[str, set[str]]:
    """Event id -> texts, for the ids forwarded with more than one text."""
    texts: dict[str, set[str]] = {}
    for n in nodes:
        for e in n.events():
            texts.setdefault(e["id"], set()).add(text_of(e))
    return {i: t for i, t in texts.items() if len(t) > 1}


def doubled_under_new_ids(device: Device, nodes: Iterable[Node]) -> dict[str, int]:
    """Text -> extra occurrences forwarded under ids of their own (more ids than sends that arrived)."""
    expected = Counter(text for text, got, _ in device.sends if got)
    ids: dict[str, set[str]] = {}
    for n in nodes:
        for e in n.events():
            ids.setdefault(text_of(e), set()).add(e["id"])
    return {t: len(i) - expected[t] for t, i in ids.items() if len(i) > expected[t]}


def fault_report(name: str, device: Device, nodes: list[Node]) -> tuple[dict[str, int], dict[str, int]]:
    """Print one line (sent / received-by-some / forwarded / lost / duplicated / forwarders
    per epoch) and return (lost, doubled) as text -> occurrences.

    A text is expected as many times as it was sent to at least one node, and
    owed as many times as it reached a node that stayed up (`Node.stayed_up_at`).
    Each distinct event id forwarded counts as one occurrence: lost = owed minus
    distinct ids; doubled = lines beyond one per id, plus ids beyond the expected.
    """
    by_name = {n.name: n for n in nodes}
    drops = {n.name: n.udp_drops() for n in nodes}
    expected: Counter[str] = Counter()
    owed: Counter[str] = Counter()
    for text, got, when in device.sends:
        if got:
            expected[text] += 1
        if any(name in by_name and by_name[name].stayed_up_at(when, drops[name]) for name in got):
            owed[text] += 1
    lines: Counter[str] = Counter()
    ids: dict[str, set[str]] = {}
    for n in nodes:
        for e in n.events():
            lines[text_of(e)] += 1
            ids.setdefault(text_of(e), set()).add(e["id"])
    lost = {t: owed[t] - len(ids.get(t, ())) for t in owed if owed[t] > len(ids.get(t, ()))}
    doubled = {}
    for t, copies in lines.items():
        extra = copies - min(len(ids[t]), expected[t])
        if extra > 0:
            doubled[t] = extra
    epochs = {epoch: "+".join(sorted(names)) for epoch, names in forwarders_per_epoch(nodes).items()}
    print(f"{name}: sent {len(device.sends)} received-by-some {sum(expected.values())} "
          f"forwarded {sum(lines.values())} lost {sum(lost.values())} duplicated {sum(doubled.values())} "
          f"forwarders per epoch {epochs}")
    return lost, doubled


class Load(threading.Thread):
    """A `Device.run` in a thread of its own; `join` re-raises what the sender raised."""

    def __init__(self, device: Device, count: int, rate: float, repeat_every: int) -> None:
        super().__init__(daemon=True, name="load")
        self.device, self.count, self.rate, self.repeat_every = device, count, rate, repeat_every
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.device.run(self.count, self.rate, repeat_every=self.repeat_every)
        except BaseException as exc:  # handed to the joining thread
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        assert not self.is_alive(), "the sender did not finish"
        if self.error is not None:
            raise self.error


def load_in_background(device: Device, count: int, rate: float, repeat_every: int = 50) -> Load:
    """Start sending `count` events at `rate`/s (every `repeat_every`-th sent 2-3 times) in a thread."""
    load = Load(device, count, rate, repeat_every)
    load.start()
    return load


def wait_role(node: Node, role: str, epoch: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Until the node's /status role is `role` (at `epoch` or above); its role state then.

    Raises AssertionError with the last state seen on timeout.
    """
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = node.status()["role"]
        if state["role"] == role and (epoch is None or int(state["epoch"]) >= epoch):
            return state
        time.sleep(0.1)
    raise AssertionError(f"node {node.name} not {role} at epoch >= {epoch} after {timeout} s: {state}")


def pause_redis(server: RedisServer) -> None:
    """SIGSTOP the redis-server process."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)


def resume_redis(server: RedisServer) -> None:
    """SIGCONT the redis-server process."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGCONT)


def redis_role(server: RedisServer) -> str:
    """"master" or "slave", from ``INFO replication``."""
    with server.client(socket_timeout=2.0) as c:
        return str(c.info("replication")["role"])


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
