"""Sinks: where a master forwards events, registered by the `type` of their config table.

A sink is built from its name, its `SinkConfig` (the keys every sink has) and
its options (the type's own keys, a frozen dataclass). It connects in
`start()` (a destination that is down is no error there: sends retry), and
`send()` delivers one batch: it returns once the destination has taken every
event of it, and raises `SinkError` otherwise (the batch is sent again, with
the same ids). `gateway.forward.Forwarder` chooses each sink's events, batches,
retries and times the sends; the sink only speaks its protocol. A new
destination is one module plus one entry in `SINKS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from formats import Event
from gateway.config import SinkConfig
from gateway.metrics import Counters
from gateway.sinks.jsonl import JsonlOptions, JsonlSink


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


SINKS: dict[str, SinkType] = {
    "jsonl": SinkType(JsonlOptions, JsonlSink),
}


def open_sinks(configs: dict[str, SinkConfig]) -> dict[str, Sink]:
    """The sinks of a config, by name (not started); a file that cannot be opened is a `SinkError`."""
    return {name: SINKS[c.type].build(name, c, c.options) for name, c in configs.items()}
