"""Health checks of the controller's own node, each with a failure threshold.

A check is an async callable that returns True or raises/returns False; it
runs every `every` seconds and counts as failing only after `fail_after`
failures in a row (a single slow answer is not a failover).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.config import parse_address

Check = Callable[[], Awaitable[bool]]


class Checked:
    """One named check and its state."""

    def __init__(self, name: str, check: Check, every: float, fail_after: int) -> None:
        self.name = name
        self.check = check
        self.every = every
        self.fail_after = fail_after
        self.failures = 0
        self.ok = True  # until shown otherwise: a node starts healthy
        self.last_error = ""

    async def run(self) -> None:
        """Run the check once (it may take `every` at most) and update the verdict."""
        try:
            async with asyncio.timeout(self.every):
                passed = await self.check()
            self.last_error = "" if passed else "failed"
        except (TimeoutError, OSError, aiohttp.ClientError, RedisError) as exc:
            passed, self.last_error = False, type(exc).__name__
        self.failures = 0 if passed else self.failures + 1
        self.ok = self.failures < self.fail_after


def gateway_health(session: aiohttp.ClientSession, admin: str) -> Check:
    """The gateway answers 200 on /health."""

    async def check() -> bool:
        async with session.get(f"http://{admin}/health") as reply:
            return reply.status == 200

    return check


def redis_ping(url: str, must_be_primary: Callable[[], bool], seen: dict[str, object],
               **kwargs: object) -> Check:
    """The local Redis answers PING, and is a primary while `must_be_primary()` (this node is master).

    Its replication role and offset go into `seen`, for the status.
    """
    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, **kwargs)  # type: ignore[arg-type]

    async def check() -> bool:
        if not await client.ping():
            return False
        role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        kind = bytes(role[0]).decode()
        seen.update(role=kind, offset=int(role[1] if kind == "master" else role[4]),
                    replicas=len(role[2]) if kind == "master" else None,
                    link=bytes(role[3]).decode() if kind == "slave" else None)
        return not must_be_primary() or kind == "master"

    return check


def data_dir(path: Path, min_free_mb: int) -> Check:
    """The directory that holds the spool is writable and has `min_free_mb` free."""

    async def check() -> bool:
        return os.access(path, os.W_OK) and shutil.disk_usage(path).free >= min_free_mb * 1024 * 1024

    return check


def interfaces(names: Sequence[str]) -> Check:
    """Every named network interface is up and has an address (IPv4 or IPv6)."""

    async def check() -> bool:
        for name in names:
            state = Path(f"/sys/class/net/{name}/operstate")
            if not state.exists() or state.read_text().strip() not in ("up", "unknown"):
                return False
            if not has_address(name):
                return False
        return True

    return check


_SIOCGIFADDR = 0x8915


def has_address(name: str) -> bool:
    """Whether interface `name` has an IPv4 address (SIOCGIFADDR) or an IPv6 one (/proc/net/if_inet6)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            return True
        except OSError:
            pass
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[-1:] == [name] for line in lines)


def floating_ip(address: str) -> Check:
    """The floating address is on one of this host's interfaces."""

    async def check() -> bool:
        shown = await asyncio.to_thread(subprocess.run, ["ip", "-o", "addr", "show"], capture_output=True,
                                        text=True, timeout=2)
        return f" {address}/" in shown.stdout

    return check


async def reachable(address: str, timeout: float) -> bool:
    """A TCP connection to `address` (host:port) opens within `timeout`."""
    host, port = parse_address("controller.witnesses", address)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
