"""The node's configuration: TOML in, validated dataclasses out.

Strategy: every section is a frozen dataclass whose fields are the keys, with
the embedded defaults as field defaults. `_build` walks a table against the
dataclass, so an unknown key, a wrong type or a value out of range is reported
as `ConfigError` naming the dotted key. Receivers are a table of named tables,
each with a `type`; when a config file has a `[receivers]` table it replaces
the default set as a whole.
"""

from __future__ import annotations

import dataclasses
import socket
import tomllib
import types
import typing
import urllib.parse
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import ConfigError
from gateway.spool import FSYNC_POLICIES

RECEIVER_TYPES = ("udp", "tcp", "http", "snmp")
LEGACY_SINK_TYPES = ("stdout", "file")
OVERFLOW_POLICIES = ("block", "drop_oldest")
DEDUP_MODES = ("exact", "suppress")
STORES = ("memory", "redis")
ROLES = ("master", "standby")


def parse_address(key: str, value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6), or raise `ConfigError`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class NodeConfig:
    """Who this node is, and how long a stop (SIGTERM) may take before the process exits anyway."""

    name: str = field(default_factory=socket.gethostname)
    stop_timeout: float = 10.0


@dataclass(frozen=True)
class SnmpUserConfig:
    """One SNMPv3 USM user; it works for traps from any sender engine id."""

    name: str
    auth: str = ""
    auth_passphrase: str = ""
    priv: str = ""
    priv_passphrase: str = ""
    engine_ids: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReceiverConfig:
    """One listening socket and the format it carries.

    The keys after `address` apply to some types only (`TYPE_KEYS`).
    """

    type: str
    address: str
    format: str = ""
    rcvbuf: int = 32 * 1024 * 1024
    max_frame: int = 64 * 1024
    max_body: int = 1024 * 1024
    max_connections: int = 1024
    communities: tuple[str, ...] = ()
    users: tuple[SnmpUserConfig, ...] = ()
    engine_id: str = ""
    engine_boots_file: str = "trapgate-snmp-engine-boots"
    source_order: tuple[str, ...] = ("agent_addr", "trap_address", "engine_id", "peer")
    engine_sources: dict[str, str] = field(default_factory=dict)
    trap_time_window: bool = True


_SNMP_KEYS = frozenset(
    {"communities", "users", "engine_id", "engine_boots_file", "source_order", "engine_sources",
     "trap_time_window"}
)
TYPE_KEYS = {
    "udp": frozenset({"format", "rcvbuf"}),
    "tcp": frozenset({"format", "rcvbuf", "max_frame", "max_connections"}),
    "http": frozenset({"format", "max_body"}),
    "snmp": frozenset({"rcvbuf"}) | _SNMP_KEYS,
}
"""Per receiver type, the keys beyond `type` and `address` it takes."""


@dataclass(frozen=True)
class AdminConfig:
    """The admin HTTP API (health, metrics, status)."""

    address: str = "127.0.0.1:9180"


@dataclass(frozen=True)
class DedupConfig:
    """Fingerprint window and store."""

    mode: str = "exact"
    window: float = 30.0
    store: str = "memory"
    max_entries: int = 1_000_000


@dataclass(frozen=True)
class RedisConfig:
    """The Redis servers of the `redis` store: this node's and its peer's.

    The master's Redis is the primary and the standby's replicates it; the
    node points its own Redis at the right primary when its role changes.
    With `cluster`, `local` is any node of a Redis Cluster (or Valkey) that
    both nodes share; the cluster keeps its own replicas and `peer` is unused.
    """

    local: str = "redis://127.0.0.1:6379"
    peer: str = ""
    username: str = ""
    password: str = ""
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    connect_timeout: float = 1.0
    socket_timeout: float = 2.0
    prefix: str = "tg:"
    cluster: bool = False


@dataclass(frozen=True)
class SpoolConfig:
    """A single node's spool: what it claimed, on disk until every sink took it ("" : none).

    A pair's master keeps its spool under `[ha]` (`spool`, `spool_fsync`, ...).
    """

    path: str = ""
    fsync: str = "none"
    fsync_interval: float = 1.0


@dataclass(frozen=True)
class HaConfig:
    """This node's part in an HA pair (with `dedup.store = "redis"`)."""

    role: str = "standby"
    token: str = ""
    lease: float = 0.8
    replica_wait: float = 1.0
    catch_up: float = 2.0
    degrade_after: float = 2.0
    grace: float = 2.0
    check_after: float = 0.3
    max_pending: int = 1_000_000
    spool: str = "trapgate-spool"
    spool_fsync: str = "none"
    spool_fsync_interval: float = 1.0


@dataclass(frozen=True)
class PathConfig:
    """One heartbeat path between the two controllers (UDP, HMAC-authenticated)."""

    local: str
    peer: str


@dataclass(frozen=True)
class CheckConfig:
    """One health check's own interval and failure threshold (0: the controller's defaults)."""

    every: float = 0.0
    fail_after: int = 0


CHECKS = ("gateway", "redis", "data_dir", "interfaces", "floating_ip", "witnesses")


@dataclass(frozen=True)
class ControllerConfig:
    """The failover controller of this node (`trapgate controller`): heartbeats, health, election."""

    paths: dict[str, PathConfig] = field(default_factory=dict)
    tcp: PathConfig | None = None
    key: str = ""
    priority: int = 100
    heartbeat: float = 0.2
    dead_after: float = 1.0
    lease: float = 0.8
    settle: float = 2.0
    min_switch_interval: float = 10.0
    witnesses: tuple[str, ...] = ()
    arbiter: str = ""
    vote_lease: float = 2.0
    status: str = "127.0.0.1:9190"
    peer_status: str = ""
    notify: tuple[str, ...] = ()
    notify_timeout: float = 5.0
    health_every: float = 0.2
    fail_after: int = 3
    checks: dict[str, CheckConfig] = field(default_factory=dict)
    interfaces: tuple[str, ...] = ()
    floating_ip: str = ""
    min_free_mb: int = 64


@dataclass(frozen=True)
class SinkConfig:
    """One destination of forwarded events: the keys every sink type has.

    `options` holds the keys of the sink's `type` (its own dataclass, see
    `gateway.sinks.SINKS`). A sink takes the events of `formats` (all when
    empty) whose fields equal every value in `where`.
    """

    type: str
    formats: tuple[str, ...] = ()
    where: dict[str, str] = field(default_factory=dict)
    batch_size: int = 512
    timeout: float = 10.0
    retry_initial: float = 0.1
    retry_max: float = 5.0
    concurrency: int = 1
    backlog: int = 100_000  # events queued for it and not yet taken (see `gateway.forward`)
    overflow: str = "block"  # when the backlog is full: block | drop_oldest
    options: Any = None


@dataclass(frozen=True)
class LegacySinkConfig:
    """The single `[sink]` table of earlier versions: stdout, or a JSON-lines file."""

    type: str = "stdout"
    path: str = ""


@dataclass(frozen=True)
class QuarantineConfig:
    """Where malformed input is kept, and how much of it."""

    path: str = "trapgate-quarantine.jsonl"
    max_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class PipelineConfig:
    """Batching and overload limits."""

    batch_size: int = 1024
    flush_ms: float = 5.0
    max_queued: int = 262_144
    max_queue_ms: float = 0.0  # > 0: new input is shed while the queue would take longer to handle


DEFAULT_RECEIVERS = {
    "syslog_udp": ReceiverConfig(type="udp", format="syslog", address="127.0.0.1:1514"),
    "syslog_tcp": ReceiverConfig(type="tcp", format="syslog", address="127.0.0.1:1514"),
    "custom_http": ReceiverConfig(type="http", format="custom", address="127.0.0.1:8082"),
    "snmp": ReceiverConfig(type="snmp", format="snmp", address="127.0.0.1:1162"),
}


@dataclass(frozen=True)
class Config:
    """The whole node configuration."""

    node: NodeConfig = field(default_factory=NodeConfig)
    receivers: dict[str, ReceiverConfig] = field(default_factory=lambda: dict(DEFAULT_RECEIVERS))
    admin: AdminConfig = field(default_factory=AdminConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    sinks: dict[str, SinkConfig] = field(default_factory=lambda: {"stdout": jsonl_sink("-")})
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    ha: HaConfig = field(default_factory=HaConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)


T = TypeVar("T")

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _check_type(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: a TOML value of X (absent is None)
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        origin = typing.get_origin(hint)
    if origin is tuple:  # tuple[X, ...]: a TOML array of X
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, not {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict:  # dict[str, X]: a TOML table of X
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table, not {value!r}")
        item = typing.get_args(hint)[1]
        return {k: _check_type(f"{key}.{k}", v, item) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)  # type: ignore[arg-type]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, hint):
        raise ConfigError(key, f"must be {_TYPE_NAMES.get(hint, hint)}, not {value!r}")
    return value


def _build(cls: type[T], table: Any, prefix: str) -> T:
    if not isinstance(table, dict):
        raise ConfigError(prefix, "must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", f"unknown key (known: {', '.join(known)})")
    values = {}
    for name, f in known.items():
        key = f"{prefix}.{name}"
        if name in table:
            values[name] = _check_type(key, table[name], hints[name])
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(key, "is required")
    return cls(**values)


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be greater than 0, not {value}")


def _one_of(key: str, value: str, allowed: typing.Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(allowed)}")


def _validate(config: Config, known_formats: typing.Iterable[str]) -> None:
    formats = tuple(known_formats)
    if not config.receivers:
        raise ConfigError("receivers", "at least one receiver is required")
    for name, r in config.receivers.items():
        key = f"receivers.{name}"
        _one_of(f"{key}.type", r.type, RECEIVER_TYPES)
        if r.type == "snmp":
            _one_of(f"{key}.format", r.format, ("snmp",))
        elif not r.format:
            raise ConfigError(f"{key}.format", f"is required for type {r.type!r}")
        else:
            _one_of(f"{key}.format", r.format, formats)
        parse_address(f"{key}.address", r.address)
        if r.type == "snmp":
            from gateway._snmp_config import snmp_config  # it needs this module's classes

            snmp_config(name, r, config.node.name)
        for limit in ("rcvbuf", "max_frame", "max_body", "max_connections"):
            _positive(f"{key}.{limit}", getattr(r, limit))
    parse_address("admin.address", config.admin.address)
    _one_of("dedup.mode", config.dedup.mode, DEDUP_MODES)
    _one_of("dedup.store", config.dedup.store, STORES)
    _positive("dedup.window", config.dedup.window)
    _positive("dedup.max_entries", config.dedup.max_entries)
    _positive("node.stop_timeout", config.node.stop_timeout)
    _one_of("spool.fsync", config.spool.fsync, FSYNC_POLICIES)
    _positive("spool.fsync_interval", config.spool.fsync_interval)
    if not config.sinks:
        raise ConfigError("sinks", "at least one sink is required")
    for name, sink in config.sinks.items():
        key = f"sinks.{name}"
        for i, name_of_format in enumerate(sink.formats):
            _one_of(f"{key}.formats[{i}]", name_of_format, formats)
        for limit in ("batch_size", "timeout", "retry_initial", "retry_max", "concurrency", "backlog"):
            _positive(f"{key}.{limit}", getattr(sink, limit))
        _one_of(f"{key}.overflow", sink.overflow, OVERFLOW_POLICIES)
    _positive("quarantine.max_bytes", config.quarantine.max_bytes)
    _positive("pipeline.batch_size", config.pipeline.batch_size)
    _positive("pipeline.flush_ms", config.pipeline.flush_ms)
    _positive("pipeline.max_queued", config.pipeline.max_queued)
    queue_ms = config.pipeline.max_queue_ms
    if queue_ms < 0:
        raise ConfigError("pipeline.max_queue_ms", f"must be 0 (off) or more, not {queue_ms}")
    if queue_ms and config.dedup.store == "redis":
        raise ConfigError("pipeline.max_queue_ms", "must be 0 in a pair: through a promotion or a pause "
                          "it would shed events that only this node received")
    if not config.node.name:
        raise ConfigError("node.name", "must not be empty")
    if config.dedup.store == "redis":
        for key in ("local",) if config.redis.cluster else ("local", "peer"):
            url = getattr(config.redis, key)
            if not url.startswith(("redis://", "rediss://")):
                raise ConfigError(f"redis.{key}", f"{url!r} is not a redis:// or rediss:// URL")
            try:
                parts = urllib.parse.urlsplit(url)
                port = parts.port
            except ValueError as exc:
                raise ConfigError(f"redis.{key}", f"{url!r}: {exc}") from None
            if not parts.hostname or port == 0:
                raise ConfigError(f"redis.{key}", f"{url!r} names no host and port")
        _one_of("ha.role", config.ha.role, ROLES)
        if not config.ha.token:
            raise ConfigError("ha.token", "is required with dedup.store = 'redis' (it guards POST /role)")
        for key in ("grace", "check_after", "max_pending"):
            _positive(f"ha.{key}", getattr(config.ha, key))
        for key in ("lease", "replica_wait", "catch_up", "spool_fsync_interval"):
            _positive(f"ha.{key}", getattr(config.ha, key))
        _one_of("ha.spool_fsync", config.ha.spool_fsync, FSYNC_POLICIES)
        if config.ha.degrade_after < 0:
            raise ConfigError("ha.degrade_after", "must be 0 (forward at once in degraded mode) or more")
    _validate_controller(config.controller)


def validate_for_controller(config: Config) -> None:
    """What `trapgate controller` needs beyond a valid node config: an HA node, paths, a key."""
    c = config.controller
    if config.dedup.store != "redis":
        raise ConfigError("dedup.store", "must be 'redis': a controller drives a node of an HA pair")
    if not c.paths:
        raise ConfigError("controller.paths", "at least one heartbeat path is required")
    if not c.key:
        raise ConfigError("controller.key", "is required (it authenticates the heartbeats)")


def _validate_controller(c: ControllerConfig) -> None:
    for name, path in c.paths.items():
        parse_address(f"controller.paths.{name}.local", path.local)
        parse_address(f"controller.paths.{name}.peer", path.peer)
    for name, check in c.checks.items():
        _one_of(f"controller.checks.{name}", name, CHECKS)
        if check.every < 0 or check.fail_after < 0:
            raise ConfigError(f"controller.checks.{name}", "every and fail_after must be 0 or more")
    if c.tcp is not None:
        parse_address("controller.tcp.local", c.tcp.local)
        parse_address("controller.tcp.peer", c.tcp.peer)
    for i, witness in enumerate(c.witnesses):
        parse_address(f"controller.witnesses[{i}]", witness)
    parse_address("controller.status", c.status)
    if c.arbiter:
        parse_address("controller.arbiter", c.arbiter)
        if c.vote_lease <= c.lease + c.heartbeat:
            raise ConfigError("controller.vote_lease", "must be longer than controller.lease plus one "
                              "heartbeat, so that a master without the vote stops before the vote passes on")
    if c.peer_status:
        parse_address("controller.peer_status", c.peer_status)
    for key in ("heartbeat", "dead_after", "lease", "settle", "min_switch_interval", "notify_timeout",
                "health_every", "fail_after", "min_free_mb", "vote_lease"):
        _positive(f"controller.{key}", getattr(c, key))
    if c.lease >= c.dead_after:
        raise ConfigError("controller.lease", f"must be shorter than controller.dead_after ({c.dead_after}), "
                          "so that a master stops before its peer takes over")
    if c.heartbeat * 2 > c.dead_after:
        raise ConfigError("controller.heartbeat", "must be at most half of controller.dead_after")


_SECTIONS: dict[str, type] = {
    "node": NodeConfig,
    "admin": AdminConfig,
    "dedup": DedupConfig,
    "quarantine": QuarantineConfig,
    "pipeline": PipelineConfig,
    "redis": RedisConfig,
    "ha": HaConfig,
    "controller": ControllerConfig,
    "spool": SpoolConfig,
}


def _receiver(name: str, table: Any) -> ReceiverConfig:
    key = f"receivers.{name}"
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table")
    kind = table.get("type")
    if kind in TYPE_KEYS:
        for option in table.keys() - {"type", "address"} - TYPE_KEYS[kind]:
            if option in {f.name for f in fields(ReceiverConfig)}:
                raise ConfigError(f"{key}.{option}", f"does not apply to type {kind!r}")
    config = _build(ReceiverConfig, table, key)
    if config.type == "snmp" and not config.format:
        config = dataclasses.replace(config, format="snmp")
    return config


_COMMON_SINK_KEYS = frozenset(f.name for f in fields(SinkConfig)) - {"options"}


def _sink(name: str, table: Any) -> SinkConfig:
    """A `[sinks.NAME]` table: the common keys, and the rest checked by the type's own options."""
    from gateway.sinks import SINKS, sink_type  # the sink modules import this one

    key = f"sinks.{name}"
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table")
    kind = table.get("type")
    if not isinstance(kind, str):
        raise ConfigError(f"{key}.type", f"is required (one of {', '.join(SINKS)})")
    _one_of(f"{key}.type", kind, SINKS)
    common = {k: v for k, v in table.items() if k in _COMMON_SINK_KEYS}
    own = {k: v for k, v in table.items() if k not in _COMMON_SINK_KEYS}
    options: Any = _build(sink_type(kind).options, own, key)
    check = getattr(options, "check", None)
    if check is not None:
        check(key)
    return dataclasses.replace(_build(SinkConfig, common, key), options=options)


def jsonl_sink(path: str) -> SinkConfig:
    """A `jsonl` sink writing to `path` ("-": stdout)."""
    from gateway.sinks.jsonl import JsonlOptions

    return SinkConfig(type="jsonl", options=JsonlOptions(path=path))


def _legacy_sink(table: Any) -> dict[str, SinkConfig]:
    """`[sink]` of earlier versions, as the one sink it means."""
    legacy = _build(LegacySinkConfig, table, "sink")
    _one_of("sink.type", legacy.type, LEGACY_SINK_TYPES)
    if legacy.type == "file" and not legacy.path:
        raise ConfigError("sink.path", "is required when sink.type is 'file'")
    return {legacy.type: jsonl_sink(legacy.path if legacy.type == "file" else "-")}


def config_from_dict(data: dict[str, Any], known_formats: typing.Iterable[str]) -> Config:
    """Build and validate a `Config` from a parsed TOML document."""
    sections: dict[str, Any] = {}
    if "sink" in data and "sinks" in data:
        raise ConfigError("sink", "use [sinks.NAME] tables only: [sink] is the single sink of earlier "
                          "versions (type stdout or file), the same as [sinks.NAME] type = \"jsonl\"")
    for key, value in data.items():
        if key == "receivers":
            if not isinstance(value, dict):
                raise ConfigError("receivers", "must be a table of named receivers")
            sections["receivers"] = {name: _receiver(name, table) for name, table in value.items()}
        elif key == "sinks":
            if not isinstance(value, dict):
                raise ConfigError("sinks", "must be a table of named sinks")
            sections["sinks"] = {name: _sink(name, table) for name, table in value.items()}
        elif key == "sink":
            sections["sinks"] = _legacy_sink(value)
        elif key in _SECTIONS:
            sections[key] = _build(_SECTIONS[key], value, key)
        else:
            known = ", ".join(["receivers", "sinks", *_SECTIONS])
            raise ConfigError(key, f"unknown section (known: {known})")
    config = Config(**sections)
    _validate(config, known_formats)
    return _sinks_know_the_window(config)


def _sinks_know_the_window(config: Config) -> Config:
    """A sink option `dedup_window` left unset (a destination's own duplicate window is checked
    against it) takes `[dedup] window`."""
    sinks = {
        name: dataclasses.replace(s, options=dataclasses.replace(s.options, dedup_window=config.dedup.window))
        if getattr(s.options, "dedup_window", 0) is None else s
        for name, s in config.sinks.items()
    }
    return dataclasses.replace(config, sinks=sinks)


def load_config(path: str | Path, known_formats: typing.Iterable[str]) -> Config:
    """Read and validate a TOML config file; every failure is a `ConfigError`."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}", file=True) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "is not UTF-8 text", file=True) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"is not valid TOML: {exc}", file=True) from None
    return config_from_dict(data, known_formats)


def default_config(known_formats: typing.Iterable[str]) -> Config:
    """The embedded defaults, validated like any other config."""
    config = Config()
    _validate(config, known_formats)
    return config


