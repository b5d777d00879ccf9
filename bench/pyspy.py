"""py-spy on a gateway while the load runs: where its CPU goes, by function.

Strategy: `py-spy record --format raw` writes collapsed stacks (one line per
distinct stack and its sample count). It is attached to the gateway's pid
for the load's duration without pausing it (`--nonblocking`), samples
aggregated by function (`--nolineno`). py-spy leaves out samples of idle
threads, so the shares are of the time the process was busy in Python or
in C called from Python. Sampling costs the machine CPU of its own, so the
figures of a profiled run are disturbed and say where the time goes, not
how much there is.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.procs import ManagedProcess

SAMPLE_RATE = 100


def pyspy_available() -> bool:
    """Whether py-spy is on PATH."""
    return shutil.which("py-spy") is not None


class Profile:
    """`py-spy record` on `pid` for `duration` seconds into `path` (collapsed stacks)."""

    def __init__(self, pid: int, path: Path, duration: float) -> None:
        self.path = path
        self.duration = max(1, math.ceil(duration))
        argv = [
            "py-spy", "record", "--pid", str(pid), "--format", "raw", "--output", str(path),
            "--duration", str(self.duration), "--rate", str(SAMPLE_RATE), "--nonblocking", "--nolineno",
        ]  # fmt: skip
        self._process = ManagedProcess(f"py-spy {pid}", argv, path.with_suffix(".log"))

    def start(self) -> None:
        """Start sampling."""
        self._process.__enter__()

    def finish(self, timeout: float = 30.0) -> str | None:
        """Wait for py-spy to write its file; the collapsed stacks, or None when it failed."""
        code = self._process.wait(timeout)
        self._process.stop()
        if code != 0 or not self.path.exists():
            return None
        return self.path.read_text(errors="replace")


@dataclass(frozen=True)
class FunctionShare:
    """One function's share of the samples: in it (self) and under it (total), in percent."""

    function: str
    self_pct: float
    total_pct: float


def top_functions(collapsed: str, limit: int = 12) -> list[FunctionShare]:
    """The `limit` functions with the most samples of their own, from collapsed stacks.

    A line is ``frame;frame;...;leaf COUNT``; a function counts once per
    stack towards its total however often it recurs in it.
    """
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
    if samples == 0:
        return []
    return [
        FunctionShare(name, round(100 * n / samples, 1), round(100 * under[name] / samples, 1))
        for name, n in own.most_common(limit)
    ]
