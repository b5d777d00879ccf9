"""A sink that keeps forwarded lines in memory, for in-process tests."""

from __future__ import annotations

import orjson

from gateway.metrics import Counters


class ListSink:
    """Keeps every line it is given; `msgs` decodes their ``msg`` fields."""

    def __init__(self) -> None:
        self.counters = Counters("list", "sink")
        self.lines: list[bytes] = []

    async def write(self, lines: list[bytes]) -> None:
        self.lines += lines

    def close(self) -> None:
        pass

    def msgs(self) -> list[str]:
        return [orjson.loads(line)["msg"] for line in self.lines]

    def ids(self) -> list[str]:
        return [orjson.loads(line)["id"] for line in self.lines]
