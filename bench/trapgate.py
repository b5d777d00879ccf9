"""trapgate as a target: a TOML config in the run's directory, `gateway run`.

The gateway is started exactly as a user would start it (`python -m gateway
run -c CONFIG --out FILE`, or the `trapgate` console script through
`--trapgate-cmd`) and read back through its admin API.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.metrics import Sample, by_labels, parse_prometheus, pick_total
from bench.procs import BenchError, free_port, http_get, wait_until
from bench.targets import READY_TIMEOUT, TargetCounters, UdpTarget

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COMMAND = f"{shlex.quote(sys.executable)} -m gateway"

_RECEIVED = ("trapgate_received_total", "trapgate_received", "trapgate_receiver_received_total")
_FORWARDED = ("trapgate_forwarded_total", "trapgate_forwarded", "trapgate_sink_sent_total")
_SENT = ("trapgate_sent_total",)
_ERRORS = ("trapgate_errors_total",)
_DROPPED = ("trapgate_dropped_total", "trapgate_dropped", "trapgate_receiver_dropped_total")
_KERNEL_DROPS = (
    "trapgate_kernel_drops_total",
    "trapgate_kernel_drops",
    "trapgate_receiver_kernel_drops_total",
)


def _toml_str(value: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(value)


TomlValue = str | int | float | bool | Sequence[str]
"""A value the bench writes into a config table."""

TomlTable = Mapping[str, TomlValue]


def _toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    return "[" + ", ".join(_toml_str(item) for item in value) + "]"


def _receiver_table(
    receiver: str,
    fmt: str,
    host: str,
    udp_port: int,
    rcvbuf: int,
    options: TomlTable,
    users: Sequence[TomlTable],
) -> str:
    kind = "snmp" if fmt == "snmp" else "udp"
    lines = [f"[receivers.{receiver}]", f'type = "{kind}"']
    if kind == "udp":
        lines.append(f"format = {_toml_str(fmt)}")
    lines += [f'address = "{host}:{udp_port}"', f"rcvbuf = {rcvbuf}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()]
    for user in users:
        lines += ["", f"[[receivers.{receiver}.users]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in user.items()]
    return "\n".join(lines) + "\n"


def _table(name: str, values: TomlTable) -> str:
    return "".join([f"[{name}]\n", *(f"{key} = {_toml_value(value)}\n" for key, value in values.items())])


def render_config(
    *,
    receiver: str,
    fmt: str,
    udp_port: int,
    admin_port: int,
    rcvbuf: int,
    out_path: Path,
    quarantine_path: Path,
    options: TomlTable | None = None,
    users: Sequence[TomlTable] = (),
    host: str = "127.0.0.1",
    node: str = "bench",
    tables: Mapping[str, TomlTable] | None = None,
) -> str:
    """The TOML config of a bench node with one receiver, listening on `host`.

    Format "snmp" makes a receiver of type "snmp", any other format a UDP
    receiver of that format. `options` are further keys of the receiver's
    table and `users` its `[[receivers.NAME.users]]` tables. `tables` adds
    keys to the `[dedup]` table or adds whole tables (`[redis]`, `[ha]`).
    """
    table = _receiver_table(receiver, fmt, host, udp_port, rcvbuf, options or {}, users)
    more = dict(tables or {})
    dedup = _table("dedup", {"mode": "exact", **more.pop("dedup", {})})
    rest = "".join(f"\n{_table(name, values)}" for name, values in more.items())
    return f"""\
[node]
name = {_toml_str(node)}

{table}
[admin]
address = "{host}:{admin_port}"

{dedup}
[sink]
type = "file"
path = {_toml_str(str(out_path))}

[quarantine]
path = {_toml_str(str(quarantine_path))}
{rest}"""


def gateway_available(command: str) -> bool:
    """Whether `command` can be expected to start the gateway.

    Only the default `python -m gateway` is checked (for gateway/__main__.py);
    a custom command is trusted.
    """
    if command != DEFAULT_COMMAND:
        return True
    return (REPO_ROOT / "gateway" / "__main__.py").exists()


def _names_like(samples: list[Sample], word: str) -> tuple[str, ...]:
    pattern = re.compile(rf"^trapgate_\w*{word}\w*$")
    return tuple(sorted({s.name for s in samples if pattern.match(s.name) and "bytes" not in s.name}))


def counters_from_metrics(text: str, receiver: str) -> TargetCounters:
    """What `/metrics` text says receiver `receiver` took in, forwarded and dropped.

    Series are attributed by a `receiver` or `component` label; a series with
    neither counts for every receiver.
    """

    def mine(labels: Mapping[str, str]) -> bool:
        owner = labels.get("receiver", labels.get("component"))
        return owner is None or owner == receiver

    samples = parse_prometheus(text)
    received = pick_total(samples, _RECEIVED + _names_like(samples, "received"), mine)
    forwarded = pick_total(samples, _FORWARDED)
    if forwarded is None:
        forwarded = pick_total(samples, _SENT, lambda labels: labels.get("kind") == "sink")
    kernel = pick_total(samples, _KERNEL_DROPS, mine)
    if kernel is None:
        kernel = pick_total(
            samples, _DROPPED, lambda labels: mine(labels) and labels.get("reason") == "kernel"
        )
    return TargetCounters(
        received=None if received is None else int(received),
        source="/metrics" if received is not None else "none",
        extra={
            "forwarded_metric": forwarded,
            "kernel_drops_metric": kernel,
            "dropped_by_component_reason": by_labels(samples, _DROPPED, ("component", "reason")),
            "errors_by_component_reason": by_labels(samples, _ERRORS, ("component", "reason")),
            # From receipt until every sink took the event: the node's own HdrHistogram.
            "forward_latency_ms": {
                name: None if (v := pick_total(samples, (f"trapgate_forward_latency_{name}_seconds",)))
                is None else round(v * 1000.0, 3) for name in ("p50", "p99", "p999")},
        },
    )


class Trapgate(UdpTarget):
    """A trapgate node with one receiver: UDP of format `fmt`, or SNMP for "snmp".

    `options` and `users` go into the receiver's table, `tables` into the
    rest of the config (`render_config`). The receiver and the admin API
    listen on `host`; `node` names the node in its config and its output.
    """

    name = "trapgate"

    def __init__(
        self,
        workdir: Path,
        rcvbuf: int,
        *,
        fmt: str = "syslog",
        command: str = DEFAULT_COMMAND,
        options: TomlTable | None = None,
        users: Sequence[TomlTable] = (),
        host: str = "127.0.0.1",
        node: str = "bench",
        tables: Mapping[str, TomlTable] | None = None,
    ) -> None:
        super().__init__(workdir, rcvbuf, host)
        self.fmt = fmt
        self.receiver = "snmp" if fmt == "snmp" else f"{fmt}_udp"
        self.options = dict(options or {})
        self.users = list(users)
        self.node = node
        self.tables = dict(tables or {})
        self.base_command = shlex.split(command)
        self.admin_port = free_port(socket.SOCK_STREAM, host)
        self.config_path = workdir / "trapgate.toml"

    def pick_ports(self) -> None:
        """New UDP and admin ports."""
        super().pick_ports()
        self.admin_port = free_port(socket.SOCK_STREAM, self.host)

    def command(self) -> tuple[list[str], Path | None]:
        """Write the TOML config; argv is `<command> run -c CONFIG --out FILE`."""
        self.config_path.write_text(
            render_config(
                receiver=self.receiver,
                fmt=self.fmt,
                udp_port=self.port,
                admin_port=self.admin_port,
                rcvbuf=self.rcvbuf,
                out_path=self.out_path,
                quarantine_path=self.workdir / "quarantine.jsonl",
                options=self.options,
                users=self.users,
                host=self.host,
                node=self.node,
                tables=self.tables,
            )
        )
        argv = [*self.base_command, "run", "-c", str(self.config_path), "--out", str(self.out_path)]
        return argv, REPO_ROOT

    def _url(self, path: str) -> str:
        return f"http://{self.host}:{self.admin_port}{path}"

    def wait_ready(self) -> None:
        """The UDP socket is bound and `/health` answers 200."""
        super().wait_ready()
        wait_until(
            lambda: http_get(self._url("/health"), timeout=0.5)[0] == 200,
            READY_TIMEOUT,
            f"trapgate /health on {self.host}:{self.admin_port}",
            alive=self.process.check_alive,
        )

    def counters(self) -> TargetCounters:
        """Counters from `/metrics`; `/metrics` and `/status` are kept in the workdir."""
        status, body = http_get(self._url("/metrics"), timeout=5.0)
        if status != 200:
            raise BenchError(f"trapgate /metrics answered {status}")
        text = body.decode("utf-8", "replace")
        (self.workdir / "metrics.txt").write_text(text)
        code, status_body = http_get(self._url("/status"), timeout=5.0)
        if code == 200:
            (self.workdir / "status.json").write_bytes(status_body)
        return counters_from_metrics(text, self.receiver)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """`/status` as JSON; raises `BenchError` when it does not answer within `timeout` seconds."""
        code, body = http_get(self._url("/status"), timeout=timeout)
        if code != 200:
            raise BenchError(f"trapgate {self.node} /status answered {code}")
        status: dict[str, Any] = json.loads(body)
        return status

    def config_summary(self) -> dict[str, Any]:
        """The command line, the receiver settings and the added tables used."""
        summary: dict[str, Any] = {
            "command": " ".join(self.base_command),
            "receiver": self.receiver,
            "dedup": "exact",
        }
        for name, values in self.tables.items():
            kept = {k: v for k, v in values.items() if k != "token"}
            summary[name] = {"mode": "exact", **kept} if name == "dedup" else kept
        if self.users:
            summary["users"] = [
                {k: v for k, v in user.items() if not k.endswith("passphrase")} for user in self.users
            ]
        return summary
