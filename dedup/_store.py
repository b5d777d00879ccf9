"""The claim store interface shared by the memory and Redis stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias

Claim: TypeAlias = tuple[str, float]
"""A request to own an event id (``fingerprint-occurrence``) until ``expires_at``.

A plain tuple of atoms: one is built per event on the hot path, and the store
keeps only strings and floats, which the garbage collector never traverses.
"""


class StoreError(Exception):
    """The store could not answer; `reason` is a stable metric label."""

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class Store(Protocol):
    """Remembers which event ids were claimed."""

    async def claim(self, claims: Sequence[Claim], now: float) -> list[bool]:
        """Claim every id in one call; True where this call won it.

        An id already held and not expired at `now` is not won again.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Counters for metrics: at least ``entries`` and ``evicted``."""
        ...
