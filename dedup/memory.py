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
from typing import Generic, TypeVar

from dedup._fingerprint import event_id, split_id, window_tag
from dedup._store import Mode

V = TypeVar("V")


class _Bounded(Generic[V]):
    """Keys with an expiry, oldest first, at most `cap` of them.

    `data` holds a value per key (a window's tag, a node's count), or nothing
    (claims); it loses a key with `expires`.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.evicted = 0
        # OrderedDict: finding the oldest key after many deletions at the front
        # is O(1) here, O(deleted) in a plain dict.
        self.expires: OrderedDict[str, float] = OrderedDict()
        self.data: dict[str, V] = {}

    def drop(self, key: str) -> None:
        """Forget `key` and its data."""
        del self.expires[key]
        self.data.pop(key, None)

    def reopen(self, key: str, until: float, value: V) -> None:
        """Open `key` anew (last in order: it closes last) with `value`."""
        if key in self.expires:
            self.drop(key)
        self.expires[key] = until
        self.data[key] = value

    def expire(self, now: float) -> None:
        expires = self.expires
        while expires:
            key = next(iter(expires))
            if expires[key] > now:
                break
            self.drop(key)

    def enforce_cap(self) -> None:
        overflow = len(self.expires) - self.cap
        if overflow > 0:
            self.evicted += overflow
            for key in list(islice(self.expires, overflow)):
                self.drop(key)


class MemoryStore:
    """In-process store holding at most `max_entries` claims and windows each."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._claims: _Bounded[None] = _Bounded(max_entries)
        # Fingerprint -> closing time and tag of its window, opened by the first copy of any node.
        self._open: _Bounded[str] = _Bounded(max_entries)
        # Per node: fingerprint -> its copies so far, closing with the window they count in.
        self._windows: dict[str, _Bounded[int]] = {}

    def _node_windows(self, node: str) -> _Bounded[int]:
        windows = self._windows.get(node)
        if windows is None:
            windows = self._windows[node] = _Bounded[int](self.max_entries)
        return windows

    def claim_now(
        self, node: str, fps: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Synchronous form of `claim`, for callers without an event loop."""
        exact = mode is Mode.EXACT
        shared, windows = self._open, self._node_windows(node)
        shared.expire(now)
        windows.expire(now)
        self._claims.expire(now)
        closes, tags = shared.expires, shared.data
        # A node's count belongs to the open window when it closes with it.
        counted_until, copies = windows.expires, windows.data
        held = self._claims.expires
        opens_until = now + window
        opened = window_tag(now)
        ids, won = [], []
        for fp in fps:
            closes_at = closes.get(fp)
            if closes_at is None or closes_at <= now:
                if closes_at is not None:
                    shared.drop(fp)  # re-inserted last: it closes last
                closes_at = closes[fp] = opens_until
                tag = tags[fp] = opened
            else:
                tag = tags[fp]
            k = 1
            if exact:
                if counted_until.get(fp) == closes_at:
                    k = copies[fp] = copies[fp] + 1
                else:
                    if fp in counted_until:
                        windows.drop(fp)
                    counted_until[fp] = closes_at
                    copies[fp] = 1
            key = f"{fp}-{tag}-{k}"
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
        shared.enforce_cap()
        windows.enforce_cap()
        self._claims.enforce_cap()
        return ids, won

    def count_ids(self, node: str, ids: Sequence[str], window: float, now: float) -> None:
        """Move `node`'s occurrence counters up to each id's occurrence; claim nothing.

        Its next copies are then numbered after them: in the id's window when
        it is the open one, opening it (for `window` seconds) when none is
        open; an id of another window moves nothing.
        """
        shared, windows = self._open, self._node_windows(node)
        shared.expire(now)
        windows.expire(now)
        closes, tags = shared.expires, shared.data
        counted_until, copies = windows.expires, windows.data
        until = now + window
        for key in ids:
            fp, tag, count = split_id(key)
            closes_at = closes.get(fp, 0.0)
            if closes_at <= now:
                closes_at = until
                shared.reopen(fp, closes_at, tag)
            elif tags[fp] != tag:
                continue
            if counted_until.get(fp) != closes_at:
                windows.reopen(fp, closes_at, count)
            elif count > copies[fp]:
                copies[fp] = count
        shared.enforce_cap()
        windows.enforce_cap()

    def counted_ids(self, node: str, now: float) -> list[str]:
        """The id of `node`'s last copy of each fingerprint whose window is open."""
        shared, windows = self._open, self._node_windows(node)
        shared.expire(now)
        windows.expire(now)
        closes, tags, counted_until = shared.expires, shared.data, windows.expires
        return [event_id(fp, tags[fp], k) for fp, k in windows.data.items()
                if closes.get(fp) == counted_until[fp]]

    def claim_ids(self, ids: Sequence[str], window: float, now: float) -> list[bool]:
        """Claim given event ids for `window` seconds; True where won (no counter moves).

        Where no window of an id's fingerprint is open, the id's window opens,
        so that copies numbered here later fall in it (as in the store the id
        came from).
        """
        self._claims.expire(now)
        shared = self._open
        shared.expire(now)
        closes = shared.expires
        held = self._claims.expires
        until = now + window
        won = []
        for key in ids:
            fp, tag, _ = split_id(key)
            if closes.get(fp, 0.0) <= now:
                shared.reopen(fp, until, tag)
            held_until = held.get(key)
            if held_until is not None and held_until > now:
                won.append(False)
                continue
            held.pop(key, None)
            held[key] = until
            won.append(True)
        shared.enforce_cap()
        self._claims.enforce_cap()
        return won

    def held(self, ids: Sequence[str], now: float) -> list[bool]:
        """For each id, True while a claim on it is live at `now` (nothing changes)."""
        held = self._claims.expires
        return [held.get(key, 0.0) > now for key in ids]

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
        """How many fingerprint windows are open."""
        return len(self._open.expires)

    def stats(self) -> dict[str, int]:
        """Live claims, open windows, and evictions by the caps so far."""
        return {
            "entries": len(self._claims.expires),
            "evicted": self._claims.evicted,
            "windows": self.open_windows(),
            "windows_evicted": self._open.evicted,
        }
