"""The claim store interface shared by the memory and Redis stores."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol


class Mode(StrEnum):
    """How repeats of a fingerprint inside the window are treated."""

    EXACT = "exact"
    SUPPRESS = "suppress"


class StoreError(Exception):
    """The store could not answer; `reason` is a stable metric label."""

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class FencedError(StoreError):
    """The store refused a write: a higher epoch than the writer's has been seen there.

    `epoch` is the store's; a node that gets this steps down at once.
    """

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message, "fenced")
        self.epoch = epoch


class Store(Protocol):
    """Numbers the copies of each fingerprint and remembers who claimed them.

    `exact` mode: each node counts its own copies of a fingerprint inside a
    window that opens with its first copy and lasts `window` seconds; its k-th
    copy is event id ``f-k`` and claims that id until the window closes. Two
    nodes that each received the same three copies claim ``f-1 f-2 f-3``
    each, and each id is won once. `suppress` mode: every copy is ``f-1``,
    won once per window.
    """

    async def claim(
        self, node: str, fingerprints: Sequence[str], mode: Mode, window: float, now: float
    ) -> tuple[list[str], list[bool]]:
        """Number and claim a whole batch in one call.

        Returns the event ids, parallel to `fingerprints`, and for each
        whether this call won it (an id held by anyone and not expired at
        `now` is not won again). Raises `StoreError` when it cannot answer.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Counters for metrics: at least ``entries`` and ``evicted``."""
        ...
