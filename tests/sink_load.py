"""A steady flow of events through `Forwarder` to one sink, for the sinks' outage tests.

`drive` produces `rate` events a second from a few sources (each numbering its
events 0, 1, 2...) into a queue, and forwards what is queued in batches, one
`forward` at a time as the pipeline does, while `outage` runs; it returns once
everything produced was forwarded. `check_complete_and_ordered` reads back what
the destination holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from formats import Event
from gateway.config import SinkConfig
from gateway.forward import Forwarder
from gateway.sinks import Sink

SOURCES = 4


def event(source: int, seq: int) -> Event:
    """Event `seq` of `source`: its fields say both."""
    fields = {"msg": f"event {seq} of source {source}", "source": source, "seq": seq}
    return Event("syslog", (f"10.0.0.{source + 1}", 514), time.time(), fields, b"", (source, seq))


def event_id(source: int, seq: int) -> str:
    return f"{source:016x}-1-{seq + 1:x}"


async def drive(sink: Sink, config: SinkConfig, rate: float, seconds: float,
                outage: Callable[[], Awaitable[None]]) -> int:
    """Forward `rate` events a second for `seconds` while `outage` runs; the number of events."""
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    forwarder = Forwarder("test", [sink], configs=[config])
    produced = 0

    async def produce() -> None:
        nonlocal produced
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)  # catches up after the loop was blocked (a server starting)
            while produced < due:
                queue.put_nowait((produced % SOURCES, produced // SOURCES))
                produced += 1
            await asyncio.sleep(0.01)

    async def forward(done: asyncio.Task[None]) -> None:
        while not (done.done() and queue.empty()):
            try:
                first = await asyncio.wait_for(queue.get(), 0.1)
            except TimeoutError:
                continue
            taken = [first]
            while not queue.empty() and len(taken) < config.batch_size:
                taken.append(queue.get_nowait())
            ids = [event_id(s, n) for s, n in taken]
            await forwarder.forward([event(s, n) for s, n in taken], [i.split("-")[0] for i in ids], ids)

    producer = asyncio.create_task(produce())
    await asyncio.gather(producer, forward(producer), outage())
    return produced


def check_complete_and_ordered(seqs_by_source: dict[int, Sequence[int]], produced: int) -> int:
    """Assert every source's events arrived, each in order after its first copy; the copies beyond."""
    copies = 0
    for source in range(SOURCES):
        seqs = list(seqs_by_source.get(source, []))
        first: list[int] = []
        seen: set[int] = set()
        for n in seqs:
            if n not in seen:
                seen.add(n)
                first.append(n)
        copies += len(seqs) - len(first)
        expected = len(range(source, produced, SOURCES))
        assert first == list(range(expected)), f"source {source}: {len(first)} of {expected}, or out of order"
    return copies
