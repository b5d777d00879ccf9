"""The `redis-stream` sink: XADD each event to a Redis stream.

Strategy: a batch is one pipeline of XADDs (no MULTI), so it costs one round
trip; `send` returns once every XADD has its reply, and any error fails the
whole batch (the forwarder sends it again, with the same ids). An entry holds
the event id as its `id` field and the event either as fields (`fields =
"flat"`: the keys of the event's JSON line, a string as it is and any other
value as JSON) or as one `event` field holding the JSON line (`"json"`).
`maxlen` trims the stream on every XADD (`MAXLEN ~`, or exactly with
`approximate = false`).

Duplicates: a send whose replies were lost may have added some entries, and
sending it again adds them again, with the same `id` field. Where the server
has idempotent XADD (Redis 8.6: ``XADD key IDMP producer iid``), the sink uses
it, with the event id as the iid, and the server answers a repeat with the
first entry's id instead of adding it. The server remembers at most
`idmp_maxsize` iids per producer for `idmp_duration` seconds; the sink sets
these on each stream (XCFGSET) when they differ, after its first send there,
because the server's defaults (100 iids) are shorter than a batch. Support is
detected from the server's version (INFO), when the sink connects and again
after a failed send (the server may have changed); `idmp = "off"` never uses it.
Every redis-py error becomes a `SinkError` here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from dedup._redis_errors import reason_of
from gateway._ratelog import RateLimited
from gateway.errors import ConfigError, SinkError
from gateway.metrics import Counters, Latency
from gateway.sinks import SinkType

if TYPE_CHECKING:
    from gateway.config import SinkConfig
    from gateway.sinks import Outgoing

log = logging.getLogger(__name__)

FIELD_LAYOUTS = ("flat", "json")
IDMP_MODES = ("auto", "off")
IDMP_SINCE = (8, 6)
# The bounds that both the server's documentation and its clients accept (they disagree beyond them).
IDMP_MAX_DURATION = 300
IDMP_MAX_SIZE = 10_000


@dataclass(frozen=True)
class RedisStreamOptions:
    """The keys of a `redis-stream` sink."""

    url: str = ""  # redis:// or rediss://, required
    stream: str = "trapgate:events"  # "{format}" is replaced by the event's format
    maxlen: int = 0  # entries kept (0: no trimming)
    approximate: bool = True  # MAXLEN ~ (cheaper: trims whole nodes, may keep a few more)
    fields: str = "flat"
    username: str = ""
    password: str = field(default="", repr=False)
    tls_ca: str = ""  # with a rediss:// URL: the CA that signed the server's certificate
    tls_cert: str = ""
    tls_key: str = ""
    connect_timeout: float = 2.0
    idmp: str = "auto"
    idmp_producer: str = "trapgate"  # the same on both nodes of a pair, so a failover copy is caught too
    idmp_duration: int = 100
    idmp_maxsize: int = IDMP_MAX_SIZE

    def check(self, key: str) -> None:
        """Raise `ConfigError` for a missing URL or a value out of range."""
        if not self.url.startswith(("redis://", "rediss://")):
            raise ConfigError(f"{key}.url", f"{self.url!r} is not a redis:// or rediss:// URL")
        try:
            parts = urllib.parse.urlsplit(self.url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{key}.url", f"{self.url!r}: {exc}") from None
        if not parts.hostname or port == 0:
            raise ConfigError(f"{key}.url", f"{self.url!r} names no host and port")
        if (self.tls_ca or self.tls_cert or self.tls_key) and not self.url.startswith("rediss://"):
            raise ConfigError(f"{key}.url", "must be a rediss:// URL with tls_ca, tls_cert or tls_key")
        if not self.stream:
            raise ConfigError(f"{key}.stream", "must not be empty")
        if self.fields not in FIELD_LAYOUTS:
            raise ConfigError(f"{key}.fields", f"{self.fields!r} is not one of {', '.join(FIELD_LAYOUTS)}")
        if self.idmp not in IDMP_MODES:
            raise ConfigError(f"{key}.idmp", f"{self.idmp!r} is not one of {', '.join(IDMP_MODES)}")
        if self.maxlen < 0 or self.connect_timeout <= 0:
            raise ConfigError(key, "maxlen must be 0 or more and connect_timeout above 0")
        if not 1 <= self.idmp_duration <= IDMP_MAX_DURATION or not 1 <= self.idmp_maxsize <= IDMP_MAX_SIZE:
            raise ConfigError(key, f"idmp_duration must be 1 to {IDMP_MAX_DURATION} (seconds), "
                              f"idmp_maxsize 1 to {IDMP_MAX_SIZE}")
        if not self.idmp_producer:
            raise ConfigError(f"{key}.idmp_producer", "must not be empty")


def supports_idmp(server: dict[str, Any]) -> bool:
    """Whether a server with this ``INFO server`` has idempotent XADD (Redis 8.6 or later)."""
    if server.get("server_name", "redis") != "redis":  # Valkey and others say which server they are
        return False
    version = re.match(r"(\d+)\.(\d+)", str(server.get("redis_version", "")))
    return version is not None and (int(version[1]), int(version[2])) >= IDMP_SINCE


def entry_fields(o: Outgoing, layout: str) -> list[bytes | str]:
    """The field-value pairs of the stream entry for `o`, flattened: `id` first."""
    if layout == "json":
        return ["id", o.id, "event", o.line[:-1]]
    pairs: list[bytes | str] = []
    for name, value in orjson.loads(o.line).items():  # the line's keys start with "id"
        pairs += (name, value if isinstance(value, str) else orjson.dumps(value))
    return pairs


def xadd_args(key: str, o: Outgoing, options: RedisStreamOptions, idmp: bool) -> list[Any]:
    """The XADD command for `o` (``XADD key [IDMP pid iid] [MAXLEN [~] n] * field value ...``)."""
    args: list[Any] = ["XADD", key]
    if idmp:
        args += ("IDMP", options.idmp_producer, o.id)
    if options.maxlen:
        args += ("MAXLEN", "~", options.maxlen) if options.approximate else ("MAXLEN", options.maxlen)
    args.append("*")
    return args + entry_fields(o, options.fields)


def _client(options: RedisStreamOptions, timeout: float) -> Redis:
    """A client for `options.url`, without retries of its own (a repeated XADD may add twice)."""
    kwargs: dict[str, Any] = {"socket_connect_timeout": options.connect_timeout, "socket_timeout": timeout,
                              "retry": Retry(NoBackoff(), 0)}
    if options.username:
        kwargs["username"] = options.username
    if options.password:
        kwargs["password"] = options.password
    if options.url.startswith("rediss://"):
        kwargs.update(ssl_ca_certs=options.tls_ca or None, ssl_certfile=options.tls_cert or None,
                      ssl_keyfile=options.tls_key or None)
    return Redis.from_url(options.url, **kwargs)


class RedisStreamSink:
    """XADD to a Redis stream, a batch a round trip (see the module docstring)."""

    def __init__(self, name: str, config: SinkConfig, options: RedisStreamOptions) -> None:
        self.counters = Counters(name, "sink", latency=Latency())
        self.options = options
        self.report = RateLimited(log)
        self.client = _client(options, config.timeout)
        self.idmp: bool | None = False if options.idmp == "off" else None  # None: not known yet
        self._idmp_set: set[str] = set()  # streams whose IDMP settings were checked since the last failure
        self._idmp_lock = asyncio.Lock()
        self._split = "{format}" in options.stream

    async def start(self) -> None:
        """Learn whether the server has IDMP; a server that does not answer yet is only logged."""
        try:
            await self._learn_idmp()
        except SinkError as exc:
            log.warning("%s (sending will retry)", exc)

    async def _learn_idmp(self) -> None:
        if self.idmp is not None:
            return
        try:
            server = await self.client.info("server")
        except RedisError as exc:
            raise self._error(exc) from None
        self.idmp = supports_idmp(server)
        log.info("sink %s: redis %s, %s", self.counters.component, server.get("redis_version", "?"),
                 "idempotent XADD (IDMP) on" if self.idmp else "no idempotent XADD (IDMP)")

    def _key(self, o: Outgoing) -> str:
        return self.options.stream.replace("{format}", o.event.format) if self._split else self.options.stream

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """XADD every event of `batch` in one pipeline; a failure of any is a `SinkError`."""
        options = self.options
        await self._learn_idmp()
        idmp = bool(self.idmp)
        keys = {self._key(o) for o in batch} if self._split else {options.stream}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for o in batch:
                    pipe.execute_command(*xadd_args(self._key(o), o, options, idmp))
                await pipe.execute()
        except RedisError as exc:
            if options.idmp != "off":
                self.idmp = None
            self._idmp_set.clear()  # the server may have restarted with streams of default settings
            raise self._error(exc) from None
        if idmp and not keys <= self._idmp_set:
            await self._set_idmp(keys - self._idmp_set)

    async def _set_idmp(self, keys: set[str]) -> None:
        """Give `keys` the IDMP settings of the options where they differ (XCFGSET forgets the iids)."""
        options = self.options
        async with self._idmp_lock:
            for key in keys - self._idmp_set:
                try:
                    info = await self.client.xinfo_stream(key)
                    wanted = (options.idmp_duration, options.idmp_maxsize)
                    if (info.get("idmp-duration"), info.get("idmp-maxsize")) != wanted:
                        await self.client.execute_command(  # type: ignore[no-untyped-call]
                            "XCFGSET", key, "IDMP-DURATION", wanted[0], "IDMP-MAXSIZE", wanted[1])
                        log.info("sink %s: stream %s keeps %d iids for %ds", self.counters.component, key,
                                 options.idmp_maxsize, options.idmp_duration)
                except RedisError as exc:  # the batch is in; the settings are tried again after the next send
                    self.report(logging.WARNING, f"{self.counters.component}_idmp",
                                "sink %s: cannot set the IDMP settings of stream %s: %s",
                                self.counters.component, key, exc)
                    return
                self._idmp_set.add(key)

    def _error(self, exc: BaseException) -> SinkError:
        return SinkError(f"sink {self.counters.component}: redis {reason_of(exc)}: {exc}")

    async def close(self) -> None:
        """Close the connections."""
        await self.client.aclose()


SINK = SinkType(RedisStreamOptions, RedisStreamSink)
