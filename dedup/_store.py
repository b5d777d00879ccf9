"""The claim store interface shared by the memory and Redis stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class StoreError(Exception):
    """The store could not answer; `reason` is a stable metric label."""

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class Claim(NamedTuple):
    """A request to own key `(fingerprint, occurrence)` until `expires_at`."""

    fingerprint: int
    occurrence: int
    expires_at: float


class Store(Protocol):
    """Remembers which `(fingerprint, occurrence)` keys were claimed."""

    async def claim(self, claims: Sequence[Claim], now: float) -> list[bool]:
        """Claim every key in one call; True where this call won the key.

        A key already held and not expired at `now` is not won again.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Counters for metrics: at least ``entries`` and ``evicted``."""
        ...
