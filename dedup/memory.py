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

from collections import OrderedDict
from collections.abc import Sequence
from itertools import islice

from dedup._fingerprint import event_id
from dedup._store import Mode


class _Bounded:
    """Keys with an expiry, oldest first, at most `cap` of them.

    `values` may hold data per key; it loses a key with `expires`.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.evicted = 0
        # OrderedDict: finding the oldest key after many deletions at the front
        # is O(1) here, O(deleted) in a plain dict.
        self.expires: OrderedDict[str, float] = OrderedDict()
        self.values: dict[str, int] = {}

    def _drop(self, key: str) -> None:
        del self.expires[key]
        self.values.pop(key, None)

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
        self.max_entries = max_entries
        self._claims = _Bounded(max_entries)
        # Per node: fingerprint -> closing time of its window, and -> copies so far.
        self._windows: dict[str, _Bounded] = {}

    def _node_windows(self, node: str) -> _Bounded:
        windows = self._windows.get(node)
        if windows is None:
            windows = self._windows[node] = _Bounded(self.max_entries)
        return windows

    def claim_now(
        self, node: str, fps: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Synchronous form of `claim`, for callers without an event loop."""
        windows = self._node_windows(node)
        windows.expire(now)
        self._claims.expire(now)
        closes, copies = windows.expires, windows.values
        held = self._claims.expires
        exact = mode is Mode.EXACT
        opens_until = now + window
        ids, won = [], []
        for fp in fps:
            if exact:
                closes_at = closes.get(fp)
                if closes_at is None or closes_at <= now:
                    if closes_at is not None:
                        del closes[fp]  # re-inserted last: it closes last
                    closes_at = closes[fp] = opens_until
                    k = copies[fp] = 1
                else:
                    k = copies[fp] = copies[fp] + 1
            else:
                closes_at, k = opens_until, 1
            key = event_id(fp, k)
            ids.append(key)
            held_until = held.get(key)
            if held_until is not None:
                if held_until > now:
                    won.append(False)
                    continue
                # Expired but not yet popped (an older entry lives longer):
                # move it to the back with its new expiry.
                del held[key]
            held[key] = closes_at
            won.append(True)
        windows.enforce_cap()
        self._claims.enforce_cap()
        return ids, won

    def count_ids(self, node: str, ids: Sequence[str], window: float, now: float) -> None:
        """Move `node`'s occurrence counters up to each id's occurrence; claim nothing.

        Its next copies are then numbered after them; a window opens (for
        `window` seconds) where none is open.
        """
        windows = self._node_windows(node)
        windows.expire(now)
        closes, copies = windows.expires, windows.values
        until = now + window
        for key in ids:
            fp, _, k = key.rpartition("-")
            count = int(k)
            if closes.get(fp, 0.0) <= now:
                closes.pop(fp, None)
                closes[fp] = until
                copies[fp] = count
            elif count > copies[fp]:
                copies[fp] = count
        windows.enforce_cap()

    def counted_ids(self, node: str, now: float) -> list[str]:
        """The id of `node`'s last copy of each fingerprint whose window is open."""
        windows = self._node_windows(node)
        windows.expire(now)
        return [event_id(fp, k) for fp, k in windows.values.items()]

    def claim_ids(self, ids: Sequence[str], window: float, now: float) -> list[bool]:
        """Claim given event ids for `window` seconds; True where won (no counter moves)."""
        self._claims.expire(now)
        held = self._claims.expires
        until = now + window
        won = []
        for key in ids:
            held_until = held.get(key)
            if held_until is not None and held_until > now:
                won.append(False)
                continue
            held.pop(key, None)
            held[key] = until
            won.append(True)
        self._claims.enforce_cap()
        return won

    def live_ids(self, now: float) -> list[str]:
        """Every claimed id not expired at `now`, oldest first."""
        self._claims.expire(now)
        return list(self._claims.expires)

    async def claim(
        self, node: str, fingerprints: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Number and claim a batch (see `Store.claim`)."""
        return self.claim_now(node, fingerprints, mode, window, now)

    def open_windows(self) -> int:
        """How many (node, fingerprint) occurrence windows are open."""
        return sum(len(w.expires) for w in self._windows.values())

    def stats(self) -> dict[str, int]:
        """Live claims, open windows, and evictions by the caps so far."""
        return {
            "entries": len(self._claims.expires),
            "evicted": self._claims.evicted,
            "windows": self.open_windows(),
            "windows_evicted": sum(w.evicted for w in self._windows.values()),
        }
