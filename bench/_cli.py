"""What every benchmark subcommand shares: options, progress lines, the run loop.

A benchmark module declares its own options (rate default, peers, load
shape) and builds its systems and loads; `run_benchmark` then measures them
in alternating runs, prints progress on stderr and the summary, and returns
the report that `--json` prints on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence

from bench.outfile import PROBE_PATTERN, SEQ_PATTERN
from bench.report import RUN_COLUMNS, Record, build_report, human_summary
from bench.runner import Load, TargetFactory, host_info, measure, run_alternating
from bench.sender import Render
from bench.trapgate import DEFAULT_COMMAND

MIN_SUSTAINED_SECONDS = 10.0


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: `kind(text)`, which must be greater than 0."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def peer_list(known: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names out of `known`, or 'none'."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        return names

    return parse


def add_common_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """The options every benchmark takes besides --rate and --peers; `unit` names a message."""
    parser.add_argument(
        "--duration", type=positive(float), default=10.0, help="seconds of load per run (default 10)"
    )
    parser.add_argument(
        "--runs", type=positive(int), default=3, help="runs per system; medians are reported (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument(
        "--rcvbuf",
        type=positive(int),
        default=32 * 1024 * 1024,
        help="receive buffer asked for by every system (default 32 MiB)",
    )
    parser.add_argument(
        "--probe-every",
        type=positive(int),
        default=1000,
        help=f"one latency probe per this many {unit}s (default 1000)",
    )
    parser.add_argument(
        "--drain-idle",
        type=positive(float),
        default=1.0,
        help="output idle this long after the last send ends a run (default 1 s)",
    )
    parser.add_argument(
        "--trapgate-cmd",
        default=DEFAULT_COMMAND,
        help="command that starts the gateway, before 'run -c ...' (default: python -m gateway)",
    )
    parser.add_argument("--skip-trapgate", action="store_true", help="measure the peers alone")
    parser.add_argument(
        "--keep", action="store_true", help="keep each run's directory (configs, outputs, logs)"
    )


def paced_load(args: argparse.Namespace, rate: int, render: Render, render_probe: Render) -> Load:
    """`rate` datagrams a second for --duration, a probe every --probe-every, drained per --drain-idle.

    The datagrams carry `seq=NNNNNNNNNN kind=d` (`kind=p` for a probe); the
    drain gives up after three times the duration, one minute at least.
    """
    return Load(
        rate=rate,
        duration=args.duration,
        render=render,
        render_probe=render_probe,
        probe_pattern=PROBE_PATTERN,
        seq_pattern=SEQ_PATTERN,
        probe_every=args.probe_every,
        drain_idle=args.drain_idle,
        drain_timeout=max(60.0, 3 * args.duration),
    )


def common_params(args: argparse.Namespace, systems: Sequence[str], size: int) -> Record:
    """The report's parameters from the common options; a benchmark puts its own (rate, ...) first."""
    return {
        "duration": args.duration,
        "runs": args.runs,
        "systems": list(systems),
        "size": size,
        "rcvbuf": args.rcvbuf,
        "probe_every": args.probe_every,
        "drain_idle": args.drain_idle,
    }


def log(text: str) -> None:
    """A progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


def progress(record: Record) -> str:
    """One run's figures on one line."""

    def num(field: str, fmt: str) -> str:
        value = record.get(field)
        return "-" if value is None else format(value, fmt)

    return (
        f"  sent {num('sent', ',')} at {num('achieved_rate', ',.0f')}/s; "
        f"received {num('received', ',')}, forwarded {num('forwarded', ',')}, "
        f"lost {num('lost', ',')}, dup {num('duplicated', ',')}, kernel drops {num('kernel_drops', ',')}; "
        f"{num('throughput', ',.0f')} msg/s, {num('cpu_us_per_msg', '.2f')} µs CPU/msg, "
        f"p50 {num('latency_p50_ms', '.1f')} ms, p99 {num('latency_p99_ms', '.1f')} ms"
        + ("" if record.get("drained") else " (DRAIN TIMED OUT)")
    )


def common_notes(args: argparse.Namespace) -> list[str]:
    """The notes every report carries: how latency, CPU and buffers were read."""
    notes = [
        f"latency: one probe per {args.probe_every} messages, seen by polling the output file "
        "every ~1 ms; resolution about 1 ms plus the writer's own output buffering",
        "CPU: utime+stime of the receiver process and its children (/proc/PID/stat, all threads) "
        "from the first send to the end of the drain; on loopback the kernel path up to the "
        "socket queue is paid by the sender, alike for every system",
        "rcvbuf_effective is what the kernel reports for the socket (ss -m rb), i.e. twice the value set",
    ]
    if args.duration < MIN_SUSTAINED_SECONDS:
        notes.append(
            f"duration {args.duration:g} s is below {MIN_SUSTAINED_SECONDS:g} s: not a sustained-rate figure"
        )
    return notes


def run_benchmark(
    benchmark: str,
    args: argparse.Namespace,
    systems: Mapping[str, TargetFactory],
    loads: Mapping[str, Load],
    params: Record,
    notes: list[str],
) -> Record:
    """Measure every system `args.runs` times, alternating, each with its own load.

    Prints progress and the summary on stderr and returns the report.
    """

    def one(name: str, factory: TargetFactory, index: int) -> Record:
        load = loads[name]
        log(f"run {index}/{args.runs} {name}: {load.rate:,} msg/s for {load.duration:g} s")
        record = measure(name, factory, load, args.rcvbuf, index, keep=args.keep, log=log)
        log(progress(record))
        return record

    records = run_alternating(systems, args.runs, one)
    slow = [r for r in records if r["achieved_rate"] < 0.97 * r["offered_rate"]]
    if slow:
        notes.append(
            f"the sender held less than 97% of the asked rate in {len(slow)} run(s); "
            "achieved_rate is the rate really offered"
        )
    return build_report(benchmark, params, host_info(), records, "trapgate", notes)


def finish(report: Record, args: argparse.Namespace, columns: Sequence[tuple[str, str]] = RUN_COLUMNS) -> int:
    """Print the summary (stderr, tables of `columns`) and, with --json, the report (stdout); exit code 0."""
    log("")
    log(human_summary(report, columns))
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=False))
    return 0
