"""Real redis-server processes on free loopback ports, for tests.

Every server runs from its own directory with persistence off (``--save ""
--appendonly no``), binds one loopback address (127.0.0.1 unless told, e.g.
127.0.0.2 for a second node) and never uses 6379. `RedisServer`
starts one (optionally as a replica), waits until it answers (and, for a
replica, until its link to the primary is up), promotes, stops or kills it.
`RedisClusterServers` starts masters with cluster mode on and joins them with
``redis-cli --cluster create``. Both are context managers that stop what they
started; a server the test process never stopped (it was killed, or crashed)
gets SIGTERM from the kernel when the thread that started it ends, so start
servers from the main thread (fixtures and tests run there).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import redis

from bench.procs import die_with_parent

HOST = "127.0.0.1"
# + 10000 stays below the ephemeral range for the cluster bus. TG_TEST_PORTS=LOW-HIGH gives a second
# pytest running at the same time (scripts/test.sh) ports of its own.
_low, _high = os.environ.get("TG_TEST_PORTS", "20000-30000").split("-")
_PORTS = range(int(_low), int(_high))


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


_HANDED_OUT: set[int] = set()  # never the same port twice in a run: two servers of a test would clash


def free_port(cluster_bus: bool = False, host: str = HOST) -> int:
    """A TCP port free on `host` (and, with `cluster_bus`, port + 10000 too), not handed out before."""
    for _ in range(200):
        port = random.choice(_PORTS)
        if port in _HANDED_OUT or port + 10000 in _HANDED_OUT:
            continue
        if port != 6379 and _bindable(port, host) and (not cluster_bus or _bindable(port + 10000, host)):
            _HANDED_OUT.update((port, port + 10000) if cluster_bus else (port,))
            return port
    raise RuntimeError("no free port")


def require_redis_server() -> None:
    """Raise RuntimeError when redis-server or redis-cli is not on PATH."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH")


class TlsFiles(NamedTuple):
    """PEM files: the CA that signed `cert`, and `cert`/`key` for a server or client."""

    ca: Path
    cert: Path
    key: Path


def write_tls_files(directory: Path, hosts: Sequence[str] = (HOST,)) -> TlsFiles:
    """A throwaway CA and a certificate for the IP addresses `hosts` signed by it, valid for a day.

    The same certificate serves as the server's and as the client's.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def signed(builder: x509.CertificateBuilder, serial: int) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        return (builder.serial_number(serial).not_valid_before(now - datetime.timedelta(minutes=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(ca_key, hashes.SHA256()))

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name("trapgate test CA")
    ca = signed(x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                .public_key(ca_key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True), 1)
    addresses = [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]
    cert = signed(x509.CertificateBuilder().subject_name(name(hosts[0])).issuer_name(ca.subject)
                  .public_key(key.public_key())
                  .add_extension(x509.SubjectAlternativeName(addresses), critical=False), 2)
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class RedisServer:
    """One redis-server process; `start` it, then `client`, `promote`, `stop` or `kill` it.

    `prefix` is put before the command (e.g. `ip netns exec NS`); `host` must then be
    an address this process can reach in that namespace.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        replicaof: RedisServer | None = None,
        password: str | None = None,
        args: Sequence[str] = (),
        cluster: bool = False,
        tls: TlsFiles | None = None,
        host: str = HOST,
        prefix: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.prefix = list(prefix)
        # A prefixed server (`ip netns exec NS`) runs in a namespace of its own where every port is
        # free; its port is only checked unused here.
        self._probe_host = HOST if prefix else host
        self.port = port if port is not None else free_port(cluster_bus=cluster, host=self._probe_host)
        self._fixed_port = port is not None
        self.dir = workdir / f"redis-{self.port}"
        self.replicaof = replicaof
        self.password = password
        self.args = list(args)
        self.cluster = cluster
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of this server, with the password when there is one."""
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        cmd = [
            *self.prefix, "redis-server", "--bind", self.host, "--dir", str(self.dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log",
            "--repl-diskless-sync-delay", "0",
        ]
        if self.tls is None:
            cmd += ["--port", str(self.port)]
        else:
            cmd += ["--port", "0", "--tls-port", str(self.port), "--tls-ca-cert-file", str(self.tls.ca),
                    "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
        if not ipaddress.ip_address(self.host).is_loopback:
            # Protected mode refuses clients from other hosts when there is no password; such a
            # server here listens inside a test's own network namespace only.
            cmd += ["--protected-mode", "no"]
        if self.password:
            cmd += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replicaof is not None:
            cmd += ["--replicaof", self.replicaof.host, str(self.replicaof.port)]
        if self.cluster:
            cmd += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000"]
        return cmd + self.args

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the process and wait until it answers PING (and a replica is in sync)."""
        for attempt in range(3):
            self.dir.mkdir(parents=True, exist_ok=True)
            # Config errors go to stderr before the log file is opened.
            with open(self.dir / "stderr.log", "ab") as stderr:
                self.proc = subprocess.Popen(self._command(), cwd=self.dir, stdout=subprocess.DEVNULL,
                                             stderr=stderr, preexec_fn=die_with_parent)
            try:
                self._wait_ready(timeout)
                break
            except RuntimeError:
                self.kill()
                if self._fixed_port or "Address already in use" not in self.log() or attempt == 2:
                    raise
                self.port = free_port(cluster_bus=self.cluster, host=self._probe_host)
                self.dir = self.dir.with_name(f"redis-{self.port}")
        if self.replicaof is not None:
            self.wait_replica_link(timeout)
        return self

    def log(self) -> str:
        """The server's stderr and log so far."""
        paths = (self.dir / "stderr.log", self.dir / "redis.log")
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with self.client(socket_timeout=1.0) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on {self.port} exited:\n{self.log()[-2000:]}")
                try:
                    if c.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} not ready:\n{self.log()[-2000:]}")
                time.sleep(0.02)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A synchronous client for this server (the caller closes it)."""
        if self.tls is not None:
            kwargs = {"ssl": True, "ssl_ca_certs": str(self.tls.ca), "ssl_certfile": str(self.tls.cert),
                      "ssl_keyfile": str(self.tls.key), **kwargs}
        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section`` as a dict."""
        with self.client() as c:
            return dict(c.info(section))

    def command_calls(self) -> dict[str, int]:
        """Calls per command so far, from ``INFO commandstats`` (lower-case names)."""
        stats = self.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def wait_replica_link(self, timeout: float = 10.0) -> None:
        """Wait until this replica reports ``master_link_status:up``."""
        deadline = time.monotonic() + timeout
        while self.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica on {self.port} never linked:\n{self.log()[-2000:]}")
            time.sleep(0.02)

    def replicate(self, primary: RedisServer, timeout: float = 10.0) -> None:
        """Make this server a replica of `primary` (REPLICAOF) and wait for the link."""
        self.replicaof = primary
        with self.client() as c:
            c.replicaof(primary.host, primary.port)
        self.wait_replica_link(timeout)

    def promote(self) -> None:
        """``REPLICAOF NO ONE``: this server becomes a primary."""
        with self.client() as c:
            c.replicaof("NO", "ONE")
        self.replicaof = None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait; SIGKILL when it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> RedisServer:
        return self.start() if self.proc is None else self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class RedisClusterServers:
    """`masters` cluster-enabled servers joined into one cluster, no replicas."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.servers = [RedisServer(workdir, cluster=True) for _ in range(masters)]

    @property
    def startup(self) -> tuple[str, int]:
        """Address of one node, enough for a cluster client to find the rest."""
        return HOST, self.servers[0].port

    def start(self, timeout: float = 20.0) -> RedisClusterServers:
        """Start the servers, assign all slots with redis-cli, wait for ``cluster_state:ok``."""
        try:
            for s in self.servers:
                s.start()
            addresses = [f"{HOST}:{s.port}" for s in self.servers]
            subprocess.run(["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
                           check=True, capture_output=True, timeout=timeout)
            deadline = time.monotonic() + timeout
            while not all(self._ok(s) for s in self.servers):
                if time.monotonic() > deadline:
                    raise RuntimeError("cluster never reached cluster_state:ok")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def _ok(self, server: RedisServer) -> bool:
        with server.client() as c:
            info = c.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text and f"cluster_known_nodes:{len(self.servers)}" in text

    def stop(self) -> None:
        """Stop every server."""
        for s in self.servers:
            s.stop()

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
