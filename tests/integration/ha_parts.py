"""Pieces of the in-process HA tests: events, leases and stages on a real Redis."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from dedup import Mode, fingerprint
from dedup.redis import RedisSettings, RedisStore
from formats import Event
from gateway.forward import Forwarder
from gateway.ha import HaStage, Lease, Role
from gateway.spool import Spool
from tests.memory_sink import ListSink
from tests.redis_servers import RedisServer


def ev(msg: str) -> Event:
    return Event("syslog", ("10.0.0.9", 514), time.time(), {"msg": msg}, b"", (msg,))


def ids_in_store(redis: RedisServer, events: list[Event], occurrence: int = 1) -> list[str]:
    """The ids of `events` as the `occurrence`-th copies in their open windows on `redis`."""
    with redis.client() as c:
        return [f"{fp}-{c.hget(f'tg:{{{fp}}}w', 't').decode()}-{occurrence}"
                for fp in (fingerprint(e) for e in events)]


def lease(role: Role, epoch: int = 1) -> Lease:
    """A lease that does not run out during a test (no lease keeper runs in process)."""
    return Lease(role, epoch, until=math.inf if role is Role.MASTER else 0.0)


def stage(redis: RedisServer, node: str, role: Role, sink: ListSink, spool: Spool | None = None,
          epoch: int = 1, window: float = 30.0, **kwargs: float) -> HaStage:
    store = RedisStore(RedisSettings(port=redis.port))
    return HaStage(node, store, Forwarder(node, sink), Mode.EXACT, window, lease(role, epoch), spool=spool,
                   **kwargs)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for `condition`; fail, saying `what`, when it does not hold within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class SlowFor(ListSink):
    """Takes lines mentioning `marker` only after `delay` seconds (a slow or retrying sink)."""

    def __init__(self, marker: bytes, delay: float) -> None:
        super().__init__()
        self.marker = marker
        self.delay = delay

    async def write(self, lines: list[bytes]) -> None:
        if any(self.marker in line for line in lines):
            await asyncio.sleep(self.delay)
        self.lines += lines


class StuckSink(ListSink):
    """A sink that never takes anything: the process dies with the batch in hand."""

    async def write(self, lines: list[bytes]) -> None:
        await asyncio.Event().wait()
