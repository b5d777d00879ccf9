"""The last stages of a node: deciding which events to forward, and forwarding.

`Forwarder` renders each event once and hands every sink the events it takes
(its formats and field matches), in batches of its size, retrying a failed or
timed-out send with backoff until the sink takes it (nothing claimed is ever
dropped by a failure). Two ways in:

* `forward` sends a batch to every sink at once and returns when each has
  acknowledged its part: a pair's master, which marks a batch forwarded only
  then, one batch at a time.
* `submit` puts a batch in each sink's lane and returns once every lane has
  room for it; each lane's worker sends its queue in order. `settled` then
  waits until every lane took it or the lanes that have not are failing
  (retrying with backoff): the sinks that work set the pace, and one sink
  that is down does not hold up the others. A lane holds at most `backlog` events;
  when it is full, `overflow` decides: `block` makes `submit` wait (the
  pipeline's queue fills and the receivers shed, counted), `drop_oldest`
  drops the oldest batch that is not being sent (counted as
  `dropped{reason="overflow"}`, never as sent). The `Delivery` it returns
  says when every lane is done with the batch, and which sinks took it.

`DedupStage` is the single-node stage: claim the batch in the store, submit
what this node won; with a spool, each batch is on disk from its claim until
every sink that takes it is done with it (each sink's progress recorded
there too), and what a killed process left is sent again at the next start,
under the same ids, to the sinks that had not taken it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hdrh.histogram import HdrHistogram

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
_LATENCY_MAX_US = 3_600_000_000  # an hour: longer latencies count as an hour


class Delivery:
    """One submitted batch on its way through the lanes of the sinks that take part of it.

    `done` resolves once every such lane is done with its part: `acked` names
    the sinks that took it, `dropped` those whose lane shed it on overflow,
    `abandoned` those whose `may_write` said no before an attempt. `waiting`
    holds the numbers of the lanes not done yet. `on_sink` is called with each
    sink's name as that sink is done (a spool records it).
    """

    def __init__(self, lanes: list[int], on_sink: Callable[[str], None] | None) -> None:
        self.waiting = set(lanes)
        self.on_sink = on_sink
        self.acked: list[str] = []
        self.dropped: list[str] = []
        self.abandoned: list[str] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not lanes:
            self.done.set_result(None)

    def lane_done(self, lane: _Lane, outcome: list[str]) -> None:
        """`lane` is done: `outcome` is `acked`, `dropped` or `abandoned` of this delivery."""
        outcome.append(lane.name)
        if self.on_sink is not None:
            self.on_sink(lane.name)
        self.waiting.discard(lane.number)
        if not self.waiting:
            self.done.set_result(None)


@dataclass
class _Parcel:
    part: list[Outgoing]
    delivery: Delivery
    queued_at: float
    may_write: Callable[[], Awaitable[bool]] | None


@dataclass
class _Lane:
    """One sink's queue and the worker that sends it in order (see the module docstring)."""

    number: int  # its place among the forwarder's lanes
    name: str
    sink: Sink
    config: SinkConfig
    queue: deque[_Parcel] = field(default_factory=deque)
    events: int = 0  # queued, and being sent
    sending: _Parcel | None = None
    failing: bool = False  # its last attempt failed: it retries with backoff
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # a parcel came or went
    worker: asyncio.Task[None] | None = None

    def oldest(self, now: float) -> float:
        first = self.sending or (self.queue[0] if self.queue else None)
        return 0.0 if first is None else now - first.queued_at


class Forwarder:
    """Renders events as JSON lines and delivers them to every sink (see the module docstring)."""

    def __init__(self, node: str, sinks: Sink | Sequence[Sink], epoch: int = 0,
                 configs: Sequence[SinkConfig] | None = None) -> None:
        self.node = node
        self.sinks = list(sinks) if isinstance(sinks, Sequence) else [sinks]
        self.configs = list(configs) if configs is not None else [_ANY] * len(self.sinks)
        self.epoch = epoch  # of the master forwarding, shown in each line
        self.report = RateLimited(log)
        self.lanes = [_Lane(n, sink.counters.component, sink, config)
                      for n, (sink, config) in enumerate(zip(self.sinks, self.configs, strict=True))]
        for lane in self.lanes:
            lane.sink.counters.backlog = lambda lane=lane: (lane.events, lane.oldest(time.monotonic()))
        self._changed = asyncio.Event()  # a lane finished a parcel, or began or stopped failing
        self._nudged = asyncio.Event()  # ends every backoff now (see `nudge`)
        # Microseconds from an event's receipt until every sink took it (see `latency_gauges`).
        self.latency = HdrHistogram(1, _LATENCY_MAX_US, 3)

    def _render(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str]) -> list[Outgoing]:
        node, epoch = self.node, self.epoch
        return [Outgoing(e, fp, i, render(e, fp, i, node, epoch))
                for e, fp, i in zip(events, fps, ids, strict=True)]

    async def forward(
        self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str],
        may_write: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Submit a batch and wait until every sink that takes part of it has; False when a lane
        gave it up because `may_write` said no (sinks that took their part keep it)."""
        delivery = await self.submit(events, fps, ids, may_write=may_write)
        await delivery.done
        return not delivery.abandoned

    async def submit(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str],
                     on_sink: Callable[[str], None] | None = None, skip: frozenset[str] = frozenset(),
                     may_write: Callable[[], Awaitable[bool]] | None = None) -> Delivery:
        """Queue a batch in the lane of every sink that takes part of it (but those in `skip`);
        returns once each lane has room for it (see the module docstring). `may_write`, when given,
        is asked right before every attempt to send it."""
        if not events:
            return Delivery([], None)
        batch = self._render(events, fps, ids)
        parts = []
        for lane in self.lanes:
            if lane.name in skip:
                continue
            config = lane.config
            part = [o for o in batch if takes(config, o.event)] if config.formats or config.where else batch
            if part:
                parts.append((lane, part))
        delivery = Delivery([lane.number for lane, _ in parts], on_sink)
        first, last, n = events[0].received_at, events[-1].received_at, len(events)
        delivery.done.add_done_callback(lambda _: self._took(first, last, n))
        now = time.monotonic()
        for lane, part in parts:
            await self._make_room(lane, len(part))
            lane.queue.append(_Parcel(part, delivery, now, may_write))
            lane.events += len(part)
            lane.moved.set()
            if lane.worker is None:
                lane.worker = asyncio.get_running_loop().create_task(self._run_lane(lane))
        return delivery

    def _took(self, first: float, last: float, n: int) -> None:
        """A batch is forwarded: its events' latency, as that of its first and of its last event
        (a batch spans at most the pipeline's flush interval)."""
        now, record = time.time(), self.latency.record_value
        record(min(max(int((now - first) * 1e6), 1), _LATENCY_MAX_US), n - n // 2)
        if n > 1:
            record(min(max(int((now - last) * 1e6), 1), _LATENCY_MAX_US), n // 2)

    def latency_gauges(self) -> dict[str, float]:
        """p50, p99 and p999 of the forwarding latency since start, in seconds, and its count."""
        h = self.latency
        return {"forward_latency_events": h.get_total_count(),
                **{f"forward_latency_{name}_seconds": h.get_value_at_percentile(pct) / 1e6
                   for name, pct in (("p50", 50.0), ("p99", 99.0), ("p999", 99.9))}}

    async def settled(self, delivery: Delivery) -> None:
        """Until `delivery` is done, or every lane it still waits for is failing (retrying)."""
        while not delivery.done.done():
            if all(self.lanes[n].failing for n in delivery.waiting):
                return
            self._changed.clear()
            await self._changed.wait()

    async def _make_room(self, lane: _Lane, size: int) -> None:
        config, counters = lane.config, lane.sink.counters
        while lane.events and lane.events + size > config.backlog:
            if config.overflow == "drop_oldest" and lane.queue:
                shed = lane.queue.popleft()
                lane.events -= len(shed.part)
                counters.dropped["overflow"] += len(shed.part)
                self.report(logging.ERROR, f"{lane.name}_overflow", "sink %s: backlog full (%d events); "
                            "dropping the oldest", lane.name, config.backlog)
                shed.delivery.lane_done(lane, shed.delivery.dropped)
                self._changed.set()
                continue
            counters.errors["backlog_full"] += 1
            self.report(logging.WARNING, f"{lane.name}_full", "sink %s: backlog full (%d events); "
                        "intake waits", lane.name, config.backlog)
            lane.moved.clear()
            await lane.moved.wait()

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            while not lane.queue:
                lane.moved.clear()
                await lane.moved.wait()
            parcel = lane.sending = lane.queue.popleft()
            took = await self._deliver(lane, parcel.part, parcel.may_write)
            lane.sending = None
            lane.events -= len(parcel.part)
            lane.moved.set()
            delivery = parcel.delivery
            delivery.lane_done(lane, delivery.acked if took else delivery.abandoned)
            self._changed.set()

    def nudge(self) -> None:
        """End every lane's backoff now: its next attempt asks `may_write` at once (the role was
        lost, or the node stops)."""
        self._nudged.set()
        self._nudged = asyncio.Event()

    def backlog(self) -> int:
        """Events queued in the lanes, or being sent."""
        return sum(lane.events for lane in self.lanes)

    async def drain(self) -> None:
        """Until every lane has sent what it holds."""
        while any(lane.events for lane in self.lanes):
            for lane in self.lanes:
                if lane.events:
                    lane.moved.clear()
                    await lane.moved.wait()

    async def close(self) -> None:
        """Stop the lanes' workers (what they held is lost unless a spool keeps it)."""
        for lane in self.lanes:
            if lane.worker is not None:
                lane.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.worker
                lane.worker = None

    async def _deliver(self, lane: _Lane, batch: list[Outgoing],
                       may_write: Callable[[], Awaitable[bool]] | None) -> bool:
        """Send a lane's part of a batch, `concurrency` sends of `batch_size` at a time."""
        size = lane.config.batch_size
        if len(batch) <= size:
            return await self._send(lane, batch, may_write)
        limit = asyncio.Semaphore(lane.config.concurrency)

        async def one(part: list[Outgoing]) -> bool:
            async with limit:
                return await self._send(lane, part, may_write)

        parts = [batch[i : i + size] for i in range(0, len(batch), size)]
        return all(await asyncio.gather(*(one(part) for part in parts)))

    async def _send(self, lane: _Lane, part: list[Outgoing],
                    may_write: Callable[[], Awaitable[bool]] | None) -> bool:
        sink, config = lane.sink, lane.config
        counters = sink.counters
        counters.received += len(part)
        delay = config.retry_initial
        started = time.monotonic()
        dropped = _sink_dropped(counters)
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
            except Exception as exc:  # past SinkError and TimeoutError: a bug of the sink's
                if not isinstance(exc, SinkError | TimeoutError):
                    log.exception("sink %s failed unexpectedly; retrying", counters.component)
                counters.failed += len(part)
                failures += 1
                if not lane.failing:
                    lane.failing = True
                    self._changed.set()
                reason = ("timeout" if isinstance(exc, TimeoutError) else
                          "send" if isinstance(exc, SinkError) else "bug")
                counters.errors[reason] += 1
                self.report(logging.ERROR, f"{counters.component}_{reason}", "sink %s: %s; retrying in %.1fs",
                            counters.component, str(exc) or f"no answer within {config.timeout}s", delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._nudged.wait()
                delay = min(delay * 2, config.retry_max)
        if lane.failing:
            lane.failing = False
            self._changed.set()
        # What the sink dropped (counted by reason: not its kind, rejected) was not sent.
        counters.sent += len(part) - (_sink_dropped(counters) - dropped)
        if counters.latency is not None:
            counters.latency.observe(time.monotonic() - started)
        return True


def _sink_dropped(counters: Counters) -> int:
    """What a sink itself dropped so far (its lane's overflow drops are counted beside them)."""
    return sum(n for reason, n in counters.dropped.items() if reason != "overflow")


def takes(config: SinkConfig, event: Event) -> bool:
    """Whether a sink configured by `config` takes `event` (its formats and field matches)."""
    if config.formats and event.format not in config.formats:
        return False
    fields = event.fields
    return all(str(fields.get(name)) == value for name, value in config.where.items())


class DedupStage:
    """Single node: claim each batch in the store, submit the events won to the sinks' lanes."""

    def __init__(self, dedup: Deduplicator, forwarder: Forwarder, spool: Spool | None = None) -> None:
        self.dedup = dedup
        self.forwarder = forwarder
        self.spool = spool
        self.counters = Counters("dedup", "stage")

    async def handle(self, events: list[Event]) -> None:
        """Claim `events` and submit the ones this node won; returns once every sink took them, or
        the sinks that have not are failing (retrying: their lanes keep them)."""
        counters = self.counters
        counters.received += len(events)
        fps, ids, won = await self.dedup.decide(events)
        if not all(won):
            keep = [i for i, w in enumerate(won) if w]
            counters.dropped["duplicate"] += len(events) - len(keep)
            events, fps, ids = [events[i] for i in keep], [fps[i] for i in keep], [ids[i] for i in keep]
        if not events:
            return
        spool = self.spool
        number = None if spool is None else spool.append(
            [encode_rescue(e, f, i) for e, f, i in zip(events, fps, ids, strict=True)])
        delivery = await self._submit(number, events, fps, ids)
        delivery.done.add_done_callback(lambda _: self._count(delivery, len(events)))
        if spool is not None:
            spool.sync_if_due()
        # The pace of the sinks that take what they get (a sink that is down holds nothing up).
        await self.forwarder.settled(delivery)

    def _count(self, delivery: Delivery, n: int) -> None:
        """Sent once every sink that takes them has; a sink's overflow drop counts here too."""
        if delivery.dropped:
            self.counters.dropped["sink_overflow"] += n
        else:
            self.counters.sent += n

    async def _submit(self, number: int | None, events: Sequence[Event], fps: Sequence[str],
                      ids: Sequence[str], skip: frozenset[str] = frozenset()) -> Delivery:
        """Submit a batch; once every lane is done with it, acknowledge it in the spool (batch
        `number`; each sink's progress is recorded as it comes when several take it)."""
        spool = self.spool
        on_sink = None
        if spool is not None and number is not None and len(self.forwarder.lanes) > 1:
            on_sink = lambda sink: spool.done(number, sink)  # noqa: E731
        delivery = await self.forwarder.submit(events, fps, ids, on_sink, skip)
        if spool is not None and number is not None:
            delivery.done.add_done_callback(lambda _: spool.ack(number))
        return delivery

    async def resend_spooled(self) -> int:
        """Submit again what the spool kept from the last run (under its ids, to the sinks that had
        not taken it); once all of it is done, release it. Run beside the pipeline at start."""
        if self.spool is None:
            return 0
        deliveries, count = [], 0
        for number, entries, done in self.spool.recover_batches():
            for start in range(0, len(entries), _RESEND_CHUNK):
                chunk = [decode_rescue(entry) for entry in entries[start : start + _RESEND_CHUNK]]
                deliveries.append(await self._submit(
                    number if len(entries) <= _RESEND_CHUNK else None, [e for e, _, _ in chunk],
                    [f for _, f, _ in chunk], [i for _, _, i in chunk], done))
                self.counters.handed_over["resent"] += len(chunk)
                count += len(chunk)
        await asyncio.gather(*(d.done for d in deliveries))
        self.spool.release_kept()
        return count

    def gauges(self) -> dict[str, float]:
        """The store's figures, and the spool's."""
        spool = {} if self.spool is None else {f"spool_{k}": v for k, v in self.spool.stats().items()}
        return {**{f"store_{name}": value for name, value in self.dedup.store.stats().items()}, **spool}
