"""Net-SNMP's snmptrapd as a peer: one line per notification into a file.

Settings, stated here so the report can quote them: foreground (`-f`), only
our config file (`-C -c`), no AgentX subagent (`-X`), no reverse DNS (`-n`),
numeric OIDs (`-On`), a one-line format (`-F "%B %v\\n"`: source, then
every varbind tab-separated) written by `-Lf` to the output file,
`disableAuthorization yes` (log whatever arrives), and the same receive
buffer as the other systems through `serverRecvBuf` (Net-SNMP asks with
SO_RCVBUF, so the kernel caps it at net.core.rmem_max). For v3 the user is
created with the sender's engine id (`createUser -e`), which snmptrapd
needs for every sender. Its persistent directory is the run's own, so it
never touches /var/lib/snmp.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.procs import BenchError
from bench.snmpload import V3Identity
from bench.targets import TargetCounters, UdpTarget

LINE_FORMAT = "%B %v\\n"
"""snmptrapd's format string (its own escapes: `\\n` is a newline)."""


def render_config(*, rcvbuf: int, identity: V3Identity | None) -> str:
    """snmptrapd.conf for one bench peer; a v3 user only when `identity` is given."""
    # serverRecvBuf is a library token: only the [snmp] prefix makes snmptrapd.conf apply it.
    lines = ["disableAuthorization yes", f"[snmp] serverRecvBuf {rcvbuf}"]
    if identity is not None:
        lines.append(
            f"createUser -e 0x{identity.engine_id.hex()} {identity.user} "
            f"{identity.auth} {identity.auth_passphrase} {identity.priv} {identity.priv_passphrase}"
        )
    return "\n".join(lines) + "\n"


class Snmptrapd(UdpTarget):
    """snmptrapd in the foreground with its own config and persistent directory."""

    name = "snmptrapd"

    def __init__(self, workdir: Path, rcvbuf: int, identity: V3Identity | None = None) -> None:
        super().__init__(workdir, rcvbuf)
        self.identity = identity
        self.config_path = workdir / "snmptrapd.conf"
        self.persistent_dir = workdir / "persist"

    def command(self) -> tuple[list[str], Path | None]:
        """Write snmptrapd.conf; argv runs snmptrapd on 127.0.0.1:PORT only."""
        binary = shutil.which("snmptrapd") or "/usr/sbin/snmptrapd"
        if not Path(binary).exists():
            raise BenchError("snmptrapd not found (apt-get install snmptrapd)")
        self.persistent_dir.mkdir(exist_ok=True)
        self.config_path.write_text(render_config(rcvbuf=self.rcvbuf, identity=self.identity))
        argv = [
            binary, "-f", "-C", "-c", str(self.config_path), "-X", "-n", "-On",
            f"--persistentDir={self.persistent_dir}",
            "-p", str(self.workdir / "snmptrapd.pid"),
            "-Lf", str(self.out_path), "-F", LINE_FORMAT,
            f"udp:127.0.0.1:{self.port}",
        ]  # fmt: skip
        return argv, self.workdir

    def environment(self) -> dict[str, str]:
        """No config path but the run's directory; persistent data kept there too."""
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "SNMPCONFPATH": str(self.workdir),
            "SNMP_PERSISTENT_DIR": str(self.persistent_dir),
        }

    def counters(self) -> TargetCounters:
        """snmptrapd exports no count of what it received."""
        return TargetCounters(received=None, source="none")

    def config_summary(self) -> dict[str, Any]:
        """The snmptrapd settings the figures were taken with."""
        return {
            "options": "-f -C -X -n -On",
            "format": LINE_FORMAT,
            "server_recv_buf": self.rcvbuf,
            "v3_user_engine_id": self.identity.engine_id.hex() if self.identity else None,
        }
