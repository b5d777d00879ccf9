"""The `trapgate` command: `run`, `check-config`, `role`, and for a pair `controller`, `status`, `failback`.

Expected failures (a bad config, a busy port, an unwritable sink) end with
one line on stderr and exit code 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import urllib.error
import urllib.request

import uvloop

from formats import parser_names
from gateway.config import (
    Config,
    default_config,
    jsonl_sink,
    load_config,
    parse_address,
    validate_for_controller,
)
from gateway.errors import GatewayError
from gateway.failover.arbiter import run_arbiter
from gateway.failover.controller import run_controller
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
    controller = sub.add_parser("controller", help="run the failover controller of a node of an HA pair")
    controller.add_argument("-c", "--config", required=True, help="the node's config ([controller] table)")
    status = sub.add_parser("status", help="show both nodes of a pair: role, epoch, lease, paths, health")
    status.add_argument("-c", "--config", required=True, help="the node's config")
    status.add_argument("--json", action="store_true", help="print JSON")
    witness = sub.add_parser("witness", help="run the arbiter of a pair on a third host (master vote)")
    witness.add_argument("--listen", required=True, help="UDP host:port to answer vote requests on")
    witness.add_argument("--key", default=os.environ.get("TRAPGATE_WITNESS_KEY"),
                         help="the pair's controller.key (or TRAPGATE_WITNESS_KEY)")
    witness.add_argument("--vote-lease", type=float, default=2.0,
                         help="seconds a vote lasts without renewal (the pairs' controller.vote_lease)")
    failback = sub.add_parser("failback", help="after a repair: rejoin as standby, or take the role back")
    failback.add_argument("-c", "--config", required=True, help="the repaired node's config")
    failback.add_argument("--switch-back", action="store_true",
                          help="hand the master role back to this node online (no loss, no duplicate)")
    return ap


def _call(address: str, path: str, token: str, body: dict[str, object] | None = None,
          timeout: float = 60.0) -> dict[str, object]:
    """One admin API call; an unreachable API or an HTTP error is a one-line `GatewayError`."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{address}{path}", data=data, method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            detail = json.loads(raw).get("error", exc.reason)
        except (ValueError, AttributeError):
            detail = raw.decode(errors="replace").strip().splitlines()[0] if raw.strip() else exc.reason
        raise GatewayError(f"{address}: {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GatewayError(f"cannot reach the admin API at {address}: {reason}") from None


def _status(args: argparse.Namespace) -> int:
    config = _config(args.config)
    c, token = config.controller, config.ha.token
    nodes: dict[str, object] = {}
    for where, address in (("this", c.status), ("peer", c.peer_status)):
        if not address:
            continue
        try:
            nodes[where] = _call(address, "/status", token, timeout=5)
        except GatewayError as exc:
            nodes[where] = {"error": str(exc)}
    try:
        nodes["gateway"] = _call(config.admin.address, "/status", token, timeout=5)
    except GatewayError as exc:
        nodes["gateway"] = {"error": str(exc)}
    if args.json:
        print(json.dumps(nodes, indent=2))
        return 0
    for where in ("this", "peer"):
        node = nodes.get(where)
        if not isinstance(node, dict):
            continue
        if "error" in node:
            print(f"{where}: {node['error']}")
            continue
        peer = node["peer"]
        paths = ", ".join(f"{name} {'-' if age is None else f'{age:.1f}s'}"
                          for name, age in peer["paths"].items())
        failing = [name for name, ok in node["health"].items() if ok is False]
        redis = node.get("redis") or {}
        replication = f"redis {redis.get('role', '?')} offset {redis.get('offset', '?')}"
        lease = "-" if node["lease_remaining"] is None else f"{node['lease_remaining']}s"
        rates = node.get("rates") or {}
        spool = node.get("spool") or {}
        print(f"{node['node']}: {node['role']} epoch {node['epoch']} lease {lease}; "
              f"health {'ok' if not failing else 'FAILING ' + ','.join(failing)}; {replication}; "
              f"in {rates.get('received', '-')}/s forwarded {rates.get('forwarded', '-')}/s; "
              f"pending {node.get('pending')}; spool {spool.get('batches', '-')} batches; "
              f"peer {peer['node']} {'alive' if peer['alive'] else 'DEAD'} ({paths}); "
              f"switchovers {node['switchovers']}{'; ISOLATED' if node['isolated'] else ''}")
    gateway = nodes.get("gateway")
    if isinstance(gateway, dict) and "role" in gateway and isinstance(gateway["role"], dict):
        gauges = gateway.get("gauges", {})
        print(f"gateway {gateway['node']}: {json.dumps(gateway['role'])}; "
              f"queued {gauges.get('queued_events')}, pending {gauges.get('pending_events')}")
    return 0


def _failback(args: argparse.Namespace) -> int:
    config = _config(args.config)
    token = config.ha.token
    if args.switch_back:
        state = _call(config.controller.status, "/switch-back", token, body={})
    else:
        state = _call(config.admin.address, "/role", token, body={"role": "standby", "lease": None})
    print(json.dumps(state))
    return 0


def _set_role(args: argparse.Namespace) -> int:
    config = _config(args.config) if args.config else None
    admin = args.admin or (config.admin.address if config else "127.0.0.1:9180")
    token = args.token or (config.ha.token if config else "")
    print(json.dumps(_call(admin, "/role", token, body={"role": args.role, "lease": args.lease})))
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
        if args.command == "status":
            return _status(args)
        if args.command == "failback":
            return _failback(args)
        if args.command == "witness":
            if not args.key:
                raise GatewayError("witness: --key (or TRAPGATE_WITNESS_KEY) is required")
            host, port = parse_address("--listen", args.listen)
            uvloop.run(run_arbiter(host, port, args.key.encode(), args.vote_lease))
            return 0
        if args.command == "controller":
            config = _config(args.config)
            validate_for_controller(config)
            uvloop.run(run_controller(config))
            return 0
        if args.command == "check-config":
            _config(args.file)
            print(f"trapgate: {args.file} is valid", file=sys.stderr)
            return 0
        config = _config(args.config)
        if args.out:
            config = dataclasses.replace(config, sinks={"out": jsonl_sink(args.out)})
        uvloop.run(serve(config))
    except GatewayError as exc:
        print(f"trapgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader of our output went away (`trapgate status | head`)
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lets the interpreter's final flush succeed
    return 0
