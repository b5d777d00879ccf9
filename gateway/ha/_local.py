"""What this node numbered and forwarded within the window, kept in memory.

Read when the store cannot be (degraded mode numbers here), when the store
missed something (the write-back), when a rescued id might be one this node
forwarded itself, and on promotion (this node's counters go back to its new
store, which may lag behind). Noting costs one append per batch; batches are
folded into the `MemoryStore` only when it is read. Every method is
synchronous, so no two tasks interleave inside one.

While the store cannot be reached, this node opens windows of its own (its
clock names them), and a copy the other node numbered in the store may carry
another window tag for the same occurrence. Window tags are opening times, and
two windows of one fingerprint in one store open at least a window apart, so
an id whose fingerprint and occurrence match one forwarded here, in a window
opened less than a window away, is the same occurrence (`choose`).

An id `choose` hands out is in hand until it is forwarded (`add_forwarded`)
or given back (`release`: its sink write did not happen, the role was lost):
two takes of one id never both choose it, and a take whose forward failed
never makes a later take drop the id as forwarded.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from dedup import MemoryStore, split_id


class LocalRecord:
    """This node's numbering and forwards within `window`, at most `max_entries` of each."""

    def __init__(self, node: str, window: float, max_entries: int, clock: Callable[[], float]) -> None:
        self.node = node
        self.window = window
        self.clock = clock
        self.max_entries = max_entries
        self._store = MemoryStore(max_entries)
        self._unfolded: deque[tuple[float, Sequence[str], bool]] = deque()
        # "fingerprint-occurrence" -> the tag (ms) of the window it was forwarded in, oldest first.
        self._occurrences: OrderedDict[str, int] = OrderedDict()
        self._in_hand: set[str] = set()  # chosen by `choose`, neither forwarded nor released yet

    def add_numbered(self, ids: Sequence[str]) -> None:
        """Remember ids this node numbered."""
        self._add(ids, False)

    def add_forwarded(self, ids: Sequence[str]) -> None:
        """Remember ids this node forwarded (they are no longer in hand)."""
        self._in_hand.difference_update(ids)
        self._add(ids, True)

    def release(self, ids: Sequence[str]) -> None:
        """Ids `choose` handed out that were not forwarded: a later take may choose them again."""
        self._in_hand.difference_update(ids)

    def _add(self, ids: Sequence[str], forwarded: bool) -> None:
        now = self.clock()
        unfolded = self._unfolded
        unfolded.append((now, ids, forwarded))
        while unfolded[0][0] <= now - self.window:  # would have expired in the store anyway
            unfolded.popleft()

    def as_store(self) -> MemoryStore:
        """The record as a `MemoryStore`, every batch added so far folded in."""
        store, unfolded = self._store, self._unfolded
        occurrences = self._occurrences
        while unfolded:
            at, ids, forwarded = unfolded.popleft()
            if forwarded:
                store.claim_ids(ids, self.window, at)
                for event_id in ids:
                    fp, tag, k = split_id(event_id)
                    key = f"{fp}-{k}"
                    occurrences.pop(key, None)
                    occurrences[key] = int(tag, 16)
            else:
                store.count_ids(self.node, ids, self.window, at)
        while len(occurrences) > self.max_entries:
            occurrences.popitem(last=False)
        return store

    def numbered_ids(self) -> list[str]:
        """The id of this node's last copy of each fingerprint whose window is open."""
        return self.as_store().counted_ids(self.node, self.clock())

    def forwarded_ids(self) -> list[str]:
        """Every id this node forwarded within the window, oldest first."""
        return self.as_store().live_ids(self.clock())

    def in_hand(self, event_id: str) -> bool:
        """True while `choose` has handed `event_id` out and it is neither forwarded nor released."""
        return event_id in self._in_hand

    def choose(self, ids: Sequence[str]) -> list[bool]:
        """For each id, True unless this node forwarded it, or the same occurrence under another
        window tag (see the module docstring), within the window, or has it in hand; the ids it
        chooses are in hand until `add_forwarded` or `release`."""
        forwarded = self.as_store().held(ids, self.clock())
        occurrences, window_ms, in_hand = self._occurrences, self.window * 1000, self._in_hand
        chosen = []
        for event_id, done in zip(ids, forwarded, strict=True):
            fresh = not done and event_id not in in_hand
            if fresh:
                fp, tag, k = split_id(event_id)
                seen = occurrences.get(f"{fp}-{k}")
                fresh = seen is None or abs(seen - int(tag, 16)) >= window_ms
            if fresh:
                in_hand.add(event_id)
            chosen.append(fresh)
        return chosen
