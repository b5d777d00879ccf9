"""Turning a forwarded event into its JSON line."""

from __future__ import annotations

import time

import orjson

from dedup import Decision

_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE

_second = -1
_prefix = ""


def rfc3339(t: float) -> str:
    """`t` (Unix seconds) as RFC 3339 UTC with microseconds.

    The date-and-time prefix is cached per second: events arrive in bursts
    within the same second, and strftime is the costly part.
    """
    global _second, _prefix
    second = int(t)
    if second != _second:
        _prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_prefix}.{int((t - second) * 1_000_000):06d}Z"


def render(decision: Decision, node: str) -> bytes:
    """The JSON line for a forwarded event; the envelope keys win over fields."""
    event = decision.event
    base = {
        "id": decision.id,
        "fingerprint": f"{decision.fingerprint:016x}",
        "format": event.format,
        "peer": event.peer[0],
        "received_at": rfc3339(event.received_at),
        "node": node,
    }
    doc = {**base, **event.fields}
    if len(doc) != len(base) + len(event.fields):
        doc.update(base)
    return _dumps(doc, option=_NEWLINE)


__all__ = ["render", "rfc3339"]
