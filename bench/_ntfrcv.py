"""A pysnmp 7 NotificationReceiver, the way its documentation sets one up.

`python -m bench._ntfrcv --port P --out FILE ...` runs pysnmp's engine on
UDP 127.0.0.1:P and appends one line per notification to FILE: the
varbinds as `oid = value` joined by tabs, written line-buffered. For v3 the
user is registered with the sender's engine id (`--engine-id`): pysnmp, like
snmptrapd, localizes keys only for engine ids listed up front. SIGTERM ends
the process.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO

_SO_RCVBUFFORCE = 33  # Linux; the socket module does not export it


def bound_socket(port: int, rcvbuf: int) -> socket.socket:
    """A UDP socket on 127.0.0.1:`port` with the receive buffer every system gets.

    SO_RCVBUFFORCE as root (like trapgate), SO_RCVBUF otherwise.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", port))
    return sock


def format_line(var_binds: Sequence[tuple[Any, Any]]) -> str:
    """One output line for a notification: `oid = value` pairs, tab-separated."""
    return "\t".join(f"{name.prettyPrint()} = {value.prettyPrint()}" for name, value in var_binds) + "\n"


def serve(args: argparse.Namespace, out: TextIO) -> None:
    """Configure the engine from `args` and run its dispatcher until killed."""
    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import ntfrcv
    from pysnmp.proto.api import v2c

    snmp_engine = engine.SnmpEngine()
    transport = udp.UdpTransport().open_server_mode(sock=bound_socket(args.port, args.rcvbuf))
    config.add_transport(snmp_engine, udp.DOMAIN_NAME, transport)
    config.add_v1_system(snmp_engine, "bench-area", args.community)
    if args.user:
        config.add_v3_user(
            snmp_engine,
            args.user,
            config.USM_AUTH_HMAC96_SHA,
            args.auth_passphrase,
            config.USM_PRIV_CFB128_AES,
            args.priv_passphrase,
            securityEngineId=v2c.OctetString(hexValue=args.engine_id),
        )

    def on_notification(
        snmp_engine: Any,
        state_reference: Any,
        context_engine_id: Any,
        context_name: Any,
        var_binds: Sequence[tuple[Any, Any]],
        cb_ctx: Any,
    ) -> None:
        out.write(format_line(var_binds))

    ntfrcv.NotificationReceiver(snmp_engine, on_notification)
    snmp_engine.transport_dispatcher.job_started(1)
    snmp_engine.open_dispatcher()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and serve; returns only if the dispatcher stops."""
    parser = argparse.ArgumentParser(prog="python -m bench._ntfrcv", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True, help="file to append one line per notification to")
    parser.add_argument("--rcvbuf", type=int, default=32 * 1024 * 1024)
    parser.add_argument("--community", default="public")
    parser.add_argument("--user", default="", help="v3 user (SHA/AES-128); empty: v1/v2c only")
    parser.add_argument("--auth-passphrase", default="")
    parser.add_argument("--priv-passphrase", default="")
    parser.add_argument("--engine-id", default="", help="the sender's engine id, hex")
    args = parser.parse_args(argv)
    with open(args.out, "a", buffering=1, encoding="utf-8") as out:
        serve(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
