"""The pipeline stage of a node of an HA pair.

Strategy: both nodes receive every event and number their copies inside one
window per fingerprint in the shared store, so the same occurrence gets the
same id on both. Only a master whose lease is valid forwards (`MasterPath`).
Any other node holds its events in the `PendingBuffer` until the store shows
them forwarded, and rescues what the master has not forwarded in time: it
puts them on the rescue stream, which the master reads, takes and forwards,
so an event only the standby received still arrives exactly once.

Each piece of state has one owner. The pipeline hands batches over
(`handle`): a master forwards them, anyone else appends them to `_held`. The
standby loop alone owns the pending buffer: it numbers what is held, checks
and rescues what is due, and, once the node is master, flushes what it holds
(the promotion flush). The rescue loop, as master, takes what the standby
handed over. Both loops forward through `MasterPath`, whose lock serializes
the sink. A batch the master could not send because it stepped down comes
back to the standby loop through `_returned`.

Every write carries the node's epoch; a store that refuses it (a higher
epoch exists) makes the node step down at once (`fenced`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from dedup import FencedError, Mode, StoreError, fingerprint
from dedup.pair import PairStore
from formats import Event
from gateway._ratelog import RateLimited
from gateway._records import decode_rescue, encode_rescue
from gateway.forward import Forwarder
from gateway.ha._lease import Lease, Role
from gateway.ha._local import LocalRecord
from gateway.ha._master import MasterPath
from gateway.ha._pending import PendingBuffer, Unnumbered
from gateway.metrics import Counters
from gateway.spool import Spool

log = logging.getLogger(__name__)

_NUMBER_CHUNK = 8192  # held events numbered in one store call
_RECONCILE_EVERY = 0.1  # seconds between two checks of the pending buffer
_RECLAIM_EVERY = 5.0  # seconds between two looks for rescue entries a gone master had read
_HAND_OVER_AT_START = 2.0  # seconds a start waits for its spool to be on the rescue stream


class HaStage:
    """The HA pipeline stage (see the module docstring)."""

    def __init__(
        self,
        node: str,
        store: PairStore,
        forwarder: Forwarder,
        mode: Mode,
        window: float,
        lease: Lease,
        grace: float = 2.0,
        check_after: float = 0.3,
        max_pending: int = 1_000_000,
        spool: Spool | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        retry_after: float = 0.5,
        replica_wait: float = 1.0,
        degrade_after: float = 2.0,
        epoch_file: Path | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self.forwarder = forwarder
        self.mode = mode
        self.window = window
        self.grace = grace
        self.max_pending = max_pending
        self.spool = spool
        self.clock = clock
        self.monotonic = monotonic
        self.counters = Counters("ha", "stage")
        self.report = RateLimited(log)
        self.local = LocalRecord(node, window, max_pending, clock)
        self.pending = PendingBuffer(max_pending, check_after, grace, window, clock())
        self.master = MasterPath(self, replica_wait, retry_after, degrade_after)
        self._lease = Lease(Role.STANDBY)
        self._lease_moved = asyncio.Event()
        self._held: list[Event] = []  # received while not forwarding, to be numbered
        # Batches whose numbering or claim may have run on the store unanswered: numbered first,
        # with their tokens, so that they get the ids they may already have (see `Unnumbered`).
        self.unnumbered: deque[Unnumbered] = deque()
        self._tokens = map(f"{os.urandom(6).hex()}.{{}}".format, itertools.count(1))
        self._returned: list[tuple[Event, str, str]] = []  # numbered, sent back by a master that stepped down
        self._wake = asyncio.Event()
        # After the store could not be reached: when it answered again (None: not yet). Numbering
        # waits `grace` from then, so that the master's write-back opens the windows it opened
        # meanwhile first, and both nodes give the events of the outage the same ids.
        self._outage = False
        self._back_at: float | None = None
        self._flushed: asyncio.Future[int] | None = None  # resolved by the promotion flush
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False  # set by `stop`: the loops end
        # Called with the store's epoch when a write is refused (set by `Roles`).
        self.on_fenced: Callable[[int], object] = self.step_down_at
        self.on_lost_primary: Callable[[], None] = lambda: None
        self.stopping = False  # set by the node when it stops: nothing waits for a lease any more
        # The highest epoch this node has seen, kept on disk: a restart never goes below it.
        self.epoch_file = epoch_file
        self._epoch_saved = _read_epoch(epoch_file)
        if lease.epoch < self._epoch_saved:
            lease = dataclasses.replace(lease, epoch=self._epoch_saved)
        self.lease = lease

    # -- the lease ------------------------------------------------------------

    @property
    def lease(self) -> Lease:
        """The current lease."""
        return self._lease

    @lease.setter
    def lease(self, lease: Lease) -> None:
        was_forwarding = self.forwarding()
        self._lease = lease
        if lease.epoch > self._epoch_saved:
            _write_epoch(self.epoch_file, lease.epoch)
            self._epoch_saved = lease.epoch
        self.store.epoch = max(lease.epoch, 1)
        if lease.role is Role.MASTER:
            self.forwarder.epoch = lease.epoch
        self._lease_moved.set()
        if self.forwarding() and not was_forwarding:
            self._wake.set()
        if lease.role is not Role.MASTER:
            self.forwarder.nudge()  # a sink retrying gives up what it holds now, not after its backoff

    def forwarding(self) -> bool:
        """True while this node is a master with a valid lease."""
        return self._lease.forwarding(self.monotonic())

    async def wait_forwarding(self) -> bool:
        """Wait while the lease has lapsed but the role is still master; False once it is not master,
        or once the node is stopping (what waited is then handed over, see `stop`)."""
        while True:
            if self.forwarding():
                return True
            if self._lease.role is not Role.MASTER or self.stopping:
                return False
            self._lease_moved.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._lease_moved.wait()

    def fenced(self, epoch: int) -> None:
        """A write was refused: the store has seen `epoch`, higher than the write's."""
        self.counters.errors["fenced"] += 1
        if epoch <= self._lease.epoch:  # the write went out before this node's term began
            return
        self.report(logging.WARNING, "fenced", "a write was refused: the store is at epoch %d, this node"
                    " at %d; stepping down", epoch, self._lease.epoch)
        self.on_fenced(epoch)

    def step_down_at(self, epoch: int) -> bool:
        """Another node took `epoch`: become standby at once, at `epoch` if it is higher than this
        node's; True if anything changed.

        A refusal at this node's own epoch (or lower) answered a write sent before
        its current term began, e.g. a standby round in flight across its own
        promotion: it changes nothing. `step_down` is for a master that must stop
        at its own epoch.
        """
        if epoch > self._lease.epoch:
            self.lease = Lease(Role.STANDBY, epoch)
            return True
        return False

    def step_down(self) -> bool:
        """A master becomes standby at once, at its own epoch; True if it was master."""
        if self._lease.role is Role.MASTER:
            self.lease = Lease(Role.STANDBY, self._lease.epoch)
            return True
        return False

    def lost_primary(self) -> None:
        """The store answered read-only: this node's Redis is no longer the primary.

        Forwarding stops until the lease keeper confirms the role again (or steps the node down).
        """
        self.counters.errors["store_readonly"] += 1
        self.report(logging.WARNING, "readonly", "the store is read-only (a replica now); forwarding paused")
        if self._lease.role is Role.MASTER:
            self.lease = dataclasses.replace(self._lease, until=0.0)
        self.on_lost_primary()

    # -- the pipeline stage ---------------------------------------------------

    async def handle(self, events: list[Event]) -> None:
        """Forward (master with a lease) or hold (anyone else) a batch."""
        self.counters.received += len(events)
        if self.forwarding():
            await self.master.forward_new(events)
        else:
            self.hold(events)

    def hold(self, events: Sequence[Event]) -> None:
        """Keep events for the standby loop to number, within `max_pending`."""
        held = self._held
        held += events
        overflow = len(held) - self.max_pending
        if overflow > 0:
            self.counters.dropped["pending_overflow"] += overflow
            del held[:overflow]
        self._wake.set()

    def token(self) -> str:
        """A token no other numbering call of this process or of another node carries."""
        return next(self._tokens)

    def put_back(self, batch: Unnumbered) -> None:
        """A batch whose numbering may have run unanswered: numbered again first, with its token."""
        self.unnumbered.appendleft(batch)
        self._wake.set()

    def hand_back(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str]) -> None:
        """Numbered events a master could not send (it stepped down): the standby loop holds them."""
        self.local.release(ids)
        self._returned += zip(events, fps, ids, strict=True)
        self._wake.set()

    # -- the standby loop: the only owner of `pending` ------------------------

    async def standby_round(self, reconcile: bool = True) -> bool:
        """One round of the standby loop; True when more is due already.

        As master: forward what is held and flush the pending buffer (the
        promotion flush). Otherwise: number what is held, then (with
        `reconcile`) check what is due and rescue what the master did not
        forward.
        """
        if self.forwarding():
            await self._flush_as_master()
            return False
        await self.master.recover()  # a master that stepped down in degraded mode still writes back
        if not await self._number_held() or not reconcile:
            return False
        return await self._reconcile()

    async def _number_held(self) -> bool:
        """Number the held events into the pending buffer; False when the store did not answer
        (or answers again since less than `grace`)."""
        self._pend_returned()
        if self._outage and not await self._outage_over():
            return False
        while self.unnumbered or self._held:
            if not self.unnumbered:
                events = self._held[:_NUMBER_CHUNK]
                del self._held[: len(events)]
                fps = [fingerprint(e) for e in events]
                self.unnumbered.append(Unnumbered(events, fps, self.token(), False))
            if not await self._number(self.unnumbered.popleft()):
                return False
        return True

    async def _number(self, batch: Unnumbered) -> bool:
        """Number one batch into the pending buffer (a claim already made counts as its numbering);
        False, and the batch put back, when the store did not answer (also put back when cancelled)."""
        try:
            ids = await self.store.number(self.node, batch.fps, self.mode, self.window, batch.token)
        except StoreError as exc:
            self.put_back(batch)
            self._store_trouble(exc, "numbering")
            self._outage = not isinstance(exc, FencedError)
            return False
        except BaseException:
            self.put_back(batch)
            raise
        self.local.add_numbered(ids)
        self._add_pending(batch.events, batch.fps, ids)
        return True

    async def _outage_over(self) -> bool:
        try:
            await self.store.progress()
        except StoreError as exc:
            self._store_trouble(exc, "waiting for the store")
            self._back_at = None
            return False
        now = self.monotonic()
        if self._back_at is None:
            self._back_at = now
        if now - self._back_at < self.grace:
            return False
        self._outage, self._back_at = False, None
        return True

    def _pend_returned(self) -> None:
        """Move the batches a master sent back (`hand_back`) into the pending buffer."""
        if self._returned:
            returned, self._returned = self._returned, []
            self._add_pending([r[0] for r in returned], [r[1] for r in returned], [r[2] for r in returned])

    def _add_pending(self, events: Sequence[Event], fps: Sequence[str], ids: Sequence[str]) -> None:
        shed = self.pending.add(events, fps, ids)
        if shed:
            self.counters.dropped["pending_overflow"] += shed

    async def _reconcile(self, most: int = 8192) -> bool:
        pending = self.pending
        now = self.clock()
        try:
            pending.learn_progress(await self.store.progress(), now)
        except StoreError as exc:
            self._store_trouble(exc, "reading progress")
            return False
        due = pending.due(now, most)
        if not due:
            return False
        try:
            done = await self.store.forwarded(due)
        except StoreError as exc:
            pending.ask_again(due)
            self._store_trouble(exc, "checking forwarded")
            return False
        rescue, expired = pending.settle(due, done, now)
        if expired:
            self.counters.dropped["pending_expired"] += expired
            self.report(logging.WARNING, "expired",
                        "%d pending events were not forwarded within the window; dropped", expired)
        if rescue:
            try:
                taken = await self.store.rescue_add([encode_rescue(e.event, e.fp, i) for i, e in rescue])
            except StoreError as exc:
                self._store_trouble(exc, "rescuing")
                return False
            self.counters.handed_over["rescued"] += taken
            if taken < len(rescue):
                self.counters.errors["rescue_stream_full"] += len(rescue) - taken
                self.report(logging.WARNING, "rescue_full", "the rescue stream is full; rescues wait")
        return len(due) == most

    def _store_trouble(self, exc: StoreError, doing: str) -> None:
        """A standby's store error: one line per condition, a counter; a refusal makes it learn the epoch."""
        if isinstance(exc, FencedError):
            self.on_fenced(exc.epoch)
            return
        self.counters.errors[f"store_{exc.reason}"] += 1
        self.report(logging.ERROR, f"store_{exc.reason}", "store error while %s: %s", doing, exc)
        if exc.reason == "readonly":
            self.on_lost_primary()

    async def _flush_as_master(self) -> None:
        """Forward what is held, then every pending entry not forwarded yet (after a promotion)."""
        flushed = 0
        await self.master.recover()  # a store back early ends the hold early
        while self.forwarding() and not self.master.holding():
            if self.unnumbered:  # first: what may be numbered already
                if self.unnumbered[0].claimed:
                    done = await self.master.forward_new([])  # claims again every such batch
                else:
                    done = await self._number(self.unnumbered.popleft())
            elif self._held:
                held, self._held = self._held[:_NUMBER_CHUNK], self._held[_NUMBER_CHUNK:]
                done = await self.master.forward_new(held)
            else:
                break
            if not done:
                return
        self._pend_returned()
        entries = self.pending.take_all()
        ids = list(entries)
        try:
            for start in range(0, len(ids), 4096):
                chunk = ids[start : start + 4096]
                todo = [i for i, take in zip(chunk, await self._take(chunk), strict=True) if take]
                if not await self.master.forward_taken([entries[i].event for i in todo],
                                                       [entries[i].fp for i in todo], todo):
                    raise _NotMaster
                flushed += len(todo)
                for i in chunk:
                    del entries[i]
        except BaseException as exc:
            # Not flushed: back into the buffer, for the next round or the standby side (or the
            # hand-over on stopping, when cancelled), and out of hand for the next take.
            self.local.release(list(entries))
            self._add_pending([e.event for e in entries.values()], [e.fp for e in entries.values()],
                              list(entries))
            if isinstance(exc, StoreError):
                self._store_trouble(exc, "flushing pending events")
            elif not isinstance(exc, _NotMaster):
                raise
            return
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(flushed)
        if flushed:
            log.warning("forwarded %d pending events on promotion", flushed)

    async def flushed(self, timeout: float) -> int | None:
        """After a promotion: wait for the standby loop's flush; how many it forwarded (None: not
        yet, or no longer master: a standby never flushes)."""
        flushed = self._flushed = asyncio.get_running_loop().create_future()
        self._wake.set()
        deadline = self.monotonic() + timeout
        while self._lease.role is Role.MASTER and self.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    return await asyncio.shield(flushed)
        return None

    # -- the rescue loop (as master) -----------------------------------------

    async def rescue_round(self, block_ms: int = 200, reclaim: bool = False) -> int:
        """As master: take and forward what a standby (or a spool) put on the rescue stream.

        With `reclaim`, also entries another master read and never
        acknowledged (it died). Returns how many it forwarded.
        """
        entries = await self.store.rescue_read(self.node, 1024, block_ms)
        if reclaim:
            entries += await self.store.rescue_reclaim(self.node, int(self.grace * 2000), 1024)
        if not entries:
            return 0
        decoded = [decode_rescue(payload) for _, payload in entries]
        ids = [event_id for _, _, event_id in decoded]
        chosen = [d for d, take in zip(decoded, await self._take(ids), strict=True) if take]
        try:
            forwarded = await self.master.forward_taken([d[0] for d in chosen], [d[1] for d in chosen],
                                                        [d[2] for d in chosen])
        except BaseException:
            self.local.release([d[2] for d in chosen])
            raise
        if not forwarded:
            return 0  # handed back; the entries stay unacknowledged for the next master
        await self.store.rescue_ack([entry_id for entry_id, _ in entries])
        return len(chosen)

    async def _take(self, ids: Sequence[str]) -> list[bool]:
        """Which of these handed-over ids to forward now: taken in the store, not forwarded here.

        An id taken at this epoch before (3) is chosen too unless this node
        has it in hand or forwarded it: the reply to that take was lost. The
        chosen ids are in hand (`LocalRecord.choose`) until forwarded; the
        caller releases what it could not forward. An id this node forwarded
        under another window tag (numbered while the store could not be
        reached, see `LocalRecord`) is marked forwarded in the store instead,
        so that the standby drops it.
        """
        taken = await self.store.take_ids(ids, self.window)
        fresh = self.local.choose(ids)
        aliases = [i for i, t, f in zip(ids, taken, fresh, strict=True)
                   if t == 1 and not f and not self.local.in_hand(i)]
        if aliases:
            await self.store.mark_forwarded(aliases, self.window)
        chosen = [t in (1, 3) and f for t, f in zip(taken, fresh, strict=True)]
        self.local.release([i for i, t, f in zip(ids, taken, fresh, strict=True) if f and t not in (1, 3)])
        self.counters.dropped["forwarded_already"] += chosen.count(False)
        return chosen

    async def recover_spool(self) -> int:
        """Hand what the spool kept from a previous run to the master (raising this node's counters
        past it); the number of events. Returns once they are on the rescue stream, or after
        `_HAND_OVER_AT_START` seconds with the rest going on in the background (a spool that held
        a down sink's backlog can be larger than the stream: the master makes room as it takes
        them). The spool keeps them until all are on the stream."""
        if self.spool is None:
            return 0
        entries = self.spool.recover()
        if not entries:
            return 0
        task = asyncio.get_running_loop().create_task(self._hand_over_kept(entries))
        done, _ = await asyncio.wait({task}, timeout=_HAND_OVER_AT_START)
        if not done:
            log.warning("handing %d spooled events of the last run to the master in the background",
                        len(entries))
            self._tasks.append(task)
        return len(entries)

    async def _hand_over_kept(self, entries: Sequence[bytes]) -> None:
        assert self.spool is not None
        ids = [decode_rescue(e)[2] for e in entries]
        counted = put = 0
        while put < len(entries) and not self._closing:
            try:
                while counted < len(ids):
                    await self.store.count_ids(self.node, ids[counted : counted + 4096], self.window)
                    counted += 4096
                put += await self.store.rescue_add(entries[put : put + 1024])
            except StoreError as exc:
                self._store_trouble(exc, "handing the spool over")
                await asyncio.sleep(1.0)
                continue
            if put < len(entries):
                await asyncio.sleep(0.2)  # the stream is full: the master makes room
        if put >= len(entries):
            self.spool.release_kept()

    async def _put_on_rescue_stream(self, entries: Sequence[bytes]) -> None:
        """Add every entry, waiting while the stream is full (the caller bounds the wait)."""
        start = 0
        while start < len(entries):
            start += await self.store.rescue_add(entries[start : start + 1024])
            if start < len(entries):
                await asyncio.sleep(0.2)

    async def restore_counters(self) -> None:
        """On promotion: raise this node's counters in its (new) store to what it numbered itself."""
        numbered = self.local.numbered_ids()
        for start in range(0, len(numbered), 4096):
            await self.store.count_ids(self.node, numbered[start : start + 4096], self.window)

    # -- loops ----------------------------------------------------------------

    async def _standby_loop(self) -> None:
        """Numbers what arrives as it arrives; checks the pending buffer every `_RECONCILE_EVERY`."""
        reconcile_at = 0.0
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RECONCILE_EVERY):
                    await self._wake.wait()
            self._wake.clear()
            now = self.monotonic()
            reconcile = now >= reconcile_at
            if reconcile:
                reconcile_at = now + _RECONCILE_EVERY
            try:
                while await self.standby_round(reconcile):
                    pass
            except Exception:  # the loop must outlive a bug in one round
                log.exception("standby round failed")
                await asyncio.sleep(0.5)

    async def _rescue_loop(self) -> None:
        reclaim_at = 0.0
        while not self._closing:
            if not self.forwarding():
                await asyncio.sleep(0.1)
                continue
            now = self.monotonic()
            reclaim = now >= reclaim_at
            if reclaim:
                reclaim_at = now + _RECLAIM_EVERY
            if self.spool is not None:
                self.spool.sync_if_due()  # the `interval` fsync policy, while nothing is written
            try:
                await self.master.recover()
                await self.rescue_round(reclaim=reclaim)
            except StoreError as exc:
                self._store_trouble(exc, "taking rescues")
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("rescue round failed")
                await asyncio.sleep(0.5)

    def start(self) -> None:
        """Start the standby loop and the rescue loop."""
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self._standby_loop()), loop.create_task(self._rescue_loop())]

    async def keep_store(self) -> None:
        """Mark the store's data set as this pair's, so that losing it later shows (`write_back`);
        forget the watermarks of epochs gone for longer than the window."""
        with contextlib.suppress(StoreError):
            await self.store.fresh()
            await self.store.prune_epochs(self.window + 60)

    async def stop(self, hand_over_for: float = 2.0) -> None:
        """Stop the loops, once the last mark is written; hand what this node holds to the master.

        Nothing a node holds unforwarded is lost with a clean stop (both nodes
        restarted at once, say): its held and pending events go on the rescue
        stream, numbered, where whichever node is master next forwards what
        was not forwarded. Tried for `hand_over_for` seconds at most.
        """
        self.forwarder.nudge()  # `stopping` is set: a sink retrying gives up what it holds
        await self.master.wait_settled()
        self._closing = True  # the loops end after their current round; cancelled if that lasts
        self._wake.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=1.0)
            for task in late:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        try:
            async with asyncio.timeout(hand_over_for):
                await self._hand_over_on_stop()
        except (StoreError, TimeoutError) as exc:
            left = self.pending_count()
            if left:
                log.error("stopping with up to %d events held that could not be handed to the master (%s)",
                          left, getattr(exc, "reason", "timeout"))

    async def _hand_over_on_stop(self) -> None:
        """Number what is held, then put every held and pending event on the rescue stream."""
        self._outage = False  # no master write-back to wait for: this node stops
        if not await self._number_held():
            raise StoreError("the store did not answer", "unavailable")
        entries = self.pending.take_all()
        encoded = [encode_rescue(e.event, e.fp, i) for i, e in entries.items()]
        try:
            await self._put_on_rescue_stream(encoded)
        except BaseException:  # also the caller's timeout: keep them counted for its log line
            self._add_pending([e.event for e in entries.values()], [e.fp for e in entries.values()],
                              list(entries))
            raise
        self.counters.handed_over["stopping"] += len(encoded)
        if encoded:
            log.warning("handed %d held events to the master on stopping", len(encoded))

    async def step_down_gracefully(self) -> None:
        """Stop claiming, let the batch in the sink finish, then drop the role; return once its mark
        is written and replicated (and what a down sink held up is handed back)."""
        async with self.master.lock:
            self.lease = Lease(Role.STANDBY, self._lease.epoch)
        await self.master.wait_settled()

    def gauges(self) -> dict[str, float]:
        """Pending entries, lease, epoch, degraded flag, store figures."""
        now = self.monotonic()
        return {
            "pending_events": self.pending_count(),
            # As standby: how far behind this node's receiving the master's forwarding is (0 with
            # nothing pending: nothing waits for the master; 0 on a master).
            "master_behind_seconds": self.pending.behind(self.clock()) if len(self.pending) else 0.0,
            "degraded": 1.0 if self.master.degraded else 0.0,
            "epoch": self._lease.epoch,
            "master": 1.0 if self.forwarding() else 0.0,
            "lease_remaining_seconds": self._lease.remaining(now),
            "replica_lagging": 1.0 if self.master.replica_lagging else 0.0,
            **({f"spool_{k}": v for k, v in self.spool.stats().items()} if self.spool is not None else {}),
            **{f"store_{k}": v for k, v in self.store.stats().items()},
        }

    def pending_count(self) -> int:
        """Events this node holds, numbered or not."""
        return (len(self.pending) + len(self._held) + len(self._returned)
                + sum(len(batch.events) for batch in self.unnumbered))


def _read_epoch(path: Path | None) -> int:
    try:
        return int(path.read_text()) if path is not None else 0
    except (OSError, ValueError):
        return 0  # none yet, or unreadable: the stores still know the epoch


def _write_epoch(path: Path | None, epoch: int) -> None:
    if path is None:
        return
    temporary = path.with_name(path.name + ".new")
    try:
        temporary.write_text(f"{epoch}\n")
        os.replace(temporary, path)
    except OSError as exc:
        log.error("cannot keep the epoch in %s: %s", path, exc.strerror)


class _NotMaster(Exception):
    """The node stopped being master during the promotion flush."""

