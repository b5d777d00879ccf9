"""The HA data path: roles, the standby's pending buffer, rescue and promotion.

Strategy: both nodes receive every event, number their copies in the shared
store (per-node occurrence counters on the primary) and so give the same
occurrence the same id. Only a node whose role is master and whose lease is
valid forwards: it claims the batch in the store, forwards what it won, and
marks it forwarded once the sink has it (its own batches carry a growing seq,
so one write of the seq marks a whole batch). Any other node keeps every event in
a bounded pending buffer; it asks the store once an entry is `check_after`
old whether it was forwarded and drops it if so. An entry still unforwarded
after `grace` is rescued: put on the rescue stream, which the master reads,
claims and forwards, so an event only the standby received still arrives
exactly once.

A master that is merely behind must not have its whole backlog rescued: with
each batch the master publishes the id it forwarded last, and the standby, which holds the
same id in its buffer, learns from it how far (in its own receive times) the
master has come. An entry is checked only once the master is `check_after`
past it, so what the master has yet to reach waits; only when the master has
made no progress for `grace` (it receives nothing, or is gone) does age alone
decide. Promotion forwards every pending entry not marked forwarded
(duplicates are bounded by what the dead master had in flight, with the same
ids).

Each node keeps its own numbering and what it forwarded within the window in
a local `MemoryStore`. When the store cannot be reached the master goes on
numbering and claiming there, and remembers what the store missed: the ids
it forwarded and the copies it numbered. Once the store answers again (tried
at most every `retry_after` seconds, before anything else is sent to it) the
master writes back just those claims, markers and counters, so the standby
drops the events instead of rescuing them; a store that lost its whole data
set gets the whole window. Ids forwarded from the rescue stream were numbered
by the other node and never move this node's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice

import msgpack

from dedup import MemoryStore, Mode, StoreError, fingerprint
from dedup.redis import RedisStore
from formats import Event
from gateway.forward import Forwarder
from gateway.metrics import Counters
from gateway.spool import Spool

log = logging.getLogger(__name__)


class Role(StrEnum):
    """What a node does with what it receives."""

    MASTER = "master"
    STANDBY = "standby"


@dataclass
class Lease:
    """The role a node holds, under which epoch, and until when.

    `until` None means no expiry (a role set by hand without a lease).
    """

    role: Role
    epoch: int = 0
    until: float | None = None

    def forwarding(self, now: float) -> bool:
        """True only for a master whose lease has not expired."""
        return self.role is Role.MASTER and (self.until is None or now < self.until)


@dataclass
class _Entry:
    event: Event
    fp: str
    added_at: float
    due: float = 0.0  # when to ask again, once asked


def encode_rescue(event: Event, fp: str, event_id: str, claimed: bool = False) -> bytes:
    """An event as it travels on the rescue stream (and sits in the spool).

    `claimed` says the id was claimed by a master that may not have forwarded
    it (from its spool): the master taking it forwards it unless it is marked
    forwarded, instead of claiming it.
    """
    return _packer.pack(  # type: ignore[no-any-return]
        [event_id, fp, event.format, event.peer[0], event.peer[1], event.received_at, event.fields, claimed]
    )


_packer = msgpack.Packer(use_bin_type=True)  # one for all: making one per call costs as much as packing


def decode_rescue(data: bytes) -> tuple[Event, str, str, bool]:
    """The (event, fingerprint, id, claimed) of a rescue stream entry."""
    event_id, fp, fmt, host, port, received_at, fields, claimed = msgpack.unpackb(data, raw=False)
    return Event(fmt, (host, port), received_at, fields, b"", ()), fp, event_id, claimed


class HaStage:
    """The pipeline stage of a node of an HA pair (see the module docstring)."""

    def __init__(
        self,
        node: str,
        store: RedisStore,
        forwarder: Forwarder,
        mode: Mode,
        window: float,
        lease: Lease,
        grace: float = 2.0,
        check_after: float = 0.3,
        max_pending: int = 1_000_000,
        spool: Spool | None = None,
        clock: Callable[[], float] = time.time,
        retry_after: float = 0.5,
    ) -> None:
        self.node = node
        self.store = store
        self.forwarder = forwarder
        self.mode = mode
        self.window = window
        self.lease = lease
        self.grace = grace
        self.check_after = check_after
        self.max_pending = max_pending
        self.spool = spool
        self.clock = clock
        self.counters = Counters("ha", "stage")
        self.pending: dict[str, _Entry] = {}
        # Ids of pending entries by what they wait for, each in the order it is due:
        # a first check, a check at `grace` (then rescue), a check after a rescue.
        self._unchecked: deque[str] = deque()
        self._waiting: deque[str] = deque()
        self._rescued: deque[str] = deque()
        # The receive time (this node's) of the newest event the master is
        # known to have forwarded, and when that last moved.
        self._progress = 0.0
        self._progress_at = clock()
        # Who claims this process's batches (taken in the store on first use),
        # and the seq of the last one (see `RedisStore.claim`).
        self._writer = 0
        self._seq = 0
        # Received as standby, to be numbered by the numbering loop.
        self.unnumbered: list[Event] = []
        self._to_number = asyncio.Event()
        self._number_lock = asyncio.Lock()
        self.degraded = False
        self.retry_after = retry_after
        # This node's numbering, and what it forwarded, within the window:
        # noted per batch, folded into `_recent` only when it is read.
        self._recent = MemoryStore(max_pending)
        self._unfolded: deque[tuple[float, Sequence[str], bool]] = deque()
        # What the store missed while it could not be reached: ids forwarded
        # (claim and marker) and ids numbered here (counters); or everything.
        self._unsynced: list[str] = []
        self._uncounted: list[str] = []
        self._resync_all = False
        self._retry_at = 0.0
        self._resync_lock = asyncio.Lock()
        self._marking: asyncio.Task[None] | None = None  # the last watermark write
        self._tasks: list[asyncio.Task[None]] = []

    # -- the pipeline stage -----------------------------------------------

    async def handle(self, events: list[Event]) -> None:
        """Forward (master with a lease) or hold (anyone else) a batch."""
        self.counters.received += len(events)
        if self.lease.forwarding(self.clock()):
            await self._as_master(events)
        else:
            await self._as_standby(events)

    async def _as_master(self, events: list[Event]) -> None:
        fps = [fingerprint(e) for e in events]
        await self._recover()
        now = self.clock()
        seq = None
        if not self.degraded:
            seq = self._seq = self._seq + 1
            try:
                while not self._writer:
                    writer = random.randrange(1, 1 << 20)
                    if await self.store.reserve_writer(writer):
                        self._writer = writer
                batch = (self._writer, seq)
                ids, won = await self.store.claim(self.node, fps, self.mode, self.window, now, batch)
                self._note(ids, forwarded=False)
            except StoreError as exc:
                self._store_down(exc)
        if self.degraded:
            seq = None
            ids, won = self._folded().claim_now(self.node, fps, self.mode, self.window, now)
            self._uncounted += ids
            self._bound_unsynced()
        keep = [i for i, w in enumerate(won) if w]
        self.counters.dropped["duplicate"] += len(events) - len(keep)
        await self._forward([events[i] for i in keep], [fps[i] for i in keep], [ids[i] for i in keep], seq)

    async def _forward(
        self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str], seq: int | None = None
    ) -> None:
        """Spool, write to the sink, then mark forwarded: in the store (by `seq`, when the
        claims carry it, else id by id), or for the write-back."""
        if not events:
            return
        self.counters.sent += len(events)
        spool = self.spool
        if spool is None:
            await self.forwarder.forward(events, fps, ids)
        else:
            batch = spool.append([
                encode_rescue(e, f, i, claimed=True) for e, f, i in zip(events, fps, ids, strict=True)
            ])
            await self.forwarder.forward(events, fps, ids)
            spool.ack(batch)
        self._note(ids, forwarded=True)
        if seq is not None:
            # The next batch need not wait for this write: marks run one after the other behind it.
            self._marking = asyncio.create_task(self._mark(ids, seq, self._marking))
        else:
            await self._mark(ids)

    async def _mark(self, ids: Sequence[str], seq: int | None = None,
                    after: asyncio.Task[None] | None = None) -> None:
        """Mark forwarded ids in the store (by the watermark for a `seq`), or keep them for the write-back."""
        if after is not None:
            await self._settled(after)
        if not self.degraded:
            try:
                if seq is None:
                    await self.store.mark_forwarded(ids, self.window)
                else:
                    await self.store.forwarded_through(self._writer, seq, ids[-1])
                return
            except StoreError as exc:
                self._store_down(exc)
        self._unsynced += ids
        self._bound_unsynced()

    def _note(self, ids: Sequence[str], forwarded: bool) -> None:
        """Remember ids this node numbered, or forwarded, for `_folded`; one append a batch."""
        now = self.clock()
        unfolded = self._unfolded
        unfolded.append((now, ids, forwarded))
        while unfolded[0][0] <= now - self.window:  # would have expired in `_recent` anyway
            unfolded.popleft()

    def _folded(self) -> MemoryStore:
        """`_recent` with every noted batch in it: the node's counters and what it forwarded."""
        recent, unfolded = self._recent, self._unfolded
        while unfolded:
            at, ids, forwarded = unfolded.popleft()
            if forwarded:
                recent.claim_ids(ids, self.window, at)
            else:
                recent.count_ids(self.node, ids, self.window, at)
        return recent

    async def recover_spool(self) -> int:
        """Put what the spool kept from a previous run on the rescue stream."""
        if self.spool is None:
            return 0
        entries = self.spool.recover()
        for start in range(0, len(entries), 1024):
            await self.store.rescue_add(entries[start : start + 1024])
        self.spool.clear()
        return len(entries)

    async def _as_standby(self, events: list[Event]) -> None:
        """Hold the batch for numbering in the background, so that the pipeline goes on meanwhile."""
        held = self.unnumbered
        held += events
        overflow = len(held) - self.max_pending  # the store is unreachable for long
        if overflow > 0:
            self.counters.dropped["pending_overflow"] += overflow
            del held[:overflow]
        self._to_number.set()

    async def number_held(self) -> bool:
        """Number the held events into the pending buffer (as master: claim and forward them).

        Several batches go to the store as one, up to 8192 events a call.
        Returns False when the store could not be reached; what is left stays held.
        """
        async with self._number_lock:
            events, self.unnumbered = self.unnumbered, []
            for start in range(0, len(events), 8192):
                chunk = events[start : start + 8192]
                if self.lease.forwarding(self.clock()):
                    await self._as_master(chunk)
                elif not await self._number(chunk):
                    self.unnumbered[:0] = events[start:]
                    return False
            return True

    async def _number(self, events: list[Event]) -> bool:
        await self._recover()
        if self.degraded:
            return False
        fps = [fingerprint(e) for e in events]
        try:
            ids = await self.store.number(self.node, fps, self.mode, self.window)
        except StoreError as exc:
            self._store_down(exc)
            return False
        self._note(ids, forwarded=False)
        pending = self.pending
        for event, fp, event_id in zip(events, fps, ids, strict=True):
            pending[event_id] = _Entry(event, fp, event.received_at)
        self._unchecked += ids
        overflow = len(pending) - self.max_pending
        if overflow > 0:
            self.counters.dropped["pending_overflow"] += overflow
            for key in list(islice(pending, overflow)):
                del pending[key]
        return True

    # -- store outages ------------------------------------------------------

    def _store_down(self, exc: StoreError) -> None:
        if not self.degraded:
            log.error("store unreachable (%s): %s; degraded mode", exc.reason, exc)
            self._retry_at = time.monotonic() + self.retry_after
        self.degraded = True
        self.counters.errors[f"store_{exc.reason}"] += 1

    async def _recover(self) -> None:
        """While degraded (trying at most every `retry_after` s): write back, and leave degraded mode."""
        if not self.degraded or time.monotonic() < self._retry_at:
            return
        async with self._resync_lock:
            await self.marked()  # what it could not mark is written back below
            if not self.degraded:
                return
            self._retry_at = time.monotonic() + self.retry_after
            try:
                await self.resync()
            except StoreError as exc:
                self.counters.errors[f"store_{exc.reason}"] += 1
                return
            self.degraded = False
            log.warning("store reachable again; wrote back what was forwarded meanwhile")

    async def resync(self) -> None:
        """Tell the store what it missed: claims, markers and this node's counters.

        Everything this node numbered and forwarded within the window when the
        store lost its data set (or the list of what it missed outgrew
        `max_pending`). Raises `StoreError`, keeping what is left to tell.
        """
        if self._resync_all or await self.store.fresh():
            now = self.clock()
            self._resync_all, self._unsynced, self._uncounted = True, [], []
            recent = self._folded()
            counted, ids = recent.counted_ids(self.node, now), recent.live_ids(now)
        else:
            counted, self._uncounted = self._uncounted, []
            ids, self._unsynced = self._unsynced, []
        try:
            for start in range(0, len(counted), 4096):
                await self.store.count_ids(self.node, counted[start : start + 4096], self.window)
            counted = []
            for start in range(0, len(ids), 4096):
                chunk = ids[start : start + 4096]
                await self.store.claim_ids(chunk, self.window, self.clock())
                await self.store.mark_forwarded(chunk, self.window)
        except StoreError:
            if not self._resync_all:  # what was added meanwhile stays too
                self._uncounted[:0] = counted
                self._unsynced[:0] = ids
            raise
        self._resync_all = False

    async def marked(self) -> None:
        """Return once every batch forwarded so far is marked forwarded (or kept for the write-back)."""
        await self._settled(self._marking)

    @staticmethod
    async def _settled(task: asyncio.Task[None] | None) -> None:
        """Wait for a watermark write (it handles store errors itself; a bug is logged here)."""
        if task is None:
            return
        try:
            await task
        except Exception:
            log.exception("marking forwarded failed")

    def _bound_unsynced(self) -> None:
        if len(self._unsynced) + len(self._uncounted) > self.max_pending:
            self._resync_all, self._unsynced, self._uncounted = True, [], []

    # -- the standby's background work ---------------------------------------

    async def reconcile_once(self, most: int = 8192) -> bool:
        """Drop what the master forwarded; rescue what it did not in time.

        Asks about `most` entries at a time; True when more may be due already.
        """
        if self.unnumbered and not await self.number_held():
            return False
        if self.lease.forwarding(self.clock()):
            # Held while the lease had lapsed: forward what nobody did.
            if self.pending:
                await self.flush_pending()
            return False
        now = self.clock()
        try:
            await self._learn_progress(now)
        except StoreError as exc:
            self._store_down(exc)
            return False
        due = self._due(now, most)
        if not due:
            return False
        try:
            done = await self.store.forwarded(due)
        except StoreError as exc:
            self._store_down(exc)
            # Asked again next round, first.
            self._rescued.extendleft(reversed(due))
            for event_id in due:
                entry = self.pending.get(event_id)
                if entry is not None:
                    entry.due = 0.0
            return False
        rescue = []
        pending = self.pending
        for event_id, forwarded in zip(due, done, strict=True):
            entry = pending.get(event_id)
            if entry is None:
                continue
            if forwarded:
                del pending[event_id]
                if entry.added_at > self._progress:
                    self._progress, self._progress_at = entry.added_at, now
            elif now - entry.added_at >= self.grace:
                entry.due = now + self.grace
                self._rescued.append(event_id)
                rescue.append(encode_rescue(entry.event, entry.fp, event_id))
            else:
                entry.due = entry.added_at + self.grace
                self._waiting.append(event_id)
        if rescue:
            try:
                await self.store.rescue_add(rescue)
                self.counters.sent += len(rescue)
                self.counters.dropped["rescued"] += len(rescue)
            except StoreError as exc:
                self._store_down(exc)
                return False
        return len(due) == most

    async def _learn_progress(self, now: float) -> None:
        """Move `_progress` to the receive time of the master's last forwarded event, if held here."""
        last = await self.store.progress()
        entry = self.pending.get(last) if last is not None else None
        if entry is not None and entry.added_at > self._progress:
            self._progress, self._progress_at = entry.added_at, now

    def _due(self, now: float, most: int = 8192) -> list[str]:
        """Ids to ask the store about now, oldest first (see the module docstring)."""
        due: list[str] = []
        # An entry gets its first check once it is `check_after` old and the
        # master is that far past it, or has stalled.
        stalled = now - self._progress_at >= self.grace
        newest = now - self.check_after
        if not stalled:
            newest = min(newest, self._progress - self.check_after)
        self._pop_due(self._unchecked, due, most, lambda entry: entry.added_at <= newest)
        for queue in (self._waiting, self._rescued):
            self._pop_due(queue, due, most, lambda entry: entry.due <= now)
        return due

    def _pop_due(self, queue: deque[str], due: list[str], most: int, ready: Callable[[_Entry], bool]) -> None:
        """Move ids from the front of `queue` to `due` while they are ready; skip ids no longer pending."""
        pending = self.pending
        while queue and len(due) < most:
            entry = pending.get(queue[0])
            if entry is not None and not ready(entry):
                return
            event_id = queue.popleft()
            if entry is not None:
                due.append(event_id)

    async def rescue_once(self, block_ms: int = 200) -> None:
        """As master: claim and forward what a standby put on the rescue stream."""
        entries = await self.store.rescue_read(self.node, 1024, block_ms)
        if not entries:
            return
        await self._recover()
        decoded = [decode_rescue(payload) for _, payload in entries]
        ids = [event_id for _, _, event_id, _ in decoded]
        now = self.clock()
        won = await self.store.claim_ids(ids, self.window, now)
        done = await self.store.forwarded(ids)
        # A store that lost its data (a restart without persistence) grants
        # claims again; what this node forwarded itself within the window is
        # known here, and is never forwarded twice.
        new = self._folded().claim_ids(ids, self.window, now)
        chosen = [
            d for d, w, f, n in zip(decoded, won, done, new, strict=True) if n and (w or (d[3] and not f))
        ]
        self.counters.errors["rescued_duplicate"] += len(decoded) - len(chosen)
        await self._forward([d[0] for d in chosen], [d[1] for d in chosen], [d[2] for d in chosen])
        await self.store.rescue_ack([entry_id for entry_id, _ in entries])

    async def flush_pending(self) -> int:
        """On promotion: forward every pending entry not marked forwarded."""
        flushed = 0
        while self.pending:
            chunk = list(islice(self.pending, 4096))
            done = await self.store.forwarded(chunk)
            todo = [i for i, d in zip(chunk, done, strict=True) if not d]
            # Not what this node forwarded itself meanwhile (from the rescue stream).
            fresh = self._folded().claim_ids(todo, self.window, self.clock())
            todo = [i for i, f in zip(todo, fresh, strict=True) if f]
            by_id = {i: self.pending.pop(i) for i in chunk}
            if not self.pending:
                for queue in (self._unchecked, self._waiting, self._rescued):
                    queue.clear()
            await self.store.claim_ids(todo, self.window, self.clock(), node=self.node)
            await self._forward([by_id[i].event for i in todo], [by_id[i].fp for i in todo], todo)
            flushed += len(todo)
        return flushed

    async def _number_loop(self) -> None:
        while True:
            await self._to_number.wait()
            self._to_number.clear()
            try:
                if not await self.number_held():
                    await asyncio.sleep(self.retry_after)  # the store is unreachable
                    self._to_number.set()
            except Exception:
                log.exception("numbering failed")
                await asyncio.sleep(self.retry_after)
                self._to_number.set()

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                while await self.reconcile_once():
                    pass
            except Exception:  # the loop must outlive a bug in one round
                log.exception("reconcile round failed")

    async def _rescue_loop(self) -> None:
        while True:
            if not self.lease.forwarding(self.clock()):
                await asyncio.sleep(0.1)
                continue
            try:
                await self.rescue_once()
            except StoreError as exc:
                self._store_down(exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("rescue round failed")
                await asyncio.sleep(0.5)

    def start(self) -> None:
        """Start the numbering and reconcile loops (standby) and the rescue consumer (master)."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._number_loop()),
            loop.create_task(self._reconcile_loop()),
            loop.create_task(self._rescue_loop()),
            loop.create_task(self._keep_store()),
        ]

    async def _keep_store(self) -> None:
        """Mark the store's data set as this pair's, so that losing it later shows (`resync`);
        forget the watermarks of processes gone for longer than the window."""
        with contextlib.suppress(StoreError):
            await self.store.fresh()
            await self.store.prune_writers(self.window + 60)

    async def stop(self) -> None:
        """Stop the background loops, once the last watermark write is done."""
        await self.marked()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def gauges(self) -> dict[str, float]:
        """Pending entries, degraded flag, role and epoch, store figures."""
        return {
            "pending_events": len(self.pending) + len(self.unnumbered),
            # As standby: how far behind this node's receiving the master's forwarding is.
            "master_behind_seconds": max(0.0, self.clock() - self._progress) if self._progress else 0.0,
            "degraded": 1.0 if self.degraded else 0.0,
            "epoch": self.lease.epoch,
            "master": 1.0 if self.lease.forwarding(self.clock()) else 0.0,
            **{f"store_{k}": v for k, v in self.store.stats().items()},
        }
