"""The HA data path: roles, the standby's pending buffer, rescue and promotion.

Strategy: both nodes receive every event, number their copies in the shared
store (per-node occurrence counters on the primary) and so give the same
occurrence the same id. Only a node whose role is master and whose lease is
valid forwards: it claims the batch in the store, forwards what it won, and
marks it forwarded once the sink has it. Any other node keeps every event in
a bounded pending buffer; it asks the store once an entry is `check_after`
old whether it was forwarded and drops it if so. An entry still unforwarded
after `grace` is rescued: put on the rescue stream, which the master reads,
claims and forwards, so an event only the standby received still arrives
exactly once. Promotion forwards every pending entry not marked forwarded
(duplicates are bounded by what the dead master had in flight, with the same
ids). When the store cannot be reached the master goes on forwarding with
local dedup and remembers what it forwarded; when the store answers again it
writes those claims and markers back, so the standby drops them instead of
rescuing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

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
    checked: bool = False
    rescued_at: float | None = None


def encode_rescue(event: Event, fp: str, event_id: str, claimed: bool = False) -> bytes:
    """An event as it travels on the rescue stream (and sits in the spool).

    `claimed` says the id was claimed by a master that may not have forwarded
    it (from its spool): the master taking it forwards it unless it is marked
    forwarded, instead of claiming it.
    """
    return msgpack.packb(  # type: ignore[no-any-return]
        [event_id, fp, event.format, event.peer[0], event.peer[1], event.received_at, event.fields, claimed],
        use_bin_type=True,
    )


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
    ) -> None:
        self.node = node
        self.store = store
        self.forwarder = forwarder
        forwarder.after = self._mark_forwarded
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
        self.unnumbered: list[Event] = []
        self.degraded = False
        # What this node forwarded within the window, kept so that a store
        # that lost it (outage, restart) can be told again.
        self._recent = MemoryStore(max_pending)
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
        now = self.clock()
        try:
            ids, won = await self.store.claim(self.node, fps, self.mode, self.window, now)
            await self._recovered()
        except StoreError as exc:
            self._store_down(exc)
            ids, won = self._recent.claim_now(self.node, fps, self.mode, self.window, now)
        keep = [i for i, w in enumerate(won) if w]
        self.counters.dropped["duplicate"] += len(events) - len(keep)
        await self._forward([events[i] for i in keep], [fps[i] for i in keep], [ids[i] for i in keep])

    async def _forward(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str]) -> None:
        if not events:
            return
        self.counters.sent += len(events)
        spool = self.spool
        if spool is None:
            await self.forwarder.forward(events, fps, ids)
            return
        batch = spool.append([encode_rescue(*x, claimed=True) for x in zip(events, fps, ids, strict=True)])
        await self.forwarder.forward(events, fps, ids)
        spool.ack(batch)

    async def recover_spool(self) -> int:
        """Put what the spool kept from a previous run on the rescue stream."""
        if self.spool is None:
            return 0
        entries = self.spool.recover()
        for start in range(0, len(entries), 1024):
            await self.store.rescue_add(entries[start : start + 1024])
        self.spool.clear()
        return len(entries)

    async def _mark_forwarded(self, ids: list[str]) -> None:
        if self.degraded:
            return  # claimed in `_recent` already; `resync` tells the store
        self._recent.claim_ids(ids, self.window, self.clock(), node=self.node)
        try:
            await self.store.mark_forwarded(ids, self.window)
        except StoreError as exc:
            self._store_down(exc)

    async def _as_standby(self, events: list[Event]) -> None:
        if self.unnumbered:
            self.unnumbered += events
            return
        await self._number(events)

    async def _number(self, events: list[Event]) -> None:
        fps = [fingerprint(e) for e in events]
        try:
            ids = await self.store.number(self.node, fps, self.mode, self.window)
            await self._recovered()
        except StoreError as exc:
            self._store_down(exc)
            self.unnumbered += events
            return
        now = self.clock()
        pending = self.pending
        for event, fp, event_id in zip(events, fps, ids, strict=True):
            pending[event_id] = _Entry(event, fp, now)
        overflow = len(pending) - self.max_pending
        if overflow > 0:
            self.counters.dropped["pending_overflow"] += overflow
            for key in list(pending)[:overflow]:
                del pending[key]

    # -- store outages ------------------------------------------------------

    def _store_down(self, exc: StoreError) -> None:
        if not self.degraded:
            log.error("store unreachable (%s): %s; degraded mode", exc.reason, exc)
        self.degraded = True
        self.counters.errors[f"store_{exc.reason}"] += 1

    async def _recovered(self) -> None:
        if not self.degraded:
            return
        self.degraded = False
        log.warning("store reachable again; writing back what was forwarded meanwhile")
        await self.resync()

    async def resync(self) -> None:
        """Tell the store every id this node forwarded within the window."""
        ids = self._recent.live_ids(self.clock())
        for start in range(0, len(ids), 4096):
            chunk = ids[start : start + 4096]
            try:
                await self.store.claim_ids(chunk, self.window, self.clock(), node=self.node)
                await self.store.mark_forwarded(chunk, self.window)
            except StoreError as exc:
                self._store_down(exc)
                return

    # -- the standby's background work ---------------------------------------

    async def reconcile_once(self) -> None:
        """Drop what the master forwarded; rescue what it did not in time."""
        if self.unnumbered:
            events, self.unnumbered = self.unnumbered, []
            await self._number(events)
            if self.unnumbered:
                return
        if self.lease.forwarding(self.clock()):
            # Held while the lease had lapsed: forward what nobody did.
            if self.pending:
                await self.flush_pending()
            return
        now = self.clock()
        due: list[str] = []
        for event_id, entry in self.pending.items():
            age = now - entry.added_at
            if age < self.check_after:
                break
            if not entry.checked or (age >= self.grace and (
                entry.rescued_at is None or now - entry.rescued_at >= self.grace)):
                due.append(event_id)
            if len(due) >= 8192:
                break
        if not due:
            return
        try:
            done = await self.store.forwarded(due)
        except StoreError as exc:
            self._store_down(exc)
            return
        rescue = []
        for event_id, forwarded in zip(due, done, strict=True):
            if forwarded:
                del self.pending[event_id]
                continue
            entry = self.pending[event_id]
            entry.checked = True
            if now - entry.added_at >= self.grace:
                entry.rescued_at = now
                rescue.append(encode_rescue(entry.event, entry.fp, event_id))
        if rescue:
            try:
                await self.store.rescue_add(rescue)
                self.counters.sent += len(rescue)
                self.counters.dropped["rescued"] += len(rescue)
            except StoreError as exc:
                self._store_down(exc)

    async def rescue_once(self, block_ms: int = 200) -> None:
        """As master: claim and forward what a standby put on the rescue stream."""
        entries = await self.store.rescue_read(self.node, 1024, block_ms)
        if not entries:
            return
        await self._recovered()
        decoded = [decode_rescue(payload) for _, payload in entries]
        ids = [event_id for _, _, event_id, _ in decoded]
        now = self.clock()
        won = await self.store.claim_ids(ids, self.window, now)
        done = await self.store.forwarded(ids)
        # A store that lost its data (a restart without persistence) grants
        # claims again; what this node forwarded itself within the window is
        # known here, and is never forwarded twice.
        new = self._recent.claim_ids(ids, self.window, now)
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
            chunk = list(self.pending)[:4096]
            done = await self.store.forwarded(chunk)
            todo = [i for i, d in zip(chunk, done, strict=True) if not d]
            # Not what this node forwarded itself meanwhile (from the rescue stream).
            fresh = self._recent.claim_ids(todo, self.window, self.clock())
            todo = [i for i, f in zip(todo, fresh, strict=True) if f]
            entries = [self.pending.pop(i) for i in chunk]
            by_id = dict(zip(chunk, entries, strict=True))
            await self.store.claim_ids(todo, self.window, self.clock(), node=self.node)
            await self._forward([by_id[i].event for i in todo], [by_id[i].fp for i in todo], todo)
            flushed += len(todo)
        return flushed

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                await self.reconcile_once()
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
        """Start the reconcile loop (standby) and the rescue consumer (master)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._reconcile_loop()), loop.create_task(self._rescue_loop())]

    async def stop(self) -> None:
        """Stop the background loops."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def gauges(self) -> dict[str, float]:
        """Pending entries, degraded flag, role and epoch, store figures."""
        return {
            "pending_events": len(self.pending) + len(self.unnumbered),
            "degraded": 1.0 if self.degraded else 0.0,
            "epoch": self.lease.epoch,
            "master": 1.0 if self.lease.forwarding(self.clock()) else 0.0,
            **{f"store_{k}": v for k, v in self.store.stats().items()},
        }
