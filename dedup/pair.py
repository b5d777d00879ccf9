"""What the HA data path needs of a store shared by the two nodes of a pair.

`dedup.redis.RedisStore` is the implementation; the node's HA stage depends
on this protocol only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dedup._store import Mode


class PairStore(Protocol):
    """Numbering, claims, forwarded marks and the rescue stream, fenced by `epoch`.

    Every write carries `epoch`; a store that has seen a higher one refuses
    it with `FencedError`. Every method raises `StoreError` when the store
    cannot answer.
    """

    epoch: int

    async def claim(self, node: str, fingerprints: Sequence[str], mode: Mode, window: float, now: float,
                    seq: int | None = None, token: str = "") -> tuple[list[str], list[bool]]:
        """Number and claim a batch; with `seq`, its ids are forwarded once `forwarded_through(seq)`.

        A call repeated with the same `token` gives the same ids and wins what the first won."""
        ...

    async def claim_replicated(self, node: str, fingerprints: Sequence[str], mode: Mode, window: float,
                               now: float, seq: int | None = None, token: str = "", replicas: int = 0,
                               wait: float = 1.0) -> tuple[list[str], list[bool], int]:
        """`claim`, waiting up to `wait` for `replicas` to hold it; how many confirmed."""
        ...

    async def number(self, node: str, fingerprints: Sequence[str], mode: Mode, window: float,
                     token: str = "") -> list[str]:
        """The ids `claim` would give these copies, counted but not claimed (a standby's numbering);
        a call repeated with the same `token` gives the same ids."""
        ...

    async def claim_ids(self, ids: Sequence[str], window: float, now: float,
                        node: str | None = None) -> list[bool]:
        """Claim given ids; True where won."""
        ...

    async def count_ids(self, node: str, ids: Sequence[str], window: float) -> None:
        """Raise `node`'s counters to these ids' occurrences."""
        ...

    async def take_ids(self, ids: Sequence[str], window: float) -> list[int]:
        """Take handed-over ids: 1 taken, 0 forwarded already, 2 held by a batch of this epoch,
        3 taken (or claimed by id) at this epoch, not forwarded yet."""
        ...

    async def mark_forwarded(self, ids: Sequence[str], window: float = 30.0, replicas: int = 0,
                             wait: float = 1.0) -> int:
        """Mark ids forwarded; with `replicas`, wait for them; how many replicas confirmed."""
        ...

    async def forwarded_through(self, seq: int, last_id: str, replicas: int = 0, wait: float = 1.0) -> int:
        """Raise this epoch's watermark to `seq`; as `mark_forwarded` for `replicas`."""
        ...

    async def forwarded(self, ids: Sequence[str]) -> list[bool]:
        """For each id, whether it is marked forwarded."""
        ...

    async def progress(self) -> str | None:
        """The id a master last marked through its watermark."""
        ...

    async def rescue_add(self, entries: Sequence[bytes]) -> int:
        """Append to the rescue stream; how many it took (a full stream refuses the rest)."""
        ...

    async def rescue_read(
        self, consumer: str, count: int = 100, block_ms: int = 0
    ) -> list[tuple[str, bytes]]:
        """Entries never delivered to a consumer."""
        ...

    async def rescue_reclaim(
        self, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[tuple[str, bytes]]:
        """Entries another consumer read and left unacknowledged for `min_idle_ms`."""
        ...

    async def rescue_ack(self, entry_ids: Sequence[str]) -> int:
        """Acknowledge and delete handled entries."""
        ...

    async def fresh(self) -> bool:
        """True once per data set that may have been lost."""
        ...

    async def prune_epochs(self, idle: float) -> int:
        """Forget the watermarks of epochs idle for `idle` seconds."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters for metrics."""
        ...
