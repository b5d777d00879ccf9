"""The per-batch stages of a node: parse, fingerprint and claim, forward.

Strategy: receivers do one thing per packet, an append to their `Intake`.
An intake hands its list to the pipeline as a batch when it is full or when
the flush timer fires, whichever comes first. A single worker task takes
batches in order and runs the stages on the whole batch (parse here, then the `Stage`); it yields to the
loop after every batch so that receiving goes on while it works. The queue
between the two is bounded in events, and optionally in time: a batch that
does not fit within `max_queued` events, or (with `max_queue_ms` set) that
would take the worker longer than that to reach (the queue's events times the
worker's recent time per event, a moving average over the batches it
handled), is shed and counted against its receiver (invariant 5). The time
bound sheds instead of holding seconds of queue at a rate the node cannot
sustain, but also through a stall it would have caught up from (a pair's
promotion, a paused process): off by default, and not for a pair, whose
standby's copies of what it received alone are in that queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from formats import Event, FormatError, Parser, Peer
from gateway.forward import Stage
from gateway.metrics import Counters
from gateway.quarantine import Quarantine

log = logging.getLogger(__name__)

RawItem = tuple[bytes, Peer, float]

_now = time.time


@dataclass
class Batch:
    """Work for the pipeline: raw items to parse, or events parsed already.

    `done`, when set, resolves once the batch's events are forwarded (or
    found to be duplicates), for receivers that acknowledge their senders.
    """

    source: Intake
    raw: list[RawItem] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    done: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.raw) + len(self.events)


class Intake:
    """Where one receiver drops what it receives; batches are cut here.

    `decode` turns one raw input into its Event: the parser's `parse` unless
    the receiver sets its own (one that answers the sender too, and returns
    None where the input held no event to forward).
    """

    def __init__(self, pipeline: Pipeline, name: str, parser: Parser, kind: str) -> None:
        self.pipeline = pipeline
        self.name = name
        self.parser = parser
        self.decode: Callable[[bytes, Peer, float], Event | None] = parser.parse
        self.counters = Counters(name, kind)
        self.items: list[RawItem] = []
        self._batch_size = pipeline.batch_size

    def add(self, data: bytes, peer: Peer) -> None:
        """Queue one raw input; the hot path of every receiver."""
        items = self.items
        items.append((data, peer, _now()))
        if len(items) >= self._batch_size:
            self.flush()

    def add_received(self, receive: Callable[[list[RawItem], float], int]) -> None:
        """Let `receive` append raw inputs to the batch being cut (one call for many: a socket
        drained at once, each input stamped with one time)."""
        receive(self.items, _now())
        if len(self.items) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Hand the items gathered so far to the pipeline."""
        if self.items:
            items, self.items = self.items, []
            self.counters.received += len(items)
            self.pipeline.submit(Batch(self, raw=items))

    def reject(self, peer: Peer, error: FormatError, raw: bytes) -> None:
        """Count and quarantine input the receiver itself found malformed."""
        self.counters.received += 1
        self.pipeline.reject(self, peer, error, raw)


class Pipeline:
    """Batches in, forwarded JSON lines out; one worker task."""

    def __init__(
        self,
        node: str,
        stage: Stage,
        quarantine: Quarantine,
        batch_size: int,
        flush_ms: float,
        max_queued: int,
        max_queue_ms: float = 0.0,
    ) -> None:
        self.node = node
        self.stage = stage
        self.quarantine = quarantine
        self.batch_size = batch_size
        self.flush_interval = flush_ms / 1000.0
        self.max_queued = max_queued
        self.max_queue_age = max_queue_ms / 1000.0
        self._per_event = 0.0  # seconds the worker took per event, moving average over batches
        self.intakes: list[Intake] = []
        self.queued = 0
        self._queue: deque[Batch] = deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopping = False

    def intake(self, name: str, parser: Parser, kind: str) -> Intake:
        """A new intake for the receiver called `name`."""
        intake = Intake(self, name, parser, kind)
        self.intakes.append(intake)
        return intake

    def start(self) -> None:
        """Start the worker and the flush timer on the running loop."""
        self._worker = asyncio.get_running_loop().create_task(self._run())
        self._tick()

    def _tick(self) -> None:
        for intake in self.intakes:
            intake.flush()
        self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self._tick)

    def submit(self, batch: Batch) -> bool:
        """Queue `batch`, or shed it when the queue is full; False if shed."""
        n = len(batch)
        if self.queued + n > self.max_queued or self._stopping or (
                self.max_queue_age and self.queued and self.queued * self._per_event > self.max_queue_age):
            batch.source.counters.dropped["shed"] += n
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)
            return False
        self.queued += n
        self._queue.append(batch)
        self._wakeup.set()
        return True

    def reject(self, intake: Intake, peer: Peer, error: FormatError, raw: bytes) -> None:
        """Count a malformed input by reason and quarantine it."""
        intake.counters.errors[error.reason] += 1
        self.quarantine.put(intake.name, intake.parser.name, peer, error.reason, str(error), raw)

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = queue.popleft()
            n = len(batch)
            began = time.monotonic()
            try:
                await self._process(batch)
            finally:
                self.queued -= n
                if n:
                    took = (time.monotonic() - began) / n
                    self._per_event = took if not self._per_event else self._per_event * 0.7 + took * 0.3
                if batch.done is not None and not batch.done.done():
                    batch.done.set_result(None)
            # Let the receivers read their sockets before the next batch.
            await asyncio.sleep(0)

    def _parse(self, batch: Batch) -> list[Event]:
        intake = batch.source
        decode = intake.decode
        events = list(batch.events)
        for data, peer, t in batch.raw:
            try:
                event = decode(data, peer, t)
                if event is not None:
                    events.append(event)
            except FormatError as exc:
                self.reject(intake, peer, exc, data)
            except Exception as exc:  # a parser bug must not stop the receiver
                log.exception("parser %s failed on input from %s", intake.parser.name, peer)
                self.reject(intake, peer, FormatError(repr(exc), "parser_bug"), data)
        return events

    async def _process(self, batch: Batch) -> None:
        events = self._parse(batch)
        if events:
            batch.source.counters.sent += len(events)
            await self.stage.handle(events)

    async def drain(self) -> None:
        """Flush every intake and wait until the queue is empty."""
        for intake in self.intakes:
            intake.flush()
        while self._queue or self.queued:
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Drain, then stop the timer and the worker; later input is shed."""
        await self.drain()
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def gauges(self) -> dict[str, float]:
        """Queue depth and the stage's figures, for `/metrics`."""
        return {"queued_events": self.queued, **self.stage.gauges()}
