"""Changing a node's role: its Redis, the store it writes to, its lease.

Strategy: the master's Redis is the primary. Becoming master promotes the
local Redis (REPLICAOF NO ONE), points the store at it, increments the epoch
there, takes the lease and forwards every pending event not marked forwarded.
Becoming standby drops the lease first (so the node stops forwarding before
anything else happens), makes the local Redis a replica of the peer's, and
points the store at the peer. The failover controller will drive the same
`set_role`; until then the admin API and `trapgate role` do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from dedup import StoreError
from dedup.redis import RedisSettings, RedisStore
from gateway.config import RedisConfig
from gateway.errors import ConfigError
from gateway.ha import HaStage, Lease, Role

log = logging.getLogger(__name__)


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


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


class Roles:
    """The role of this node of an HA pair, and the switches between roles."""

    def __init__(
        self, stage: HaStage, local: RedisStore, peer: RedisStore | None, peer_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stage = stage
        self.local = local
        self.peer = peer  # None: a shared cluster, which keeps its own replicas
        self.peer_url = peer_url
        self.clock = clock

    @property
    def lease(self) -> Lease:
        """The current lease (role, epoch, expiry)."""
        return self.stage.lease

    def _until(self, lease: float | None) -> float | None:
        return self.clock() + lease if lease else None

    async def set_role(self, role: str, lease: float | None = None) -> dict[str, Any]:
        """Switch to `role` ("master" or "standby"); returns the new state.

        `lease` is how long the master role lasts without renewal (None or 0:
        until changed). Setting the role the node already has renews the
        lease and changes nothing else.
        """
        stage = self.stage
        current = stage.lease
        if Role(role) is current.role and role == Role.MASTER:
            stage.lease = Lease(Role.MASTER, current.epoch, self._until(lease))
            return self.state()
        if role == Role.STANDBY:
            stage.lease = Lease(Role.STANDBY, current.epoch)
            if self.peer is not None:
                host, port = _host_port(self.peer_url)
                try:
                    await self.local.replicate_from(host, port)
                except StoreError as exc:
                    log.error("cannot make the local Redis a replica of %s:%d: %s", host, port, exc)
                stage.store = self.peer
            return self.state()
        if self.peer is not None:
            await self.local.promote()
        stage.store = self.local
        epoch = await self.local.bump_epoch()
        stage.lease = Lease(Role.MASTER, epoch, self._until(lease))
        flushed = await stage.flush_pending()
        log.warning("master at epoch %d; forwarded %d pending events", epoch, flushed)
        return {**self.state(), "flushed": flushed}

    def state(self) -> dict[str, Any]:
        """Role, epoch, lease expiry and whether the node forwards now."""
        lease = self.stage.lease
        return {
            "role": lease.role.value,
            "epoch": lease.epoch,
            "lease_until": lease.until,
            "forwarding": lease.forwarding(self.clock()),
            "degraded": self.stage.degraded,
            "pending": len(self.stage.pending) + len(self.stage.unnumbered),
        }
