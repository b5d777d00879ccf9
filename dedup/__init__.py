"""Fingerprints, dedup windows and claim stores.

`dedup` never imports `gateway`: it gets events and a clock, and answers which
of them to forward.
"""

from dedup._dedup import Decisions, Deduplicator
from dedup._fingerprint import event_id, fingerprint, split_id, window_tag
from dedup._store import FencedError, Mode, Store, StoreError
from dedup.memory import MemoryStore

__all__ = [
    "Decisions",
    "Deduplicator",
    "FencedError",
    "MemoryStore",
    "Mode",
    "Store",
    "StoreError",
    "event_id",
    "fingerprint",
    "split_id",
    "window_tag",
]
