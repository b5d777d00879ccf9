"""Deciding which events of a batch to forward: fingerprint, then claim.

Time comes from `clock` and hashing from `hash`, so tests can replace both;
numbering the copies and claiming them is the store's job (`Store.claim`),
done in one call per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from dedup._fingerprint import fingerprint
from dedup._store import Mode, Store
from formats import Event


class Decisions(NamedTuple):
    """The verdicts on a batch, as lists parallel to its events."""

    fingerprints: list[str]
    ids: list[str]
    forward: list[bool]


@dataclass
class Deduplicator:
    """Fingerprints a batch of `node`'s events and claims them in one call."""

    store: Store
    node: str = "local"
    mode: Mode = Mode.EXACT
    window: float = 30.0
    clock: Callable[[], float] = time.time
    hash: Callable[[Event], str] = fingerprint

    async def decide(self, events: Sequence[Event]) -> Decisions:
        """Verdicts for `events`, in order; the store is asked once."""
        if not events:
            return Decisions([], [], [])
        fps = [self.hash(e) for e in events]
        ids, won = await self.store.claim(self.node, fps, self.mode, self.window, self.clock())
        return Decisions(fps, ids, won)
