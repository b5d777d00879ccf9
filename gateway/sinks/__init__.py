"""Sinks: where a master forwards events, registered by the `type` of their config table.

A sink is built from its name, its `SinkConfig` (the keys every sink has) and
its options (the type's own keys, a frozen dataclass). It connects in
`start()` (a destination that is down is no error there: sends retry), and
`send()` delivers one batch: it returns once the destination has taken every
event of it, and raises `SinkError` otherwise (the batch is sent again, with
the same ids). `gateway.forward.Forwarder` chooses each sink's events, batches,
retries and times the sends; the sink only speaks its protocol. A new
destination is one module, exporting `SINK` (its `SinkType`), plus one entry in
`SINKS`; a module is imported when a config names its type, so a sink's
client library costs nothing to a node that does not use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from formats import Event
from gateway.metrics import Counters

if TYPE_CHECKING:
    from gateway.config import SinkConfig


class Outgoing(NamedTuple):
    """One event on its way out: the event, its fingerprint and id, and its JSON line."""

    event: Event
    fp: str
    id: str
    line: bytes  # the event as one JSON object and a newline (see `gateway._render`)


class Sink(Protocol):
    """A destination of forwarded events."""

    counters: Counters

    async def start(self) -> None:
        """Open what the sink needs; a destination that does not answer yet is not an error."""
        ...

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """Deliver `batch`; return once the destination has it all, or raise `SinkError`."""
        ...

    async def close(self) -> None:
        """Flush and release the destination."""
        ...


@dataclass(frozen=True)
class SinkType:
    """A sink type: the dataclass of its own keys, and how to build it."""

    options: type
    build: Callable[[str, SinkConfig, Any], Sink]


SINKS = {
    "jsonl": "gateway.sinks.jsonl",
    "syslog": "gateway.sinks.syslog",
    "snmp": "gateway.sinks.snmp",
    "http": "gateway.sinks.http",
    "hinemos": "gateway.sinks.hinemos",
    "redis-stream": "gateway.sinks.redis_stream",
    "nats": "gateway.sinks.nats",
}
"""Sink type -> the module that implements it (its `SINK`)."""


def sink_type(kind: str) -> SinkType:
    """The `SinkType` of a type named in `SINKS`."""
    return importlib.import_module(SINKS[kind]).SINK  # type: ignore[no-any-return]


def open_sinks(configs: dict[str, SinkConfig]) -> dict[str, Sink]:
    """The sinks of a config, by name (not started); a file that cannot be opened is a `SinkError`."""
    return {name: sink_type(c.type).build(name, c, c.options) for name, c in configs.items()}
