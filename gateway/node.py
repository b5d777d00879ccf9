"""One trapgate node: the components of a `Config`, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from dedup import Deduplicator, MemoryStore, Mode, StoreError
from dedup.redis import RedisStore
from formats import get_parser
from gateway import metrics
from gateway.admin import AdminServer
from gateway.config import Config
from gateway.errors import ConfigError, GatewayError
from gateway.forward import DedupStage, Forwarder, Stage
from gateway.ha import HaStage, Lease, Role
from gateway.pipeline import Pipeline
from gateway.quarantine import Quarantine
from gateway.receivers import Receiver, build_receiver
from gateway.roles import Roles, redis_settings
from gateway.sinks import open_sinks
from gateway.spool import Spool

log = logging.getLogger(__name__)


class Node:
    """Receivers -> pipeline -> sinks, plus the admin API, for one config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = time.time()
        self.quarantine = Quarantine(config.quarantine.path, config.quarantine.max_bytes)
        self.sinks = open_sinks(config.sinks)
        self.forwarder = forwarder = Forwarder(config.node.name, list(self.sinks.values()),
                                               configs=list(config.sinks.values()))
        self.roles: Roles | None = None
        self.single: DedupStage | None = None
        self.stage: Stage
        self._resend: asyncio.Task[None] | None = None
        if config.dedup.store == "redis":
            self.roles = self._pair(config, forwarder)
            self.stage = self.roles.stage
        else:
            # One node alone: exact-mode ids are never claimed twice, so none is kept (see MemoryStore).
            store = MemoryStore(config.dedup.max_entries, exact_claims=False)
            dedup = Deduplicator(
                store, node=config.node.name, mode=Mode(config.dedup.mode), window=config.dedup.window
            )
            self.stage = self.single = DedupStage(dedup, forwarder, _spool(
                "spool.path", config.spool.path, config.spool.fsync, config.spool.fsync_interval))
        p = config.pipeline
        self.pipeline = Pipeline(
            config.node.name, self.stage, self.quarantine, p.batch_size, p.flush_ms, p.max_queued,
            p.max_queue_ms,
        )
        self.receivers: list[Receiver] = [
            build_receiver(rc, self.pipeline.intake(name, get_parser(rc.format), rc.type))
            for name, rc in config.receivers.items()
        ]
        self.admin = AdminServer(
            config.admin.address, self.metrics, self.status, self.healthy,
            set_role=self.roles.set_role if self.roles else None, token=config.ha.token,
        )
        self._started: list[Receiver | AdminServer] = []

    @staticmethod
    def _pair(config: Config, forwarder: Forwarder) -> Roles:
        local = RedisStore(redis_settings(config.redis, "local"))
        peer = None if config.redis.cluster else RedisStore(redis_settings(config.redis, "peer"))
        ha = config.ha
        spool = _spool("ha.spool", ha.spool, ha.spool_fsync, ha.spool_fsync_interval)
        stage = HaStage(
            config.node.name, peer or local, forwarder, Mode(config.dedup.mode), config.dedup.window,
            Lease(Role.STANDBY), grace=ha.grace, check_after=ha.check_after, max_pending=ha.max_pending,
            spool=spool, replica_wait=ha.replica_wait, degrade_after=ha.degrade_after,
            epoch_file=Path(f"{ha.spool}.epoch"),
        )
        return Roles(stage, local, peer, config.redis.local, config.redis.peer, lease=ha.lease,
                     catch_up=ha.catch_up)

    def counters(self) -> list[metrics.Counters]:
        """Every component's counters, receivers first."""
        return [
            *(r.intake.counters for r in self.receivers),
            self.stage.counters,
            *(sink.counters for sink in self.sinks.values()),
            self.quarantine.counters,
        ]

    def metrics(self) -> bytes:
        """The Prometheus exposition of the node."""
        return metrics.exposition(self.counters(), self.gauges)

    def gauges(self) -> dict[str, float]:
        """The pipeline's and the stage's figures, and the forwarding latency."""
        return {**self.pipeline.gauges(), **self.forwarder.latency_gauges()}

    def status(self) -> dict[str, Any]:
        """What `/status` shows: identity, uptime, components, gauges."""
        return {
            "node": self.config.node.name,
            "role": self.roles.state() if self.roles else "single",
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "dedup": {"mode": self.config.dedup.mode, "window": self.config.dedup.window,
                      "store": self.config.dedup.store},
            "components": {c.component: c.snapshot() for c in self.counters()},
            "gauges": self.gauges(),
        }

    def healthy(self) -> bool:
        """True while the pipeline worker runs."""
        worker = self.pipeline._worker
        return worker is not None and not worker.done()

    async def start(self) -> list[str]:
        """Start everything; on a failure, stop what started and re-raise."""
        for sink in self.sinks.values():
            await sink.start()
        self.pipeline.start()
        if self.single is not None and self.single.spool is not None:
            self._resend = asyncio.get_running_loop().create_task(self._resend_spooled(self.single))
        if self.roles is not None:
            ha = self.config.ha
            try:
                self.roles.stage.start()
                await self.roles.start(ha.role)
                recovered = await self.roles.stage.recover_spool()
                await self.roles.stage.keep_store()
            except StoreError as exc:
                await self._stop_pair()
                raise GatewayError(f"cannot take the role {ha.role}: redis: {exc}") from None
            except GatewayError:
                await self._stop_pair()
                raise
            if recovered:
                log.warning("handed %d spooled events of the last run to the master", recovered)
        lines = []
        components: list[Receiver | AdminServer] = [*self.receivers, self.admin]
        try:
            for component in components:
                lines.append(await component.start())
                self._started.append(component)
        except GatewayError:
            await self.stop()
            raise
        return lines

    async def stop(self) -> None:
        """Stop receiving, forward what was received, close the sink."""
        for component in reversed(self._started):
            await component.stop()
        self._started.clear()
        if self.roles is not None:
            self.roles.stage.stopping = True  # a master without a lease must not hold the drain up
        await self.pipeline.stop()
        await self._stop_pair()
        if self._resend is not None:
            self._resend.cancel()  # what it did not send again stays in the spool for the next start
            with contextlib.suppress(asyncio.CancelledError):
                await self._resend
        await self._drain_lanes()
        if self.single is not None and self.single.spool is not None:
            self.single.spool.close()
        for sink in self.sinks.values():
            await sink.close()

    async def _drain_lanes(self) -> None:
        """Let the sinks' lanes send what they hold, within most of `node.stop_timeout`."""
        within = self.config.node.stop_timeout * 0.8
        try:
            async with asyncio.timeout(within):
                await self.forwarder.drain()
        except TimeoutError:
            stage = self.single if self.single is not None else self.roles.stage if self.roles else None
            kept = stage is not None and stage.spool is not None
            log.error("the sinks did not take %d events within %.1f s of the stop: %s",
                      self.forwarder.backlog(), within,
                      "the spool keeps them for the next start" if kept else "lost (no [spool] path)")
        await self.forwarder.close()

    @staticmethod
    async def _resend_spooled(stage: DedupStage) -> None:
        sent = await stage.resend_spooled()
        if sent:
            log.warning("forwarded again %d events the spool kept from the last run", sent)

    async def _stop_pair(self) -> None:
        roles = self.roles
        if roles is None:
            return
        await roles.stop()
        await roles.stage.stop()
        await roles.local.close()
        if roles.peer is not None:
            await roles.peer.close()
        if roles.stage.spool is not None:
            roles.stage.spool.close()


def _spool(key: str, path: str, fsync: str, fsync_interval: float) -> Spool | None:
    """The spool at `path` (None for ""); a path that cannot be opened is a config error on `key`."""
    if not path:
        return None
    try:
        return Spool(path, fsync=fsync, fsync_interval=fsync_interval)
    except OSError as exc:
        raise ConfigError(key, f"cannot open {path}: {exc.strerror}") from None


async def serve(config: Config) -> None:
    """Run a node until SIGINT or SIGTERM, then stop it cleanly."""
    node = Node(config)
    for line in await node.start():
        print(f"trapgate: listening {line}", file=sys.stderr, flush=True)
    # Every packet allocates a handful of short-lived containers; with the
    # default threshold (700) the young generation is collected every ~100
    # packets. Collect less often, and keep start-up objects out of it.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("trapgate: stopping", file=sys.stderr, flush=True)
    within = config.node.stop_timeout
    stopping = loop.create_task(node.stop())
    done, _ = await asyncio.wait({stopping}, timeout=within)
    if not done:
        # A sink that never answers, or a stop stuck elsewhere: exit all the same, and say where.
        log.error("stopping took longer than node.stop_timeout (%.1f s): exiting with %d events queued "
                  "(the spool keeps the batch being sent); waiting: %s", within, node.pipeline.queued,
                  "; ".join(_waiting_tasks()))
        stopping.cancel()
        await asyncio.wait({stopping}, timeout=1.0)
    else:
        stopping.result()


def _waiting_tasks() -> list[str]:
    """Each other task of the loop as 'coroutine at file:line' of the frame it waits in."""
    out = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        frames = task.get_stack()
        where = f"{frames[-1].f_code.co_filename}:{frames[-1].f_lineno}" if frames else "?"
        out.append(f"{getattr(task.get_coro(), '__qualname__', task.get_name())} at {where}")
    return out
