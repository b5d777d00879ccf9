"""The last stages of a node: deciding which events to forward, and forwarding.

`Forwarder` renders events and writes them to the sink, retrying a failed
write with backoff until it succeeds (nothing claimed is ever dropped). `DedupStage` is the single-node stage:
claim the batch in the store, forward what this node won.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from dedup import Deduplicator
from formats import Event
from gateway._render import render
from gateway.errors import SinkError
from gateway.metrics import Counters
from gateway.sinks import Sink

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


class Forwarder:
    """Renders events as JSON lines and writes them to the sink."""

    def __init__(self, node: str, sink: Sink, epoch: int = 0) -> None:
        self.node = node
        self.sink = sink
        self.epoch = epoch  # of the master forwarding, shown in each line

    async def forward(
        self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str],
        may_write: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Write one line per event; retry until the sink takes them.

        `may_write`, when given, is asked right before every attempt; when it
        says no, nothing is written and False is returned.
        """
        if not events:
            return True
        node, epoch = self.node, self.epoch
        lines = [render(e, fp, i, node, epoch) for e, fp, i in zip(events, fps, ids, strict=True)]
        delay = 0.1
        while True:
            if may_write is not None and not await may_write():
                return False
            try:
                await self.sink.write(lines)
                return True
            except SinkError as exc:
                log.error("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class DedupStage:
    """Single node: claim each batch in the store, forward the events won."""

    def __init__(self, dedup: Deduplicator, forwarder: Forwarder) -> None:
        self.dedup = dedup
        self.forwarder = forwarder
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
        counters.sent += len(events)
        await self.forwarder.forward(events, fps, ids)

    def gauges(self) -> dict[str, float]:
        """The store's figures."""
        return {f"store_{name}": value for name, value in self.dedup.store.stats().items()}
