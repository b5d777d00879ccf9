"""What `python -m bench ha` measures: one trapgate node, or an HA pair with its Redis servers.

A `Deployment` is a set of trapgate nodes, each fed over UDP at its own
address and writing its own output file, plus the redis-servers they use.
The single node is node a alone with its embedded memory store. The pair is
laid out as the test harness lays it out (tests/ha/conftest.py): node a on
127.0.0.2 is master and its Redis the primary, node b on 127.0.0.3 is
standby and its Redis replicates a's; both gateways write to the primary.
Entering starts the Redis servers, then the nodes, each once the one before
is ready; leaving stops them in the reverse order. Ports are chosen free
before the processes bind them, so another process may take one in
between: a component that fails with "address already in use" is started
again on new ports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from bench.procs import BenchError, ProcessExited
from bench.redisproc import RedisProcess
from bench.sender import Address
from bench.trapgate import TomlTable, Trapgate

HOST_A = "127.0.0.2"
HOST_B = "127.0.0.3"
TOKEN = "bench-ha-token"
"""The admin token of the bench's nodes; nothing outside the run can reach them."""

_BIND_ATTEMPTS = 3


def _start(stack: contextlib.ExitStack, component: Trapgate | RedisProcess) -> None:
    """Enter `component` on `stack`, on new ports when its port was taken meanwhile."""
    for attempt in range(1, _BIND_ATTEMPTS + 1):
        try:
            stack.enter_context(component)
            return
        except ProcessExited as exc:
            if "already in use" not in str(exc).lower() or attempt == _BIND_ATTEMPTS:
                raise
            component.pick_ports()


class Backlog(NamedTuple):
    """What a node holds back: its HA pending buffer and its pipeline queue.

    `pending` is an HA node's `role.pending`, None on a single node (no
    pending buffer) and when the node did not answer (`answered` False).
    """

    answered: bool
    pending: int | None = None
    queued: int = 0

    @property
    def empty(self) -> bool:
        """The node answered and holds nothing back."""
        return self.answered and not self.pending and not self.queued


class Deployment:
    """Trapgate `nodes` and the `redis` servers they use, started and stopped together.

    `configure`, when given, is called once the Redis servers run and before
    the nodes start, to write their final addresses into the nodes' tables.
    """

    def __init__(
        self,
        name: str,
        nodes: Sequence[Trapgate],
        redis: Sequence[RedisProcess] = (),
        configure: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.nodes = list(nodes)
        self.redis = list(redis)
        self.configure = configure
        self._stack = contextlib.ExitStack()

    @property
    def destinations(self) -> list[Address]:
        """Where the sender sends every datagram: each node's UDP address."""
        return [(node.host, node.port) for node in self.nodes]

    @property
    def outputs(self) -> list[Path]:
        """Each node's output file, in node order."""
        return [node.out_path for node in self.nodes]

    def processes(self) -> dict[str, int]:
        """Process id by role in the deployment: ``gateway_a``, ``redis_a``, ..."""
        pids = {f"gateway_{node.node}": node.process.pid for node in self.nodes}
        pids.update({server.name: server.process.pid for server in self.redis})
        return pids

    def check_alive(self) -> None:
        """Raise `ProcessExited` when any process of the deployment ended."""
        for node in self.nodes:
            node.process.check_alive()
        for server in self.redis:
            server.process.check_alive()

    def backlog(self, timeout: float = 2.0) -> dict[str, Backlog]:
        """What each node holds back, from `/status`; a node busy past `timeout` did not answer."""
        out: dict[str, Backlog] = {}
        for node in self.nodes:
            try:
                status = node.status(timeout)
            except BenchError:
                out[node.node] = Backlog(answered=False)
                continue
            role = status.get("role")
            pending = int(role["pending"]) if isinstance(role, dict) else None
            out[node.node] = Backlog(True, pending, int(status.get("gauges", {}).get("queued_events", 0)))
        return out

    def redis_figures(self) -> dict[str, int]:
        """Per Redis server: commands processed so far, peak memory, replication offset."""
        out: dict[str, int] = {}
        for server in self.redis:
            name = server.name
            out[f"{name}_commands"] = int(server.info("stats")["total_commands_processed"])
            out[f"{name}_used_memory_peak"] = int(server.info("memory")["used_memory_peak"])
            out[f"{name}_repl_offset"] = int(server.info("replication").get("master_repl_offset", 0))
        return out

    def roles(self) -> dict[str, Any]:
        """Each node's `/status` role (a dict on an HA node, "single" otherwise, None if unanswered)."""
        out: dict[str, Any] = {}
        for node in self.nodes:
            try:
                out[node.node] = node.status().get("role")
            except BenchError:
                out[node.node] = None
        return out

    def __enter__(self) -> Deployment:
        with contextlib.ExitStack() as stack:
            for server in self.redis:
                _start(stack, server)
            if self.configure is not None:
                self.configure()
            for node in self.nodes:
                _start(stack, node)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()


def single_node(workdir: Path, rcvbuf: int, command: str) -> Deployment:
    """Node a alone on 127.0.0.2 with the embedded memory store."""
    node = Trapgate(workdir / "a", rcvbuf, fmt="syslog", command=command, host=HOST_A, node="a")
    (workdir / "a").mkdir(parents=True, exist_ok=True)
    return Deployment("single", [node])


def ha_pair(workdir: Path, rcvbuf: int, command: str, ha: TomlTable | None = None) -> Deployment:
    """Node a (master, 127.0.0.2) and node b (standby, 127.0.0.3), each with its own Redis.

    `ha` adds keys to both nodes' `[ha]` tables (grace, check_after, ...).
    """
    redis_a = RedisProcess(workdir / "redis_a", HOST_A, "redis_a")
    redis_b = RedisProcess(workdir / "redis_b", HOST_B, "redis_b", primary=redis_a)
    layout = (
        ("a", HOST_A, "master", redis_a, redis_b),
        ("b", HOST_B, "standby", redis_b, redis_a),
    )
    nodes = []
    for name, host, _, _, _ in layout:
        (workdir / name).mkdir(parents=True, exist_ok=True)
        nodes.append(Trapgate(workdir / name, rcvbuf, fmt="syslog", command=command, host=host, node=name))

    def configure() -> None:
        for node, (_, _, role, local, peer) in zip(nodes, layout, strict=True):
            node.tables = {
                "dedup": {"store": "redis"},
                "redis": {"local": local.url, "peer": peer.url},
                "ha": {"role": role, "token": TOKEN, **(ha or {})},
            }

    configure()
    return Deployment("pair", nodes, [redis_a, redis_b], configure)
