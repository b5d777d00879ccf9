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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.procs import die_with_parent
from tests.gateway_process import GatewayProcess
from tests.redis_servers import RedisClusterServers, RedisServer, free_port
from tests.toml_render import render_toml

ROOT = Path(__file__).resolve().parents[2]

TOKEN = "ha-test-token"


class Node(GatewayProcess):
    """One trapgate process of the pair.

    Its receivers listen on `host`, its admin API on `admin_host` (default: `host`);
    `prefix` is put before the command (e.g. `ip netns exec NS` for a node in a
    network namespace).
    """

    def __init__(self, name: str, host: str, workdir: Path, redis: RedisServer | None,
                 peer_redis: RedisServer | None, role: str, ha: dict[str, Any] | None = None,
                 cluster_url: str = "", controller: dict[str, Any] | None = None,
                 admin_host: str | None = None, prefix: Sequence[str] = (),
                 sinks: dict[str, Any] | None = None) -> None:
        self.name, self.host, self.workdir = name, host, workdir
        self.prefix = list(prefix)
        admin_host = admin_host or host
        self.controller_table = controller
        workdir.mkdir(parents=True, exist_ok=True)
        self.syslog_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        self.snmp_port, self.syslog_tcp_port = free_port(), free_port()
        self.out = workdir / "out.jsonl"
        self.config = workdir / "trapgate.toml"
        self.config.write_text(render_toml({
            # A stop that hangs (seen about once in a dozen runs of both nodes restarted at once, cause
            # not found) ends after 5 s with a line naming where it waited, in stderr.log.
            "node": {"name": name, "stop_timeout": 5.0},
            "receivers": {
                "syslog": {"type": "udp", "format": "syslog", "address": f"{host}:{self.syslog_port}"},
                "syslog_tcp": {"type": "tcp", "format": "syslog",
                               "address": f"{host}:{self.syslog_tcp_port}"},
                "custom": {"type": "http", "format": "custom", "address": f"{host}:{self.http_port}"},
                "snmp": {"type": "snmp", "address": f"{host}:{self.snmp_port}", "communities": ["public"],
                         "engine_boots_file": str(workdir / "engine-boots")},
            },
            "admin": {"address": f"{admin_host}:{self.admin_port}"},
            "dedup": {"store": "redis", "window": 30.0},
            "redis": {"local": redis.url, "peer": peer_redis.url, "socket_timeout": 0.5}
            if redis is not None and peer_redis is not None
            else {"local": cluster_url, "cluster": True, "socket_timeout": 1.0},
            "ha": {"role": role, "token": TOKEN, "grace": 1.0, "check_after": 0.2,
                   "spool": str(workdir / "spool"), **(ha or {})},
            # `out` is always a sink: the checks read it; `sinks` are more.
            "sinks": {"out": {"type": "jsonl", "path": str(self.out)}, **(sinks or {})},
            "quarantine": {"path": str(workdir / "quarantine.jsonl")},
            "pipeline": {"flush_ms": 5.0},
            **({"controller": controller} if controller is not None else {}),
        }))
        self.admin_url = f"http://{admin_host}:{self.admin_port}"
        self.spool = workdir / "spool"
        # (start, end) of each process life and of each SIGSTOP; end None: still so.
        self.lives: list[tuple[float, float | None]] = []
        self.deaf: list[tuple[float, float | None]] = []

    def start(self) -> Node:
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "gateway", "run", "-c", str(self.config)], cwd=self.workdir,
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
        """Datagrams the kernel dropped on the syslog socket (/proc/net/udp); -1 when it is not open.

        A node with a `prefix` (its own network namespace) is looked up in its process's
        view, /proc/PID/net/udp, while it runs.
        """
        table = Path("/proc/net/udp")
        if self.prefix:
            if self.proc is None or self.proc.poll() is not None:
                return -1
            table = Path(f"/proc/{self.proc.pid}/net/udp")
        ip = "".join(f"{int(octet):02X}" for octet in reversed(self.host.split(".")))
        address = f"{ip}:{self.syslog_port:04X}"
        rows = (line.split() for line in table.read_text().splitlines()[1:])
        drops = [int(row[-1]) for row in rows if row[1] == address]
        return sum(drops) if drops else -1

    def spool_ids(self) -> set[str]:
        """Event ids of the batches in the spool that were never acknowledged (node must be dead)."""
        from gateway.ha import decode_rescue
        from gateway.spool import Spool

        assert self.proc is None or self.proc.poll() is not None, "read the spool of a dead node only"
        spool = Spool(self.spool)
        try:
            return {decode_rescue(entry)[2] for entry in spool.recover()}
        finally:
            spool.close()

    def set_role(self, role: str, lease: float | None = None) -> dict[str, Any]:
        """`trapgate role ROLE -c CONFIG [--lease S]`, the operator's command."""
        extra = ["--lease", str(lease)] if lease else []
        command = [*self.prefix, sys.executable, "-m", "gateway", "role", role, "-c", str(self.config)]
        r = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=60,
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
        self.streams: dict[str, socket.socket] = {}  # node name -> its syslog TCP connection

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

    def syslog_tcp(self) -> str:
        """One syslog message over TCP (RFC 6587 octet counting), on a connection per node kept open.

        A copy counts as received by a node only when the write succeeded; a
        refused or broken connection (the node died) is opened again next time.
        """
        self.seq += 1
        seq = f"p{self.seq}"
        line = f"<134>1 2026-01-01T00:00:00Z dev1 app - - - {seq}".encode()
        frame = f"{len(line)} ".encode() + line
        got = []
        when = time.monotonic()
        for node in self._targets():
            try:
                stream = self.streams.get(node.name)
                if stream is None:
                    stream = socket.create_connection((node.host, node.syslog_tcp_port), timeout=0.2)
                    self.streams[node.name] = stream
                stream.sendall(frame)
                got.append(node)
            except OSError:
                broken = self.streams.pop(node.name, None)
                if broken is not None:
                    broken.close()
        self._record(seq, got, when)
        return seq

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
            repeat_every: int = 0, tcp_every: int = 0) -> None:
        """`count` events at about `rate` per second; every `custom_every`-th a custom
        trap, every `snmp_every`-th an SNMP trap, every `tcp_every`-th a syslog message
        over TCP, every `repeat_every`-th a syslog text sent 2 or 3 times in a row
        (identical occurrences), the rest syslog over UDP."""
        start = time.monotonic()
        for i in range(count):
            if custom_every and i % custom_every == 0:
                self.custom()
            elif snmp_every and i % snmp_every == 1:
                self.snmp()
            elif tcp_every and i % tcp_every == 2:
                self.syslog_tcp()
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


def fault_report(
    name: str, device: Device, nodes: list[Node], owed_if: Callable[[str, float], bool] | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """Print one line (sent / received-by-some / forwarded / lost / duplicated / forwarders
    per epoch) and return (lost, doubled) as text -> occurrences.

    A text is expected as many times as it was sent to at least one node, and
    owed as many times as it reached a node that stayed up (`Node.stayed_up_at`).
    Each distinct event id forwarded counts as one occurrence: lost = owed minus
    distinct ids; doubled = lines beyond one per id, plus ids beyond the expected.
    `owed_if(node name, send time)`, when given, replaces `stayed_up_at` (e.g. owed only
    what reached b, or only what was sent while the node's process ran).
    """
    by_name = {n.name: n for n in nodes}
    drops = {n.name: n.udp_drops() for n in nodes}
    expected: Counter[str] = Counter()
    owed: Counter[str] = Counter()
    for text, got, when in device.sends:
        if got:
            expected[text] += 1
        if owed_if is not None:
            if any(owed_if(name, when) for name in got):
                owed[text] += 1
        elif any(name in by_name and by_name[name].stayed_up_at(when, drops[name]) for name in got):
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


TCP_EVERY = 100  # in scenarios that send syslog over TCP too: every 100th event


class Load(threading.Thread):
    """A `Device.run` in a thread of its own; `join` re-raises what the sender raised."""

    def __init__(self, device: Device, count: int, rate: float, **mix: int) -> None:
        super().__init__(daemon=True, name="load")
        self.device, self.count, self.rate, self.mix = device, count, rate, mix
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.device.run(self.count, self.rate, **self.mix)
        except BaseException as exc:  # handed to the joining thread
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        assert not self.is_alive(), "the sender did not finish"
        if self.error is not None:
            raise self.error


def load_in_background(device: Device, count: int, rate: float, repeat_every: int = 50,
                       custom_every: int = 0, snmp_every: int = 0, tcp_every: int = 0) -> Load:
    """Start sending `count` events at `rate`/s (every `repeat_every`-th sent 2-3 times; see
    `Device.run` for custom traps, SNMP traps and syslog over TCP) in a thread."""
    load = Load(device, count, rate, repeat_every=repeat_every, custom_every=custom_every,
                snmp_every=snmp_every, tcp_every=tcp_every)
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


@contextmanager
def running_pair(tmp_path: Path, sinks: dict[str, Any] | None = None) -> Iterator[Pair]:
    """a (master) on 127.0.0.2 and b (standby) on 127.0.0.3, each with its Redis, b's replicating a's;
    `sinks` are added to both nodes' `out` file. Stopped at the end; a traceback in a log fails."""
    redis_a = RedisServer(tmp_path / "ra", host="127.0.0.2").start()
    redis_b = RedisServer(tmp_path / "rb", host="127.0.0.3", replicaof=redis_a).start()
    a = Node("a", "127.0.0.2", tmp_path / "a", redis_a, redis_b, "master", sinks=sinks).start()
    b = Node("b", "127.0.0.3", tmp_path / "b", redis_b, redis_a, "standby", sinks=sinks).start()
    try:
        yield Pair(a, b, redis_a, redis_b)
    finally:
        for node in (a, b):
            node.stop()
            log = (node.workdir / "stderr.log").read_text()
            assert "Traceback" not in log, log
        redis_b.stop()
        redis_a.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with running_pair(tmp_path) as p:
        yield p


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


# --- Pairs driven by their failover controllers (`trapgate controller`) -------------------------

CONTROLLER_KEY = "ha-test-controller-key"
TC = "/usr/sbin/tc"
PATHS = ("service", "dedicated")


def trapgate(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m gateway ARGS`, as an operator runs it; the finished process (not checked)."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def controller_available() -> str | None:
    """Why `trapgate controller` cannot run here, or None when it can."""
    if not (ROOT / "gateway" / "failover").is_dir():
        return "gateway/failover/ does not exist yet"
    r = trapgate("controller", "--help", timeout=30)
    return None if r.returncode == 0 else f"`trapgate controller --help` failed: {r.stderr.strip()[-300:]}"


def free_udp_port(host: str) -> int:
    """A port free on `host` for TCP and for UDP (a heartbeat path binds UDP)."""
    for _ in range(200):
        port = free_port(host=host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP port")


def controller_ports(table: dict[str, Any]) -> set[int]:
    """Every port a `[controller]` table binds (paths, tcp path, status API)."""
    addresses = [str(path["local"]) for path in table["paths"].values()] + [str(table["status"])]
    if table.get("tcp"):
        addresses.append(str(table["tcp"]["local"]))
    return {int(a.rsplit(":", 1)[1]) for a in addresses}


def node_ports(node: Node) -> set[int]:
    """Every port a `Node`'s gateway binds."""
    return {node.syslog_port, node.syslog_tcp_port, node.http_port, node.admin_port, node.snmp_port}


@dataclass(frozen=True)
class Placement:
    """Where one node's servers listen and how its processes start.

    `host`: receivers and Redis; `admin_host`: the gateway's admin API and the
    controller's status API; `path_hosts`: the local address of each heartbeat
    path in `PATHS`; `prefix`: put before every command of the node (e.g.
    `ip netns exec NS`). A node with a prefix runs in a network namespace of its
    own, where every port is free: its ports are only checked free on 127.0.0.1.
    """

    host: str
    admin_host: str
    path_hosts: dict[str, str]
    prefix: tuple[str, ...] = ()

    @classmethod
    def loopback(cls, host: str) -> Placement:
        """Everything of the node on one loopback address, no prefix."""
        return cls(host, host, dict.fromkeys(PATHS, host))

    def free_port(self, host: str) -> int:
        """A port for a server of this node on `host` (see the class docstring)."""
        return free_udp_port("127.0.0.1" if self.prefix else host)


def controller_tables(hosts: tuple[str, str], witnesses: list[str], tcp_path: bool = False,
                      **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `[controller]` tables of node a (priority 200) and node b (priority 100), each node
    on one loopback address of `hosts` (see `placed_controller_tables`)."""
    return placed_controller_tables((Placement.loopback(hosts[0]), Placement.loopback(hosts[1])),
                                    witnesses, tcp_path=tcp_path, **options)


def placed_controller_tables(placements: tuple[Placement, Placement], witnesses: list[str],
                             tcp_path: bool = False,
                             **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `[controller]` tables of node a (priority 200) and node b (priority 100).

    Each node gets a free port for every path in `PATHS` (on that path's address)
    and for its status API (on its admin address); `options` override the timing
    (heartbeat, dead_after, ...). `tcp_path`: a `[controller.tcp]` session path too,
    on a port of its own on the service path's address.
    """
    ports = [{name: p.free_port(p.path_hosts[name]) for name in PATHS} | {"status": p.free_port(p.admin_host)}
             | ({"tcp": p.free_port(p.path_hosts["service"])} if tcp_path else {})
             for p in placements]
    tables = []
    for me, (place, priority) in enumerate(zip(placements, (200, 100), strict=True)):
        peer = placements[1 - me]
        tables.append({
            "key": CONTROLLER_KEY, "priority": priority, "heartbeat": 0.2, "dead_after": 1.0, "lease": 0.8,
            "settle": 2.0, "min_switch_interval": 5.0, "witnesses": witnesses,
            "status": f"{place.admin_host}:{ports[me]['status']}",
            "peer_status": f"{peer.admin_host}:{ports[1 - me]['status']}",
            "paths": {name: {"local": f"{place.path_hosts[name]}:{ports[me][name]}",
                             "peer": f"{peer.path_hosts[name]}:{ports[1 - me][name]}"} for name in PATHS},
            **({"tcp": {"local": f"{place.path_hosts['service']}:{ports[me]['tcp']}",
                        "peer": f"{peer.path_hosts['service']}:{ports[1 - me]['tcp']}"}} if tcp_path else {}),
            **options,
        })
    return tables[0], tables[1]


class Controller(GatewayProcess):
    """The `trapgate controller -c FILE` process of a node, reached through its status API."""

    def __init__(self, node: Node) -> None:
        assert node.controller_table is not None, "the node was written without a [controller] table"
        self.node = node
        self.name = node.name
        self.admin_url = f"http://{node.controller_table['status']}"
        self.log = node.workdir / "controller.log"
        self.proc = None
        self.paused = False

    def start(self, timeout: float = 20.0) -> Controller:
        """Start it and wait until GET /status answers 200."""
        self.proc = subprocess.Popen(
            [*self.node.prefix, sys.executable, "-m", "gateway", "controller", "-c", str(self.node.config)],
            cwd=self.node.workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"), preexec_fn=die_with_parent,  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller {self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if self.get("/status")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"controller {self.name} did not serve /status: {self.log.read_text()[-2000:]}")

    def role(self) -> str:
        """"master", "standby" or "unknown", from /status."""
        return str(self.status()["role"])

    def summary(self) -> dict[str, Any]:
        """Role, epoch, switchovers and what it knows of the peer, for a report line."""
        s = self.status()
        return {"role": s["role"], "epoch": s["epoch"], "switchovers": s["switchovers"],
                "isolated": s["isolated"], "peer": {k: s["peer"][k] for k in ("alive", "role", "epoch")}}

    def pause(self) -> None:
        """SIGSTOP."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM (after SIGCONT when paused); SIGKILL when it does not exit within 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def wait_controller_role(ctl: Controller, role: str, above_epoch: int | None = None,
                         timeout: float = 10.0) -> dict[str, Any]:
    """Until the controller's /status says `role` (at an epoch above `above_epoch`); that status.

    Raises AssertionError with the last status seen on timeout.
    """
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            state = ctl.status()
        except OSError as exc:
            state = {"error": str(exc)}
        else:
            if state["role"] == role and (above_epoch is None or int(state["epoch"]) > above_epoch):
                return state
        time.sleep(0.05)
    raise AssertionError(
        f"controller {ctl.name} not {role} above epoch {above_epoch} after {timeout} s: {state}\n"
        + "".join(f"--- {log.name} of {ctl.name}, last 30 lines ---\n"
                  + "\n".join(log.read_text(errors="replace").splitlines()[-30:]) + "\n"
                  for log in (ctl.log, ctl.node.workdir / "stderr.log") if log.exists()))


def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll `condition` every 50 ms; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


class Witness:
    """A plain TCP listener on `host` that accepts and closes; after `close` connects are refused."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="witness")
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        """Stop listening (idempotent)."""
        self._closed.set()
        self._thread.join()
        self.sock.close()


def switchover_time(node: Node, since: float, timeout: float = 10.0) -> float | None:
    """Seconds from `since` (time.monotonic()) to the first growth of `node`'s output after this
    call began, polled every 5 ms; None when it did not grow within `timeout` seconds of the call."""
    def size() -> int:
        return node.out.stat().st_size if node.out.exists() else 0

    start = size()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if size() > start:
            return time.monotonic() - since
        time.sleep(0.005)
    return None


class OutputWatch(threading.Thread):
    """Samples a node's output size every 5 ms until `stop`; `first_growth` and `last_growth` are
    when it first and last grew after `start` (monotonic; None: not yet)."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True, name=f"watch-{node.name}")
        self.node = node
        self.first_growth: float | None = None
        self.last_growth: float | None = None
        self._stopped = threading.Event()

    def _size(self) -> int:
        return self.node.out.stat().st_size if self.node.out.exists() else 0

    def run(self) -> None:
        last = self._size()
        while not self._stopped.wait(0.005):
            now = self._size()
            if now > last:
                self.last_growth, last = time.monotonic(), now
                if self.first_growth is None:
                    self.first_growth = self.last_growth

    def stop(self) -> float | None:
        """Stop sampling; the monotonic time of the last growth seen (None: never grew)."""
        self._stopped.set()
        self.join()
        return self.last_growth


def tc_unavailable() -> str | None:
    """Why `LoopbackCut` cannot work here (not root, no tc, a root qdisc already on lo), or None."""
    if os.geteuid() != 0:
        return "cutting a path needs root (tc on lo)"
    if not Path(TC).exists():
        return f"{TC} not found"
    shown = subprocess.run([TC, "qdisc", "show", "dev", "lo"], capture_output=True, text=True, check=False)
    if "root" in shown.stdout and "noqueue" not in shown.stdout:
        return f"lo already has a root qdisc, not ours: {shown.stdout.strip()}"
    return None


def _tc(*args: str) -> None:
    r = subprocess.run([TC, *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)}: {r.stderr.strip()}")


class LoopbackCut:
    """Drops chosen UDP destination ports on lo, and nothing else, while `cut` is entered.

    The kernel here has no sch_prio and cannot load act_gact (`action drop`
    fails), so entering puts an htb root on lo whose unclassified traffic goes
    out directly, plus one class whose pfifo holds 0 packets; `cut` adds u32
    filters into that class and removes them. Adding or deleting a root qdisc
    drops the packets queued at that instant (seen: up to 9 events sent to both
    nodes), so enter this before the load starts and leave it after the load
    ended; the filters alone change nothing else. Leaving deletes the root
    qdisc, always.
    """

    def __enter__(self) -> LoopbackCut:
        _tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "0")
        try:
            _tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:2", "htb", "rate", "10gbit")
            _tc("qdisc", "add", "dev", "lo", "parent", "1:2", "handle", "2:", "pfifo", "limit", "0")
        except BaseException:
            _tc("qdisc", "del", "dev", "lo", "root")
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        _tc("qdisc", "del", "dev", "lo", "root")

    @contextmanager
    def cut(self, ports: Iterable[int], tcp_ports: Iterable[int] = ()) -> Iterator[None]:
        """Every UDP datagram to `ports` (and every TCP segment to `tcp_ports`: a connect
        there times out) on lo is dropped inside the block."""
        try:
            for protocol, chosen in (("17", ports), ("6", tcp_ports)):
                for port in chosen:
                    _tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "7", "u32",
                        "match", "ip", "protocol", protocol, "0xff", "match", "ip", "dport", str(port),
                        "0xffff", "classid", "1:2")
            yield
        finally:
            _tc("filter", "del", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "7")


def tc_dropped() -> int:
    """Packets the cut has dropped so far (the pfifo of `LoopbackCut`), 0 when there is none."""
    shown = subprocess.run([TC, "-s", "qdisc", "show", "dev", "lo"], capture_output=True, text=True,
                           check=False)
    lines = shown.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("qdisc pfifo 2:") and i + 1 < len(lines) and "dropped" in lines[i + 1]:
            return int(lines[i + 1].split("dropped ")[1].split(",")[0])
    return 0


@dataclass
class ControlledPair(Pair):
    """A `Pair` whose roles are set by two controllers; `elected_in`: seconds from the
    controllers' start until a was master (controller and gateway)."""

    ctl_a: Controller
    ctl_b: Controller
    witness: Witness
    elected_in: float
    witness_b: Witness | None = None  # b's own witness (`witness_per_node`); `witness` is then a's
    arbiter: ArbiterProcess | None = None  # `with_arbiter`

    @property
    def controllers(self) -> list[Controller]:
        return [self.ctl_a, self.ctl_b]

    def path_ports(self, path: str) -> list[int]:
        """The UDP ports both controllers listen on for `path` (cutting both cuts it both ways)."""
        return [int(str(n.controller_table["paths"][path]["local"]).rsplit(":", 1)[1])  # type: ignore[index]
                for n in self.nodes]


@contextmanager
def running_controlled_pair(tmp_path: Path, witness_per_node: bool = False, with_arbiter: bool = False,
                            placements: tuple[Placement, Placement] | None = None, outside: str = "127.0.0.1",
                            tcp_path: bool = False, **options: Any) -> Iterator[ControlledPair]:
    """Two Redis (b's replicating a's), two gateways started as standby, one witness, two
    controllers (a priority 200, b 100); yields once a is master. Everything is stopped on
    exit, controllers first; a traceback in any log fails the test after the cleanup.

    `witness_per_node`: a and b each get a witness of their own (`witness` is a's,
    `witness_b` b's), so that one node's witness can be cut alone. `with_arbiter`: a
    `trapgate witness` arbiter runs on `outside` and both tables name it (`arbiter`,
    `vote_lease` 2.0 unless `options` say otherwise). `placements`: where a's and b's
    servers listen and how their processes start (default: a on 127.0.0.2, b on
    127.0.0.3); witnesses and the arbiter listen on `outside`. `tcp_path`: both tables
    have a `[controller.tcp]` session path besides the UDP paths of `PATHS`.
    """
    reason = controller_available()
    if reason is not None:
        pytest.skip(reason)
    place_a, place_b = placements or (Placement.loopback("127.0.0.2"), Placement.loopback("127.0.0.3"))
    started: list[Any] = []
    witness = Witness(outside)
    witness_b = Witness(outside) if witness_per_node else None
    arbiter = None
    try:
        if with_arbiter:
            arbiter = ArbiterProcess(tmp_path / "arbiter", vote_lease=float(options.get("vote_lease", 2.0)),
                                     host=outside)
            started.append(arbiter.start())
            options = {"arbiter": arbiter.address, "vote_lease": arbiter.vote_lease, **options}
        redis_a = RedisServer(tmp_path / "ra", host=place_a.host, prefix=place_a.prefix).start()
        started.append(redis_a)
        redis_b = RedisServer(tmp_path / "rb", host=place_b.host, replicaof=redis_a,
                              prefix=place_b.prefix).start()
        started.append(redis_b)
        for _ in range(10):  # the gateways pick their ports apart from the controllers': no clash
            table_a, table_b = placed_controller_tables((place_a, place_b), [witness.address],
                                                        tcp_path=tcp_path, **options)
            if witness_b is not None:
                table_b["witnesses"] = [witness_b.address]
            a = Node("a", place_a.host, tmp_path / "a", redis_a, redis_b, "standby", controller=table_a,
                     admin_host=place_a.admin_host, prefix=place_a.prefix)
            b = Node("b", place_b.host, tmp_path / "b", redis_b, redis_a, "standby", controller=table_b,
                     admin_host=place_b.admin_host, prefix=place_b.prefix)
            if not (controller_ports(table_a) & node_ports(a) or controller_ports(table_b) & node_ports(b)):
                break
        started.append(a.start())
        started.append(b.start())
        t0 = time.monotonic()
        ctl_a = Controller(a)
        started.append(ctl_a.start())
        ctl_b = Controller(b)
        started.append(ctl_b.start())
        wait_controller_role(ctl_a, "master", timeout=float(table_a["settle"]) + 8.0)
        wait_role(a, "master", timeout=5.0)
        epoch = int(ctl_a.status()["epoch"])
        wait_until(lambda: ctl_b.status()["epoch"] == epoch and ctl_b.status()["peer"]["alive"],
                   f"b knows a is master at epoch {epoch}", 5.0)
        pair = ControlledPair(a, b, redis_a, redis_b, ctl_a, ctl_b, witness, time.monotonic() - t0,
                              witness_b, arbiter)
        yield pair
    finally:
        for thing in reversed(started):  # controllers, then gateways, then Redis (then the arbiter)
            thing.stop()
        witness.close()
        if witness_b is not None:
            witness_b.close()
        logs = {p: p.read_text() for p in tmp_path.glob("*/controller.log")}
        logs |= {p: p.read_text() for p in tmp_path.glob("*/stderr.log")}
        broken = {str(p): text[-3000:] for p, text in logs.items() if "Traceback" in text}
    assert not broken, broken


@pytest.fixture
def controlled_pair(tmp_path: Path) -> Iterator[ControlledPair]:
    """`running_controlled_pair` for one test."""
    with running_controlled_pair(tmp_path) as p:
        yield p


# --- More helpers for controller faults: arbiter, CPU hogs, restarts ---------------------------


class ArbiterProcess:
    """`trapgate witness --listen HOST:PORT` (the arbiter) with the pair's key; log in `workdir`."""

    def __init__(self, workdir: Path, vote_lease: float = 2.0, host: str = "127.0.0.1") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir, self.vote_lease = workdir, vote_lease
        self.address = f"{host}:{free_udp_port(host)}"
        self.log = workdir / "arbiter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ArbiterProcess:
        """Start it; waits until it says it listens (a probe bind of its port could take the port
        from it: the netns suite's arbiter once failed so)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "witness", "--listen", self.address, "--key", CONTROLLER_KEY,
             "--vote-lease", str(self.vote_lease)],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"), preexec_fn=die_with_parent,  # noqa: SIM115
        )

        def bound() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the arbiter exited: {self.log.read_text()[-2000:]}")
            return f"arbiter on {self.address}" in self.log.read_text()

        wait_until(bound, f"the arbiter listens on {self.address}", 20.0)
        return self

    def stop(self) -> None:
        """SIGTERM; SIGKILL when it does not exit within 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def log_tail(path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a log file ("" when it does not exist)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process `pid` to `cpus` (`taskset -a -p -c`)."""
    subprocess.run(["taskset", "-a", "-p", "-c", ",".join(map(str, sorted(cpus))), str(pid)],
                   check=True, capture_output=True)


def affinity(pid: int) -> set[int]:
    """The CPUs process `pid` may run on (its main thread's affinity)."""
    return set(os.sched_getaffinity(pid))


@contextmanager
def cpu_hogs(cpus: set[int], count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` busy-loop processes pinned to `cpus` while the block runs; SIGKILLed after it."""
    def pinned() -> None:
        die_with_parent()
        os.sched_setaffinity(0, cpus)

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pinned)
            for _ in range(count)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def terminate_at_once(nodes: list[Node], controllers: list[Controller]) -> float:
    """SIGTERM every controller and gateway at once (no wait in between), then reap them all.

    Each node's current life ends when its signal was sent (`Node.lives`). Returns
    the monotonic time the first signal was sent.
    """
    t0 = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    for ctl in controllers:
        if ctl.proc is not None and ctl.proc.poll() is None:
            ctl.proc.send_signal(signal.SIGTERM)
            procs.append(ctl.proc)
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
            procs.append(node.proc)
            if node.lives and node.lives[-1][1] is None:
                node.lives[-1] = (node.lives[-1][0], time.monotonic())
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return t0


def ran_at(node: Node, t: float) -> bool:
    """Whether `node`'s process was running (started and healthy, not yet signalled) at `t`."""
    return any(start <= t and (end is None or t <= end) for start, end in node.lives)


def _quick_status(url: str) -> dict[str, Any] | None:
    """GET url/status with a 0.5 s timeout; None when it does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/status", timeout=0.5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


class RoleTimeline(threading.Thread):
    """Samples both controllers' and both gateways' roles every 0.1 s until `stop`.

    Keeps (monotonic time, snapshot) whenever the snapshot changes; a snapshot maps
    "ctl a" / "ctl b" to "role@epoch" (plus "!iso" while isolated) and "gw a" / "gw b"
    to "role@epoch" (plus "+fwd" while forwarding); "?" when it does not answer.
    """

    def __init__(self, pair: ControlledPair) -> None:
        super().__init__(daemon=True, name="role-timeline")
        self.pair = pair
        self.changes: list[tuple[float, dict[str, str]]] = []
        self.snapshots: list[tuple[float, dict[str, str]]] = []
        self._stopped = threading.Event()

    def snapshot(self) -> dict[str, str]:
        shot: dict[str, str] = {}
        for ctl in self.pair.controllers:
            s = None if ctl.paused or ctl.proc is None or ctl.proc.poll() is not None \
                else _quick_status(ctl.admin_url)
            shot[f"ctl {ctl.name}"] = "?" if s is None else \
                f"{s['role']}@{s['epoch']}{'!iso' if s.get('isolated') else ''}"
        for node in self.pair.nodes:
            paused = bool(node.deaf and node.deaf[-1][1] is None)
            g = None if paused or node.proc is None or node.proc.poll() is not None \
                else _quick_status(node.admin_url)
            r = None if g is None else g["role"]
            shot[f"gw {node.name}"] = "?" if r is None else \
                f"{r['role']}@{r['epoch']}{'+fwd' if r.get('forwarding') else ''}"
        return shot

    def run(self) -> None:
        while not self._stopped.is_set():
            now, shot = time.monotonic(), self.snapshot()
            self.snapshots.append((now, shot))
            if not self.changes or self.changes[-1][1] != shot:
                self.changes.append((now, shot))
            self._stopped.wait(0.1)

    def stop(self) -> RoleTimeline:
        self._stopped.set()
        self.join()
        return self

    def seen(self, key: str, since: float = -float("inf"), until: float = float("inf")) -> set[str]:
        """Every value `key` had in the samples taken between `since` and `until`."""
        return {shot[key] for t, shot in self.snapshots if since <= t <= until}

    def most_forwarding(self, since: float = -float("inf"), until: float = float("inf")) -> int:
        """The most gateways seen forwarding in one sample."""
        return max((sum("+fwd" in v for k, v in shot.items() if k.startswith("gw"))
                    for t, shot in self.snapshots if since <= t <= until), default=0)

    def text(self, origin: float) -> str:
        """The changes, one per line, with times relative to `origin`."""
        return "\n".join(f"    {t - origin:+6.2f} s  " + "  ".join(f"{k} {v}" for k, v in shot.items())
                         for t, shot in self.changes)
