"""redis-server as a child of the benchmark: a primary, or a replica of one.

Each server binds one loopback address (127.0.0.2 for node a, 127.0.0.3 for
node b, like two hosts), runs from the run's directory with persistence off
and logs to the benchmark's log file. Entering waits until it answers PING
and, for a replica, until its link to the primary is up.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import redis

from bench.procs import BenchError, ManagedProcess, Service, free_port, wait_until
from bench.targets import READY_TIMEOUT


def redis_available() -> bool:
    """Whether redis-server is on PATH."""
    return shutil.which("redis-server") is not None


class RedisProcess(Service):
    """One redis-server on `host`, a replica of `primary` when given."""

    def __init__(self, workdir: Path, host: str, name: str, primary: RedisProcess | None = None) -> None:
        self.workdir = workdir
        self.host = host
        self.name = name
        self.primary = primary
        self.port = free_port(socket.SOCK_STREAM, host)

    @property
    def url(self) -> str:
        """The ``redis://`` URL a trapgate config names this server by."""
        return f"redis://{self.host}:{self.port}/0"

    def pick_ports(self) -> None:
        """Choose a new free port, e.g. after another process took the one chosen."""
        self.port = free_port(socket.SOCK_STREAM, self.host)

    def command(self) -> list[str]:
        """The redis-server command line."""
        argv = [
            "redis-server",
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.primary is not None:
            argv += ["--replicaof", self.primary.host, str(self.primary.port)]
        return argv

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section`` as a dict; raises `BenchError` when the server does not answer."""
        try:
            with redis.Redis(host=self.host, port=self.port, socket_timeout=5.0) as client:
                return dict(client.info(section))
        except (redis.RedisError, OSError) as exc:
            raise BenchError(f"{self.name} INFO {section}: {exc}") from None

    def _answers(self) -> bool:
        try:
            with redis.Redis(host=self.host, port=self.port, socket_timeout=0.5) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def spawn(self) -> ManagedProcess:
        """redis-server in the workdir, logging to process.log there."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        return ManagedProcess(self.name, self.command(), self.workdir / "process.log")

    def wait_ready(self) -> None:
        """The server answers PING and, for a replica, its link to the primary is up."""
        wait_until(
            self._answers,
            READY_TIMEOUT,
            f"{self.name} on {self.host}:{self.port}",
            alive=self.process.check_alive,
        )
        primary = self.primary
        if primary is not None:
            wait_until(
                lambda: self.info("replication").get("master_link_status") == "up",
                READY_TIMEOUT,
                f"{self.name} to link to {primary.name}",
                alive=self.process.check_alive,
            )
