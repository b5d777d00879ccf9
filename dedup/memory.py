"""The embedded store: occurrence windows and claims in bounded dicts.

Strategy: a dict keeps insertion order, and entries are made in time order
with one window length, so the oldest entry is always first. Expiry pops from
the front until it meets a live entry; the cap evicts from the front too (the
entry closest to expiring) and counts it. An evicted id can be won again:
eviction trades a possible duplicate for bounded memory, never a loss. Every
dict holds only strings and floats or ints, which the garbage collector never
walks, however many there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from dedup._fingerprint import event_id
from dedup._store import Mode


class _Bounded:
    """Keys with an expiry, oldest first, at most `cap` of them.

    `values`, when given, holds data per key and loses a key with it.
    """

    def __init__(self, cap: int, values: dict[str, int] | None = None) -> None:
        self.cap = cap
        self.evicted = 0
        self.expires: dict[str, float] = {}
        self.values = values

    def _drop(self, key: str) -> None:
        del self.expires[key]
        if self.values is not None:
            del self.values[key]

    def expire(self, now: float) -> None:
        expires = self.expires
        while expires:
            key = next(iter(expires))
            if expires[key] > now:
                break
            self._drop(key)

    def enforce_cap(self) -> None:
        overflow = len(self.expires) - self.cap
        if overflow > 0:
            self.evicted += overflow
            for key in list(islice(self.expires, overflow)):
                self._drop(key)


class MemoryStore:
    """In-process store holding at most `max_entries` claims and windows each."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._claims = _Bounded(max_entries)
        self._copies: dict[str, int] = {}  # "node fp" -> copies so far
        self._windows = _Bounded(max_entries, self._copies)  # "node fp" -> closing time

    def _number_exact(
        self, node: str, fps: Sequence[str], window: float, now: float
    ) -> list[tuple[str, float]]:
        closes, copies = self._windows.expires, self._copies
        opens_until = now + window
        numbered = []
        for fp in fps:
            key = f"{node} {fp}"
            closes_at = closes.get(key)
            if closes_at is None or closes_at <= now:
                if closes_at is not None:
                    del closes[key]  # re-inserted last: it closes last
                closes_at = closes[key] = opens_until
                k = copies[key] = 1
            else:
                k = copies[key] = copies[key] + 1
            numbered.append((event_id(fp, k), closes_at))
        return numbered

    def claim_now(
        self, node: str, fps: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Synchronous form of `claim`, for callers without an event loop."""
        self._windows.expire(now)
        self._claims.expire(now)
        if mode is Mode.EXACT:
            numbered = self._number_exact(node, fps, window, now)
        else:
            closes_at = now + window
            numbered = [(event_id(fp, 1), closes_at) for fp in fps]
        self._windows.enforce_cap()
        held = self._claims.expires
        won = []
        for key, expires_at in numbered:
            held_until = held.get(key)
            if held_until is not None:
                if held_until > now:
                    won.append(False)
                    continue
                # Expired but not yet popped (an older entry lives longer):
                # move it to the back with its new expiry.
                del held[key]
            held[key] = expires_at
            won.append(True)
        self._claims.enforce_cap()
        return [key for key, _ in numbered], won

    async def claim(
        self, node: str, fingerprints: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Number and claim a batch (see `Store.claim`)."""
        return self.claim_now(node, fingerprints, mode, window, now)

    def open_windows(self) -> int:
        """How many (node, fingerprint) occurrence windows are open."""
        return len(self._windows.expires)

    def stats(self) -> dict[str, int]:
        """Live claims, open windows, and evictions by the caps so far."""
        return {
            "entries": len(self._claims.expires),
            "evicted": self._claims.evicted,
            "windows": len(self._windows.expires),
            "windows_evicted": self._windows.evicted,
        }
