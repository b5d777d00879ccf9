"""The Redis store: claims, forwarded markers and a rescue stream on a shared Redis.

Strategy: every batch is one EVALSHA of a Lua script (`dedup._redis_lua`) that
numbers and claims all of its fingerprints atomically, so a batch costs one
round trip whatever its size. Expiry is left to the server: a node's
occurrence counter gets a TTL of one window when its first copy opens the
window, and the claim of ``f-k`` gets the counter's remaining TTL, so it ends
when that window closes, as in `MemoryStore`; marking an id forwarded rewrites
the value of its claim, so the mark costs no key and ends with the window. The
`now` a caller passes is
not used: both nodes write to one primary, and its clock is the only one they
share; Redis replicates expiries as absolute times, so a promoted replica
keeps the same deadlines. Everything about fingerprint ``f`` sits under the
hash tag ``{f}``, so with Redis Cluster a batch is split by the node that
serves each slot and claimed with one call per node, concurrently; a single
server skips all of that. Scripts are not persisted on the server: after a
restart or a promotion the first call gets NOSCRIPT, loads the script and
calls again. Fingerprints travel as one newline-joined argument, which is
cheaper to pack than a thousand. redis-py's retries are off because a claim
is not idempotent: a repeat after a lost reply would count copies twice. Every
redis-py error becomes a `StoreError` here and nowhere else.

Fencing: every write carries `RedisStore.epoch`, the epoch of the node that
writes; the scripts refuse a lower one than the server has seen
(`FencedError`). A master's claims and marks can wait for the replica (WAIT
on the same connection, in one round trip with the script), so that a
promoted replica holds the windows of what the master sent and the marks of
what it forwarded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError, ResponseError

from dedup._redis_errors import store_error
from dedup._redis_lua import (
    CLAIM,
    CLAIM_IDS,
    FORWARDED,
    MARK_FORWARDED,
    MARK_THROUGH,
    RAISE_EPOCH,
    RESCUE_ADD,
    TAKE_IDS,
    Script,
)
from dedup._store import Mode

_Client = Redis | RedisCluster

RESCUE_GROUP = "trapgate"
"""Consumer group of the rescue stream; its consumers are the masters."""

_EVICTED_EVERY = 64  # claims between two reads of evicted_keys (INFO) inside the script


@dataclass(frozen=True)
class RedisSettings:
    """Where the store's Redis is and how to talk to it.

    `url` (``redis://``, ``rediss://``), when set, gives the address and may
    carry credentials; `host`, `port` and `db` are used otherwise. `username`
    and `password` (ACL user, or just a password for ``requirepass``) override
    the URL's. `tls` turns on TLS with `tls_ca` to verify the server and
    `tls_cert`/`tls_key` for a client certificate. Timeouts are in seconds.
    All keys start with `prefix`, which must not hold ``{`` or ``}``.
    `cluster` talks to a Redis Cluster (`host`:`port` or `url` is any node).
    `rescue_maxlen` bounds the rescue stream: entries beyond it are refused,
    never trimmed (an entry may be the only copy of an event).
    """

    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout: float = 1.0
    socket_timeout: float = 2.0
    prefix: str = "tg:"
    cluster: bool = False
    rescue_maxlen: int = 100_000

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("prefix must not contain '{' or '}' (they are the hash tag)")
        if self.connect_timeout <= 0 or self.socket_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.rescue_maxlen < 1:
            raise ValueError("rescue_maxlen must be at least 1")
        if self.cluster and self.db != 0:
            raise ValueError("Redis Cluster has only database 0")


def _connect(s: RedisSettings, socket_timeout: float | None) -> _Client:
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": s.connect_timeout,
        "socket_timeout": socket_timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }
    if s.username is not None:
        kwargs["username"] = s.username
    if s.password is not None:
        kwargs["password"] = s.password
    url = s.url
    if s.tls:
        kwargs.update(ssl_ca_certs=s.tls_ca, ssl_certfile=s.tls_cert, ssl_keyfile=s.tls_key)
        if url and url.startswith("redis://"):  # a URL says TLS by its scheme (redis-py refuses ssl=True)
            url = "rediss://" + url.removeprefix("redis://")
        elif not url:
            kwargs["ssl"] = True
    if s.cluster:
        if url:
            return RedisCluster.from_url(url, **kwargs)
        return RedisCluster(host=s.host, port=s.port, **kwargs)
    if url:
        return Redis.from_url(url, **kwargs)
    return Redis(host=s.host, port=s.port, db=s.db, **kwargs)


def _window_ms(window: float) -> int:
    if window <= 0:
        raise ValueError("window must be positive")
    return max(1, round(window * 1000))


EPOCHS = 1 << 20  # epochs below this fit the claims' values (see `dedup._redis_lua`)


def _claim_value(epoch: int, seq: int | None) -> bytes:
    if not 0 < epoch < EPOCHS:
        raise ValueError(f"a claiming epoch must be between 1 and {EPOCHS - 1}, not {epoch}")
    if seq is None:
        return str(epoch).encode()
    if not 0 < seq < 1 << 33:
        raise ValueError("seq out of range")
    return str(seq * EPOCHS + epoch).encode()


class ServerRole(NamedTuple):
    """What ROLE says of a server: ``master`` with its connected replicas, or a ``slave`` of `primary`."""

    role: str
    offset: int
    replicas: int = 0
    lag: int = 0  # bytes the slowest connected replica has yet to confirm
    primary: tuple[str, int] | None = None
    link: str = ""


def _fp_of_id(event_id: str) -> str:
    return event_id.partition("-")[0]


def _joined(items: Sequence[str]) -> str:
    """`items` as the one newline-separated argument the scripts split."""
    joined = "\n".join(items)
    if joined.count("\n") != len(items) - 1:
        raise ValueError("fingerprints and event ids must not contain a newline")
    return joined


def _stream_entries(reply: Any) -> list[tuple[str, bytes]]:
    """``(id, payload)`` pairs from an XREADGROUP/XAUTOCLAIM entry list; deleted entries are skipped."""
    out = []
    for entry_id, fields in reply or ():
        if fields:
            raw_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append((raw_id, bytes(fields[b"e"])))
    return out


class RedisStore:
    """`Store` on Redis or Redis Cluster, plus the primitives of the HA data path.

    Claims behave like `MemoryStore`'s (see `Store.claim`), with expiry kept
    by the server. Forwarded markers and the rescue stream let a standby see
    what the master forwarded and hand it what it did not. Every method
    raises `StoreError` (with a stable `reason`) when Redis cannot answer.
    """

    def __init__(self, settings: RedisSettings | None = None, epoch: int = 1) -> None:
        self.settings = settings or RedisSettings()
        self.epoch = epoch  # carried by every write (see the module docstring)
        self._prefix = self.settings.prefix.encode()
        self._rescue_key = self.settings.prefix + "rescue"
        self._forwarded_key = self.settings.prefix + "forwarded"
        self._epoch_key = self.settings.prefix + "{pair}epoch"
        self._client: _Client = _connect(self.settings, self.settings.socket_timeout)
        self._blocking: _Client | None = None  # for XREADGROUP BLOCK, created on first use
        self._refresh_slots = False
        self._claims = 0
        self._calls = 0
        self._script_loads = 0
        self._errors = 0
        self._entries: dict[str, int] = {}  # node name -> DBSIZE after its last claim
        self._evicted: dict[str, int] = {}  # node name -> evicted_keys, last read

    # -- claims ---------------------------------------------------------------

    @property
    def _fence(self) -> int:
        """The epoch the scripts check: -1 on a cluster (see `dedup._redis_lua`)."""
        return -1 if self.settings.cluster else self.epoch

    async def claim(
        self, node: str, fingerprints: Sequence[str], mode: Mode, window: float, now: float,
        seq: int | None = None, token: str = "",
    ) -> tuple[list[str], list[bool]]:
        """Number and claim a batch with one script call (one per cluster node).

        Same contract as `Store.claim`; `now` is ignored because the windows
        and claims expire by the server's clock (see the module docstring).
        Fingerprints must not contain ``{``, ``}`` or a newline. With `seq`
        (from 1, growing from batch to batch, below 2**33) the ids won count
        as forwarded once `forwarded_through` raised this epoch's watermark to
        seq. Each master term has its own epoch, so a batch a crashed master
        lost is never covered by a later watermark.

        With a `token` (unique to the batch), a call made
        again with the same token and fingerprints after its reply was lost
        returns the same ids, and wins what the first call won, instead of
        counting the copies twice; the numbers are kept one window.
        """
        ids, won, _ = await self.claim_replicated(node, fingerprints, mode, window, now, seq, token)
        return ids, won

    async def claim_replicated(
        self, node: str, fingerprints: Sequence[str], mode: Mode, window: float, now: float,
        seq: int | None = None, token: str = "", replicas: int = 0, wait: float = 1.0,
    ) -> tuple[list[str], list[bool], int]:
        """`claim`, and with `replicas` > 0 (a single server) wait up to `wait` seconds until that
        many replicas hold it too, in the same round trip; returns the ids, what was won and how many
        replicas confirmed (0 when not asked)."""
        value = _claim_value(self.epoch, seq)
        how = b"e" if mode is Mode.EXACT else b"s"
        return await self._claim(node, fingerprints, how, window, value, token, replicas, wait)

    async def number(self, node: str, fingerprints: Sequence[str], mode: Mode, window: float,
                     token: str = "") -> list[str]:
        """The ids `claim` would give these copies, counted but not claimed.

        For a node that does not forward (a standby): its copies take their
        place in its occurrence counters, so the ids stay consistent when it
        becomes master. Suppress mode numbers every copy 1, in the open window.
        A `token` makes a repeated call idempotent, as in `claim`.
        """
        how = b"n" if mode is Mode.EXACT else b"u"
        ids, _, _ = await self._claim(node, fingerprints, how, window, b"0", token)
        return ids

    async def _claim(
        self, node: str, fingerprints: Sequence[str], how: bytes, window: float, value: bytes, token: str,
        replicas: int = 0, wait: float = 1.0,
    ) -> tuple[list[str], list[bool], int]:
        if not fingerprints:
            return [], [], 0
        self._claims += 1
        want_evicted = b"1" if self._claims % _EVICTED_EVERY == 1 else b"0"
        head = [self._prefix, how, _window_ms(window), node, want_evicted, value, self._fence, token]
        ids = [""] * len(fingerprints)
        won = [False] * len(fingerprints)
        acked = 0
        if replicas and isinstance(self._client, Redis):
            args = [*head, _joined(fingerprints)]
            reply, acked = await self._guard(self._eval_then_wait(CLAIM, args, replicas, wait))
            replies = [("", range(len(fingerprints)), reply)]
        else:
            replies = await self._guard(self._per_node(CLAIM, head, fingerprints, str))
        for name, indexes, reply in replies:
            self._entries[name] = reply[-2]
            if reply[-1] >= 0:
                self._evicted[name] = reply[-1]
            for i, k, tag in zip(indexes, reply[0:-2:2], reply[1:-2:2], strict=True):
                ids[i] = f"{fingerprints[i]}-{tag.decode()}-{k if k > 0 else -k}"
                won[i] = k > 0
        return ids, won, acked

    async def claim_ids(
        self, ids: Sequence[str], window: float, now: float, node: str | None = None
    ) -> list[bool]:
        """Claim given event ids for `window` seconds each, in one call; True where won.

        For ids numbered elsewhere: claims made locally while the store was
        unreachable, pending events a promoted node forwards. With `node`,
        that node's counter of each fingerprint is raised to the id's
        occurrence (a window opens if none is), so its next copies are
        numbered after them. `now` is ignored, as in `claim`.
        """
        return await self._claim_ids(b"c" if node is None else b"b", node or "", ids, window)

    async def count_ids(self, node: str, ids: Sequence[str], window: float) -> None:
        """Raise `node`'s counters to these ids' occurrences, as `claim_ids` does; claim nothing.

        For ids a node numbered by itself while the store was unreachable.
        """
        await self._claim_ids(b"n", node, ids, window)

    async def _claim_ids(self, how: bytes, node: str, ids: Sequence[str], window: float) -> list[bool]:
        if not ids:
            return []
        _claim_value(self.epoch, None)  # the range check
        head = [self._prefix, _window_ms(window), how, node, self.epoch, self._fence]
        won = [False] * len(ids)
        for _, indexes, reply in await self._guard(self._per_node(CLAIM_IDS, head, ids, _fp_of_id)):
            for i, flag in zip(indexes, reply, strict=True):
                won[i] = flag == 1
        return won

    async def take_ids(self, ids: Sequence[str], window: float) -> list[int]:
        """Take ids handed to this master (rescued, or from a spool); one call.

        Per id: 1 taken (unclaimed, or claimed by a lower epoch and not
        forwarded: its master is gone or fenced), 0 forwarded already, 2
        claimed by a batch of this epoch and not yet forwarded (this master
        has it), 3 taken or claimed by id at this epoch and not yet forwarded
        (this master has it, or took it with a call whose reply was lost).
        """
        if not ids:
            return []
        _claim_value(self.epoch, None)  # the range check
        head = [self._prefix, _window_ms(window), self.epoch, self._fence, await self._watermarks()]
        out = [0] * len(ids)
        for _, indexes, reply in await self._guard(self._per_node(TAKE_IDS, head, ids, _fp_of_id)):
            for i, taken in zip(indexes, reply, strict=True):
                out[i] = int(taken)
        return out

    async def fresh(self) -> bool:
        """True once per store that may have lost its data (new, or restarted empty).

        Sets a marker key without expiry; it is missing again only when the
        data set was lost.
        """
        self._calls += 1
        key = self.settings.prefix + "kept"
        return await self._guard(self._client.execute_command("SET", key, 1, "NX")) is not None

    # -- forwarded markers ----------------------------------------------------

    async def mark_forwarded(
        self, ids: Sequence[str], window: float = 30.0, replicas: int = 0, wait: float = 1.0
    ) -> int:
        """Mark event ids forwarded, in one call (one per cluster node).

        The mark is kept on the id's claim and expires with it, that is when
        the window that numbered the id closes; an id whose claim is already
        gone (or was never made here) gets a marker that lives `window`
        seconds. With `replicas` > 0 (a single server), waits up to `wait`
        seconds until that many replicas hold the mark too, in the same
        round trip; returns how many did (0 when not asked).
        """
        if not ids:
            return 0
        args = [self._prefix, _window_ms(window), self._fence]
        if replicas and isinstance(self._client, Redis):
            marked = self._eval_then_wait(MARK_FORWARDED, [*args, _joined(ids)], replicas, wait)
            return int((await self._guard(marked))[1])
        await self._guard(self._per_node(MARK_FORWARDED, args, ids, _fp_of_id))
        return 0

    async def forwarded_through(self, seq: int, last_id: str, replicas: int = 0, wait: float = 1.0) -> int:
        """Mark every id this epoch claimed with a seq up to `seq` forwarded; `last_id` is its newest.

        One write, whatever the batch size (see `claim`); the watermark only
        rises. `last_id` is what `progress` reads; the write's time is kept
        for `prune_epochs`. `replicas` and `wait` as in `mark_forwarded`.
        """
        args = [self._prefix, self.epoch, self._fence, seq, int(time.time()), last_id]
        if replicas and isinstance(self._client, Redis):
            return int((await self._guard(self._eval_then_wait(MARK_THROUGH, args, replicas, wait)))[1])
        await self._guard(self._call_key(self._forwarded_key, MARK_THROUGH, args))
        return 0

    async def _eval_then_wait(
        self, script: Script, args: list[Any], replicas: int, wait: float
    ) -> tuple[Any, int]:
        """Run `script`, then WAIT for `replicas` on the same connection, in one round trip; the
        script's reply and how many replicas confirmed.

        WAIT covers the writes of its own connection only, hence the pipeline.
        """
        assert isinstance(self._client, Redis)
        wait_ms = max(1, round(min(wait, self.settings.socket_timeout * 0.8) * 1000))
        for _ in range(2):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.execute_command("EVALSHA", script.sha, 0, *args)
                pipe.execute_command("WAIT", replicas, wait_ms)
                result, acked = await pipe.execute(raise_on_error=False)
            self._calls += 1
            if isinstance(result, NoScriptError):
                self._script_loads += 1
                await self._client.execute_command("SCRIPT", "LOAD", script.source)  # type: ignore[no-untyped-call]
                continue
            if isinstance(result, BaseException):
                raise result
            if isinstance(acked, BaseException):
                raise acked
            return result, int(acked)
        raise ResponseError("script not loaded")

    async def prune_epochs(self, idle: float) -> int:
        """Forget the watermarks of epochs that marked nothing for `idle` seconds; how many.

        With `idle` longer than the window, every claim they cover has expired.
        """
        fields = await self._hgetall(self._forwarded_key)
        cutoff = time.time() - idle
        stale = [name[2:] for name, value in fields.items() if name.startswith(b"t:") and int(value) < cutoff]
        if stale:
            names = [prefix + epoch for epoch in stale for prefix in (b"w:", b"t:")]
            await self._guard(self._client.execute_command("HDEL", self._forwarded_key, *names))
            self._calls += 1
        return len(stale)

    async def _hgetall(self, key: str) -> dict[bytes, bytes]:
        reply: dict[bytes, bytes] = await self._guard(self._client.execute_command("HGETALL", key))
        self._calls += 1
        return reply

    async def progress(self) -> str | None:
        """The id a master last passed to `forwarded_through`, if any."""
        value = await self._guard(self._client.execute_command("HGET", self._forwarded_key, "last"))
        self._calls += 1
        return None if value is None else bytes(value).decode()

    async def _watermarks(self) -> bytes:
        """Every epoch's watermark, as the scripts take them (epoch and seq on alternate lines)."""
        fields = await self._hgetall(self._forwarded_key)
        return b"".join(
            name[2:] + b"\n" + seq + b"\n" for name, seq in fields.items() if name.startswith(b"w:")
        )

    async def forwarded(self, ids: Sequence[str]) -> list[bool]:
        """For each event id, whether it is marked forwarded; two read-only calls.

        The script is flagged ``no-writes``, so this also works on a replica.
        """
        if not ids:
            return []
        head = [self._prefix, await self._watermarks()]
        out = [False] * len(ids)
        for _, indexes, part in await self._guard(self._per_node(FORWARDED, head, ids, _fp_of_id)):
            for i, flag in zip(indexes, part, strict=True):
                out[i] = flag == 1
        return out

    # -- rescue stream --------------------------------------------------------

    async def rescue_add(self, entries: Sequence[bytes]) -> int:
        """Append entries to the rescue stream (one call); returns how many it took.

        The stream holds at most `RedisSettings.rescue_maxlen` entries: what
        does not fit is refused (the caller keeps it and tries again later),
        never trimmed away unread.
        """
        if not entries:
            return 0
        args = [self._prefix, self._fence, self.settings.rescue_maxlen, *entries]
        added = await self._guard(self._call_key(self._rescue_key, RESCUE_ADD, args))
        return int(added)

    async def rescue_read(
        self, consumer: str, count: int = 100, block_ms: int = 0
    ) -> list[tuple[str, bytes]]:
        """Up to `count` entries never delivered to any consumer, as ``(entry_id, payload)``.

        Entries stay pending for `consumer` until `rescue_ack`. With
        `block_ms` > 0, waits up to that long for an entry to arrive; 0 returns
        at once. The consumer group is created on first use and starts at the
        beginning of the stream, so entries added before any master read are
        delivered too.
        """
        if block_ms > 0:
            if self._blocking is None:
                self._blocking = _connect(self.settings, None)
            client = self._blocking
            deadline: float | None = block_ms / 1000 + self.settings.socket_timeout
        else:
            client, deadline = self._client, None

        args: list[Any] = ["XREADGROUP", "GROUP", RESCUE_GROUP, consumer, "COUNT", count]
        if block_ms > 0:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", self._rescue_key, ">"]

        async def read() -> Any:
            async with asyncio.timeout(deadline):
                return await self._stream(client, *args)

        reply = await self._guard(self._with_group(read))
        self._calls += 1
        return [e for _, entries in reply for e in _stream_entries(entries)]

    async def rescue_reclaim(
        self, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[tuple[str, bytes]]:
        """Take over up to `count` entries delivered to any consumer but unacknowledged for `min_idle_ms`.

        For a new master picking up what a crashed one read and never
        acknowledged (XAUTOCLAIM from the start of the stream).
        """

        async def reclaim() -> Any:
            return await self._stream(self._client, "XAUTOCLAIM", self._rescue_key, RESCUE_GROUP, consumer,
                                      min_idle_ms, "0-0", "COUNT", count)

        reply = await self._guard(self._with_group(reclaim))
        self._calls += 1
        return _stream_entries(reply[1])

    async def rescue_ack(self, entry_ids: Sequence[str]) -> int:
        """Acknowledge and delete handled entries (one round trip); returns how many were pending."""
        if not entry_ids:
            return 0

        async def ack() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xack(self._rescue_key, RESCUE_GROUP, *entry_ids)
                pipe.xdel(self._rescue_key, *entry_ids)
                return await pipe.execute()

        acked, _ = await self._guard(ack())
        self._calls += 1
        return int(acked)

    async def _with_group(self, op: Any) -> Any:
        """Run `op()`, creating the consumer group and retrying once when it is missing."""
        try:
            return await op()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        try:
            await self._stream(self._client, "XGROUP", "CREATE", self._rescue_key, RESCUE_GROUP, "0",
                               "MKSTREAM")
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return await op()

    async def _stream(self, client: _Client, *args: Any) -> Any:
        """Run a raw command on the server, or the cluster node, that holds the rescue stream.

        Naming the cluster node spares redis-py a COMMAND GETKEYS round trip
        for commands whose keys it cannot locate by itself (XREADGROUP).
        """
        kwargs: dict[str, Any] = {}
        if isinstance(client, RedisCluster):
            await client.initialize()
            slot = key_slot(self._rescue_key.encode())
            kwargs["target_nodes"] = client.nodes_manager.get_node_from_slot(slot)
        return await client.execute_command(*args, **kwargs)

    # -- plumbing -------------------------------------------------------------

    # -- replication and epoch -------------------------------------------------

    async def promote(self) -> None:
        """Make this server a primary (REPLICAOF NO ONE)."""
        await self._guard(self._client.execute_command("REPLICAOF", "NO", "ONE"))
        self._calls += 1

    async def replicate_from(self, host: str, port: int) -> None:
        """Make this server a replica of `host`:`port` (it resyncs in the background)."""
        await self._guard(self._client.execute_command("REPLICAOF", host, str(port)))
        self._calls += 1

    async def raise_epoch(self, epoch: int, node: str) -> int:
        """Raise the server's epoch to `epoch` (never lower it), naming `node` its master; returns it.

        Once raised, every write of a lower epoch is refused (`FencedError`).
        """
        args = [self._prefix, epoch, node]
        return int(await self._guard(self._call_key(self._epoch_key, RAISE_EPOCH, args)))

    async def read_epoch(self) -> tuple[int, str]:
        """The server's epoch and the node that took it (0 and "" on a new store); works on a replica."""
        key = self._epoch_key
        epoch, master = await self._guard(
            self._client.execute_command("MGET", key, self.settings.prefix + "{pair}master")
        )
        self._calls += 1
        return int(epoch or 0), bytes(master or b"").decode()

    async def role(self) -> ServerRole:
        """The server's replication role (ROLE); on a cluster, that of the node holding the epoch."""
        async def role() -> Any:
            target = await self._target(self._epoch_key)
            kwargs: dict[str, Any] = {} if target is None else {"target_nodes": target}
            return await self._client.execute_command("ROLE", **kwargs)

        reply = await self._guard(role())
        self._calls += 1
        kind = bytes(reply[0]).decode()
        if kind == "master":
            offset, replicas = int(reply[1]), reply[2]
            lag = offset - min((int(r[2]) for r in replicas), default=offset)
            return ServerRole("master", offset, replicas=len(replicas), lag=lag)
        if kind == "slave":
            host, port, link, offset = reply[1:5]
            return ServerRole("slave", int(offset), primary=(bytes(host).decode(), int(port)),
                              link=bytes(link).decode())
        return ServerRole(kind, 0)

    async def ping(self) -> None:
        """Check that the server (every cluster primary) answers; raises `StoreError` otherwise."""
        kwargs: dict[str, Any] = {}
        if isinstance(self._client, RedisCluster):
            kwargs["target_nodes"] = RedisCluster.PRIMARIES
        await self._guard(self._client.execute_command("PING", **kwargs))
        self._calls += 1

    async def _guard(self, op: Coroutine[Any, Any, Any]) -> Any:
        """Await `op`, turning redis-py (and socket) errors into `StoreError`.

        After any error against a cluster the slot map is reloaded before the
        next call: slots may have moved or a replica may have taken over.
        """
        try:
            if self._refresh_slots and isinstance(self._client, RedisCluster):
                self._refresh_slots = False
                await self._client.nodes_manager.initialize()
            return await op
        except (RedisError, OSError) as exc:
            op.close()  # never started when the refresh failed
            self._errors += 1
            self._refresh_slots = True
            raise store_error(exc) from exc

    async def _target(self, key: str) -> ClusterNode | None:
        """The cluster node that serves `key` (None on a single server)."""
        client = self._client
        if isinstance(client, Redis):
            return None
        await client.initialize()
        return client.nodes_manager.get_node_from_slot(key_slot(key.encode()))

    async def _call_key(self, key: str, script: Script, args: list[Any]) -> Any:
        """`_call` on the server (or cluster node) that holds `key`."""
        return await self._call(await self._target(key), script, args)

    async def _call(self, target: ClusterNode | None, script: Script, args: list[Any]) -> Any:
        """EVALSHA `script` on the server (or cluster node `target`), loading it on NOSCRIPT."""
        kwargs: dict[str, Any] = {} if target is None else {"target_nodes": target}
        self._calls += 1
        try:
            return await self._client.execute_command("EVALSHA", script.sha, 0, *args, **kwargs)
        except NoScriptError:
            self._calls += 2
            self._script_loads += 1
            await self._client.execute_command("SCRIPT", "LOAD", script.source, **kwargs)
            return await self._client.execute_command("EVALSHA", script.sha, 0, *args, **kwargs)

    async def _per_node(
        self, script: Script, head: list[Any], items: Sequence[str], tag_of: Callable[[str], str]
    ) -> list[tuple[str, Sequence[int], list[int]]]:
        """Run `script` over `items` with one call per server that holds them.

        Returns ``(node name, indexes into items, reply)`` per call. A single
        server gets one call with every item. In a cluster the calls run
        concurrently and all of them finish before the first error is raised.
        """
        client = self._client
        if isinstance(client, Redis):
            return [("", range(len(items)), await self._call(None, script, [*head, _joined(items)]))]
        await client.initialize()
        nodes = client.nodes_manager
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, item in enumerate(items):
            target = nodes.get_node_from_slot(key_slot(tag_of(item).encode()))
            groups.setdefault(target.name, (target, []))[1].append(i)
        names = list(groups)
        replies = await asyncio.gather(*(
            self._call(target, script, [*head, _joined([items[i] for i in indexes])])
            for target, indexes in groups.values()
        ), return_exceptions=True)
        out: list[tuple[str, Sequence[int], list[int]]] = []
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            out.append((name, groups[name][1], reply))
        return out

    def stats(self) -> dict[str, int]:
        """Counters from memory, no network: keys and evictions as of the last claim, and calls made.

        ``entries`` is the DBSIZE (summed over cluster nodes) seen by the last
        claim, so it counts counters and markers too, and any other key in the
        database; ``evicted`` is the server's evicted_keys, read every
        64 claims.
        """
        return {
            "entries": sum(self._entries.values()),
            "evicted": sum(self._evicted.values()),
            "calls": self._calls,
            "script_loads": self._script_loads,
            "errors": self._errors,
        }

    async def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        for client in (self._client, self._blocking):
            if client is not None:
                await client.aclose()
