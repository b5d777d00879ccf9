"""rsyslog as a peer: imudp in, omfile out with the raw message, impstats for counts.

Settings are rsyslog's usual high-rate ones, stated here so the report can
quote them: one imudp thread reading with recvmmsg in batches of 128, the
same receive buffer as trapgate (rsyslog uses SO_RCVBUFFORCE as root, like
trapgate), a main queue of 100,000 messages dequeued in batches of 1,024,
and omfile with a 64 KiB buffer flushed at the end of every batch.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.procs import BenchError
from bench.targets import TargetCounters, UdpTarget

IMUDP_THREADS = 1
IMUDP_BATCH = 128
MAIN_QUEUE_SIZE = 100_000
DEQUEUE_BATCH = 1024
OMFILE_BUFFER = "64k"
_STATS_INTERVAL = 1


def render_config(*, port: int, rcvbuf: int, workdir: Path, out_path: Path, stats_path: Path) -> str:
    """The rsyslog config (RainerScript) of one bench peer."""
    return f"""\
global(workDirectory="{workdir}" maxMessageSize="8k")
module(load="impstats" interval="{_STATS_INTERVAL}" log.file="{stats_path}"
       log.syslog="off" format="json" resetCounters="off")
module(load="imudp" threads="{IMUDP_THREADS}" batchSize="{IMUDP_BATCH}")
main_queue(queue.size="{MAIN_QUEUE_SIZE}" queue.dequeueBatchSize="{DEQUEUE_BATCH}")
template(name="bench_raw" type="string" string="%rawmsg%\\n")
ruleset(name="bench") {{
  action(type="omfile" file="{out_path}" template="bench_raw"
         ioBufferSize="{OMFILE_BUFFER}" flushOnTXEnd="on")
}}
input(type="imudp" address="127.0.0.1" port="{port}" rcvbufSize="{rcvbuf}" ruleset="bench")
"""


def parse_impstats(text: str) -> list[dict[str, Any]]:
    """The JSON objects of an impstats log file (`<date>: {json}` per line)."""
    objects: list[dict[str, Any]] = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            value = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


def latest_counters(objects: list[dict[str, Any]], port: int) -> tuple[int | None, int]:
    """(messages imudp submitted on `port`, main-queue discards), latest values."""
    submitted: int | None = None
    discarded = 0
    for obj in objects:
        name = str(obj.get("name", ""))
        if obj.get("origin") == "imudp" and f"/{port}/" in name:
            submitted = int(obj.get("submitted", 0))
        elif name == "main Q":
            discarded = int(obj.get("discarded.full", 0)) + int(obj.get("discarded.nf", 0))
    return submitted, discarded


class Rsyslog(UdpTarget):
    """rsyslogd in the foreground with its own config, work directory and pid file."""

    name = "rsyslog"

    def __init__(self, workdir: Path, rcvbuf: int) -> None:
        super().__init__(workdir, rcvbuf)
        self.stats_path = workdir / "impstats.log"
        self.config_path = workdir / "rsyslog.conf"

    def command(self) -> tuple[list[str], Path | None]:
        """Write rsyslog.conf; argv is `rsyslogd -n -f CONF -i PIDFILE`."""
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not Path(binary).exists():
            raise BenchError("rsyslogd not found (apt-get install rsyslog)")
        spool = self.workdir / "spool"
        spool.mkdir(exist_ok=True)
        self.config_path.write_text(
            render_config(
                port=self.port,
                rcvbuf=self.rcvbuf,
                workdir=spool,
                out_path=self.out_path,
                stats_path=self.stats_path,
            )
        )
        return [binary, "-n", "-f", str(self.config_path), "-i", str(self.workdir / "rsyslogd.pid")], None

    def _stats_size(self) -> int:
        try:
            return self.stats_path.stat().st_size
        except FileNotFoundError:
            return 0

    def counters(self) -> TargetCounters:
        """imudp's `submitted`, from the first impstats report written after this call."""
        size = self._stats_size()
        deadline = time.monotonic() + _STATS_INTERVAL * 2.5
        while self._stats_size() == size and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.05)  # let the whole report block reach the file
        try:
            objects = parse_impstats(self.stats_path.read_text())
        except FileNotFoundError:
            objects = []
        submitted, discarded = latest_counters(objects, self.port)
        return TargetCounters(
            received=submitted,
            source="impstats" if submitted is not None else "none",
            extra={"main_queue_discarded": discarded},
        )

    def config_summary(self) -> dict[str, Any]:
        """The rsyslog settings the figures were taken with."""
        return {
            "imudp_threads": IMUDP_THREADS,
            "imudp_batch": IMUDP_BATCH,
            "main_queue_size": MAIN_QUEUE_SIZE,
            "dequeue_batch": DEQUEUE_BATCH,
            "omfile_buffer": OMFILE_BUFFER,
        }
