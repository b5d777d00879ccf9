"""The master's spool: what it claimed, on disk until marked forwarded.

Strategy: an append-only file of msgpack records. A batch record holds the
rescue encodings of the events about to be forwarded; an ack record names
the batch once the sink has it and the store marks it forwarded. A process
killed in between leaves batches without an ack: at the next start
`recover` returns their events, which the node puts on the rescue stream
for whichever node is master, and the file starts again empty. A write
reaches the page cache before the sink is asked, so it survives kill -9 of
the process; `fsync` makes it survive power loss too, at a cost per batch.
When every batch is acknowledged and the file is past `max_bytes`, it is
truncated, so its size stays bounded by the batches in flight.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack

_BATCH, _ACK = 0, 1


class Spool:
    """Batches of encoded events between claim and forwarded mark."""

    def __init__(self, path: str | Path, max_bytes: int = 64 * 1024 * 1024, fsync: bool = False) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the node's life
        self._next = 0
        self._open: set[int] = set()

    def recover(self) -> list[bytes]:
        """The events of batches never acknowledged (call `clear` once they are safe).

        A torn last record (the process died while writing it) is ignored:
        its batch had not reached the sink.
        """
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=0)
        with open(self.path, "rb") as f:
            unpacker.feed(f.read())
        batches: dict[int, list[bytes]] = {}
        try:
            for record in unpacker:
                kind, number, *rest = record
                if kind == _BATCH:
                    batches[number] = rest[0]
                elif kind == _ACK:
                    batches.pop(number, None)
        except (ValueError, msgpack.UnpackException):
            pass  # a torn or foreign tail: what came before it is kept
        return [entry for entries in batches.values() for entry in entries]

    def clear(self) -> None:
        """Start the file again empty."""
        self._file.truncate(0)
        self._file.seek(0)

    def append(self, entries: list[bytes]) -> int:
        """Write a batch record; returns its number for `ack`."""
        number = self._next
        self._next += 1
        self._write(self._pack([_BATCH, number, entries]))
        self._open.add(number)
        return number

    def ack(self, number: int) -> None:
        """Record that batch `number` is forwarded and marked."""
        self._open.discard(number)
        if not self._open and self._file.tell() > self.max_bytes:
            self.clear()
            return
        self._write(self._pack([_ACK, number]))

    def stats(self) -> dict[str, int]:
        """Batches not acknowledged yet, and the file's size."""
        return {"batches": len(self._open), "bytes": self._file.tell()}

    def _write(self, record: bytes) -> None:
        self._file.write(record)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        self._file.close()
