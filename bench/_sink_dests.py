"""The destinations of `python -m bench sinks`: what each sink sends to, and what arrived there.

Every destination but the file is a process of its own on 127.0.0.1 (so its
CPU is not the benchmark's), started once for the whole benchmark. Each
gives the options of the sink it serves for one measured run (`tag` names
the run: a file, a stream, a URL path of its own where the destination can
keep runs apart) and counts what arrived: per tag where it can, otherwise
the destination's running total, which the caller reads before and after
the run.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
import redis

from bench.netinfo import udp_socket_stats
from bench.procs import BenchError, ManagedProcess, Service, free_port, http_get, wait_until
from bench.redisproc import RedisProcess
from bench.snmptrapd import Snmptrapd
from bench.targets import READY_TIMEOUT
from gateway.sinks.hinemos import HinemosOptions
from gateway.sinks.http import HttpOptions
from gateway.sinks.jsonl import JsonlOptions
from gateway.sinks.nats import NatsOptions
from gateway.sinks.redis_stream import RedisStreamOptions
from gateway.sinks.snmp import SnmpSinkOptions
from gateway.sinks.syslog import SyslogOptions

HOST = "127.0.0.1"
_REPO = Path(__file__).resolve().parents[1]


class Destination(Protocol):
    """Where a sink's events go for the benchmark."""

    def options(self, variant: str, tag: str) -> Any:
        """The sink's options for run `tag` (`variant`: the case's transport or policy)."""
        ...

    def delivered(self, tag: str) -> int:
        """Events that arrived so far: for run `tag`, or in all (the caller subtracts)."""
        ...

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped on the destination's UDP socket so far; None without one."""
        ...

    def release(self, tag: str) -> None:
        """Free what run `tag` left at the destination (it has been counted)."""
        ...

    def version(self) -> str:
        """The destination software's version, for the report ("" for a file)."""
        ...


class LineCounter:
    """Newlines appended to a file since the first call, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        """The newlines written to the file so far (0 while it does not exist)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.lines
        self.offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


def _version_output(argv: list[str], pattern: str) -> str:
    """The first match of `pattern`'s group in what `argv` prints, or "?"."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    found = re.search(pattern, done.stdout + done.stderr)
    return found[1] if found else "?"


def count_lines(path: Path) -> int:
    """The newlines in `path` (0 when it does not exist)."""
    return LineCounter(path).count()


class FileDestination:
    """A JSON-lines file per run in `workdir`, deleted once counted; `variant` is the fsync policy."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def _path(self, tag: str) -> Path:
        return self.workdir / f"{tag}.jsonl"

    def options(self, variant: str, tag: str) -> JsonlOptions:
        """A new file of its own, with fsync policy `variant`."""
        return JsonlOptions(path=str(self._path(tag)), fsync=variant)

    def delivered(self, tag: str) -> int:
        """The lines of the run's file."""
        return count_lines(self._path(tag))

    def kernel_drops(self) -> int | None:
        """No socket."""
        return None

    def release(self, tag: str) -> None:
        """Delete the run's file."""
        self._path(tag).unlink(missing_ok=True)

    def version(self) -> str:
        """A file has none."""
        return ""


RSYSLOG_MAIN_QUEUE = 100_000
RSYSLOG_IMUDP_BATCH = 128


def render_rsyslog_config(*, udp_port: int, tcp_port: int, rcvbuf: int, workdir: Path, out_path: Path) -> str:
    """rsyslog.conf: imudp and imtcp on 127.0.0.1, every message's raw bytes a line of one file."""
    return f"""\
global(workDirectory="{workdir}" maxMessageSize="64k")
module(load="imudp" threads="1" batchSize="{RSYSLOG_IMUDP_BATCH}")
module(load="imtcp")
main_queue(queue.size="{RSYSLOG_MAIN_QUEUE}" queue.dequeueBatchSize="1024")
template(name="bench_raw" type="string" string="%rawmsg%\\n")
ruleset(name="bench") {{
  action(type="omfile" file="{out_path}" template="bench_raw" ioBufferSize="64k" flushOnTXEnd="on")
}}
input(type="imudp" address="{HOST}" port="{udp_port}" rcvbufSize="{rcvbuf}" ruleset="bench")
input(type="imtcp" address="{HOST}" port="{tcp_port}" ruleset="bench")
"""


def _tcp_listens(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class RsyslogDestination(Service):
    """rsyslogd with imudp and imtcp; `variant` is the syslog sink's transport (udp or tcp)."""

    name = "rsyslogd"

    def __init__(self, workdir: Path, rcvbuf: int) -> None:
        self.workdir = workdir
        self.rcvbuf = rcvbuf
        self.udp_port = free_port(socket.SOCK_DGRAM, HOST)
        self.tcp_port = free_port(socket.SOCK_STREAM, HOST)
        self.out_path = workdir / "received.log"
        self._lines = LineCounter(self.out_path)

    def spawn(self) -> ManagedProcess:
        """rsyslogd in the foreground with its own config and work directory."""
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        spool = self.workdir / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "rsyslog.conf"
        config.write_text(render_rsyslog_config(udp_port=self.udp_port, tcp_port=self.tcp_port,
                                                rcvbuf=self.rcvbuf, workdir=spool, out_path=self.out_path))
        argv = [binary, "-n", "-f", str(config), "-i", str(self.workdir / "rsyslogd.pid")]
        return ManagedProcess(self.name, argv, self.workdir / "process.log")

    def wait_ready(self) -> None:
        """Both inputs are bound."""
        wait_until(lambda: udp_socket_stats(self.udp_port, HOST) is not None and _tcp_listens(self.tcp_port),
                   READY_TIMEOUT, f"rsyslogd on {HOST}:{self.udp_port}/udp and {self.tcp_port}/tcp",
                   alive=self.process.check_alive)

    def options(self, variant: str, tag: str) -> SyslogOptions:
        """The messages as they arrived (no rewrite), over `variant`."""
        port = self.udp_port if variant == "udp" else self.tcp_port
        return SyslogOptions(address=f"{HOST}:{port}", transport=variant)

    def delivered(self, tag: str) -> int:
        """Lines written so far, every run together."""
        return self._lines.count()

    def kernel_drops(self) -> int | None:
        """Drops on the imudp socket."""
        stats = udp_socket_stats(self.udp_port, HOST)
        return stats.drops if stats is not None else None

    def release(self, tag: str) -> None:
        """The file keeps every run."""

    def version(self) -> str:
        """From ``rsyslogd -v``."""
        return _version_output([self.process.argv[0], "-v"], r"rsyslogd\s+(\S+)")


class SnmptrapdDestination(Snmptrapd):
    """snmptrapd (bench.snmptrapd's settings): one line per trap in its output file."""

    def __init__(self, workdir: Path, rcvbuf: int) -> None:
        super().__init__(workdir, rcvbuf)
        self._lines = LineCounter(self.out_path)

    def options(self, variant: str, tag: str) -> SnmpSinkOptions:
        """v2c traps, community public."""
        return SnmpSinkOptions(address=f"{HOST}:{self.port}", version="2c", community="public")

    def delivered(self, tag: str) -> int:
        """Lines written so far (its start line too: the caller subtracts)."""
        return self._lines.count()

    def kernel_drops(self) -> int | None:
        """Drops on its socket."""
        stats = udp_socket_stats(self.port, HOST)
        return stats.drops if stats is not None else None

    def release(self, tag: str) -> None:
        """The file keeps every run."""

    def version(self) -> str:
        """From ``snmptrapd --version``."""
        return _version_output([self.process.argv[0], "--version"], r"NET-SNMP Version:\s+(\S+)")


class HttpDestination(Service):
    """`bench._http_peer`: 200 to every POST; `variant` is the sink type (http or hinemos)."""

    name = "http-peer"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(socket.SOCK_STREAM, HOST)

    def spawn(self) -> ManagedProcess:
        """The peer under this Python."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bench._http_peer", str(self.port)]
        return ManagedProcess(self.name, argv, self.workdir / "process.log", cwd=_REPO)

    def wait_ready(self) -> None:
        """It answers a count."""
        wait_until(lambda: self._get_count("ready") is not None, READY_TIMEOUT,
                   f"the HTTP peer on {HOST}:{self.port}", alive=self.process.check_alive)

    def _get_count(self, tag: str) -> int | None:
        status, body = http_get(f"http://{HOST}:{self.port}/count/{tag}")
        return int(orjson.loads(body)["events"]) if status == 200 else None

    def options(self, variant: str, tag: str) -> HttpOptions | HinemosOptions:
        """POSTs to /TAG: the http sink's defaults, or Hinemos bodies."""
        url = f"http://{HOST}:{self.port}/{tag}"
        if variant == "hinemos":
            return HinemosOptions(url=url, facility_id="bench")
        return HttpOptions(url=url)

    def delivered(self, tag: str) -> int:
        """Events the peer counted under /TAG."""
        count = self._get_count(tag)
        if count is None:
            raise BenchError(f"the HTTP peer on {HOST}:{self.port} does not answer")
        return count

    def kernel_drops(self) -> int | None:
        """TCP."""
        return None

    def release(self, tag: str) -> None:
        """Counts are small."""

    def version(self) -> str:
        """The aiohttp the peer runs on (this Python's)."""
        return f"aiohttp {aiohttp.__version__}"


class RedisDestination(RedisProcess):
    """redis-server (persistence off); one stream per run, deleted once counted."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, HOST, "redis-server")

    def options(self, variant: str, tag: str) -> RedisStreamOptions:
        """The stream ``bench:TAG``, fields laid out as `variant` (flat or json)."""
        return RedisStreamOptions(url=self.url, stream=f"bench:{tag}", fields=variant)

    def delivered(self, tag: str) -> int:
        """XLEN of the run's stream."""
        with redis.Redis(host=self.host, port=self.port, socket_timeout=5.0) as client:
            return int(client.xlen(f"bench:{tag}"))

    def kernel_drops(self) -> int | None:
        """TCP."""
        return None

    def release(self, tag: str) -> None:
        """Delete the run's stream."""
        with redis.Redis(host=self.host, port=self.port, socket_timeout=5.0) as client:
            client.delete(f"bench:{tag}")

    def version(self) -> str:
        """redis_version of INFO."""
        return str(self.info("server")["redis_version"])


class NatsDestination(Service):
    """nats-server with JetStream (file store in `workdir`); the sink creates one stream per run."""

    name = "nats-server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(socket.SOCK_STREAM, HOST)
        self.monitor_port = free_port(socket.SOCK_STREAM, HOST)

    def spawn(self) -> ManagedProcess:
        """nats-server -js on the loopback ports, its monitoring port for the counts."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = ["nats-server", "-js", "-a", HOST, "-p", str(self.port), "-m", str(self.monitor_port),
                "-sd", str(self.workdir / "store")]
        return ManagedProcess(self.name, argv, self.workdir / "process.log")

    def wait_ready(self) -> None:
        """Its log says it is ready."""
        wait_until(lambda: "Server is ready" in self.process.log_tail(100_000), READY_TIMEOUT,
                   f"nats-server on {HOST}:{self.port}", alive=self.process.check_alive)

    @staticmethod
    def stream(tag: str) -> str:
        """The run's stream name."""
        return f"BENCH_{tag}".replace("-", "_")

    def options(self, variant: str, tag: str) -> NatsOptions:
        """Subject ``bench.TAG`` into a stream of its own, created by the sink (file storage)."""
        return NatsOptions(servers=(f"nats://{HOST}:{self.port}",), subject=f"bench.{tag}",
                           stream=self.stream(tag), create=True)

    def delivered(self, tag: str) -> int:
        """Messages in the run's stream, from the monitoring endpoint."""
        status, body = http_get(f"http://{HOST}:{self.monitor_port}/jsz?accounts=true&streams=true")
        if status != 200:
            raise BenchError(f"nats-server monitoring on {HOST}:{self.monitor_port} answered {status}")
        return messages_in_stream(orjson.loads(body), self.stream(tag))

    def kernel_drops(self) -> int | None:
        """TCP."""
        return None

    def release(self, tag: str) -> None:
        """The store is deleted with the benchmark's directory."""

    def version(self) -> str:
        """From the monitoring endpoint's /varz."""
        status, body = http_get(f"http://{HOST}:{self.monitor_port}/varz")
        return str(orjson.loads(body)["version"]) if status == 200 else "?"


def messages_in_stream(jsz: dict[str, Any], stream: str) -> int:
    """The message count of `stream` in a nats-server ``/jsz?accounts=true&streams=true`` answer."""
    for account in jsz.get("account_details", ()):
        for detail in account.get("stream_detail", ()):
            if detail.get("name") == stream:
                return int(detail["state"]["messages"])
    return 0
