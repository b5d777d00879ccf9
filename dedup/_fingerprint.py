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


def window_tag(opened_at: float) -> str:
    """The name of a window: the time it opened, in milliseconds, as hex."""
    return f"{int(opened_at * 1000):x}"


def event_id(fp: str, window: str, occurrence: int) -> str:
    """The id both nodes give the `occurrence`-th copy of fingerprint `fp` in `window`.

    The window's tag makes the id unique over time: the first copy of the
    next window is another id, so a downstream that drops repeated ids
    (JetStream's ``Nats-Msg-Id``) never drops a real occurrence.
    """
    return f"{fp}-{window}-{occurrence}"


def split_id(event_id: str) -> tuple[str, str, int]:
    """(fingerprint, window tag, occurrence) of an id made by `event_id`."""
    fp, window, occurrence = event_id.split("-")
    return fp, window, int(occurrence)
