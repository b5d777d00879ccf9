"""The standby's pending buffer: events held until the store shows them forwarded.

Strategy: entries wait in three queues, each in the order it comes due: a
first check (once the master is `check_after` past the entry, or has stalled
for `grace`), a check at `grace` (then a rescue), and a check after a rescue
(backing off, doubling each time). A round pops what is due, asks the store
once for all of it, and settles the answers. Entries older than `max_age`
(the dedup window: past it an id no longer names one occurrence) leave and
are counted. The buffer belongs to the standby loop alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from formats import Event


class Unnumbered(NamedTuple):
    """A batch on its way to its ids: its numbering call (`claimed`: a master's claim) may have run on
    the store without this node learning the ids (the reply was lost). Repeated with its `token`,
    the call gives the same ids instead of counting the copies again."""

    events: list[Event]
    fps: list[str]
    token: str
    claimed: bool


@dataclass
class Entry:
    """An event the standby holds, with when it arrived and when to ask about it again."""

    event: Event
    fp: str
    added_at: float
    due: float = 0.0
    rescues: int = 0


class PendingBuffer:
    """Events this node holds by id, at most `max_pending`, none older than `max_age`."""

    def __init__(
        self, max_pending: int, check_after: float, grace: float, max_age: float, now: float
    ) -> None:
        self.max_pending = max_pending
        self.check_after = check_after
        self.grace = grace
        self.max_age = max_age
        self.entries: dict[str, Entry] = {}
        self._unchecked: deque[str] = deque()
        self._waiting: deque[str] = deque()
        self._rescued: deque[str] = deque()
        # The receive time (this node's) of the newest event the master is
        # known to have forwarded, and when that last moved.
        self.progress = 0.0
        self.progress_at = now

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str]) -> int:
        """Hold numbered events; returns how many of the oldest were shed to stay within the bound."""
        entries = self.entries
        for event, fp, event_id in zip(events, fps, ids, strict=True):
            entries[event_id] = Entry(event, fp, event.received_at)
        self._unchecked += ids
        overflow = len(entries) - self.max_pending
        if overflow > 0:
            for key in list(islice(entries, overflow)):
                del entries[key]
            return overflow
        return 0

    def learn_progress(self, last_id: str | None, now: float) -> None:
        """The master forwarded `last_id` last: if held here, it is as far as the master has come."""
        entry = self.entries.get(last_id) if last_id is not None else None
        if entry is not None and entry.added_at > self.progress:
            self.progress, self.progress_at = entry.added_at, now

    def due(self, now: float, most: int) -> list[str]:
        """Ids to ask the store about now, oldest first (see the module docstring)."""
        due: list[str] = []
        stalled = now - self.progress_at >= self.grace
        newest = now - self.check_after
        if not stalled:
            newest = min(newest, self.progress - self.check_after)
        self._pop_due(self._unchecked, due, most, lambda entry: entry.added_at <= newest)
        for queue in (self._waiting, self._rescued):
            self._pop_due(queue, due, most, lambda entry: entry.due <= now)
        return due

    def _pop_due(self, queue: deque[str], due: list[str], most: int, ready: Callable[[Entry], bool]) -> None:
        entries = self.entries
        while queue and len(due) < most:
            entry = entries.get(queue[0])
            if entry is not None and not ready(entry):
                return
            event_id = queue.popleft()
            if entry is not None:
                due.append(event_id)

    def ask_again(self, due: Sequence[str]) -> None:
        """The store could not answer about `due`: they are first in the next round."""
        self._rescued.extendleft(reversed(due))
        for event_id in due:
            entry = self.entries.get(event_id)
            if entry is not None:
                entry.due = 0.0

    def settle(
        self, due: Sequence[str], done: Sequence[bool], now: float
    ) -> tuple[list[tuple[str, Entry]], int]:
        """Drop what was forwarded; returns what to rescue now, and how many entries expired."""
        rescue = []
        expired = 0
        entries = self.entries
        for event_id, forwarded in zip(due, done, strict=True):
            entry = entries.get(event_id)
            if entry is None:
                continue
            if forwarded:
                del entries[event_id]
                if entry.added_at > self.progress:
                    self.progress, self.progress_at = entry.added_at, now
            elif now - entry.added_at >= self.max_age:
                del entries[event_id]
                expired += 1
            elif now - entry.added_at >= self.grace:
                entry.due = now + self.grace * (1 << min(entry.rescues, 8))
                entry.rescues += 1
                self._rescued.append(event_id)
                rescue.append((event_id, entry))
            else:
                entry.due = entry.added_at + self.grace
                self._waiting.append(event_id)
        return rescue, expired

    def take_all(self) -> dict[str, Entry]:
        """Every entry, leaving the buffer empty (on promotion)."""
        entries, self.entries = self.entries, {}
        for queue in (self._unchecked, self._waiting, self._rescued):
            queue.clear()
        return entries

    def behind(self, now: float) -> float:
        """How far the master's forwarding is behind this node's receiving, in seconds."""
        return max(0.0, now - self.progress) if self.progress else 0.0
