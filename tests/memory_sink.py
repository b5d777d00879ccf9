"""A sink that keeps forwarded lines in memory, for in-process tests."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from gateway.errors import SinkError
from gateway.metrics import Counters
from gateway.sinks import Outgoing


class ListSink:
    """Keeps every line it is given; `msgs` decodes their ``msg`` fields."""

    def __init__(self) -> None:
        self.counters = Counters("list", "sink")
        self.lines: list[bytes] = []

    async def start(self) -> None:
        pass

    async def send(self, batch: Sequence[Outgoing]) -> None:
        await self.write([o.line for o in batch])

    async def write(self, lines: list[bytes]) -> None:
        """What a test's sink overrides: take the JSON lines of a batch."""
        self.lines += lines

    async def close(self) -> None:
        pass

    def msgs(self) -> list[str]:
        return [orjson.loads(line)["msg"] for line in self.lines]

    def ids(self) -> list[str]:
        return [orjson.loads(line)["id"] for line in self.lines]


class DownUntil(ListSink):
    """A sink named `name` that refuses every write until `up` is set (its destination is down)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.counters.component = name
        self.up = False

    async def write(self, lines: list[bytes]) -> None:
        if not self.up:
            raise SinkError("the manager is down")
        self.lines += lines
