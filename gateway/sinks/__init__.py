"""Sinks: where forwarded events go, as JSON lines.

A sink's `write` returns only once the lines are handed to the OS, which is
the acknowledgement the pipeline waits for before it counts them as sent.
"""

from __future__ import annotations

import sys
from typing import BinaryIO, Protocol

from gateway.config import SinkConfig
from gateway.errors import SinkError
from gateway.metrics import Counters


class Sink(Protocol):
    """A destination of forwarded events."""

    counters: Counters

    async def write(self, lines: list[bytes]) -> None:
        """Write `lines` (each ending in a newline) or raise `SinkError`."""
        ...

    def close(self) -> None:
        """Flush and release the destination."""
        ...


class StreamSink:
    """JSON lines to a binary stream: stdout, or a file opened for append."""

    def __init__(self, name: str, stream: BinaryIO, owned: bool) -> None:
        self.counters = Counters(name, "sink")
        self._stream = stream
        self._owned = owned

    async def write(self, lines: list[bytes]) -> None:
        """Write and flush `lines`; an OS error becomes a `SinkError`."""
        self.counters.received += len(lines)
        try:
            self._stream.write(b"".join(lines))
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self.counters.errors["write"] += len(lines)
            raise SinkError(f"sink {self.counters.component}: {exc}") from None
        self.counters.sent += len(lines)

    def close(self) -> None:
        """Flush; close the stream if this sink opened it."""
        try:
            self._stream.flush()
            if self._owned:
                self._stream.close()
        except (OSError, ValueError):
            pass


def open_sink(config: SinkConfig) -> Sink:
    """The sink `config` names; a file that cannot be opened is a `SinkError`."""
    if config.type == "file":
        try:
            stream = open(config.path, "ab")  # noqa: SIM115 - closed by the sink
        except OSError as exc:
            raise SinkError(f"cannot open sink file {config.path}: {exc.strerror}") from None
        return StreamSink("file", stream, owned=True)
    return StreamSink("stdout", sys.stdout.buffer, owned=False)
