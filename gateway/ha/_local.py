"""What this node numbered and forwarded within the window, kept in memory.

Read when the store cannot be (degraded mode numbers here), when the store
missed something (the write-back), when a rescued id might be one this node
forwarded itself, and on promotion (this node's counters go back to its new
store, which may lag behind). Noting costs one append per batch; batches are
folded into the `MemoryStore` only when it is read. Every method is
synchronous, so no two tasks interleave inside one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from dedup import MemoryStore


class LocalRecord:
    """This node's numbering and forwards within `window`, at most `max_entries` of each."""

    def __init__(self, node: str, window: float, max_entries: int, clock: Callable[[], float]) -> None:
        self.node = node
        self.window = window
        self.clock = clock
        self._store = MemoryStore(max_entries)
        self._unfolded: deque[tuple[float, Sequence[str], bool]] = deque()

    def note(self, ids: Sequence[str], forwarded: bool) -> None:
        """Remember ids this node numbered (`forwarded` False) or forwarded."""
        now = self.clock()
        unfolded = self._unfolded
        unfolded.append((now, ids, forwarded))
        while unfolded[0][0] <= now - self.window:  # would have expired in the store anyway
            unfolded.popleft()

    def store(self) -> MemoryStore:
        """The record with every noted batch folded in."""
        store, unfolded = self._store, self._unfolded
        while unfolded:
            at, ids, forwarded = unfolded.popleft()
            if forwarded:
                store.claim_ids(ids, self.window, at)
            else:
                store.count_ids(self.node, ids, self.window, at)
        return store

    def numbered(self) -> list[str]:
        """The id of this node's last copy of each fingerprint whose window is open."""
        return self.store().counted_ids(self.node, self.clock())

    def forwarded(self) -> list[str]:
        """Every id this node forwarded within the window, oldest first."""
        return self.store().live_ids(self.clock())

    def not_forwarded_here(self, ids: Sequence[str]) -> list[bool]:
        """For each id, True unless this node forwarded it within the window (and notes it forwarded)."""
        return self.store().claim_ids(ids, self.window, self.clock())
