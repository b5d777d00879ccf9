"""Deciding which events of a batch to forward.

Strategy: `exact` mode keeps multiplicity. The node counts its own copies of
each fingerprint inside a window that opens with the first copy and lasts W
seconds; the k-th copy claims key (f, k) until the window closes. Two nodes
that each received the same three copies therefore claim (f,1) (f,2) (f,3)
each, and exactly three are forwarded. `suppress` mode claims (f, 1) only: one
forward per fingerprint per window, the rest are counted as suppressed.
Time comes from `clock` and hashing from `hash`, so tests can replace both.
The per-event work is kept to list comprehensions over plain tuples: it runs
for every packet.
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


class Decisions(NamedTuple):
    """The verdicts on a batch, as lists parallel to its events."""

    fingerprints: list[str]
    ids: list[str]
    forward: list[bool]


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
    hash: Callable[[Event], str] = fingerprint
    evicted: int = 0
    # Open windows: fingerprint -> closing time, and -> copies so far. Two
    # dicts of atoms rather than one of lists, so the collector never walks
    # them; insertion order is closing order.
    _closes: dict[str, float] = field(default_factory=dict)
    _copies: dict[str, int] = field(default_factory=dict)

    def _expire(self, now: float) -> None:
        closes = self._closes
        while closes:
            fp = next(iter(closes))
            if closes[fp] > now:
                break
            del closes[fp], self._copies[fp]

    def _cap(self) -> None:
        closes = self._closes
        while len(closes) > self.max_entries:
            fp = next(iter(closes))
            del closes[fp], self._copies[fp]
            self.evicted += 1

    def _claims_exact(self, fps: list[str], now: float) -> list[Claim]:
        closes, copies = self._closes, self._copies
        opens_until = now + self.window
        claims = []
        for fp in fps:
            closes_at = closes.get(fp)
            if closes_at is None or closes_at <= now:
                if closes_at is not None:
                    del closes[fp]
                closes_at = closes[fp] = opens_until
                k = copies[fp] = 1
            else:
                k = copies[fp] = copies[fp] + 1
            claims.append((event_id(fp, k), closes_at))
        self._cap()
        return claims

    async def decide(self, events: Sequence[Event]) -> Decisions:
        """Verdicts for `events`, in order; the store is asked once."""
        now = self.clock()
        self._expire(now)
        fps = [self.hash(e) for e in events]
        if self.mode is Mode.EXACT:
            claims = self._claims_exact(fps, now)
        else:
            closes_at = now + self.window
            claims = [(event_id(fp, 1), closes_at) for fp in fps]
        won = await self.store.claim(claims, now) if claims else []
        return Decisions(fps, [key for key, _ in claims], won)

    def open_windows(self) -> int:
        """How many fingerprints have an open occurrence window."""
        return len(self._closes)
