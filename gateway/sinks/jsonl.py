"""The `jsonl` sink: one JSON object a line, to stdout or to a file.

Strategy: a batch is one write of its joined lines and a flush, so `send`
returns once the lines are in the OS (the acknowledgement). A file can rotate
by size: past `max_bytes` it is renamed `PATH.1` (the older ones shift up to
`keep`) and a new one opened. `fsync` says when the data reaches the disk too:
`none` (the OS decides; a kill -9 loses nothing, a power loss may), `batch`
(before each send returns) or `interval` (at most `fsync_interval` seconds
after a send).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from gateway.errors import ConfigError, SinkError
from gateway.metrics import Counters, Latency
from gateway.sinks import SinkType
from gateway.spool import FSYNC_POLICIES

if TYPE_CHECKING:
    from gateway.config import SinkConfig
    from gateway.sinks import Outgoing


@dataclass(frozen=True)
class JsonlOptions:
    """The keys of a `jsonl` sink."""

    path: str = "-"  # "-": stdout
    max_bytes: int = 0  # rotate past this size (0: never)
    keep: int = 5  # rotated files kept
    fsync: str = "none"
    fsync_interval: float = 1.0

    def check(self, key: str) -> None:
        """Raise `ConfigError` for a value out of range."""
        if self.fsync not in FSYNC_POLICIES:
            raise ConfigError(f"{key}.fsync", f"{self.fsync!r} is not one of {', '.join(FSYNC_POLICIES)}")
        if self.max_bytes < 0 or self.keep < 1 or self.fsync_interval <= 0:
            raise ConfigError(key, "max_bytes must be 0 or more, keep at least 1, fsync_interval above 0")
        if self.path == "-" and self.max_bytes:
            raise ConfigError(f"{key}.max_bytes", "applies to a file, not to stdout")


class JsonlSink:
    """JSON lines to stdout or to a file opened for append (see the module docstring)."""

    def __init__(self, name: str, config: SinkConfig, options: JsonlOptions) -> None:
        self.counters = Counters(name, "sink", latency=Latency())
        self.options = options
        self._synced_at = 0.0
        self._stream: BinaryIO = sys.stdout.buffer if options.path == "-" else self._open()

    def _open(self) -> BinaryIO:
        try:
            return open(self.options.path, "ab")
        except OSError as exc:
            raise SinkError(f"cannot open sink file {self.options.path}: {exc.strerror}") from None

    async def start(self) -> None:
        """Nothing to connect."""

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """Write and flush the lines of `batch`; an OS error becomes a `SinkError`."""
        options = self.options
        try:
            stream = self._stream
            stream.write(b"".join([o.line for o in batch]))
            stream.flush()
            if options.fsync == "batch" or (
                options.fsync == "interval" and time.monotonic() - self._synced_at >= options.fsync_interval
            ):
                os.fsync(stream.fileno())
                self._synced_at = time.monotonic()
            if options.max_bytes and stream.tell() >= options.max_bytes:
                self._rotate()
        except (OSError, ValueError) as exc:
            raise SinkError(str(exc)) from None

    def _rotate(self) -> None:
        path, keep = self.options.path, self.options.keep
        self._stream.close()
        for n in range(keep - 1, 0, -1):
            if os.path.exists(f"{path}.{n}"):
                os.replace(f"{path}.{n}", f"{path}.{n + 1}")
        os.replace(path, f"{path}.1")
        self._stream = self._open()

    async def close(self) -> None:
        """Flush; close the file (stdout stays open)."""
        try:
            self._stream.flush()
            if self._stream is not sys.stdout.buffer:
                self._stream.close()
        except (OSError, ValueError):
            pass


SINK = SinkType(JsonlOptions, JsonlSink)
