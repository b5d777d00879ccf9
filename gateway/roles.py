"""Changing a node's role: its Redis, the store it writes to, its lease and epoch.

Strategy: the master's Redis is the primary and the epoch is the fencing
token. Becoming master first learns the epochs of both Redis servers and takes
one above both; when the peer's Redis is still a primary it is fenced first
(its epoch raised, so its master's next write is refused) and the local
replica is given a moment to catch up with what it accepted before. Then the
local Redis is promoted, the peer's is made its replica, this node's own
counters are written back (the replica may have lagged), the lease is taken
and the standby loop flushes every pending event not forwarded. Becoming
standby stops claiming, lets the batch in flight finish and be marked and
replicated, and only then drops the role; the local Redis replicates the
peer's only when that one is a primary, so the pair never ends with two
replicas. A node learns who is master before it takes a role at start: it
never becomes a second master.

The lease keeper renews a master's lease every quarter lease while one of
the pair's Redis servers confirms that no higher epoch exists, and steps the
node down as soon as one shows a higher epoch. Leases run on the monotonic
clock. A standby's keeper follows the epoch and the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from dedup import StoreError
from dedup.redis import RedisSettings, RedisStore, ServerRole
from gateway._ratelog import RateLimited
from gateway.config import RedisConfig
from gateway.errors import ConfigError, GatewayError
from gateway.ha import HaStage, Lease, Role

log = logging.getLogger(__name__)


class RoleError(GatewayError):
    """A role change that cannot be made now; the message says why in one line."""

    reason = "role"


# On promotion, how long the peer's Redis may take to say its epoch and role, or to take the order to
# replicate the new primary. A live one answers in about a millisecond; one that does not answer (its
# node is dead or cut off) should not hold the switchover up for a connect or socket timeout: its
# master has stopped within its lease anyway, and it is fenced as soon as it is reachable again.
_PEER_ANSWERS_WITHIN = 0.3


def redis_settings(config: RedisConfig, which: str) -> RedisSettings:
    """`RedisSettings` for `redis.local` or `redis.peer`."""
    url = getattr(config, which)
    try:
        return RedisSettings(
            url=url,
            username=config.username or None,
            password=config.password or None,
            tls=config.tls,
            tls_ca=config.tls_ca or None,
            tls_cert=config.tls_cert or None,
            tls_key=config.tls_key or None,
            connect_timeout=config.connect_timeout,
            socket_timeout=config.socket_timeout,
            prefix=config.prefix,
            cluster=config.cluster,
        )
    except ValueError as exc:
        raise ConfigError(f"redis.{which}", str(exc)) from None


def _why(exc: StoreError | TimeoutError) -> str:
    """The reason of a store error, or the peer's answer time that ran out."""
    return exc.reason if isinstance(exc, StoreError) else f"no answer within {_PEER_ANSWERS_WITHIN}s"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


class Roles:
    """The role of this node of an HA pair, the switches between roles, and the lease keeper."""

    def __init__(
        self, stage: HaStage, local: RedisStore, peer: RedisStore | None, local_url: str, peer_url: str,
        lease: float = 0.8, catch_up: float = 2.0, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage = stage
        self.local = local
        self.peer = peer  # None: a shared cluster, which keeps its own replicas
        self.local_url = local_url
        self.peer_url = peer_url
        self.lease_seconds = lease
        self.catch_up = catch_up
        self.monotonic = monotonic
        self.report = RateLimited(log)
        self._switching = asyncio.Lock()  # one role change at a time
        self._keeper: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        stage.on_fenced = self._fenced
        stage.on_lost_primary = self._kick.set

    @property
    def lease(self) -> Lease:
        """The current lease (role, epoch, expiry)."""
        return self.stage.lease

    @property
    def node(self) -> str:
        """This node's name."""
        return self.stage.node

    # -- start ------------------------------------------------------------------

    async def start(self, role: str) -> dict[str, Any]:
        """Take `role` at start, unless the peer is master at an epoch at least this node's: then standby."""
        if role == Role.MASTER and self.peer is not None:
            master = await self._peer_master()
            if master is not None:
                log.warning("the config says master, but %s is master at epoch %d: joining as standby",
                            *master)
                role = Role.STANDBY
        state = await self.set_role(role)
        self._keeper = asyncio.get_running_loop().create_task(self._keep())
        return state

    async def _peer_master(self) -> tuple[str, int] | None:
        """(name, epoch) when the peer's Redis is a primary whose master is the peer at an epoch >= ours."""
        assert self.peer is not None
        try:
            epoch, master = await self.peer.read_epoch()
            peer_role = await self.peer.role()
        except StoreError:
            return None
        own = self.lease.epoch
        with contextlib.suppress(StoreError):
            own = max(own, (await self.local.read_epoch())[0])
        if peer_role.role == "master" and master and master != self.node and epoch >= own and epoch > 0:
            return master, epoch
        return None

    # -- role changes -------------------------------------------------------------

    async def set_role(self, role: str, term: float | None = None) -> dict[str, Any]:
        """Switch to `role` ("master" or "standby"); returns the new state.

        `term` is how long the master role lasts unless given again (None:
        no term; the lease keeper's confirmation still applies). Asking for
        the role the node has renews the term and changes nothing else.
        Raises `RoleError` when the switch cannot be made.
        """
        if Role(role) is Role.MASTER and self.stage.lease.role is Role.MASTER:
            # A renewal: never waits behind a role change (a promotion renewed while it flushes).
            self.stage.lease = dataclasses.replace(self.stage.lease, term=self._term(term))
            return self.state()
        async with self._switching:
            try:
                if Role(role) is Role.MASTER:
                    return await self._become_master(term)
                await self._become_standby()
                return self.state()
            except StoreError as exc:
                raise RoleError(f"cannot switch to {role}: redis: {exc}") from None

    def _term(self, term: float | None) -> float | None:
        return self.monotonic() + term if term else None

    async def _become_master(self, term: float | None) -> dict[str, Any]:
        stage = self.stage
        current = stage.lease
        if current.role is Role.MASTER:  # became master while this call waited for the lock
            stage.lease = dataclasses.replace(current, term=self._term(term))
            return self.state()
        local, peer = self.local, self.peer
        local_epoch = (await local.read_epoch())[0]
        peer_epoch, peer_role = 0, None
        if peer is not None:
            try:  # both at once, and briefly: a peer that cannot be reached delays the switchover
                async with asyncio.timeout(_PEER_ANSWERS_WITHIN):
                    (peer_epoch, _), peer_role = await asyncio.gather(peer.read_epoch(), peer.role())
            except (StoreError, TimeoutError) as exc:
                log.warning("the peer's Redis does not answer (%s); promoting without it", _why(exc))
        epoch = max(local_epoch, peer_epoch, current.epoch) + 1
        if peer is not None and peer_role is not None and peer_role.role == "master":
            await peer.raise_epoch(epoch, self.node)  # its master's next write is refused
            await self._catch_up_with(peer)
        if peer is not None:
            await local.promote()
        if await local.raise_epoch(epoch, self.node) != epoch:
            raise RoleError("another node took a higher epoch meanwhile; not promoting")
        if peer is not None and peer_role is not None:
            host, port = _host_port(self.local_url)
            try:
                async with asyncio.timeout(_PEER_ANSWERS_WITHIN):
                    await peer.replicate_from(host, port)
            except (StoreError, TimeoutError) as exc:
                log.warning("cannot make the peer's Redis a replica of this one (%s)", _why(exc))
        local.epoch = epoch
        stage.store = local
        await stage.restore_counters()
        now = self.monotonic()
        stage.lease = Lease(Role.MASTER, epoch, now + self.lease_seconds, self._term(term))
        log.warning("master at epoch %d", epoch)
        flushed = await stage.flushed(timeout=30.0)
        return {**self.state(), "flushed": flushed}

    async def _catch_up_with(self, peer: RedisStore) -> None:
        """Wait (up to `catch_up` s) until the local replica has all the fenced primary accepted."""
        target = (await peer.role()).offset
        deadline = self.monotonic() + self.catch_up
        while self.monotonic() < deadline:
            mine = await self.local.role()
            if mine.role != "slave" or mine.offset >= target:
                return
            await asyncio.sleep(0.01)
        log.warning("the local Redis did not catch up with the peer's within %.1fs; promoting anyway",
                    self.catch_up)

    async def _become_standby(self) -> None:
        stage = self.stage
        if stage.lease.role is Role.MASTER:
            await stage.step_down_gracefully()
        await self._follow_primary()

    async def _follow_primary(self) -> None:
        """Point the store, and the local Redis, at the primary: the peer's when it is one.

        A standby also learns the primary's epoch here.
        """
        stage, peer = self.stage, self.peer
        primary = self.local
        if peer is not None:
            primary = peer
            try:
                peer_role = await peer.role()
            except StoreError as exc:
                self.report(logging.WARNING, "peer_down", "the peer's Redis does not answer (%s)", exc.reason)
                stage.store = peer
                return
            mine = await self._local_role()
            if peer_role.role == "master":
                host, port = _host_port(self.peer_url)
                if mine is None:  # the local Redis is down: the store is the peer's all the same
                    self.report(logging.WARNING, "local_down", "this node's Redis does not answer; "
                                "numbering against the peer's")
                elif mine.role != "slave" or mine.primary != (host, port):
                    await self.local.replicate_from(host, port)
            elif mine is not None and mine.role == "master":
                primary = self.local  # the peer's Redis replicates this one, which stays the primary
        stage.store = primary
        epoch = (await primary.read_epoch())[0]
        if epoch > stage.lease.epoch and stage.lease.role is Role.STANDBY:
            stage.lease = Lease(Role.STANDBY, epoch)
        stage.store.epoch = max(stage.lease.epoch, 1)

    async def _local_role(self) -> ServerRole | None:
        try:
            return await self.local.role()
        except StoreError:
            return None

    def _fenced(self, epoch: int) -> None:
        """A write was refused, or a higher epoch seen: stop forwarding at once, then follow the primary."""
        if self.stage.step_down_at(epoch):
            self._in_background(self._after_step_down())

    def _displaced(self) -> None:
        """The local Redis follows another primary: stop forwarding at once, then follow it."""
        if self.stage.step_down():
            self._in_background(self._after_step_down())

    async def _after_step_down(self) -> None:
        async with self._switching:
            if self.stage.lease.role is Role.STANDBY:
                with contextlib.suppress(StoreError):
                    await self._follow_primary()

    def _in_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the lease keeper ---------------------------------------------------------

    async def _keep(self) -> None:
        every = self.lease_seconds / 4
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.keep_once()
            except Exception:  # the keeper must outlive a bug in one round
                log.exception("lease keeper round failed")

    async def _epoch_of(self, store: RedisStore | None) -> tuple[int, str] | None:
        """The store's epoch and master, or None when it does not answer within a quarter lease.

        A Redis that drops packets (its node cut off) would hold the round up for a socket timeout,
        longer than the lease: the renewal, dated from the round's start, would come too late.
        """
        if store is None:
            return None
        try:
            async with asyncio.timeout(self.lease_seconds / 4):
                return await store.read_epoch()
        except (StoreError, TimeoutError):
            return None

    async def keep_once(self) -> None:
        """Renew a master's lease, or step it down; let a standby follow the epoch and the primary."""
        stage = self.stage
        asked_at = self.monotonic()
        answers = [a for a in await asyncio.gather(self._epoch_of(self.local), self._epoch_of(self.peer))
                   if a is not None]
        lease = stage.lease
        top = max((epoch for epoch, _ in answers), default=0)
        if top > lease.epoch:
            if lease.role is Role.MASTER:
                taker = next(name for epoch, name in answers if epoch == top)
                log.warning("%s took epoch %d (this node has %d): stepping down", taker or "a node", top,
                            lease.epoch)
            self._fenced(top)
            return
        if lease.role is not Role.MASTER:
            async with self._switching:
                if stage.lease.role is Role.STANDBY:
                    with contextlib.suppress(StoreError):
                        await self._follow_primary()
            return
        mine = await self._local_role() if self.peer is not None else None
        if mine is not None and mine.role == "slave":
            log.warning("the local Redis replicates %s: another node is primary; stepping down", mine.primary)
            self._displaced()
            return
        if answers:
            stage.lease = dataclasses.replace(stage.lease, until=asked_at + self.lease_seconds)
        if mine is not None:
            stage.master.replicas = min(mine.replicas, 1)
            if stage.master.replica_lagging and mine.replicas and mine.lag <= 0:
                stage.master.replica_lagging = False

    async def stop(self) -> None:
        """Stop the lease keeper."""
        for task in [self._keeper, *self._background]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def state(self) -> dict[str, Any]:
        """Role, epoch, lease, whether the node forwards now, degraded, pending."""
        stage = self.stage
        lease = stage.lease
        now = self.monotonic()
        return {
            "role": lease.role.value,
            "epoch": lease.epoch,
            "lease_remaining": round(lease.remaining(now), 3),
            "term_remaining": None if lease.term is None else round(max(0.0, lease.term - now), 3),
            "forwarding": lease.forwarding(now),
            "degraded": stage.master.degraded,
            "pending": stage.pending_count(),
        }
