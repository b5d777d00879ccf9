"""The `trapgate` command: `run` and `check-config`.

Expected failures (a bad config, a busy port, an unwritable sink) end with
one line on stderr and exit code 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import urllib.error
import urllib.request

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
    role = sub.add_parser("role", help="set the role of a node of an HA pair")
    role.add_argument("role", choices=["master", "standby"])
    role.add_argument("-c", "--config", help="the node's config (admin address and token)")
    role.add_argument("--admin", help="admin address host:port (default: from the config)")
    role.add_argument("--token", default=os.environ.get("TRAPGATE_TOKEN"), help="or TRAPGATE_TOKEN")
    role.add_argument("--lease", type=float,
                      help="a term: seconds the master role lasts unless given again (default: none)")
    return ap


def _set_role(args: argparse.Namespace) -> int:
    config = _config(args.config) if args.config else None
    admin = args.admin or (config.admin.address if config else "127.0.0.1:9180")
    token = args.token or (config.ha.token if config else "")
    body = json.dumps({"role": args.role, "lease": args.lease}).encode()
    request = urllib.request.Request(
        f"http://{admin}/role", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            print(reply.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            detail = json.loads(body).get("error", exc.reason)
        except (ValueError, AttributeError):
            detail = body.decode(errors="replace").strip().splitlines()[0] if body.strip() else exc.reason
        raise GatewayError(f"{admin}: {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GatewayError(f"cannot reach the admin API at {admin}: {reason}") from None
    return 0


def _config(path: str | None) -> Config:
    names = parser_names()
    return load_config(path, names) if path else default_config(names)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="trapgate: %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "role":
            return _set_role(args)
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
