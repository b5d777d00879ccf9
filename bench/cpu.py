"""CPU time of a process, as the kernel accounts it.

/proc/PID/stat carries utime and stime for the whole thread group: live
threads plus the ones already reaped. Child processes are added separately
(`tree_cpu_seconds`) because their time only reaches the parent's cutime
after they are waited for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that the benchmarks use."""

    pid: int
    ppid: int
    utime_ticks: int
    stime_ticks: int

    @property
    def cpu_seconds(self) -> float:
        """utime + stime in seconds."""
        return (self.utime_ticks + self.stime_ticks) / CLK_TCK


def parse_proc_stat(text: str) -> ProcStat:
    """Parse one /proc/PID/stat line (the command name may hold spaces and ')')."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    # After "comm)": state(3) ppid(4) ... utime(14) stime(15), counted from 1.
    fields = rest.split()
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        utime_ticks=int(fields[11]),
        stime_ticks=int(fields[12]),
    )


def read_proc_stat(pid: int) -> ProcStat | None:
    """The stat of `pid`, or None when it no longer exists."""
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and all its live descendants, in seconds."""
    stats: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_proc_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        stat = stats.get(current)
        if stat is not None:
            total += stat.cpu_seconds
        todo.extend(children.get(current, ()))
    return total


def peak_rss_kib(pid: int) -> int | None:
    """The peak resident set size (VmHWM) of `pid` in KiB, if readable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def parse_host_cpu(text: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat text.

    Busy is everything but idle and iowait.
    """
    for line in text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(v) for v in line.split()[1:]]
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            total = sum(ticks[:8])
            return total - ticks[3] - ticks[4], total
    raise ValueError("no aggregate cpu line in /proc/stat")


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole host since boot, over all CPUs."""
    return parse_host_cpu(Path("/proc/stat").read_text())


def host_busy_pct(seconds: float, sleep: Callable[[float], None] = time.sleep) -> float:
    """The share of all CPUs busy over the next `seconds`, in percent."""
    busy0, total0 = host_cpu_ticks()
    sleep(seconds)
    busy1, total1 = host_cpu_ticks()
    return 100.0 * (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet_host(max_busy_pct: float, timeout: float, sample: float = 2.0) -> float:
    """Wait until the host is busy below `max_busy_pct` over `sample` seconds, at most `timeout`.

    Returns the last share measured (above the limit when the wait timed out).
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = host_busy_pct(sample)
        if busy < max_busy_pct or time.monotonic() >= deadline:
            return busy
