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


TomlValue = str | int | bool | Sequence[str]
"""A value the bench writes into a receiver table."""


def _toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_str(value)
    return "[" + ", ".join(_toml_str(item) for item in value) + "]"


def _receiver_table(
    receiver: str,
    fmt: str,
    udp_port: int,
    rcvbuf: int,
    options: Mapping[str, TomlValue],
    users: Sequence[Mapping[str, TomlValue]],
) -> str:
    kind = "snmp" if fmt == "snmp" else "udp"
    lines = [f"[receivers.{receiver}]", f'type = "{kind}"']
    if kind == "udp":
        lines.append(f"format = {_toml_str(fmt)}")
    lines += [f'address = "127.0.0.1:{udp_port}"', f"rcvbuf = {rcvbuf}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()]
    for user in users:
        lines += ["", f"[[receivers.{receiver}.users]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in user.items()]
    return "\n".join(lines) + "\n"


def render_config(
    *,
    receiver: str,
    fmt: str,
    udp_port: int,
    admin_port: int,
    rcvbuf: int,
    out_path: Path,
    quarantine_path: Path,
    options: Mapping[str, TomlValue] | None = None,
    users: Sequence[Mapping[str, TomlValue]] = (),
) -> str:
    """The TOML config of a single bench node with one receiver.

    Format "snmp" makes a receiver of type "snmp", any other format a UDP
    receiver of that format. `options` are further keys of the receiver's
    table and `users` its `[[receivers.NAME.users]]` tables.
    """
    table = _receiver_table(receiver, fmt, udp_port, rcvbuf, options or {}, users)
    return f"""\
[node]
name = "bench"

{table}
[admin]
address = "127.0.0.1:{admin_port}"

[dedup]
mode = "exact"

[sink]
type = "file"
path = {_toml_str(str(out_path))}

[quarantine]
path = {_toml_str(str(quarantine_path))}
"""


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
        },
    )


class Trapgate(UdpTarget):
    """A trapgate node with one receiver: UDP of format `fmt`, or SNMP for "snmp".

    `options` and `users` go into the receiver's table (`render_config`).
    """

    name = "trapgate"

    def __init__(
        self,
        workdir: Path,
        rcvbuf: int,
        *,
        fmt: str = "syslog",
        command: str = DEFAULT_COMMAND,
        options: Mapping[str, TomlValue] | None = None,
        users: Sequence[Mapping[str, TomlValue]] = (),
    ) -> None:
        super().__init__(workdir, rcvbuf)
        self.fmt = fmt
        self.receiver = "snmp" if fmt == "snmp" else f"{fmt}_udp"
        self.options = dict(options or {})
        self.users = list(users)
        self.base_command = shlex.split(command)
        self.admin_port = free_port(socket.SOCK_STREAM)
        self.config_path = workdir / "trapgate.toml"

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
            )
        )
        argv = [*self.base_command, "run", "-c", str(self.config_path), "--out", str(self.out_path)]
        return argv, REPO_ROOT

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def wait_ready(self) -> None:
        """The UDP socket is bound and `/health` answers 200."""
        super().wait_ready()
        wait_until(
            lambda: http_get(self._url("/health"), timeout=0.5)[0] == 200,
            READY_TIMEOUT,
            f"trapgate /health on 127.0.0.1:{self.admin_port}",
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

    def config_summary(self) -> dict[str, Any]:
        """The command line and the receiver settings used."""
        summary: dict[str, Any] = {
            "command": " ".join(self.base_command),
            "receiver": self.receiver,
            "dedup": "exact",
        }
        if self.users:
            summary["users"] = [
                {k: v for k, v in user.items() if not k.endswith("passphrase")} for user in self.users
            ]
        return summary
