"""The `nats` sink: publish each event to NATS JetStream, with its id as `Nats-Msg-Id`.

Strategy: a batch is published message by message without waiting (so the
server stores them in order), then every PubAck is awaited together, bounded
by the sink's timeout; `send` returns once the stream has acknowledged all of
them, and raises `SinkError` otherwise (acks still missing are given up, and the
forwarder sends the batch again with the same ids). The message is the event's
JSON line; its `Nats-Msg-Id` header is the event id, so JetStream itself drops
a message it stored before within the stream's `duplicate_window`: a repeat
after a lost ack, or a copy the other node of a pair forwards after a failover.
The stream says so in its ack (`duplicate`); such an event counts as sent, and
also under `dropped{reason="duplicate_at_destination"}`.

A stream whose `duplicate_window` is shorter than the node's dedup window W
(`dedup_window`) is logged once as a warning: a copy forwarded again later
than that window is stored twice. The stream checked is `stream` when it is
named (at connection), and otherwise each stream the acks name (once).

Connection: the client connects in the background from `start()` (a server
that does not answer yet is no error) and reconnects by itself, without end,
after losing the server; while it is not connected a send fails at once
rather than piling messages up in the client's buffer. With `create`, the
stream `stream` is created when it does not exist (an existing one is used
as it is), at connection and again after a publish found no stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig
from nats.js.errors import NoStreamResponseError, NotFoundError

from gateway._ratelog import RateLimited
from gateway.config import DedupConfig
from gateway.errors import ConfigError, SinkError
from gateway.metrics import Counters, Latency
from gateway.sinks import SinkType

if TYPE_CHECKING:
    from gateway.config import SinkConfig
    from gateway.sinks import Outgoing

log = logging.getLogger(__name__)

SCHEMES = ("nats://", "tls://", "ws://", "wss://")
STORAGES = ("file", "memory")
MSG_ID = "Nats-Msg-Id"


@dataclass(frozen=True)
class NatsOptions:
    """The keys of a `nats` sink."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    subject: str = "trapgate.events"  # "{format}" is replaced by the event's format
    stream: str = ""  # the stream that must take the messages (any when empty); required with `create`
    create: bool = False  # create `stream` when it does not exist, with the keys below
    subjects: tuple[str, ...] = ()  # of a created stream; default: `subject`, "{format}" as "*"
    duplicate_window: float = 120.0  # of a created stream, seconds
    max_age: float = 0.0  # of a created stream, seconds (0: no limit)
    storage: str = "file"  # of a created stream
    replicas: int = 1  # of a created stream
    dedup_window: float | None = None  # W; None: the default of [dedup] window
    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    creds: str = ""  # a .creds file (JWT and NKey seed)
    tls_ca: str = ""  # TLS is on with a tls:// server or any of these
    tls_cert: str = ""
    tls_key: str = ""
    connect_timeout: float = 2.0
    reconnect_wait: float = 2.0

    def check(self, key: str) -> None:
        """Raise `ConfigError` for a missing or malformed value."""
        if not self.servers:
            raise ConfigError(f"{key}.servers", "at least one server is required")
        for i, server in enumerate(self.servers):
            if not server.startswith(SCHEMES):
                raise ConfigError(f"{key}.servers[{i}]", f"{server!r} is not a {', '.join(SCHEMES)} URL")
        if not self.subject or any(c in self.subject for c in " \t\r\n"):
            raise ConfigError(f"{key}.subject", f"{self.subject!r} is not a subject")
        if self.create and not self.stream:
            raise ConfigError(f"{key}.stream", "is required with create = true")
        if self.storage not in STORAGES:
            raise ConfigError(f"{key}.storage", f"{self.storage!r} is not one of {', '.join(STORAGES)}")
        if self.duplicate_window <= 0 or self.max_age < 0 or self.replicas < 1:
            raise ConfigError(key, "duplicate_window must be above 0, max_age 0 or more, replicas at least 1")
        if self.connect_timeout <= 0 or self.reconnect_wait <= 0:
            raise ConfigError(key, "connect_timeout and reconnect_wait must be above 0")
        if self.dedup_window is not None and self.dedup_window <= 0:
            raise ConfigError(f"{key}.dedup_window", "must be above 0")


def _tls_context(options: NatsOptions) -> ssl.SSLContext | None:
    if not (options.tls_ca or options.tls_cert):
        return None
    try:
        context = ssl.create_default_context(cafile=options.tls_ca or None)
        if options.tls_cert:
            context.load_cert_chain(options.tls_cert, options.tls_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"cannot read the TLS files of the nats sink: {exc}") from None
    return context


class NatsSink:
    """JetStream publishes with `Nats-Msg-Id` (see the module docstring)."""

    def __init__(self, name: str, config: SinkConfig, options: NatsOptions) -> None:
        self.counters = Counters(name, "sink", latency=Latency())
        self.options = options
        self.timeout = config.timeout * 0.9  # the forwarder's own timeout is the backstop
        self.dedup_window = options.dedup_window if options.dedup_window is not None else DedupConfig().window
        self.report = RateLimited(log)
        self.nc = Client()
        self.js: JetStreamContext = self.nc.jetstream(timeout=config.timeout)
        self._tls = _tls_context(options)
        self._connecting: asyncio.Task[None] | None = None
        self._last_error = "not connected yet"
        self._prepared = False  # `stream` created (with `create`) and its window checked
        self._prepare_lock = asyncio.Lock()
        self._checked: set[str] = set()  # streams whose duplicate_window was compared with W
        self._split = "{format}" in options.subject

    async def start(self) -> None:
        """Connect in the background; wait up to `connect_timeout`, and only log a server that is down."""
        self._connecting = asyncio.create_task(self._connect(), name=f"{self.counters.component} connect")
        done, _ = await asyncio.wait({self._connecting}, timeout=self.options.connect_timeout)
        if not done:
            log.warning("sink %s: no NATS server answers at %s yet (%s); connecting in the background",
                        self.counters.component, ", ".join(self.options.servers), self._last_error)

    async def _connect(self) -> None:
        o = self.options
        await self.nc.connect(
            servers=list(o.servers), name=f"trapgate {self.counters.component}",
            connect_timeout=o.connect_timeout, reconnect_time_wait=o.reconnect_wait,  # type: ignore[arg-type]
            max_reconnect_attempts=-1, tls=self._tls, user=o.user or None, password=o.password or None,
            token=o.token or None, user_credentials=o.creds or None,
            error_cb=self._on_error, disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        url = self.nc.connected_url
        log.info("sink %s: connected to NATS %s", self.counters.component, url.netloc if url else "")
        try:
            await self._prepare()
        except SinkError as exc:
            log.warning("%s (tried again at the next send)", exc)

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.report(logging.WARNING, f"{self.counters.component}_client", "sink %s: nats: %s",
                    self.counters.component, self._last_error)

    async def _on_disconnected(self) -> None:
        if not self.nc.is_closed:
            self.report(logging.WARNING, f"{self.counters.component}_disconnected",
                        "sink %s: disconnected from NATS; reconnecting", self.counters.component)

    async def _on_reconnected(self) -> None:
        log.info("sink %s: reconnected to NATS", self.counters.component)

    async def _prepare(self) -> None:
        """Create `stream` if asked to and it is missing, and compare its window with W."""
        o = self.options
        async with self._prepare_lock:
            if self._prepared:
                return
            try:
                if o.create:
                    await self._create_stream()
                if o.stream:
                    await self._check_window(o.stream)
            except NatsError as exc:
                raise SinkError(f"nats stream {o.stream}: {exc!r}") from None
            self._prepared = True

    async def _create_stream(self) -> None:
        o = self.options
        try:
            await self.js.stream_info(o.stream)
            return
        except NotFoundError:
            pass
        subjects = list(o.subjects) or [o.subject.replace("{format}", "*")]
        await self.js.add_stream(StreamConfig(
            name=o.stream, subjects=subjects, duplicate_window=o.duplicate_window, max_age=o.max_age or None,
            storage=StorageType(o.storage), num_replicas=o.replicas,
        ))
        log.info("sink %s: created the stream %s (subjects %s, duplicate_window %gs)",
                 self.counters.component, o.stream, ", ".join(subjects), o.duplicate_window)

    async def _check_window(self, stream: str) -> None:
        if stream in self._checked:
            return
        info = await self.js.stream_info(stream)
        self._checked.add(stream)
        window = info.config.duplicate_window
        if window < self.dedup_window:
            log.warning("sink %s: stream %s drops a repeated Nats-Msg-Id within %gs (its duplicate_window), "
                        "less than the dedup window of %gs: a copy forwarded again later than that "
                        "(after a failover) is stored twice", self.counters.component, stream, window,
                        self.dedup_window)

    def _subject(self, o: Outgoing) -> str:
        subject = self.options.subject
        return subject.replace("{format}", o.event.format) if self._split else subject

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """Publish `batch` and wait for every ack; a missing or failed ack is a `SinkError`."""
        name = self.counters.component
        if self._connecting is None:
            await self.start()
        if not self.nc.is_connected:
            raise SinkError(f"sink {name}: not connected to NATS ({self._last_error})")
        if not self._prepared:
            await self._prepare()
        acks = await self._publish(batch)
        duplicates = sum(1 for ack in acks if ack.duplicate)
        if duplicates:
            self.counters.dropped["duplicate_at_destination"] += duplicates
        for stream in {ack.stream for ack in acks} - self._checked:
            try:
                await self._check_window(stream)
            except NatsError as exc:  # the batch is in: one line, and the check is skipped
                self._checked.add(stream)
                log.warning("sink %s: cannot read the stream %s to check its duplicate_window: %r",
                            name, stream, exc)

    async def _publish(self, batch: Sequence[Outgoing]) -> list[PubAck]:
        name, stream = self.counters.component, self.options.stream or None
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for o in batch:
                futures.append(await self.js.publish_async(self._subject(o), o.line[:-1], stream=stream,
                                                           headers={MSG_ID: o.id}))
            await asyncio.wait(futures, timeout=self.timeout)
        except NatsError as exc:
            raise SinkError(f"sink {name}: nats: {exc!r}") from None
        finally:
            failed = [_outcome(f) for f in futures]
        missing = failed.count(None)
        if missing:
            raise SinkError(f"sink {name}: {missing} of {len(batch)} publishes not acknowledged "
                            f"within {self.timeout:.1f}s")
        errors = [exc for exc in failed if isinstance(exc, BaseException)]
        if errors:
            if any(isinstance(exc, NoStreamResponseError) for exc in errors):
                self._prepared = False  # no stream takes the subject: create it again, if it is ours to
            raise SinkError(f"sink {name}: {len(errors)} of {len(batch)} publishes failed: {errors[0]!r}")
        return [f.result() for f in futures]

    async def close(self) -> None:
        """Stop connecting, and close the connection."""
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if not self.nc.is_closed:
            with contextlib.suppress(NatsError):
                await self.nc.close()


def _outcome(future: asyncio.Future[PubAck]) -> BaseException | bool | None:
    """The error of a publish, True for its ack, None while it has none (it is then given up)."""
    if not future.done():
        future.cancel()  # frees its slot in the client
        return None
    if future.cancelled():
        return None
    return future.exception() or True


SINK = SinkType(NatsOptions, NatsSink)
