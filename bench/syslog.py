"""`python -m bench syslog`: RFC 5424 over UDP into trapgate and its peers.

Every message is unique: MSG carries a zero-padded sequence number, so loss
and duplicates are counted exactly from each system's output file, and a
probe marker on every `--probe-every`-th message gives latency samples.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

from bench._cli import (
    add_common_arguments,
    common_notes,
    common_params,
    finish,
    paced_load,
    peer_list,
    positive,
    run_benchmark,
)
from bench.procs import BenchError
from bench.report import Record
from bench.rsyslog import Rsyslog
from bench.runner import Load, TargetFactory
from bench.targets import UdpTarget
from bench.trapgate import Trapgate, gateway_available

PEERS: dict[str, TargetFactory] = {"rsyslog": Rsyslog}


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


def syslog_load(args: argparse.Namespace) -> Load:
    """The load of --rate, --size and the common options: messages stamped now, from this process."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    normal, probe = message_templates(args.size, stamp, os.getpid())
    return paced_load(args, args.rate, normal.__mod__, probe.__mod__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `syslog` subcommand to the `python -m bench` parser."""
    parser = subparsers.add_parser(
        "syslog",
        help="RFC 5424 over UDP at a fixed rate into trapgate and peers",
        description=__doc__,
    )
    parser.add_argument(
        "--rate", type=positive(int), default=100_000, help="messages per second offered (default 100000)"
    )
    parser.add_argument(
        "--peers",
        type=peer_list(list(PEERS)),
        default=["rsyslog"],
        help="comma-separated peers, or 'none' (default rsyslog)",
    )
    parser.add_argument(
        "--size", type=positive(int), default=128, help="datagram size in bytes (default 128)"
    )
    add_common_arguments(parser, "message")
    parser.set_defaults(run=run)


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

    load = syslog_load(args)
    params: Record = {"rate": args.rate, **common_params(args, list(systems), len(load.render(0)))}
    loads = dict.fromkeys(systems, load)
    return finish(run_benchmark("syslog", args, systems, loads, params, common_notes(args)), args)
