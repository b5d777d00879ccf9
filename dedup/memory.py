"""The embedded store: occurrence windows and claims in plain dicts, expired by time buckets.

Strategy: every entry (a fingerprint's window, a node's count of it, a claim)
lives in a plain dict with its expiry, and its key is also appended to the
bucket of that expiry (one bucket per second). Expiry walks the buckets that
have ended and deletes what they name, unless the entry was renewed since (its
expiry now falls in a later bucket); eviction, when a dict outgrows
`max_entries`, takes entries from the oldest buckets first (the ones closest
to expiring) and counts them. An evicted id can be won again: eviction trades
a possible duplicate for bounded memory, never a loss. Plain dicts and list
appends cost about half of what ordered dicts did per event; every dict holds
only strings, floats, ints and tuples of them, which the garbage collector
never walks, however many there are.

`exact_claims=False` (the single node's store) keeps no claims in `exact`
mode: there each copy gets the next occurrence, an id that cannot have been
claimed before, so only `suppress` mode and the id-based calls (`claim_ids`,
`held`, `live_ids`) need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dedup._fingerprint import event_id, split_id, window_tag
from dedup._store import Mode

_BUCKET = 1.0  # seconds of expiry per bucket


def _bucket_of(until: float) -> int:
    """The bucket that ends at or after `until`: an entry expiring at `until` is gone once it ended."""
    return int(until // _BUCKET) + 1


@dataclass
class _Bucket:
    """Keys whose entries expire in one bucket, in the order they were made; `fps_read` and
    `claims_read` say how far eviction has taken each list."""

    fps: list[str] = field(default_factory=list)  # windows and counts
    claims: list[str] = field(default_factory=list)
    fps_read: int = 0
    claims_read: int = 0


class MemoryStore:
    """In-process store holding at most `max_entries` claims and windows each."""

    def __init__(self, max_entries: int = 1_000_000, exact_claims: bool = True) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.exact_claims = exact_claims
        # Fingerprint -> (closing time, tag) of its window, opened by the first copy of any node.
        self._open: dict[str, tuple[float, str]] = {}
        # Per node: fingerprint -> (closing time of the window the copies count in, copies so far).
        self._counts: dict[str, dict[str, tuple[float, int]]] = {}
        self._claims: dict[str, float] = {}  # event id -> claimed until
        self._buckets: dict[int, _Bucket] = {}
        self._first = 0  # no bucket before this one is live
        self.evicted = 0  # claims
        self.windows_evicted = 0

    # -- expiry and bounds ---------------------------------------------------------

    def _bucket(self, until: float) -> _Bucket:
        number = _bucket_of(until)
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = _Bucket()
            if not self._first or number < self._first:
                self._first = number
        return bucket

    def _expire(self, now: float) -> None:
        """Delete what the buckets ended by `now` name, unless renewed since."""
        buckets = self._buckets
        if not buckets:
            return
        last = int(now // _BUCKET)  # buckets up to this one have ended
        if last < self._first:
            return
        ended = range(self._first, last + 1) if last - self._first < 4 * len(buckets) else \
            sorted(n for n in buckets if n <= last)
        for number in ended:
            bucket = buckets.pop(number, None)
            if bucket is not None:
                self._drop(number, bucket.fps[bucket.fps_read:], bucket.claims[bucket.claims_read:])
        self._first = last + 1

    def _drop(self, number: int, fps: Sequence[str], claims: Sequence[str]) -> tuple[int, int]:
        """Delete the windows, counts and claims named here whose expiry is in bucket `number`;
        (windows deleted, claims deleted)."""
        windows, held = self._open, self._claims
        dropped_windows = dropped_claims = 0
        for fp in fps:
            opened = windows.get(fp)
            if opened is not None and _bucket_of(opened[0]) == number:
                del windows[fp]
                dropped_windows += 1
            for counts in self._counts.values():
                counted = counts.get(fp)
                if counted is not None and _bucket_of(counted[0]) == number:
                    del counts[fp]
        for key in claims:
            until = held.get(key)
            if until is not None and _bucket_of(until) == number:
                del held[key]
                dropped_claims += 1
        return dropped_windows, dropped_claims

    def _enforce_caps(self) -> None:
        """Evict from the oldest buckets while the windows or the claims outnumber `max_entries`."""
        cap = self.max_entries
        if len(self._open) <= cap and len(self._claims) <= cap:
            return
        for number in sorted(self._buckets):
            bucket = self._buckets[number]
            # Each slice is as long as the overflow: some of its keys may name entries renewed since
            # (nothing to evict), so it is taken again until the dict fits or the list is read.
            while (over := len(self._open) - cap) > 0 and bucket.fps_read < len(bucket.fps):
                start, bucket.fps_read = bucket.fps_read, bucket.fps_read + over
                self.windows_evicted += self._drop(number, bucket.fps[start : bucket.fps_read], ())[0]
            while (over := len(self._claims) - cap) > 0 and bucket.claims_read < len(bucket.claims):
                start, bucket.claims_read = bucket.claims_read, bucket.claims_read + over
                self.evicted += self._drop(number, (), bucket.claims[start : bucket.claims_read])[1]
            if len(self._open) <= cap and len(self._claims) <= cap:
                return

    def _node_counts(self, node: str) -> dict[str, tuple[float, int]]:
        counts = self._counts.get(node)
        if counts is None:
            counts = self._counts[node] = {}
        return counts

    # -- numbering and claiming -------------------------------------------------------

    def claim_now(
        self, node: str, fps: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Synchronous form of `claim`, for callers without an event loop."""
        self._expire(now)
        exact = mode is Mode.EXACT
        keep_claims = self.exact_claims or not exact
        windows, counts, held = self._open, self._node_counts(node), self._claims
        until = now + window
        opened = window_tag(now)
        new = self._bucket(until)
        new_fps, new_claims = new.fps, new.claims
        ids, won = [], []
        for fp in fps:
            current = windows.get(fp)
            if current is None or current[0] <= now:
                current = windows[fp] = (until, opened)  # a reopened window moves to the end
                new_fps.append(fp)
            closes_at, tag = current
            k = 1
            if exact:
                counted = counts.get(fp)
                k = counted[1] + 1 if counted is not None and counted[0] == closes_at else 1
                counts[fp] = (closes_at, k)
            key = f"{fp}-{tag}-{k}"
            ids.append(key)
            if keep_claims:
                held_until = held.get(key)
                if held_until is not None and held_until > now:
                    won.append(False)
                    continue
                if held_until is not None:
                    del held[key]  # expired, not yet dropped: made again, last
                held[key] = closes_at
                if closes_at == until:
                    new_claims.append(key)
                else:
                    self._bucket(closes_at).claims.append(key)
            won.append(True)
        self._enforce_caps()
        return ids, won

    def count_ids(self, node: str, ids: Sequence[str], window: float, now: float) -> None:
        """Move `node`'s occurrence counters up to each id's occurrence; claim nothing.

        Its next copies are then numbered after them: in the id's window when
        it is the open one, opening it (for `window` seconds) when none is
        open; an id of another window moves nothing.
        """
        self._expire(now)
        windows, counts = self._open, self._node_counts(node)
        until = now + window
        for key in ids:
            fp, tag, count = split_id(key)
            current = windows.get(fp)
            if current is None or current[0] <= now:
                current = windows[fp] = (until, tag)
            elif current[1] != tag:
                continue
            closes_at = current[0]
            counted = counts.get(fp)
            if counted is None or counted[0] != closes_at or count > counted[1]:
                counts[fp] = (closes_at, count if counted is None or counted[0] != closes_at
                              else max(count, counted[1]))
                self._bucket(closes_at).fps.append(fp)
        self._enforce_caps()

    def counted_ids(self, node: str, now: float) -> list[str]:
        """The id of `node`'s last copy of each fingerprint whose window is open."""
        self._expire(now)
        windows = self._open
        out = []
        for fp, (closes_at, k) in self._node_counts(node).items():
            current = windows.get(fp)
            if current is not None and current[0] == closes_at and closes_at > now:
                out.append(event_id(fp, current[1], k))
        return out

    def claim_ids(self, ids: Sequence[str], window: float, now: float) -> list[bool]:
        """Claim given event ids for `window` seconds; True where won (no counter moves).

        Where no window of an id's fingerprint is open, the id's window opens,
        so that copies numbered here later fall in it (as in the store the id
        came from).
        """
        self._expire(now)
        windows, held = self._open, self._claims
        until = now + window
        new = self._bucket(until)
        won = []
        for key in ids:
            fp, tag, _ = split_id(key)
            current = windows.get(fp)
            if current is None or current[0] <= now:
                windows[fp] = (until, tag)
                new.fps.append(fp)
            held_until = held.get(key)
            if held_until is not None and held_until > now:
                won.append(False)
                continue
            if held_until is not None:
                del held[key]
            held[key] = until
            new.claims.append(key)
            won.append(True)
        self._enforce_caps()
        return won

    def held(self, ids: Sequence[str], now: float) -> list[bool]:
        """For each id, True while a claim on it is live at `now` (nothing changes)."""
        held = self._claims
        return [held.get(key, 0.0) > now for key in ids]

    def live_ids(self, now: float) -> list[str]:
        """Every claimed id not expired at `now`, oldest first."""
        self._expire(now)
        return [key for key, until in self._claims.items() if until > now]

    async def claim(
        self, node: str, fingerprints: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Number and claim a batch (see `Store.claim`)."""
        return self.claim_now(node, fingerprints, mode, window, now)

    def open_windows(self) -> int:
        """How many fingerprint windows are open."""
        return len(self._open)

    def stats(self) -> dict[str, int]:
        """Live claims, open windows, and evictions by the caps so far."""
        return {
            "entries": len(self._claims),
            "evicted": self.evicted,
            "windows": self.open_windows(),
            "windows_evicted": self.windows_evicted,
        }
