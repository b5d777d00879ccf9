"""The last stages of a node: deciding which events to forward, and forwarding.

`Forwarder` renders each event once and hands every sink the events it takes
(its formats and field matches), in batches of its size, retrying a failed or
timed-out send with backoff until the sink takes it (nothing claimed is ever
dropped). A batch is forwarded when every sink that takes any of it has
acknowledged its part. `DedupStage` is the single-node stage: claim the batch
in the store, forward what this node won; with a spool, each batch is on disk
from its claim until every sink took it, and what a killed process left there
is sent again at the next start, under the same ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from dedup import Deduplicator
from formats import Event
from gateway._ratelog import RateLimited
from gateway._records import decode_rescue, encode_rescue
from gateway._render import render
from gateway.config import SinkConfig
from gateway.errors import SinkError
from gateway.metrics import Counters
from gateway.sinks import Outgoing, Sink
from gateway.spool import Spool

log = logging.getLogger(__name__)


class Stage(Protocol):
    """What the pipeline hands each parsed batch to."""

    counters: Counters

    async def handle(self, events: list[Event]) -> None:
        """Dedup, forward or hold `events`; return once they are dealt with."""
        ...

    def gauges(self) -> dict[str, float]:
        """Figures for `/metrics`."""
        ...


_ANY = SinkConfig(type="any")
_RESEND_CHUNK = 4096  # spooled events forwarded again at start, per forward


class Forwarder:
    """Renders events as JSON lines and delivers them to every sink (see the module docstring)."""

    def __init__(self, node: str, sinks: Sink | Sequence[Sink], epoch: int = 0,
                 configs: Sequence[SinkConfig] | None = None) -> None:
        self.node = node
        self.sinks = list(sinks) if isinstance(sinks, Sequence) else [sinks]
        self.configs = list(configs) if configs is not None else [_ANY] * len(self.sinks)
        self.epoch = epoch  # of the master forwarding, shown in each line
        self.report = RateLimited(log)

    async def forward(
        self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str],
        may_write: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Deliver one line per event to each sink that takes it; retry until every one has.

        `may_write`, when given, is asked right before every attempt; when it
        says no, that attempt is not made and False is returned (sinks that
        took their part before keep it: sent again later, with the same ids).
        """
        if not events:
            return True
        node, epoch = self.node, self.epoch
        batch = [Outgoing(e, fp, i, render(e, fp, i, node, epoch))
                 for e, fp, i in zip(events, fps, ids, strict=True)]
        if len(self.sinks) == 1:
            return await self._deliver(self.sinks[0], self.configs[0], batch, may_write)
        done = await asyncio.gather(*(self._deliver(sink, config, batch, may_write)
                                      for sink, config in zip(self.sinks, self.configs, strict=True)))
        return all(done)

    async def _deliver(self, sink: Sink, config: SinkConfig, batch: list[Outgoing],
                       may_write: Callable[[], Awaitable[bool]] | None) -> bool:
        """Send a sink its events of `batch`, `concurrency` sends of `batch_size` at a time."""
        if config.formats or config.where:
            batch = [o for o in batch if takes(config, o.event)]
        size = config.batch_size
        if len(batch) <= size:
            return await self._send(sink, config, batch, may_write) if batch else True
        limit = asyncio.Semaphore(config.concurrency)

        async def one(part: list[Outgoing]) -> bool:
            async with limit:
                return await self._send(sink, config, part, may_write)

        parts = [batch[i : i + size] for i in range(0, len(batch), size)]
        return all(await asyncio.gather(*(one(part) for part in parts)))

    async def _send(self, sink: Sink, config: SinkConfig, part: list[Outgoing],
                    may_write: Callable[[], Awaitable[bool]] | None) -> bool:
        counters = sink.counters
        counters.received += len(part)
        delay = config.retry_initial
        started = time.monotonic()
        dropped = sum(counters.dropped.values())
        failures = 0
        while True:
            if may_write is not None and not await may_write():
                return False
            if failures:
                counters.retried += len(part)
            try:
                async with asyncio.timeout(config.timeout):
                    await sink.send(part)
                break
            except (SinkError, TimeoutError) as exc:
                counters.failed += len(part)
                failures += 1
                reason = "timeout" if isinstance(exc, TimeoutError) else "send"
                counters.errors[reason] += 1
                self.report(logging.ERROR, f"{counters.component}_{reason}", "sink %s: %s; retrying in %.1fs",
                            counters.component, str(exc) or f"no answer within {config.timeout}s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, config.retry_max)
        # What the sink dropped (counted by reason: not its kind, rejected) was not sent.
        counters.sent += len(part) - (sum(counters.dropped.values()) - dropped)
        if counters.latency is not None:
            counters.latency.observe(time.monotonic() - started)
        return True


def takes(config: SinkConfig, event: Event) -> bool:
    """Whether a sink configured by `config` takes `event` (its formats and field matches)."""
    if config.formats and event.format not in config.formats:
        return False
    fields = event.fields
    return all(str(fields.get(name)) == value for name, value in config.where.items())


class DedupStage:
    """Single node: claim each batch in the store, forward the events won."""

    def __init__(self, dedup: Deduplicator, forwarder: Forwarder, spool: Spool | None = None) -> None:
        self.dedup = dedup
        self.forwarder = forwarder
        self.spool = spool
        self.counters = Counters("dedup", "stage")

    async def handle(self, events: list[Event]) -> None:
        """Claim `events` and forward the ones this node won."""
        counters = self.counters
        counters.received += len(events)
        fps, ids, won = await self.dedup.decide(events)
        if not all(won):
            keep = [i for i, w in enumerate(won) if w]
            counters.dropped["duplicate"] += len(events) - len(keep)
            events, fps, ids = [events[i] for i in keep], [fps[i] for i in keep], [ids[i] for i in keep]
        await self._forward(events, fps, ids)
        counters.sent += len(events)

    async def _forward(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str]) -> None:
        spool = self.spool
        if spool is None or not events:
            await self.forwarder.forward(events, fps, ids)
            return
        batch = spool.append([encode_rescue(e, f, i) for e, f, i in zip(events, fps, ids, strict=True)])
        await self.forwarder.forward(events, fps, ids)
        spool.ack(batch)
        spool.sync_if_due()

    async def resend_spooled(self) -> int:
        """Forward again what the spool kept from the last run (under its ids), then release it.

        Run beside the pipeline at start: a sink still down holds only these.
        """
        if self.spool is None:
            return 0
        entries = [decode_rescue(entry) for entry in self.spool.recover()]
        for start in range(0, len(entries), _RESEND_CHUNK):
            chunk = entries[start : start + _RESEND_CHUNK]
            await self.forwarder.forward([e for e, _, _ in chunk], [f for _, f, _ in chunk],
                                         [i for _, _, i in chunk])
            self.counters.handed_over["resent"] += len(chunk)
        self.spool.release_kept()
        return len(entries)

    def gauges(self) -> dict[str, float]:
        """The store's figures, and the spool's."""
        spool = {} if self.spool is None else {f"spool_{k}": v for k, v in self.spool.stats().items()}
        return {**{f"store_{name}": value for name, value in self.dedup.store.stats().items()}, **spool}
