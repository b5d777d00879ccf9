"""One log line per condition and interval, instead of one per occurrence."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimited:
    """Logs a condition at most once per `every` seconds; counts what it held back."""

    def __init__(self, logger: logging.Logger, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, level: int, condition: str, message: str, *args: object) -> None:
        """Log `message` for `condition` unless it was logged less than `every` seconds ago."""
        now = self.clock()
        last = self._last.get(condition)
        if last is not None and now - last < self.every:
            self._held[condition] = self._held.get(condition, 0) + 1
            return
        self._last[condition] = now
        held = self._held.pop(condition, 0)
        suffix = f" ({held} more since the last report)" if held else ""
        self.logger.log(level, message + suffix, *args)
