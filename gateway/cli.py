"""The `trapgate` command: `run` and `check-config`.

Expected failures (a bad config, a busy port, an unwritable sink) end with
one line on stderr and exit code 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import uvloop

from formats import parser_names
from gateway.config import Config, SinkConfig, default_config, load_config
from gateway.errors import GatewayError
from gateway.node import serve

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="trapgate", description="Trap ingestion and dedup gateway.")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a node (embedded defaults without -c)")
    run.add_argument("-c", "--config", help="TOML config file")
    run.add_argument("--out", help="append forwarded events to FILE instead of stdout")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    return ap


def _config(path: str | None) -> Config:
    names = parser_names()
    return load_config(path, names) if path else default_config(names)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="trapgate: %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check-config":
            _config(args.file)
            print(f"trapgate: {args.file} is valid", file=sys.stderr)
            return 0
        config = _config(args.config)
        if args.out:
            config = dataclasses.replace(config, sink=SinkConfig(type="file", path=args.out))
        uvloop.run(serve(config))
    except GatewayError as exc:
        print(f"trapgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0
