"""`python -m bench BENCHMARK ...`: the benchmark command line.

Each benchmark module adds its own subcommand through `register`. An expected
failure ends with one line on stderr and exit code 2; Ctrl-C or SIGTERM stop
the run, shut down every process it started, and exit with 130.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from bench import ha, redis_store, sinks, snmp, syslog
from bench.procs import BenchError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    subparsers = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    syslog.register(subparsers)
    snmp.register(subparsers)
    ha.register(subparsers)
    redis_store.register(subparsers)
    sinks.register(subparsers)
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen benchmark, return the exit code."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    handler: Callable[[argparse.Namespace], int] = args.run
    try:
        return handler(args)
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; processes stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
