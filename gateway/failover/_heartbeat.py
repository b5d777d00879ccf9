"""Heartbeats between the two controllers: authenticated UDP datagrams, one per path and interval.

Strategy: a heartbeat is a JSON body followed by its HMAC-SHA256 under the
pair's shared key. The body names the sender, a boot id (random per process
start), a sequence number and the sender's wall time, and says what the
sender knows: role, epoch, priority, health. The same heartbeat goes out on
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


class Sealer:
    """Makes this node's heartbeats: one boot id, a growing sequence."""

    def __init__(self, key: bytes, node: str) -> None:
        self.key = key
        self.node = node
        self.boot = secrets.token_hex(8)
        self.seq = 0

    def seal(self, wall_time: float, **state: Any) -> bytes:
        """The next heartbeat datagram, with `state` (role, epoch, priority, healthy, isolated)."""
        self.seq += 1
        body = orjson.dumps({"node": self.node, "boot": self.boot, "seq": self.seq, "sent_at": wall_time,
                             **state})
        return body + hmac.new(self.key, body, hashlib.sha256).digest()


class Opener:
    """Checks heartbeats from the peer; remembers the last (boot, seq) it accepted on each path."""

    def __init__(self, key: bytes, node: str) -> None:
        self.key = key
        self.node = node
        self._last: dict[str, tuple[str, int]] = {}  # path -> (boot, seq)
        self.rejected: Counter[str] = Counter()

    def open(self, datagram: bytes, wall_time: float, path: str) -> Beat | None:
        """The heartbeat in `datagram`, or None (counted by reason) if it must change nothing."""
        body, mac = datagram[:-MAC_SIZE], datagram[-MAC_SIZE:]
        if len(datagram) <= MAC_SIZE or not hmac.compare_digest(
                mac, hmac.new(self.key, body, hashlib.sha256).digest()):
            self.rejected["bad_mac"] += 1
            return None
        try:
            beat = Beat(**orjson.loads(body))
        except (orjson.JSONDecodeError, TypeError):
            self.rejected["malformed"] += 1
            return None
        if beat.node == self.node:
            self.rejected["own"] += 1
            return None
        boot, seq = self._last.get(path, ("", 0))
        if beat.boot == boot:
            if beat.seq <= seq:
                self.rejected["replay"] += 1
                return None
        elif abs(beat.sent_at - wall_time) > MAX_CLOCK_SKEW:
            self.rejected["stale"] += 1
            return None
        self._last[path] = (beat.boot, beat.seq)
        return beat
