"""Heartbeats between the two controllers: authenticated UDP datagrams, one per path and interval.

Strategy: a heartbeat is a JSON body followed by its HMAC-SHA256 under the
pair's shared key. The body names the sender, a boot id (random per process
start), a sequence number and the sender's wall time, and says what the
sender knows: role, epoch, priority, health, and the newest heartbeat it has
received from the other node (its boot and sequence: the acknowledgement that
bounds a master's term). The same heartbeat goes out on
every path. A receiver drops a datagram whose MAC does not verify, one from
itself, one whose sequence is not above the last seen on that path for that
boot (a replay), and one from a new boot whose time is far from its own clock
(an old boot's packets, replayed). Dropped datagrams change nothing but a
counter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

MAC_SIZE = 32
MAX_CLOCK_SKEW = 30.0  # seconds a new boot's first heartbeat may be off this host's clock


@dataclass(frozen=True)
class Beat:
    """What one heartbeat says."""

    node: str
    boot: str
    seq: int
    sent_at: float  # the sender's wall time
    role: str  # the sender's gateway: master, standby, unknown
    epoch: int
    priority: int
    healthy: bool
    isolated: bool
    lease: float | None = None  # seconds left of the sender's gateway's lease (None: not master)
    # The newest heartbeat the sender has received from the receiver: its boot and seq (see
    # `Controller.term_allowed`: a master's term ends before its peer could count it dead).
    acked_boot: str = ""
    acked: int = 0


def seal(key: bytes, fields: dict[str, Any]) -> bytes:
    """`fields` as a JSON body followed by its HMAC-SHA256 under `key`."""
    body = orjson.dumps(fields)
    return body + hmac.new(key, body, hashlib.sha256).digest()


def open_sealed(key: bytes, datagram: bytes) -> dict[str, Any] | None:
    """The fields of a sealed datagram whose MAC verifies under `key` (None otherwise)."""
    body, mac = datagram[:-MAC_SIZE], datagram[-MAC_SIZE:]
    expected = hmac.new(key, body, hashlib.sha256).digest()
    if len(datagram) <= MAC_SIZE or not hmac.compare_digest(mac, expected):
        return None
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return fields if isinstance(fields, dict) else None


class Sealer:
    """Makes this node's heartbeats (and vote requests): one boot id, a growing sequence."""

    def __init__(self, key: bytes, node: str) -> None:
        self.key = key
        self.node = node
        self.boot = secrets.token_hex(8)
        self.seq = 0

    def seal(self, wall_time: float, **state: Any) -> bytes:
        """The next datagram, carrying `state` (for a heartbeat: role, epoch, priority, healthy, isolated)."""
        self.seq += 1
        return seal(self.key, {"node": self.node, "boot": self.boot, "seq": self.seq, "sent_at": wall_time,
                               **state})


class Opener:
    """Checks sealed datagrams from other nodes; remembers the last (boot, seq) per path and sender."""

    def __init__(self, key: bytes, node: str) -> None:
        self.key = key
        self.node = node
        self._last: dict[tuple[str, str], tuple[str, int]] = {}  # (path, sender) -> (boot, seq)
        self.rejected: Counter[str] = Counter()

    def open(self, datagram: bytes, wall_time: float, path: str) -> Beat | None:
        """The heartbeat in `datagram`, or None (counted by reason) if it must change nothing."""
        fields = self.open_fields(datagram, wall_time, path)
        if fields is None:
            return None
        try:
            return Beat(**fields)
        except TypeError:
            self.rejected["malformed"] += 1
            return None

    def open_fields(self, datagram: bytes, wall_time: float, path: str) -> dict[str, Any] | None:
        """The fields of a sealed datagram from another node, checked as the module docstring says."""
        fields = open_sealed(self.key, datagram)
        if fields is None:
            self.rejected["bad_mac"] += 1
            return None
        try:
            node, boot, seq = str(fields["node"]), str(fields["boot"]), int(fields["seq"])
            sent_at = float(fields["sent_at"])
        except (KeyError, TypeError, ValueError):
            self.rejected["malformed"] += 1
            return None
        if node == self.node:
            self.rejected["own"] += 1
            return None
        last_boot, last_seq = self._last.get((path, node), ("", 0))
        if boot == last_boot:
            if seq <= last_seq:
                self.rejected["replay"] += 1
                return None
        elif abs(sent_at - wall_time) > MAX_CLOCK_SKEW:
            self.rejected["stale"] += 1
            return None
        self._last[(path, node)] = (boot, seq)
        return fields
