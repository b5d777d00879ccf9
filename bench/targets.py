"""The shape every system under test has: a process fed over UDP, writing a file.

A target is a `Service`: entering starts the process and returns once its
UDP socket is bound and it answers whatever readiness check it has; leaving
stops it. Benchmarks only use what this base class offers, so a new
peer is one module with one subclass.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.netinfo import udp_socket_stats
from bench.procs import ManagedProcess, Service, free_port, wait_until

READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class TargetCounters:
    """What a target says it took in, and from which of its own counters.

    `received` is None when the target has no such counter; `extra` holds
    other figures it exports (drops by reason, queue discards, ...).
    """

    received: int | None
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


class UdpTarget(Service):
    """A receiver process under test: UDP in on `host` (a loopback address), one output file."""

    name: str = "target"

    def __init__(self, workdir: Path, rcvbuf: int, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.rcvbuf = rcvbuf
        self.host = host
        self.port = free_port(host=host)
        self.out_path = workdir / "out.log"

    def pick_ports(self) -> None:
        """Choose new free ports, e.g. after another process took one before the target bound it."""
        self.port = free_port(host=self.host)

    @abstractmethod
    def command(self) -> tuple[list[str], Path | None]:
        """Write whatever config the target needs; return (argv, cwd)."""

    def environment(self) -> dict[str, str] | None:
        """The child's environment; None inherits the benchmark's."""
        return None

    def spawn(self) -> ManagedProcess:
        """The process of `command`, logging to process.log in the workdir."""
        argv, cwd = self.command()
        return ManagedProcess(self.name, argv, self.workdir / "process.log", cwd=cwd, env=self.environment())

    def wait_ready(self) -> None:
        """Return once the UDP socket is bound; subclasses add their own checks."""
        wait_until(
            lambda: udp_socket_stats(self.port, self.host) is not None,
            READY_TIMEOUT,
            f"{self.name} to bind UDP {self.host}:{self.port}",
            alive=self.process.check_alive,
        )

    @abstractmethod
    def counters(self) -> TargetCounters:
        """The target's own count of what it received (read after the drain)."""

    def config_summary(self) -> dict[str, Any]:
        """Settings worth reporting next to the figures (queue sizes, batching)."""
        return {}
