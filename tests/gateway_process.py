"""What the test harnesses share about a running trapgate process: its admin API."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


class GatewayProcess:
    """A `trapgate run` process reached through its admin API at `admin_url`."""

    admin_url = ""
    proc: subprocess.Popen[bytes] | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        """GET an admin path; (status, body), also for error statuses."""
        try:
            with urllib.request.urlopen(f"{self.admin_url}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def status(self) -> dict[str, Any]:
        return json.loads(self.get("/status")[1])  # type: ignore[no-any-return]

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.get("/metrics")[1].decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def wait_healthy(self, why_not: Callable[[], str], timeout: float = 20.0) -> None:
        """Until `/health` answers 200; raise with `why_not()` if the process exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"trapgate exited: {why_not()}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("trapgate did not become healthy")
