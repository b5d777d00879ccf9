"""Two nodes in network namespaces of their own, for the controller's chaos scenarios.

Strategy: each node (a, b) gets a namespace with three links. `svc0` is its
port on the service network, a Linux bridge in the root namespace where the
test's sender, witness and arbiter listen (the bridge address). `ded0` is the
dedicated back-to-back veth between a and b. `mgmt0` is the test's own view
of the node (the gateway's admin API and the controller's status API listen
there); no fault touches it and nothing of the pair runs over it, so an
isolated node can still be asked what it thinks. Addresses are private
(10.231.0.0/16, four /24s per topology), there is no default route anywhere,
and the root namespace does not forward, so nothing reaches an outside address.

Faults are nftables rules inside the node's namespace, in a `netdev` table
with an ingress and an egress chain on `svc0` and `ded0`: a datagram dropped
at egress is dropped quietly (the sender sees no error, as with a broken
wire). Every rule counts what it dropped. A link can also be set down (the
controller's `interfaces` check sees that).

Delay is not available: this kernel has no `sch_netem` (nor `prio`), and
nftables cannot delay a packet, so no scenario adds latency.

Deleting a namespace deletes its veths and its nftables table; the bridge is
deleted with the topology. A topology left by a test process that died
(SIGKILL) is removed by the next one that allocates an index.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.ha.conftest import Placement

PATHS = {"service": "svc0", "dedicated": "ded0"}
MGMT = "mgmt0"
NODES = ("a", "b")
_TABLE = "trapgate"
_LOCK = Path("/run/lock/trapgate-netns.lock")
_MAX_INDEX = 64  # 10.231.(4 * index + 0..3).0/24
_OUR_LINK = re.compile(r"tg(\d+)(br|s[ab]|m[ab])")  # a topology's links in the root namespace


def netns_unavailable() -> str | None:
    """Why a topology cannot be built here (not root, no `ip` or `nft`, `ip netns` refused), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found on PATH (scripts/test.sh installs it when run as root)"
    probe = f"tgprobe-{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip()}"
    try:
        table = subprocess.run(["ip", "netns", "exec", probe, "nft", "add", "table", "netdev", _TABLE],
                               capture_output=True, text=True, check=False)
        if table.returncode != 0:
            return f"nft in a namespace failed: {table.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _run(*args: str) -> str:
    """Run a command; its stdout. RuntimeError with its stderr when it fails."""
    r = subprocess.run(args, capture_output=True, text=True, check=False, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line.strip()]


def _links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0]
            for line in _run("ip", "-o", "link", "show").splitlines()}


def _kill_processes_in(ns: str) -> None:
    """SIGKILL every process running in namespace `ns` (only the test's own processes run there)."""
    listed = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    for pid in listed.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _remove_stale() -> None:
    """Delete the namespaces and bridges of topologies whose test process is gone."""
    for ns in _namespaces():
        parts = ns.split("-")
        if len(parts) == 3 and parts[0].startswith("tg") and parts[2].isdigit() and not _alive(int(parts[2])):
            _kill_processes_in(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", f"{parts[0]}br"], capture_output=True, check=False)


@dataclass
class Fault:
    """nftables rules (namespace, chain, handle) put in by one fault, or a link set down.

    `undo` removes them (or sets the link up again); it is idempotent. A `Fault`
    is also a context manager that undoes itself on exit.
    """

    topology: Topology
    rules: list[tuple[str, str, int]] = field(default_factory=list)
    down: list[tuple[str, str]] = field(default_factory=list)  # (namespace, interface)
    undone: bool = False

    def dropped(self) -> int:
        """Packets the rules of this fault have dropped so far."""
        wanted = {(ns, chain, handle) for ns, chain, handle in self.rules}
        total = 0
        for ns in {ns for ns, _, _ in self.rules}:
            listing = json.loads(_run("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "netdev",
                                      _TABLE))
            for item in listing["nftables"]:
                rule = item.get("rule")
                if rule is None or (ns, rule["chain"], rule["handle"]) not in wanted:
                    continue
                total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        return total

    def undo(self) -> None:
        if self.undone:
            return
        self.undone = True
        for ns, chain, handle in self.rules:
            _run("ip", "netns", "exec", ns, "nft", "delete", "rule", "netdev", _TABLE, chain,
                 "handle", str(handle))
        for ns, interface in self.down:
            _run("ip", "-n", ns, "link", "set", interface, "up")
        self.topology.faults.remove(self)

    def __enter__(self) -> Fault:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.undo()


@dataclass
class Topology:
    """The namespaces, links and addresses of one test; `create` builds it, `destroy` removes it."""

    index: int
    faults: list[Fault] = field(default_factory=list)
    created: bool = False

    @property
    def tag(self) -> str:
        """Prefix of this topology's names in the root namespace (`tg7br`, `tg7sa`, ...)."""
        return f"tg{self.index}"

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def ns(self, node: str) -> str:
        """The namespace of node `node` ("a" or "b"); the test's pid makes stale ones findable."""
        return f"{self.tag}-{node}-{os.getpid()}"

    def _net(self, offset: int) -> str:
        return f"10.231.{4 * self.index + offset}"

    @property
    def root_address(self) -> str:
        """The bridge's address in the root namespace: the sender's, the witness's, the arbiter's."""
        return f"{self._net(0)}.1"

    def service(self, node: str) -> str:
        """The node's address on the service network (receivers, Redis, heartbeats)."""
        return f"{self._net(0)}.{2 + NODES.index(node)}"

    def dedicated(self, node: str) -> str:
        """The node's address on the dedicated link (heartbeats only)."""
        return f"{self._net(1)}.{2 + NODES.index(node)}"

    def mgmt(self, node: str) -> str:
        """The node's address on the test's observation link (admin and status APIs)."""
        return f"{self._net(2 + NODES.index(node))}.2"

    def prefix(self, node: str) -> tuple[str, ...]:
        """The command prefix that runs a program in the node's namespace."""
        return ("ip", "netns", "exec", self.ns(node))

    def placement(self, node: str) -> Placement:
        """Where node `node`'s servers listen and how its processes start."""
        return Placement(host=self.service(node), admin_host=self.mgmt(node),
                         path_hosts={"service": self.service(node), "dedicated": self.dedicated(node)},
                         prefix=self.prefix(node))

    def create(self) -> Topology:
        """Build the namespaces, the bridge and the veths, and an empty nftables table in each node."""
        self.created = True
        _run("ip", "link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
        _run("ip", "addr", "add", f"{self.root_address}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for node in NODES:
            ns = self.ns(node)
            _run("ip", "netns", "add", ns)
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            service_end, mgmt_end = f"{self.tag}s{node}", f"{self.tag}m{node}"
            _run("ip", "link", "add", service_end, "type", "veth", "peer", "name", PATHS["service"],
                 "netns", ns)
            _run("ip", "link", "set", service_end, "master", self.bridge, "up")
            _run("ip", "link", "add", mgmt_end, "type", "veth", "peer", "name", MGMT, "netns", ns)
            _run("ip", "addr", "add", f"{self._net(2 + NODES.index(node))}.1/24", "dev", mgmt_end)
            _run("ip", "link", "set", mgmt_end, "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.service(node)}/24", "dev", PATHS["service"])
            _run("ip", "-n", ns, "addr", "add", f"{self.mgmt(node)}/24", "dev", MGMT)
        _run("ip", "link", "add", PATHS["dedicated"], "netns", self.ns("a"), "type", "veth", "peer", "name",
             PATHS["dedicated"], "netns", self.ns("b"))
        for node in NODES:
            ns = self.ns(node)
            _run("ip", "-n", ns, "addr", "add", f"{self.dedicated(node)}/24", "dev", PATHS["dedicated"])
            for interface in (*PATHS.values(), MGMT):
                _run("ip", "-n", ns, "link", "set", interface, "up")
            chains = "".join(
                f"chain {hook}_{interface} {{ type filter hook {hook} device \"{interface}\" priority 0; }}\n"
                for interface in PATHS.values() for hook in ("ingress", "egress"))
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=f"table netdev {_TABLE} {{\n"
                           f"{chains}}}\n", capture_output=True, text=True, check=True)
        self.wait_links_up()
        return self

    def link_states(self) -> dict[str, str]:
        """"ns/interface" -> operstate, for every link of both nodes."""
        states = {}
        for node in NODES:
            shown = _run("ip", "-n", self.ns(node), "-o", "link", "show")
            for line in shown.splitlines():
                name = line.split(":")[1].strip().split("@")[0]
                if name != "lo" and " state " in line:
                    states[f"{node}/{name}"] = line.split(" state ")[1].split()[0]
        return states

    def wait_links_up(self, timeout: float = 10.0) -> None:
        """Until every link of both nodes is up; AssertionError with the states last seen."""
        deadline = time.monotonic() + timeout
        states = self.link_states()
        while not all(state == "UP" for state in states.values()):
            if time.monotonic() > deadline:
                raise AssertionError(f"links not up after {timeout} s: {states}")
            time.sleep(0.05)
            states = self.link_states()

    def destroy(self) -> None:
        """Remove both namespaces (their veths and nftables tables go with them) and the bridge.

        A process the test left running in a namespace would keep it alive: it is
        SIGKILLed first, by its pid. A closed TCP socket still sending (FIN_WAIT) also
        keeps a namespace, without a process, for minutes: so the links are deleted
        first, and the namespace then goes when its last socket does.
        """
        if not self.created:
            return
        for node in NODES:
            _kill_processes_in(self.ns(node))
            for interface in (*PATHS.values(), MGMT):
                subprocess.run(["ip", "-n", self.ns(node), "link", "del", interface], capture_output=True,
                               check=False)
            subprocess.run(["ip", "netns", "del", self.ns(node)], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        self.faults.clear()
        self.created = False
        # The kernel removes a deleted namespace's links a moment later, not at once.
        deadline = time.monotonic() + 10.0
        left = self._root_links()
        while left:
            if time.monotonic() > deadline:
                raise AssertionError(f"links of topology {self.index} still there after 10 s: {sorted(left)}")
            time.sleep(0.05)
            left = self._root_links()

    def _root_links(self) -> set[str]:
        """This topology's links in the root namespace (bridge, service and mgmt ends)."""
        return {name for name in _links()
                if (m := _OUR_LINK.fullmatch(name)) is not None and int(m.group(1)) == self.index}

    def _rules(self, rules: list[tuple[str, str, str]]) -> Fault:
        """Add (node, chain, match) rules, each with a counter and a drop; the fault that holds them."""
        fault = Fault(self)
        self.faults.append(fault)
        for node, chain, match in rules:
            ns = self.ns(node)
            echoed = _run("ip", "netns", "exec", ns, "nft", "--echo", "--handle", "add", "rule", "netdev",
                          _TABLE, chain, *match.split(), "counter", "drop")
            fault.rules.append((ns, chain, int(echoed.split("# handle ")[1].split()[0])))
        return fault

    def _between(self, node: str, path: str, direction: str) -> str:
        """The match for packets from (saddr) or to (daddr) the peer of `node` on `path`."""
        peer = "b" if node == "a" else "a"
        return "" if path == "dedicated" else f"ip {direction} {self.service(peer)}"

    def cut(self, path: str) -> Fault:
        """Drop every packet between a and b on `path` ("service" or "dedicated"), both ways.

        On the service network only the traffic between the two nodes is cut: both still
        reach the root namespace (sender, witness, arbiter).
        """
        interface = PATHS[path]
        return self._rules([("a", f"ingress_{interface}", self._between("a", path, "saddr")),
                            ("a", f"egress_{interface}", self._between("a", path, "daddr"))])

    def isolate(self, node: str) -> Fault:
        """Drop everything the node sends or receives on the service network and the dedicated link."""
        return self._rules([(node, f"{hook}_{interface}", "")
                            for interface in PATHS.values() for hook in ("ingress", "egress")])

    def loss(self, path: str, percent: int, udp_only: bool = False) -> Fault:
        """Drop `percent` % of the packets between a and b on `path` at random, on arrival at either node
        (with `udp_only`, only UDP datagrams: the heartbeats, not Redis).

        The sender's traffic to the nodes is left alone (the `Device` draws its own loss
        and must know which copies arrived).
        """
        interface = PATHS[path]
        protocol = "ip protocol udp" if udp_only else ""
        chosen = f"{protocol} numgen random mod 100 < {percent}"
        return self._rules([(node, f"ingress_{interface}", f"{self._between(node, path, 'saddr')} {chosen}")
                            for node in NODES])

    def link_down(self, node: str, path: str) -> Fault:
        """`ip link set IF down` in the node's namespace; undoing sets it up again."""
        ns, interface = self.ns(node), PATHS[path]
        _run("ip", "-n", ns, "link", "set", interface, "down")
        fault = Fault(self, down=[(ns, interface)])
        self.faults.append(fault)
        return fault


def _free_index() -> int:
    used = {int(m.group(1)) for m in map(_OUR_LINK.fullmatch, _links()) if m is not None}
    taken = _run("ip", "-4", "-o", "addr", "show")
    for index in range(_MAX_INDEX):
        nets = [f"10.231.{4 * index + offset}." for offset in range(4)]
        if index not in used and not any(net in taken for net in nets):
            return index
    raise RuntimeError(f"every topology index 0..{_MAX_INDEX - 1} is in use")


@contextmanager
def topology() -> Iterator[Topology]:
    """A created `Topology`; destroyed on exit, also when the test failed.

    The index is chosen under a file lock, so test runs in parallel get different names
    and subnets.
    """
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _remove_stale()
        topo = Topology(_free_index())
        try:
            topo.create()
        except BaseException:
            topo.destroy()
            raise
    try:
        yield topo
    finally:
        topo.destroy()
