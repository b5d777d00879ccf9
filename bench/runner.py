"""Running a load against targets: one measured run, and runs alternating systems.

Strategy: each run gets a fresh directory and a fresh process, so no run
inherits another's buffers or dedup state. The CPU window opens just before
the first datagram and closes after the drain (no new output for
`drain_idle` seconds after the last send), so it holds the whole cost of
the load and almost nothing else. Throughput is distinct messages out
divided by the time from the first send to the last growth of the output.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.cpu import peak_rss_kib, tree_cpu_seconds
from bench.netinfo import effective_rcvbuf, rmem_settings, udp_socket_stats
from bench.outfile import OutputTailer, count_sequences
from bench.report import Record, percentile
from bench.sender import Render, send_paced
from bench.targets import UdpTarget

TargetFactory = Callable[[Path, int], UdpTarget]
Log = Callable[[str], None]
Factory = TypeVar("Factory")


@dataclass(frozen=True)
class Load:
    """A fixed-rate load of numbered datagrams and how to find them in outputs."""

    rate: float
    duration: float
    render: Render
    render_probe: Render
    probe_pattern: re.Pattern[bytes]
    seq_pattern: re.Pattern[bytes]
    probe_every: int = 1000
    drain_idle: float = 1.0
    drain_timeout: float = 60.0


def host_info() -> Record:
    """The host facts a reader needs to weigh the figures."""
    info: Record = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }
    info.update(rmem_settings())
    return info


def _wait_drained(tailer: OutputTailer, sent_until: float, load: Load, target: UdpTarget) -> bool:
    """Wait until the output is idle; False when the drain timed out."""
    while True:
        now = time.monotonic()
        last = max(tailer.last_growth or 0.0, sent_until)
        if now - last >= load.drain_idle:
            return True
        if now - sent_until >= load.drain_timeout:
            return False
        target.process.check_alive()
        time.sleep(0.05)


def measure(
    system: str,
    factory: TargetFactory,
    load: Load,
    rcvbuf: int,
    run_index: int,
    keep: bool = False,
    log: Log | None = None,
) -> Record:
    """Start a fresh `system`, offer `load`, drain, stop it and count its output."""
    workdir = Path(tempfile.mkdtemp(prefix=f"trapgate-bench-{system}-{run_index}-"))
    try:
        with factory(workdir, rcvbuf) as target:
            pid = target.process.pid
            tailer = OutputTailer(target.out_path, load.probe_pattern)
            tailer.start()
            try:
                cpu_before = tree_cpu_seconds(pid)
                sent = send_paced(
                    [(target.host, target.port)],
                    load.rate,
                    load.duration,
                    load.render,
                    load.render_probe,
                    load.probe_every,
                )
                drained = _wait_drained(tailer, sent.t_last, load, target)
                cpu = tree_cpu_seconds(pid) - cpu_before
                sock = udp_socket_stats(target.port, target.host)
                rb = effective_rcvbuf(target.port)
                rss = peak_rss_kib(pid)
                counters = target.counters()
                config = target.config_summary()
            finally:
                tailer.stop()
        count = count_sequences(target.out_path, sent.attempted, load.seq_pattern)
    finally:
        if keep:
            if log is not None:
                log(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    latencies = [
        (tailer.probe_seen[seq] - t_sent) * 1000.0
        for seq, t_sent in sent.probe_times.items()
        if seq in tailer.probe_seen
    ]
    window = (tailer.last_growth - sent.t_first) if tailer.last_growth is not None else 0.0
    forwarded = count.distinct
    lost = sent.sent - forwarded
    return {
        "system": system,
        "run": run_index,
        "offered_rate": load.rate,
        "achieved_rate": sent.achieved_rate,
        "send_seconds": sent.elapsed,
        "attempted": sent.attempted,
        "sent": sent.sent,
        "send_errors": sent.errors,
        "send_method": sent.method,
        "received": counters.received,
        "received_source": counters.source,
        "forwarded": forwarded,
        "output_lines": count.lines,
        "lost": lost,
        "loss_pct": 100.0 * lost / sent.sent if sent.sent else None,
        "duplicated": count.duplicates,
        "foreign_lines": count.unmatched_lines + count.out_of_range,
        "kernel_drops": sock.drops if sock is not None else None,
        "throughput": forwarded / window if window > 0 else 0.0,
        "cpu_seconds": cpu,
        "cpu_us_per_msg": cpu * 1e6 / forwarded if forwarded else None,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "probes_sent": len(sent.probe_times),
        "probes_seen": len(latencies),
        "rcvbuf_requested": rcvbuf,
        "rcvbuf_effective": rb,
        "rss_peak_kib": rss,
        "drained": drained,
        "target_counters": counters.extra,
        "target_config": config,
    }


def run_alternating(
    systems: Mapping[str, Factory],
    runs: int,
    one: Callable[[str, Factory, int], Record],
) -> list[Record]:
    """`runs` rounds, each measuring every system once, in the given order."""
    order: Sequence[str] = list(systems)
    records: list[Record] = []
    for index in range(1, runs + 1):
        for name in order:
            records.append(one(name, systems[name], index))
    return records
