"""Deciding which events of a batch to forward.

Strategy: `exact` mode keeps multiplicity. The node counts its own copies of
each fingerprint inside a window that opens with the first copy and lasts W
seconds; the k-th copy claims key (f, k) until the window closes. Two nodes
that each received the same three copies therefore claim (f,1) (f,2) (f,3)
each, and exactly three are forwarded. `suppress` mode claims (f, 1) only: one
forward per fingerprint per window, the rest are counted as suppressed.
Time comes from `clock` and hashing from `hash`, so tests can replace both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from dedup._fingerprint import event_id, fingerprint
from dedup._store import Claim, Store
from formats import Event


class Mode(StrEnum):
    """How repeats of a fingerprint inside the window are treated."""

    EXACT = "exact"
    SUPPRESS = "suppress"


class Decision(NamedTuple):
    """The verdict on one event of a batch."""

    event: Event
    fingerprint: int
    id: str
    forward: bool


@dataclass
class _Window:
    closes_at: float
    count: int


@dataclass
class Deduplicator:
    """Fingerprints a batch, numbers the copies, and claims them in one call.

    The occurrence table is bounded like the store: at most `max_entries`
    open windows; beyond that the oldest window is closed early and counted
    in `evicted`.
    """

    store: Store
    mode: Mode = Mode.EXACT
    window: float = 30.0
    max_entries: int = 1_000_000
    clock: Callable[[], float] = time.time
    hash: Callable[[Event], int] = fingerprint
    evicted: int = 0
    _windows: dict[int, _Window] = field(default_factory=dict)

    def _expire(self, now: float) -> None:
        windows = self._windows
        while windows:
            fp = next(iter(windows))
            if windows[fp].closes_at > now:
                break
            del windows[fp]

    def _cap(self) -> None:
        windows = self._windows
        while len(windows) > self.max_entries:
            del windows[next(iter(windows))]
            self.evicted += 1

    def _occurrence(self, fp: int, now: float) -> tuple[int, float]:
        w = self._windows.get(fp)
        if w is None or w.closes_at <= now:
            if w is not None:
                del self._windows[fp]
            w = self._windows[fp] = _Window(now + self.window, 0)
        w.count += 1
        return w.count, w.closes_at

    async def decide(self, events: Sequence[Event]) -> list[Decision]:
        """One `Decision` per event, in order; the store is asked once."""
        now = self.clock()
        self._expire(now)
        fps = [self.hash(e) for e in events]
        claims = []
        if self.mode is Mode.EXACT:
            for fp in fps:
                k, closes_at = self._occurrence(fp, now)
                claims.append(Claim(fp, k, closes_at))
            self._cap()
        else:
            claims = [Claim(fp, 1, now + self.window) for fp in fps]
        won = await self.store.claim(claims, now) if claims else []
        return [
            Decision(e, c.fingerprint, event_id(c.fingerprint, c.occurrence), w)
            for e, c, w in zip(events, claims, won, strict=True)
        ]

    def open_windows(self) -> int:
        """How many fingerprints have an open occurrence window."""
        return len(self._windows)
