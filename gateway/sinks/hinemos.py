"""The `hinemos` sink: events POSTed to a Hinemos manager's custom-trap endpoint.

Strategy: every event becomes one custom-trap entry (`DATE`, `TYPE`, `KEY`,
`MSG`) of a body `{"FacilityID": ..., "DATA": [...]}`, written as one JSON line
(compact JSON has no newline inside, so no empty line can end the body early:
Hinemos reads a body line by line up to the first empty one). A body holds the
entries of consecutive events of one FacilityID, at most `max_entries` of them
and at most `max_body_bytes` bytes; a batch is as many POSTs as it takes, sent
one after the other, so Hinemos sees each source's events in order.

A custom trap keeps its own FacilityID (the one its sender gave), TYPE, KEY,
MSG and DATE (its receive time when it had none). Any other event (syslog,
SNMP, ...) goes under `facility_id`, as a STRING entry whose KEY is `key` (the
event's format when empty), whose MSG is the event's JSON line (every field,
its id included) and whose DATE is its receive time. DATE is in the gateway's
local time, as Hinemos reads it. An entry too long for `max_body_bytes` on its
own has its MSG cut to fit (counted in `errors{reason="truncated"}`).

Hinemos answers 200 as soon as a body is queued for its one worker (or dropped
silently: the sink keeps bodies small and well formed so that nothing is), and
closes the connection without a response when its queue is full. A close, a
timeout or an error status fails the send and the forwarder retries; bodies
acknowledged before the failure are not sent again (see `gateway.sinks.http`).
Hinemos has no idempotency key: a body it queued whose answer was lost (a
timeout after it was read) reaches it twice. Syslog and SNMP events are better
sent to Hinemos by the `syslog` and `snmp` sinks (ports 514 and 162).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import ConfigError
from gateway.metrics import Counters, Latency
from gateway.sinks import SinkType
from gateway.sinks.http import HttpClient, Request, batch_key, check_url

if TYPE_CHECKING:
    from gateway.config import SinkConfig
    from gateway.sinks import Outgoing

DEFAULT_PORT = 8082
MIN_BODY_BYTES = 1024
_SUFFIX = b"]}\n"
_CUT = "...[truncated]"


@dataclass(frozen=True)
class HinemosOptions:
    """The keys of a `hinemos` sink."""

    url: str  # the manager, e.g. "http://manager" (port 8082 and path "/" unless given)
    facility_id: str  # the FacilityID of events that are not custom traps
    key: str = ""  # KEY of events that are not custom traps ("": the event's format)
    max_entries: int = 100
    max_body_bytes: int = 65536
    headers: dict[str, str] = field(default_factory=dict)
    tls_ca: str = ""
    tls_verify: bool = True

    def check(self, key: str) -> None:
        """Raise `ConfigError` for a value out of range."""
        check_url(f"{key}.url", self.url)
        if not self.facility_id:
            raise ConfigError(f"{key}.facility_id", "must not be empty")
        if self.max_entries < 1:
            raise ConfigError(f"{key}.max_entries", f"must be at least 1, not {self.max_entries}")
        if self.max_body_bytes < MIN_BODY_BYTES:
            raise ConfigError(f"{key}.max_body_bytes",
                              f"must be at least {MIN_BODY_BYTES}, not {self.max_body_bytes}")

    def endpoint(self) -> str:
        """`url` with Hinemos's port and path where it gives none."""
        url = check_url("url", self.url)
        if url.explicit_port is None:
            url = url.with_port(DEFAULT_PORT)
        return str(url)  # no path is "/"


def hinemos_date(t: float) -> str:
    """Unix seconds as a custom-trap DATE ('yyyy-MM-dd HH:mm:ss', local time)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def entry(o: Outgoing, options: HinemosOptions) -> tuple[str, dict[str, Any]]:
    """The FacilityID and custom-trap entry of one event (see the module docstring)."""
    event = o.event
    fields = event.fields
    kind, key, msg = fields.get("type"), fields.get("key"), fields.get("msg")
    if event.format == "custom" and kind in ("NUM", "STRING") and isinstance(key, str) \
            and isinstance(msg, str):
        facility_id = fields.get("facility_id")
        date = fields.get("date")
        return (facility_id if isinstance(facility_id, str) and facility_id else options.facility_id,
                {"DATE": date if isinstance(date, str) else hinemos_date(event.received_at),
                 "TYPE": kind, "KEY": key, "MSG": msg})
    return options.facility_id, {"DATE": hinemos_date(event.received_at), "TYPE": "STRING",
                                 "KEY": options.key or event.format,
                                 "MSG": o.line.rstrip(b"\n").decode(errors="replace")}


def bodies(batch: Sequence[Outgoing], options: HinemosOptions) -> Iterator[tuple[bytes, int, int]]:
    """The bodies of `batch` in order: (body, its entries, how many of them had their MSG cut).

    Each is one JSON line of one FacilityID, within `max_entries` and
    `max_body_bytes`.
    """
    limit = options.max_body_bytes
    prefix = b""
    facility = None
    parts: list[bytes] = []
    size = cut = 0
    for o in batch:
        facility_id, item = entry(o, options)
        data = orjson.dumps(item)
        if facility_id != facility:
            if parts:
                yield prefix + b",".join(parts) + _SUFFIX, len(parts), cut
                parts, cut = [], 0
            facility = facility_id
            prefix = b'{"FacilityID":' + orjson.dumps(facility_id) + b',"DATA":['
        elif parts and (len(parts) >= options.max_entries or size + 1 + len(data) > limit):
            yield prefix + b",".join(parts) + _SUFFIX, len(parts), cut
            parts, cut = [], 0
        if not parts:
            size = len(prefix) + len(_SUFFIX) - 1
        if size + 1 + len(data) > limit:
            data = _shorten(item, limit - size - 1)
            cut += 1
        parts.append(data)
        size += 1 + len(data)
    if parts:
        yield prefix + b",".join(parts) + _SUFFIX, len(parts), cut


def _shorten(item: dict[str, Any], room: int) -> bytes:
    """`item` with the longest start of its MSG (marked as cut) that keeps it within `room` bytes."""
    msg: str = item["MSG"]
    shortest = orjson.dumps({**item, "MSG": _CUT})
    if len(shortest) > room:
        return shortest
    fits, over = 0, len(msg)  # the longest start that fits is at least `fits` and below `over` characters
    while over - fits > 1:
        middle = (fits + over) // 2
        if len(orjson.dumps({**item, "MSG": msg[:middle] + _CUT})) <= room:
            fits = middle
        else:
            over = middle
    return orjson.dumps({**item, "MSG": msg[:fits] + _CUT})


class HinemosSink:
    """Custom-trap bodies POSTed to a Hinemos manager (see the module docstring)."""

    def __init__(self, name: str, config: SinkConfig, options: HinemosOptions) -> None:
        self.counters = Counters(name, "sink", latency=Latency())
        self.options = options
        headers = {"Content-Type": "application/json", **options.headers}
        self.client = HttpClient(self.counters, options.endpoint(), headers, options.tls_ca,
                                 options.tls_verify)

    async def start(self) -> None:
        """Open the client session."""
        await self.client.start()

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """POST the bodies of `batch` in order; return once Hinemos answered each."""
        requests = [Request(body, {}, entries, cut) for body, entries, cut in bodies(batch, self.options)]
        await self.client.deliver(batch_key(batch), requests)

    async def close(self) -> None:
        """Close the client session."""
        await self.client.close()


SINK = SinkType(HinemosOptions, HinemosSink)
