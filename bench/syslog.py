"""`python -m bench syslog`: RFC 5424 over UDP into trapgate and its peers.

Every message is unique: MSG carries a zero-padded sequence number, so loss
and duplicates are counted exactly from each system's output file, and a
probe marker on every `--probe-every`-th message gives latency samples.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from bench.procs import BenchError
from bench.report import Record, build_report, human_summary
from bench.rsyslog import Rsyslog
from bench.runner import Load, TargetFactory, host_info, measure, run_alternating
from bench.targets import UdpTarget
from bench.trapgate import DEFAULT_COMMAND, Trapgate, gateway_available

PEERS: dict[str, TargetFactory] = {"rsyslog": Rsyslog}
PROBE_PATTERN = re.compile(rb"seq=(\d{10}) kind=p")
SEQ_PATTERN = re.compile(rb"^[^\n]*?seq=(\d{10}) kind=", re.MULTILINE)
MIN_SUSTAINED_SECONDS = 10.0


def message_templates(size: int, stamp: str, procid: int) -> tuple[bytes, bytes]:
    """(normal, probe) RFC 5424 templates with one `%010d` for the sequence number.

    Both render to `size` bytes when `size` exceeds the bare header and
    number; MSG is padded with dots to get there.
    """
    head = f"<134>1 {stamp} bench-host bench {procid} - - seq=".encode("ascii")
    normal = head + b"%010d kind=d"
    probe = head + b"%010d kind=p"
    bare = len(normal % 0)
    if size > bare + 1:
        filler = b" " + b"." * (size - bare - 1)
        normal += filler
        probe += filler
    return normal, probe


def _peers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    return names


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `syslog` subcommand to the `python -m bench` parser."""
    parser = subparsers.add_parser(
        "syslog",
        help="RFC 5424 over UDP at a fixed rate into trapgate and peers",
        description=__doc__,
    )
    parser.add_argument(
        "--rate", type=_positive(int), default=100_000, help="messages per second offered (default 100000)"
    )
    parser.add_argument(
        "--duration", type=_positive(float), default=10.0, help="seconds of load per run (default 10)"
    )
    parser.add_argument(
        "--runs", type=_positive(int), default=3, help="runs per system; medians are reported (default 3)"
    )
    parser.add_argument(
        "--peers", type=_peers, default=["rsyslog"], help="comma-separated peers, or 'none' (default rsyslog)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument(
        "--size", type=_positive(int), default=128, help="datagram size in bytes (default 128)"
    )
    parser.add_argument(
        "--rcvbuf",
        type=_positive(int),
        default=32 * 1024 * 1024,
        help="receive buffer asked for by every system (default 32 MiB)",
    )
    parser.add_argument(
        "--probe-every",
        type=_positive(int),
        default=1000,
        help="one latency probe per this many messages (default 1000)",
    )
    parser.add_argument(
        "--drain-idle",
        type=_positive(float),
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
    parser.set_defaults(run=run)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _progress(record: Record) -> str:
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


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by `args`; 0 on success."""
    systems: dict[str, TargetFactory] = {}
    if not args.skip_trapgate:
        if not gateway_available(args.trapgate_cmd):
            raise BenchError("gateway/__main__.py not found; use --skip-trapgate to measure the peers alone")
        command: str = args.trapgate_cmd

        def trapgate(workdir: Path, rcvbuf: int) -> UdpTarget:
            return Trapgate(workdir, rcvbuf, fmt="syslog", command=command)

        systems["trapgate"] = trapgate
    for name in args.peers:
        systems[name] = PEERS[name]
    if not systems:
        raise BenchError("nothing to measure: trapgate skipped and no peers")

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    normal, probe = message_templates(args.size, stamp, os.getpid())
    load = Load(
        rate=args.rate,
        duration=args.duration,
        render=normal.__mod__,
        render_probe=probe.__mod__,
        probe_pattern=PROBE_PATTERN,
        seq_pattern=SEQ_PATTERN,
        probe_every=args.probe_every,
        drain_idle=args.drain_idle,
        drain_timeout=max(60.0, 3 * args.duration),
    )
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

    def one(name: str, factory: TargetFactory, index: int) -> Record:
        _log(f"run {index}/{args.runs} {name}: {args.rate:,} msg/s for {args.duration:g} s")
        record = measure(name, factory, load, args.rcvbuf, index, keep=args.keep, log=_log)
        _log(_progress(record))
        return record

    records = run_alternating(systems, args.runs, one)
    slow = [r for r in records if r["achieved_rate"] < 0.97 * args.rate]
    if slow:
        notes.append(
            f"the sender held less than 97% of the asked rate in {len(slow)} run(s); "
            "achieved_rate is the rate really offered"
        )
    params: Record = {
        "rate": args.rate,
        "duration": args.duration,
        "runs": args.runs,
        "systems": list(systems),
        "size": len(normal % 0),
        "rcvbuf": args.rcvbuf,
        "probe_every": args.probe_every,
        "drain_idle": args.drain_idle,
    }
    report = build_report("syslog", params, host_info(), records, "trapgate", notes)
    _log("")
    _log(human_summary(report))
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=False))
    return 0
