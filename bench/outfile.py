"""Watching and counting the output file of a receiver under test.

Every load carries `seq=NNNNNNNNNN kind=d` (or `kind=p` on a probe) in text
that trapgate (JSON lines) and the peers (raw lines, varbind lists) write
verbatim, so one pattern finds the sequence number in any output. The
tailer thread only looks for probes and file growth while the load runs;
the exact count of distinct and duplicated sequence numbers is taken after
the run, so it costs the sender nothing.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 8 * 1024 * 1024

SEQ_PATTERN = re.compile(rb"^[^\n]*?seq=(\d{10}) kind=", re.MULTILINE)
"""The sequence marker every benchmark load carries (`seq=NNNNNNNNNN kind=d|p`), once a line."""
PROBE_PATTERN = re.compile(rb"seq=(\d{10}) kind=p")
"""The same marker on a latency probe."""


class OutputTailer(threading.Thread):
    """Follows a growing file: line count, last growth time, first sight of probes.

    `probe` must capture the probe's sequence number in group 1. Times are
    taken with `clock` (monotonic) after each read; the resolution is the poll
    interval (about a millisecond) plus whatever buffering the writer does.
    """

    def __init__(
        self,
        path: Path,
        probe: re.Pattern[bytes],
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.001,
    ) -> None:
        super().__init__(name=f"tail:{path.name}", daemon=True)
        self.path = path
        self.probe = probe
        self.clock = clock
        self.poll = poll
        self.lines = 0
        self.last_growth: float | None = None
        self.probe_seen: dict[int, float] = {}
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Ask the thread to end and wait for it."""
        self._stop_event.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        """Thread body: poll the file until `stop` is called."""
        while not self.path.exists():
            if self._stop_event.wait(self.poll):
                return
        with self.path.open("rb") as handle:
            carry = b""
            while True:
                data = handle.read(_CHUNK)
                if not data:
                    if self._stop_event.wait(self.poll):
                        return
                    continue
                now = self.clock()
                self.last_growth = now
                data = carry + data
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                block = data[:cut]
                self.lines += block.count(b"\n")
                for match in self.probe.finditer(block):
                    self.probe_seen.setdefault(int(match.group(1)), now)


@dataclass(frozen=True)
class SeqCount:
    """What finished output files hold, counted by sequence number.

    `duplicates` counts matching lines beyond the first of their number;
    `doubled` counts the numbers found more than once. `lines_per_file`
    follows the order of the paths counted.
    """

    lines: int
    distinct: int
    duplicates: int
    out_of_range: int
    unmatched_lines: int
    doubled: int = 0
    lines_per_file: tuple[int, ...] = ()


def count_sequences(path: Path, total: int, seq_pattern: re.Pattern[bytes]) -> SeqCount:
    """Count the sequence numbers 0..total-1 found in `path`, one per line.

    `seq_pattern` is applied per line (it should be anchored to the line start
    with `^` under `re.MULTILINE`) and captures the number in group 1; only
    the first match of a line counts.
    """
    return count_union([path], total, seq_pattern)


def count_union(paths: Sequence[Path], total: int, seq_pattern: re.Pattern[bytes]) -> SeqCount:
    """`count_sequences` over several files at once: a number is distinct over their union.

    For the outputs of two nodes that both may forward: a number forwarded
    by each of them counts once in `distinct` and once in `duplicates`.
    """
    # Copies per number, saturating at 255.
    seen = bytearray(total)
    lines = distinct = duplicates = doubled = out_of_range = matched = 0
    per_file: list[int] = []
    for path in paths:
        file_lines = 0
        for block in _line_blocks(path):
            file_lines += block.count(b"\n")
            for number in seq_pattern.findall(block):
                matched += 1
                seq = int(number)
                if seq >= total:
                    out_of_range += 1
                    continue
                copies = seen[seq]
                if copies == 0:
                    distinct += 1
                else:
                    duplicates += 1
                    if copies == 1:
                        doubled += 1
                if copies < 255:
                    seen[seq] = copies + 1
        per_file.append(file_lines)
        lines += file_lines
    return SeqCount(
        lines=lines,
        distinct=distinct,
        duplicates=duplicates,
        out_of_range=out_of_range,
        unmatched_lines=lines - matched,
        doubled=doubled,
        lines_per_file=tuple(per_file),
    )


def _line_blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of whole lines; a last line without newline gets one."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        carry = b""
        while True:
            data = handle.read(_CHUNK)
            block = carry + data
            if data:
                cut = block.rfind(b"\n") + 1
                carry = block[cut:]
                block = block[:cut]
            elif block and not block.endswith(b"\n"):
                block += b"\n"
            if block:
                yield block
            if not data:
                return
