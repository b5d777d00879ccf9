"""The embedded store: claims in a bounded dict, for a single node.

Strategy: a dict keeps insertion order, and claims arrive in time order, so the
oldest entry is always first. Expiry pops from the front until it meets a live
entry; the cap evicts from the front too (the entry closest to expiring) and
counts it. An evicted key can be won again: eviction trades a possible
duplicate for bounded memory, never a loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from dedup._store import Claim


class MemoryStore:
    """In-process claim store holding at most `max_entries` keys."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.evicted = 0
        self._expires: dict[str, float] = {}

    def _expire(self, now: float) -> None:
        expires = self._expires
        while expires:
            key = next(iter(expires))
            if expires[key] > now:
                break
            del expires[key]

    def claim_now(self, claims: Sequence[Claim], now: float) -> list[bool]:
        """Synchronous form of `claim`, for callers without an event loop."""
        self._expire(now)
        expires = self._expires
        won = []
        for key, expires_at in claims:
            held_until = expires.get(key)
            if held_until is not None:
                if held_until > now:
                    won.append(False)
                    continue
                # Expired but not yet popped (its predecessors live longer):
                # move it to the back with its new expiry.
                del expires[key]
            expires[key] = expires_at
            won.append(True)
        overflow = len(expires) - self.max_entries
        if overflow > 0:
            self.evicted += overflow
            for key in list(islice(expires, overflow)):
                del expires[key]
        return won

    async def claim(self, claims: Sequence[Claim], now: float) -> list[bool]:
        """Claim every key; True where this call won it (see `Store.claim`)."""
        return self.claim_now(claims, now)

    def stats(self) -> dict[str, int]:
        """Live entries and the number evicted by the cap so far."""
        return {"entries": len(self._expires), "evicted": self.evicted}
