"""A nats-server with JetStream started by a test, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.procs import die_with_parent
from tests.redis_servers import HOST, free_port


class NatsServer:
    """One ``nats-server -js`` on a free loopback port, its store in `workdir` (kept across restarts)."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("nats-server") is None:
            pytest.skip("nats-server not found on PATH")
        self.port = free_port()
        self.dir = workdir / f"nats-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        with open(self.dir / "server.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["nats-server", "-js", "-a", HOST, "-p", str(self.port), "-sd", str(self.dir / "store")],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while "Server is ready" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server on {self.port} did not start:\n{self.log()[-2000:]}")
            time.sleep(0.02)
        return self

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
