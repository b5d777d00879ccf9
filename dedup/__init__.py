"""Fingerprints, dedup windows and claim stores.

`dedup` never imports `gateway`: it gets events and a clock, and answers which
of them to forward.
"""

from dedup._dedup import Decisions, Deduplicator, Mode
from dedup._fingerprint import event_id, fingerprint
from dedup._store import Claim, Store, StoreError
from dedup.memory import MemoryStore

__all__ = [
    "Claim",
    "Decisions",
    "Deduplicator",
    "MemoryStore",
    "Mode",
    "Store",
    "StoreError",
    "event_id",
    "fingerprint",
]
