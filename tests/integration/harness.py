"""A real `trapgate run` process on free loopback ports, for integration tests."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.gateway_process import GatewayProcess
from tests.toml_render import render_toml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "gateway" / "event.schema.json").read_text())


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


class Trapgate(GatewayProcess):
    """One trapgate process with its config, output file and quarantine."""

    def __init__(self, workdir: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.syslog_port = free_port()
        self.http_port = free_port()
        self.admin_port = free_port()
        self.snmp_port = free_port()
        self.out = workdir / "out.jsonl"
        self.quarantine = workdir / "quarantine.jsonl"
        doc: dict[str, dict[str, Any]] = {
            "node": {"name": "test-node"},
            "receivers": {
                "syslog_udp": {"type": "udp", "format": "syslog", "address": f"127.0.0.1:{self.syslog_port}"},
                "syslog_tcp": {"type": "tcp", "format": "syslog", "address": f"127.0.0.1:{self.syslog_port}",
                               "max_frame": 4096},
                "custom_http": {"type": "http", "format": "custom", "address": f"127.0.0.1:{self.http_port}",
                                "max_body": 65536},
                "snmp": {"type": "snmp", "address": f"127.0.0.1:{self.snmp_port}",
                         "engine_boots_file": str(workdir / "engine-boots")},
            },
            "admin": {"address": f"127.0.0.1:{self.admin_port}"},
            "sink": {"type": "file", "path": str(self.out)},
            "quarantine": {"path": str(self.quarantine), "max_bytes": 1_000_000},
        }
        for section, table in (overrides or {}).items():
            doc[section] = table if section == "receivers" else {**doc.get(section, {}), **table}
        self.config = workdir / "trapgate.toml"
        self.config.write_text(render_toml(doc))
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> Trapgate:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
            cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.wait_healthy(lambda: self.proc.stderr.read().decode())  # type: ignore[union-attr]
        return self

    def events(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_bytes().splitlines() if line]

    def wait_events(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if len(events) >= n or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def stop(self) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err.decode()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def occurrence(event: dict[str, Any]) -> tuple[str, int]:
    """(fingerprint, occurrence) of a forwarded event's id, checking the id's form."""
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+-[1-9][0-9]*", event["id"]), event["id"]
    fp, _, k = event["id"].split("-")
    return fp, int(k)
