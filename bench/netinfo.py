"""Socket buffer settings and per-socket kernel counters for UDP receivers.

The same figures are read for trapgate and for every peer: what the host
allows (net.core.rmem_max / rmem_default), what the receiving socket really
got (the `rb` of `ss -m`, which the kernel reports doubled from the value
asked for) and how many datagrams the kernel dropped on it (the `drops`
column of /proc/net/udp).
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SYSCTL = Path("/proc/sys/net/core")
_SS_RB = re.compile(r"skmem:\([^)]*\brb(\d+)")


def rmem_settings() -> dict[str, int]:
    """net.core.rmem_max and net.core.rmem_default of this host, in bytes."""
    result: dict[str, int] = {}
    for name in ("rmem_max", "rmem_default"):
        try:
            result[name] = int((_SYSCTL / name).read_text())
        except (OSError, ValueError):
            result[name] = -1
    return result


@dataclass(frozen=True)
class UdpSocketStats:
    """One bound UDP socket as /proc/net/udp shows it."""

    address: str
    port: int
    rx_queue_bytes: int
    drops: int


def _hex_ipv4(text: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(text, 16)))


def parse_proc_net_udp(text: str, port: int, address: str = "127.0.0.1") -> UdpSocketStats | None:
    """The socket bound to `address:port` in /proc/net/udp text, if present.

    A socket bound to 0.0.0.0 on `port` also matches.
    """
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        local_hex, port_hex = fields[1].split(":")
        if int(port_hex, 16) != port:
            continue
        local = _hex_ipv4(local_hex)
        if local not in (address, "0.0.0.0"):
            continue
        return UdpSocketStats(
            address=local,
            port=port,
            rx_queue_bytes=int(fields[4].split(":")[1], 16),
            drops=int(fields[-1]),
        )
    return None


def udp_socket_stats(port: int, address: str = "127.0.0.1") -> UdpSocketStats | None:
    """Kernel counters of the UDP socket bound to `address:port`, if any."""
    return parse_proc_net_udp(Path("/proc/net/udp").read_text(), port, address)


def parse_ss_rcvbuf(text: str) -> int | None:
    """The effective receive buffer (`rb` in skmem) from `ss -uanm` output."""
    match = _SS_RB.search(text)
    return int(match.group(1)) if match else None


def effective_rcvbuf(port: int) -> int | None:
    """The receive buffer the kernel granted the UDP socket on `port`, in bytes.

    None when `ss` is missing or shows no such socket.
    """
    try:
        out = subprocess.run(
            ["ss", "-uanmH", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_ss_rcvbuf(out)
