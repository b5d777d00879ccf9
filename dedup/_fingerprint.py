"""Fingerprints: a 64-bit hash over an event's format and identity."""

from __future__ import annotations

import msgpack
import xxhash

from formats import Event

_pack = msgpack.Packer(use_bin_type=True).pack
_hexdigest = xxhash.xxh3_64_hexdigest


def fingerprint(event: Event) -> str:
    """xxh3_64 over the msgpack encoding of ``(format, identity)``, as 16 hex digits.

    msgpack keeps the parts unambiguous (lengths and types are encoded), so
    ``("ab", "c")`` and ``("a", "bc")`` never collide by construction.
    """
    return _hexdigest(_pack((event.format, event.identity)))


def event_id(fp: str, occurrence: int) -> str:
    """The id both nodes give the `occurrence`-th copy of fingerprint `fp`."""
    return f"{fp}-{occurrence}"
