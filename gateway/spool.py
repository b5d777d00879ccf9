"""The spool: what a master claimed, on disk until every sink took it (and it is marked forwarded).

Strategy: append-only segment files (`<path>.<n>`) of checksummed records. A
batch record holds the rescue encodings of the events about to be forwarded;
an ack record names the batch once every sink has it (and, in a pair, the
store marks it forwarded); a done record names a batch and one sink that is
done with it, so that a restart sends it again only to the others. A record is
a magic, its length and the CRC32 of its msgpack payload, so a torn tail (the
process died while writing) and a damaged record are both detected: each is
counted and skipped, the records after a damaged one are found again by their
magic, and a start never fails on what it reads. A process killed between a
batch and its ack leaves the batch unacknowledged: at the next start `recover`
returns its events, which the node hands on (a pair's master: to the rescue
stream for whichever node is master; a single node: to its sinks again, under
the same ids), and those segments are removed. A write reaches the page cache
before the sink is asked, so it survives kill -9 of the process; the fsync
policy makes it survive power loss too: `batch` syncs every record, `interval`
at most every `fsync_interval` seconds (and from `sync_if_due`, which the node
calls while idle), `none` leaves it to the kernel. A new segment begins once
the current one passes `segment_bytes`; a segment whose batches are all
acknowledged is deleted, so the disk holds about the batches in flight and
what a sink that is down has not taken yet.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack

FSYNC_POLICIES = ("none", "batch", "interval")

_BATCH, _ACK, _DONE = 0, 1, 2
_MAGIC = b"\xa7\x5e"
_HEADER = struct.Struct(">2sII")  # magic, payload length, CRC32 of the payload
_MAX_RECORD = 1 << 30


class Spool:
    """Batches of encoded events between claim and forwarded mark (see the module docstring)."""

    def __init__(self, path: str | Path, segment_bytes: int = 8 * 1024 * 1024, fsync: str = "none",
                 fsync_interval: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {fsync!r}")
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.monotonic = monotonic
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self.damaged = 0  # records found torn or corrupt by `recover`
        self._open: dict[int, tuple[int, float]] = {}  # batch -> (its segment, when it was written)
        self._batches_in: dict[int, int] = {}  # segment -> its batches not acknowledged
        self._synced_at = monotonic()
        self._unsynced = False
        numbers = self._segment_numbers()
        self._segment = numbers[-1] + 1 if numbers else 1
        # Batch numbers never repeat across runs (an ack must not name a kept batch of another run).
        self._next = self._segment << 32
        self._file = open(self._segment_path(self._segment), "ab")  # noqa: SIM115 - kept open until it rotates
        self._sizes: dict[int, int] = {n: self._segment_path(n).stat().st_size for n in numbers}
        self._kept = set(numbers)  # previous runs' segments: only `release_kept` removes them

    # -- reading at start -------------------------------------------------------

    def recover(self) -> list[bytes]:
        """The events of batches never acknowledged, oldest first (call `release_kept` once those
        of previous runs are safe).

        Torn and corrupt records are skipped and counted in `damaged`; what
        the file of a previous version (one msgpack file at `path`) kept is
        read too.
        """
        return [entry for _, entries, _ in self.recover_batches() for entry in entries]

    def recover_batches(self) -> list[tuple[int | None, list[bytes], frozenset[str]]]:
        """(number, events, sinks done with it) of each batch never acknowledged, oldest first;
        number None for a previous version's file (see `recover`)."""
        batches: dict[int, list[bytes]] = {}
        done: dict[int, set[str]] = {}
        for segment in self._segment_numbers():
            for record in self._records(self._segment_path(segment).read_bytes()):
                kind, number, *rest = record
                if not isinstance(number, int):
                    self.damaged += 1
                elif kind == _BATCH and rest and isinstance(rest[0], list):
                    batches[number] = rest[0]
                elif kind == _ACK:
                    batches.pop(number, None)
                elif kind == _DONE and rest and isinstance(rest[0], str):
                    done.setdefault(number, set()).add(rest[0])
        legacy = self._legacy()
        return [*([(None, legacy, frozenset())] if legacy else []),
                *((n, entries, frozenset(done.get(n, ()))) for n, entries in batches.items())]

    def _records(self, data: bytes) -> Iterator[list[object]]:
        """The well-formed records of one segment; what is torn or corrupt is counted and skipped."""
        at, end = 0, len(data)
        while at < end:
            record = self._record_at(data, at)
            if record is None:
                self.damaged += 1
                found = data.find(_MAGIC, at + 1)
                at = end if found < 0 else found
                continue
            payload, at = record
            try:
                value = msgpack.unpackb(payload, raw=False)
            except (ValueError, msgpack.UnpackException):
                self.damaged += 1
                continue
            if isinstance(value, list) and len(value) >= 2 and value[0] in (_BATCH, _ACK, _DONE):
                yield value
            else:
                self.damaged += 1

    @staticmethod
    def _record_at(data: bytes, at: int) -> tuple[bytes, int] | None:
        """(payload, offset after the record) for a record that verifies at `at`, else None."""
        if len(data) - at < _HEADER.size:
            return None
        magic, size, crc = _HEADER.unpack_from(data, at)
        start = at + _HEADER.size
        if magic != _MAGIC or size > _MAX_RECORD or start + size > len(data):
            return None
        payload = data[start : start + size]
        return (payload, start + size) if zlib.crc32(payload) == crc else None

    def _legacy(self) -> list[bytes]:
        """Unacknowledged batches in a spool file of a previous version (plain msgpack records)."""
        if not self.path.is_file():
            return []
        batches: dict[int, list[bytes]] = {}
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=0)
        unpacker.feed(self.path.read_bytes())
        try:
            for record in unpacker:
                kind, number, *rest = record
                if kind == _BATCH:
                    batches[number] = rest[0]
                elif kind == _ACK:
                    batches.pop(number, None)
        except (ValueError, TypeError, msgpack.UnpackException):
            self.damaged += 1  # a torn or foreign tail: what came before it is kept
        return [entry for entries in batches.values() for entry in entries]

    def release_kept(self) -> None:
        """Forget what previous runs kept (their segments, a previous version's file): what
        `recover` returned of them is safe now. This run's batches stay."""
        for segment in self._kept:
            self._segment_path(segment).unlink(missing_ok=True)
            self._sizes.pop(segment, None)
        self._kept.clear()
        if self.path.is_file():
            self.path.unlink()

    # -- writing ----------------------------------------------------------------

    def append(self, entries: list[bytes]) -> int:
        """Write a batch record; returns its number for `ack`."""
        number = self._next
        self._next += 1
        self._write(self._pack([_BATCH, number, entries]))
        segment = self._segment
        self._open[number] = (segment, self.monotonic())
        self._batches_in[segment] = self._batches_in.get(segment, 0) + 1
        return number

    def done(self, number: int, sink: str) -> None:
        """Record that `sink` is done with batch `number` (the others may not be yet)."""
        self._write(self._pack([_DONE, number, sink]))

    def ack(self, number: int) -> None:
        """Record that batch `number` is forwarded and marked; drop segments with nothing open."""
        segment, _ = self._open.pop(number, (None, 0.0))
        self._write(self._pack([_ACK, number]))
        if segment is not None:
            left = self._batches_in[segment] - 1
            if left:
                self._batches_in[segment] = left
            else:
                del self._batches_in[segment]
        if self._sizes.get(self._segment, 0) >= self.segment_bytes:
            self._rotate()
        # A segment before every open batch's holds acknowledged batches, and acks of batches in
        # segments older still: nothing in it is needed any more.
        needed_from = min(self._batches_in, default=self._segment)
        for old in [n for n in self._sizes if n < needed_from and n not in self._kept]:
            self._segment_path(old).unlink(missing_ok=True)
            del self._sizes[old]

    def sync_if_due(self) -> None:
        """With the `interval` policy: fsync what was written more than `fsync_interval` ago."""
        if self._unsynced and self.monotonic() - self._synced_at >= self.fsync_interval:
            self._sync()

    def stats(self) -> dict[str, float]:
        """Batches not acknowledged, bytes on disk, age of the oldest open batch, damaged records."""
        oldest = min((at for _, at in self._open.values()), default=None)
        return {
            "batches": len(self._open),
            "bytes": sum(self._sizes.values()),
            "segments": len(self._sizes),
            "oldest_seconds": 0.0 if oldest is None else self.monotonic() - oldest,
            "damaged_records": self.damaged,
        }

    def close(self) -> None:
        """Close the file (synced first unless the policy is `none`)."""
        if self._unsynced and self.fsync != "none":
            self._sync()
        self._file.close()

    def _write(self, payload: bytes) -> None:
        record = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload
        self._file.write(record)
        self._file.flush()
        self._sizes[self._segment] = self._sizes.get(self._segment, 0) + len(record)
        self._unsynced = True
        if self.fsync == "batch":
            self._sync()
        elif self.fsync == "interval":
            self.sync_if_due()

    def _sync(self) -> None:
        os.fsync(self._file.fileno())
        self._synced_at, self._unsynced = self.monotonic(), False

    def _rotate(self) -> None:
        if self._unsynced and self.fsync != "none":
            self._sync()
        self._file.close()
        self._segment += 1
        self._file = open(self._segment_path(self._segment), "ab")  # noqa: SIM115
        self._sizes[self._segment] = 0

    def _segment_path(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _segment_numbers(self) -> list[int]:
        prefix = f"{self.path.name}."
        numbers = []
        for entry in self.path.parent.glob(f"{self.path.name}.*"):
            suffix = entry.name[len(prefix):]
            if suffix.isdigit():
                numbers.append(int(suffix))
        return sorted(numbers)
