"""pysnmp 7's NotificationReceiver as a peer (`bench._ntfrcv` in a child process).

The receiver asks for the same receive buffer as trapgate, with
SO_RCVBUFFORCE as root, and for v3 is given the sender's engine id up
front, which pysnmp requires.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.snmpload import V3Identity
from bench.targets import TargetCounters, UdpTarget

REPO_ROOT = Path(__file__).resolve().parent.parent


def receiver_argv(port: int, out_path: Path, rcvbuf: int, identity: V3Identity | None) -> list[str]:
    """The command line of `python -m bench._ntfrcv` for one run."""
    argv = [
        sys.executable, "-m", "bench._ntfrcv",
        "--port", str(port), "--out", str(out_path), "--rcvbuf", str(rcvbuf), "--community", "public",
    ]  # fmt: skip
    if identity is not None:
        argv += [
            "--user", identity.user,
            "--auth-passphrase", identity.auth_passphrase,
            "--priv-passphrase", identity.priv_passphrase,
            "--engine-id", identity.engine_id.hex(),
        ]  # fmt: skip
    return argv


class PysnmpReceiver(UdpTarget):
    """A pysnmp engine with `ntfrcv.NotificationReceiver`, one line per notification."""

    name = "pysnmp"

    def __init__(self, workdir: Path, rcvbuf: int, identity: V3Identity | None = None) -> None:
        super().__init__(workdir, rcvbuf)
        self.identity = identity

    def command(self) -> tuple[list[str], Path | None]:
        """argv of the receiver script, run from the repository root."""
        return receiver_argv(self.port, self.out_path, self.rcvbuf, self.identity), REPO_ROOT

    def counters(self) -> TargetCounters:
        """The receiver keeps no count of its own."""
        return TargetCounters(received=None, source="none")

    def config_summary(self) -> dict[str, Any]:
        """What the pysnmp receiver was set up with."""
        return {
            "pysnmp": metadata.version("pysnmp"),
            "v3_user_engine_id": self.identity.engine_id.hex() if self.identity else None,
        }
