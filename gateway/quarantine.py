"""Malformed input kept for inspection, with a size cap.

Each record is one JSON line: when, receiver, format, peer, reason, the error
text and the raw bytes (base64). When the file would pass half the cap it is
rotated to ``PATH.1`` (replacing the previous one), so the two files together
stay under `max_bytes`. A record larger than half the cap is counted but not
kept.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import orjson

from formats import Peer
from gateway._render import rfc3339
from gateway.metrics import Counters


class Quarantine:
    """Append-only quarantine file of rejected input."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.counters = Counters("quarantine", "quarantine")
        try:
            self._size = self.path.stat().st_size
        except FileNotFoundError:
            self._size = 0

    def put(
        self, receiver: str, fmt: str, peer: Peer, reason: str, error: str, raw: bytes
    ) -> None:
        """Record one rejected input; an I/O failure is counted, never raised."""
        self.counters.received += 1
        record = orjson.dumps(
            {
                "time": rfc3339(time.time()),
                "receiver": receiver,
                "format": fmt,
                "peer": f"{peer[0]}:{peer[1]}",
                "reason": reason,
                "error": error,
                "raw_b64": base64.b64encode(raw).decode(),
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        half = self.max_bytes // 2
        if len(record) > half:
            self.counters.dropped["too_large"] += 1
            return
        try:
            if self._size + len(record) > half:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self._size = 0
            with open(self.path, "ab") as f:
                f.write(record)
        except OSError as exc:
            self.counters.errors[exc.__class__.__name__] += 1
            return
        self._size += len(record)
        self.counters.sent += 1
