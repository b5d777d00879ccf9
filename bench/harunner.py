"""One measured run of a `Deployment`: every datagram to every node, counted over all outputs.

Strategy: as in `bench.runner`, each run starts fresh processes in a fresh
directory, and the CPU window opens just before the first datagram and
closes after the drain. Here the sender sends each numbered datagram to
every node, as a device with two trap destinations does, and the outputs
are counted as one: a number is forwarded when any node wrote it and
duplicated when the nodes wrote it more than once between them. The drain
ends when no output grew for `drain_idle` seconds and no node holds
anything back (an HA node's pending buffer, any node's pipeline queue), as
`/status` reports it; what the standby still holds then is recorded. CPU is
read per process (each gateway, each redis-server), and for the benchmark
itself and the whole host, because they all share the same cores; what
the host spent beyond the deployment and the benchmark (other processes,
kernel work charged to no process) is `other_cpu_pct`, a measure of noise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bench.cpu import CLK_TCK, host_cpu_ticks, peak_rss_kib, tree_cpu_seconds
from bench.hapair import Backlog, Deployment
from bench.netinfo import effective_rcvbuf, udp_socket_stats
from bench.outfile import OutputTailer, count_union
from bench.procs import BenchError
from bench.pyspy import Profile, top_functions
from bench.report import Record, percentile
from bench.runner import Load, Log
from bench.sender import send_paced

DeploymentFactory = Callable[[Path, int], Deployment]

_STATUS_EVERY = 0.25
KEPT_UP = 0.97
"""A run kept up when its throughput was at least this share of the rate offered: below it, the
backlog grew during the load and a longer load would have overflowed the buffers."""


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def wait_drained(
    deployment: Deployment, tailers: Sequence[OutputTailer], sent_until: float, load: Load
) -> tuple[bool, dict[str, Backlog], int]:
    """Wait until every output is idle and every node answers that it holds nothing back.

    Returns (drained, the last backlog read, how many `/status` reads went
    unanswered); drained is False when `load.drain_timeout` passed first.
    """
    unanswered = 0
    next_read = 0.0
    backlog: dict[str, Backlog] = {}
    while True:
        now = time.monotonic()
        if now >= next_read:
            backlog = deployment.backlog()
            unanswered += sum(1 for b in backlog.values() if not b.answered)
            now = time.monotonic()
            next_read = now + _STATUS_EVERY
        last = max([sent_until, *(t.last_growth or 0.0 for t in tailers)])
        if now - last >= load.drain_idle and all(b.empty for b in backlog.values()):
            return True, backlog, unanswered
        if now - sent_until >= load.drain_timeout:
            return False, backlog, unanswered
        deployment.check_alive()
        time.sleep(0.05)


def _node_figures(deployment: Deployment) -> tuple[Record, Record, Record]:
    """(flat per-node fields, counters by node, config by node), read after the drain.

    A node whose `/metrics` does not answer gets None for its counters
    rather than failing the run: what the outputs hold is counted anyway.
    """
    flat: Record = {}
    counters: Record = {}
    configs: Record = {}
    for node in deployment.nodes:
        n = node.node
        sock = udp_socket_stats(node.port, node.host)
        flat[f"kernel_drops_{n}"] = sock.drops if sock is not None else None
        flat[f"rcvbuf_effective_{n}"] = effective_rcvbuf(node.port)
        flat[f"rss_peak_kib_{n}"] = peak_rss_kib(node.process.pid)
        configs[n] = node.config_summary()
        try:
            got = node.counters()
        except BenchError:
            flat[f"received_{n}"] = None
            counters[n] = None
            continue
        flat[f"received_{n}"] = got.received
        reasons = got.extra.get("dropped_by_component_reason", {})
        flat[f"shed_{n}"] = reasons.get(f"{node.receiver}:shed", 0.0)
        if deployment.redis:
            flat[f"rescued_{n}"] = reasons.get("ha:rescued", 0.0)
        counters[n] = got.extra
    return flat, counters, configs


def _redis_figures(deployment: Deployment, before: Mapping[str, int]) -> Record:
    out: Record = {}
    figures = deployment.redis_figures()
    for server in deployment.redis:
        name = server.name
        out[f"{name}_commands"] = figures[f"{name}_commands"] - before[f"{name}_commands"]
        out[f"{name}_used_memory_peak"] = figures[f"{name}_used_memory_peak"]
    if len(deployment.redis) == 2:
        primary, replica = (s.name for s in deployment.redis)
        out["replication_lag_bytes"] = figures[f"{primary}_repl_offset"] - figures[f"{replica}_repl_offset"]
    return out


def _profiles(deployment: Deployment, workdir: Path, duration: float) -> dict[str, Profile]:
    profiles = {
        f"gateway_{node.node}": Profile(node.process.pid, workdir / f"pyspy-{node.node}.txt", duration)
        for node in deployment.nodes
    }
    for profile in profiles.values():
        profile.start()
    return profiles


def measure_deployment(
    system: str,
    factory: DeploymentFactory,
    load: Load,
    rcvbuf: int,
    run_index: int,
    *,
    keep: bool = False,
    profile: bool = False,
    log: Log | None = None,
) -> Record:
    """Start a fresh deployment, offer `load` to all its nodes, drain, stop it, count its outputs."""
    workdir = Path(tempfile.mkdtemp(prefix=f"trapgate-bench-ha-{system}-{run_index}-"))
    record: Record = {"system": system, "run": run_index, "offered_rate": load.rate}
    try:
        with factory(workdir, rcvbuf) as deployment:
            pids = deployment.processes()
            outputs = deployment.outputs
            tailers = [OutputTailer(path, load.probe_pattern) for path in outputs]
            for tailer in tailers:
                tailer.start()
            try:
                redis_before = deployment.redis_figures()
                profiles = _profiles(deployment, workdir, load.duration) if profile else {}
                host_before = host_cpu_ticks()
                own_before = os.times()
                cpu_before = _cpu(pids)
                thread_before = time.thread_time()
                sent = send_paced(
                    deployment.destinations,
                    load.rate,
                    load.duration,
                    load.render,
                    load.render_probe,
                    load.probe_every,
                )
                sender_cpu = time.thread_time() - thread_before
                after_send = deployment.backlog()
                drained, backlog, unanswered = wait_drained(deployment, tailers, sent.t_last, load)
                drain_seconds = time.monotonic() - sent.t_last
                cpu_after = _cpu(pids)
                own_after = os.times()
                host_after = host_cpu_ticks()
                record.update(_redis_figures(deployment, redis_before))
                flat, counters, configs = _node_figures(deployment)
                roles = deployment.roles()
                stacks = {name: p.finish() for name, p in profiles.items()}
            finally:
                for tailer in tailers:
                    tailer.stop()
        count = count_union(outputs, sent.attempted, load.seq_pattern)
    finally:
        if keep or profile:
            if log is not None:
                log(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    seen: dict[int, float] = {}
    for tailer in tailers:
        for seq, t in tailer.probe_seen.items():
            seen[seq] = min(t, seen.get(seq, t))
    latencies = [(seen[seq] - t_sent) * 1000.0 for seq, t_sent in sent.probe_times.items() if seq in seen]
    growth = [t.last_growth for t in tailers if t.last_growth is not None]
    window = max(growth) - sent.t_first if growth else 0.0
    forwarded = count.distinct
    lost = sent.attempted - forwarded
    throughput = forwarded / window if window > 0 else 0.0
    cpu = {name: cpu_after[name] - cpu_before[name] for name in pids}
    host_busy, host_total = (after - before for after, before in zip(host_after, host_before, strict=True))
    own_cpu = own_after.user + own_after.system - own_before.user - own_before.system

    def per_msg(seconds: float) -> float | None:
        return seconds * 1e6 / forwarded if forwarded else None

    record.update(
        {
            "achieved_rate": sent.achieved_rate,
            "send_seconds": sent.elapsed,
            "destinations": sent.destinations,
            "attempted": sent.attempted,
            "send_errors": sent.errors,
            "send_method": sent.method,
            "forwarded": forwarded,
            "lost": lost,
            "loss_pct": 100.0 * lost / sent.attempted if sent.attempted else None,
            "duplicated": count.doubled,
            "duplicate_lines": count.duplicates,
            "foreign_lines": count.unmatched_lines + count.out_of_range,
            **{
                f"output_lines_{n.node}": lines
                for n, lines in zip(deployment.nodes, count.lines_per_file, strict=True)
            },
            **flat,
            "throughput": throughput,
            "kept_up": throughput >= KEPT_UP * sent.achieved_rate,
            **{f"cpu_seconds_{name}": seconds for name, seconds in cpu.items()},
            **{f"cpu_us_per_msg_{name}": per_msg(seconds) for name, seconds in cpu.items()},
            "cpu_us_per_msg": per_msg(sum(cpu.values())),
            "sender_cpu_us_per_msg": per_msg(sender_cpu),
            "bench_cpu_us_per_msg": per_msg(own_cpu),
            "host_busy_pct": 100.0 * host_busy / host_total if host_total else None,
            "other_cpu_pct": (
                100.0 * (host_busy / CLK_TCK - sum(cpu.values()) - own_cpu) / (host_total / CLK_TCK)
                if host_total
                else None
            ),
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p99_ms": percentile(latencies, 99),
            "probes_sent": len(sent.probe_times),
            "probes_seen": len(latencies),
            "drained": drained,
            "drain_seconds": drain_seconds,
            "status_unanswered": unanswered + sum(1 for b in after_send.values() if not b.answered),
            **{f"pending_after_send_{n}": b.pending for n, b in after_send.items() if b.pending is not None},
            **{f"pending_final_{n}": b.pending for n, b in backlog.items() if b.pending is not None},
            "rcvbuf_requested": rcvbuf,
            "roles": roles,
            "target_counters": counters,
            "target_config": configs,
        }
    )
    if profile:
        record["profiles"] = {
            name: None if text is None else [vars(share) for share in top_functions(text)]
            for name, text in stacks.items()
        }
    return record
