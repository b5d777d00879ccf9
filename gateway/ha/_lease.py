"""The role a node holds, under which epoch, and until when."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a node does with what it receives."""

    MASTER = "master"
    STANDBY = "standby"


@dataclass(frozen=True)
class Lease:
    """A role, its epoch, and the monotonic times the master role lasts to.

    `until` is renewed while the node can confirm its epoch with the pair's
    Redis servers (`gateway.roles`); `term`, when set, is an end given by
    whoever gave the role (the operator's ``--lease``, a controller) and is
    renewed only by them. A master forwards only before both.
    """

    role: Role
    epoch: int = 0
    until: float = 0.0
    term: float | None = None

    def forwarding(self, now: float) -> bool:
        """True only for a master whose lease has not run out at `now` (monotonic)."""
        return self.role is Role.MASTER and now < self.until and (self.term is None or now < self.term)

    def remaining(self, now: float) -> float:
        """Seconds of forwarding left at `now` (0 for a standby or a lapsed lease)."""
        if not self.forwarding(now):
            return 0.0
        end = self.until if self.term is None else min(self.until, self.term)
        return end - now
