"""The master's path: claim, spool, sink, mark forwarded, wait for the replica.

Strategy: one lock makes this the only writer to the sink, so batches reach
the sink in the order of their seqs and a watermark never covers a batch
still on its way. A batch's claim waits for the replica in its own round
trip (WAIT), so the windows it opened are on the replica before anything is
sent: a standby promoted after a cut numbers its late copies of that batch in
the same windows, under the same ids. The lease is checked again right before every sink write
(retries included); a master whose lease lapsed holds the batch until it is
renewed, and one that stepped down hands it to the standby side. A batch's
mark (one watermark write, or one mark per id for ids taken one by one) and
the WAIT for the replica go out in one round trip behind the sink write, so
the next batch's claim overlaps them; the next batch reaches the sink only
once the previous one is marked and replicated. So a promoted replica lacks
at most the one batch in flight, and the spool, acknowledged after the
replica has the mark, holds exactly that batch after a crash.

The sinks take a batch through their lanes (`gateway.forward`). While one is
down (retrying), the others go on: the batches it holds up wait in its lane
and in `_behind`, and are marked in order once it took them, so the
watermark never covers a batch that sink has not taken; the standby keeps its
copies until then, and the spool holds them all. On a step-down a lane gives
what it holds up at once, and it is handed back to the standby side.

When the store cannot be reached the master first holds what it receives
for `degrade_after` seconds: long enough for a controller to hand the role to
a standby whose store works, which then forwards each event once under the
ids both nodes agree on. Past that it numbers and claims in its `LocalRecord`
(degraded mode), forwarding with ids of its own making, and remembers what
the store missed; once it answers again (tried at most every `retry_after` seconds, before anything
else is sent to it) the master writes back just those claims, marks and
counters, or the whole window when the store lost its data set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dedup import FencedError, StoreError, fingerprint
from formats import Event
from gateway._records import encode_rescue
from gateway.ha._pending import Unnumbered

if TYPE_CHECKING:
    from gateway.forward import Delivery
    from gateway.ha.stage import HaStage

log = logging.getLogger(__name__)


@dataclass
class _Written:
    """A batch handed to the sinks' lanes, until it is marked or handed back."""

    delivery: Delivery
    events: Sequence[Event]
    fps: Sequence[str]
    ids: Sequence[str]
    seq: int | None
    batch: int | None  # its spool batch


class MasterPath:
    """Forwards batches as master for `stage`; see the module docstring."""

    def __init__(self, stage: HaStage, replica_wait: float, retry_after: float, degrade_after: float) -> None:
        self.stage = stage
        self.replica_wait = replica_wait
        self.retry_after = retry_after
        self.degrade_after = degrade_after
        self._outage_since = 0.0
        self.lock = asyncio.Lock()
        self.replicas = 0  # replicas to WAIT for (set from the primary's ROLE by the lease keeper)
        self.replica_lagging = False  # a WAIT timed out: marks go on without waiting until it caught up
        self._seq = 0
        self._marking: asyncio.Task[None] | None = None
        self._behind: deque[_Written] = deque()  # batches a down sink holds up, oldest first
        self._settling: asyncio.Task[None] | None = None
        self.degraded = False
        self._retry_at = 0.0
        self._unsynced: list[str] = []  # forwarded while the store missed it: claim and mark
        self._uncounted: list[str] = []  # numbered here while degraded: counters
        self._resync_all = False

    async def forward_new(self, events: Sequence[Event]) -> bool:
        """Number, claim and forward events received as master; True once forwarded (or dropped as
        duplicates), False when they wait (held: the role was lost or the store does not answer).

        Batches whose claim may have run unanswered (`HaStage.unnumbered`) go first, claimed again
        with their tokens: they get the ids and win the claims the first call may have made, and no
        later batch's watermark covers such a claim that was never forwarded.
        """
        stage = self.stage
        async with self.lock:
            if not stage.forwarding():
                stage.hold(events)
                return False
            await self._recover()
            for batch in [b for b in stage.unnumbered if b.claimed]:
                stage.unnumbered.remove(batch)
                if not await self._claim_and_write(batch):
                    stage.hold(events)
                    return False
            if not events:
                return True
            fps = [fingerprint(e) for e in events]
            return await self._claim_and_write(Unnumbered(list(events), fps, stage.token(), True))

    async def _claim_and_write(self, batch: Unnumbered) -> bool:
        """Claim a batch (in the store, or here while degraded) and write what it won; under the lock.

        False when it waits: put back, to be claimed again with its token.
        """
        stage = self.stage
        events, fps = batch.events, batch.fps
        seq = None
        if not self.degraded:
            seq = self._seq + 1
            replicas = self._replicas_to_wait_for()
            try:
                ids, won, acked = await stage.store.claim_replicated(
                    stage.node, fps, stage.mode, stage.window, stage.clock(), seq, batch.token, replicas,
                    self.replica_wait)
                if acked < replicas:
                    self._replica_late("a claim")
                self._seq = seq
                stage.local.add_numbered(ids)
            except StoreError as exc:
                if not self._refused(exc):
                    self._store_down(exc)
                stage.put_back(batch)  # the claim may have run: repeated with its token
                return False
            except BaseException:  # cancelled (the node stops): handed over with the held events
                stage.put_back(batch)
                raise
        if self.holding():
            stage.put_back(batch)
            return False
        if self.degraded:
            seq = None
            local = stage.local.as_store()
            ids, won = local.claim_now(stage.node, fps, stage.mode, stage.window, stage.clock())
            self._uncounted += ids
            self._bound_unsynced()
        keep = [i for i, w in enumerate(won) if w]
        stage.counters.dropped["duplicate"] += len(events) - len(keep)
        await self._write([events[i] for i in keep], [fps[i] for i in keep], [ids[i] for i in keep], seq)
        return True

    async def forward_taken(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str]) -> bool:
        """Forward events whose ids this master took one by one; False (and handed back) if not master."""
        async with self.lock:
            if not self.stage.forwarding():
                self.stage.hand_back(events, fps, ids)
                return False
            await self._write(events, fps, ids, None)
            return True

    async def recover(self) -> None:
        """Write back and leave degraded mode when the store answers again (the rescue loop's tick).

        Without it, a master that receives nothing after an outage would never write back.
        """
        if self.degraded:
            async with self.lock:
                await self._recover()

    def _refused(self, exc: StoreError) -> bool:
        """A write refused because this node is no longer the master's: tell the stage; True if so."""
        if isinstance(exc, FencedError):
            self.stage.fenced(exc.epoch)
            return True
        if exc.reason == "readonly":
            self.stage.lost_primary()
            return True
        return False

    async def _write(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str],
                     seq: int | None) -> None:
        """Spool, sink (the lease checked before each attempt), then mark behind; under the lock."""
        if not events:
            return
        stage = self.stage
        spool = stage.spool
        batch = None
        if spool is not None:
            batch = spool.append([encode_rescue(e, f, i) for e, f, i in zip(events, fps, ids,
                                                                                         strict=True)])
        await self.wait_marked()  # the previous batch is marked and replicated before this one is sent
        forwarder = stage.forwarder
        delivery = await forwarder.submit(events, fps, ids, may_write=stage.wait_forwarding)
        await forwarder.settled(delivery)
        written = _Written(delivery, events, fps, ids, seq, batch)
        if self._behind or not delivery.done.done():
            # A sink is down: the others go on; this batch is marked once that sink took it too, after
            # the batches before it (a watermark never covers one that sink has not taken).
            self._behind.append(written)
            if self._settling is None or self._settling.done():
                self._settling = asyncio.create_task(self._settle_behind())
            return
        self._marking = self._settle(written)

    def _settle(self, written: _Written) -> asyncio.Task[None] | None:
        """A batch every sink is done with: hand it back if one gave it up (the role was lost),
        else count it and mark it (a task: `_mark`)."""
        stage, spool = self.stage, self.stage.spool
        if written.delivery.abandoned:
            stage.hand_back(written.events, written.fps, written.ids)  # the standby side holds them now
            if spool is not None and written.batch is not None:
                spool.ack(written.batch)
            return None
        stage.counters.sent += len(written.ids)
        stage.local.add_forwarded(written.ids)
        return asyncio.create_task(self._mark(written.ids, written.seq, written.batch))

    async def _settle_behind(self) -> None:
        """Mark (or hand back) the batches a down sink holds up, in order, as it takes them."""
        behind = self._behind
        while behind:
            await behind[0].delivery.done
            await self.wait_marked()
            self._marking = self._settle(behind[0])
            await self.wait_marked()
            behind.popleft()

    async def _mark(self, ids: Sequence[str], seq: int | None, batch: int | None) -> None:
        """Mark a forwarded batch in the store and wait for the replica; then ack it in the spool."""
        stage = self.stage
        replicas = self._replicas_to_wait_for()
        if not self.degraded:
            try:
                if seq is None:
                    acked = await stage.store.mark_forwarded(ids, stage.window, replicas, self.replica_wait)
                else:
                    acked = await stage.store.forwarded_through(seq, ids[-1], replicas, self.replica_wait)
                if acked < replicas:
                    self._replica_late("a mark")
            except StoreError as exc:
                if not self._refused(exc):
                    self._store_down(exc)
                    self._unsynced += ids
                    self._bound_unsynced()
        else:
            self._unsynced += ids
            self._bound_unsynced()
        if stage.spool is not None and batch is not None:
            stage.spool.ack(batch)

    def _replicas_to_wait_for(self) -> int:
        return 0 if self.replica_lagging else self.replicas

    def _replica_late(self, what: str) -> None:
        """The replica did not confirm `what` within `replica_wait`: claims and marks go on without
        waiting until the lease keeper sees it caught up."""
        self.replica_lagging = True
        self.stage.counters.errors["replica_wait_timeout"] += 1
        self.stage.report(logging.WARNING, "replica_wait", "the replica did not confirm %s in %.1fs; "
                          "claims and marks go on without waiting", what, self.replica_wait)

    async def wait_marked(self) -> None:
        """Return once the last batch every sink took is marked (or kept for the write-back)."""
        task = self._marking
        if task is None:
            return
        try:
            await task
        except Exception:  # a bug: the mark handles store errors itself
            log.exception("marking forwarded failed")
        if self._marking is task:
            self._marking = None

    async def wait_settled(self) -> None:
        """`wait_marked`, and the batches a down sink held up marked or handed back too (once the
        role is lost, a lane gives each up at its next attempt)."""
        if self._settling is not None:
            await self._settling
        await self.wait_marked()

    def behind(self) -> int:
        """Events forwarded to some sinks and waiting for a down one before they are marked."""
        return sum(len(w.ids) for w in self._behind)

    # -- store outages ------------------------------------------------------

    def holding(self) -> bool:
        """True during the first `degrade_after` seconds of a store outage: batches wait, unforwarded."""
        return self.degraded and time.monotonic() - self._outage_since < self.degrade_after

    def _store_down(self, exc: StoreError) -> None:
        stage = self.stage
        if not self.degraded:
            self._outage_since = time.monotonic()
            log.error("store unreachable (%s); degraded mode: numbering here until it answers", exc.reason)
            self._retry_at = time.monotonic() + self.retry_after
        self.degraded = True
        stage.counters.errors[f"store_{exc.reason}"] += 1

    async def _recover(self) -> None:
        """While degraded (trying at most every `retry_after` s): write back, and leave degraded mode."""
        if not self.degraded or time.monotonic() < self._retry_at:
            return
        await self.wait_marked()  # what it could not mark is written back below
        self._retry_at = time.monotonic() + self.retry_after
        try:
            await self.write_back()
        except StoreError as exc:
            self.stage.counters.errors[f"store_{exc.reason}"] += 1
            self._refused(exc)
            return
        self.degraded = False
        log.warning("store reachable again; wrote back what was forwarded meanwhile")

    async def write_back(self) -> None:
        """Tell the store what it missed: claims, marks and this node's counters.

        Everything this node numbered and forwarded within the window when the
        store lost its data set (or the list of what it missed outgrew
        `max_pending`). Raises `StoreError`, keeping what is left to tell.
        """
        stage = self.stage
        store = stage.store
        if self._resync_all or await store.fresh():
            self._resync_all, self._unsynced, self._uncounted = True, [], []
            counted, ids = stage.local.numbered_ids(), stage.local.forwarded_ids()
        else:
            counted, self._uncounted = self._uncounted, []
            ids, self._unsynced = self._unsynced, []
        try:
            for start in range(0, len(counted), 4096):
                await store.count_ids(stage.node, counted[start : start + 4096], stage.window)
            counted = []
            for start in range(0, len(ids), 4096):
                chunk = ids[start : start + 4096]
                await store.claim_ids(chunk, stage.window, stage.clock())
                await store.mark_forwarded(chunk, stage.window)
        except StoreError:
            if not self._resync_all:  # what was added meanwhile stays too
                self._uncounted[:0] = counted
                self._unsynced[:0] = ids
            raise
        self._resync_all = False

    def _bound_unsynced(self) -> None:
        if len(self._unsynced) + len(self._uncounted) > self.stage.max_pending:
            self._resync_all, self._unsynced, self._uncounted = True, [], []
