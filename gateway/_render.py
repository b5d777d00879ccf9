"""Turning a forwarded event into its JSON line."""

from __future__ import annotations

import time

import orjson

from formats import Event

_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE

_millis = -1
_text = ""


def rfc3339(t: float) -> str:
    """`t` (Unix seconds) as RFC 3339 UTC with milliseconds.

    The last result is cached: at a high rate, consecutive events share the
    millisecond, and formatting is most of the cost of rendering an event.
    """
    global _millis, _text
    millis = int(t * 1000)
    if millis != _millis:
        seconds, ms = divmod(millis, 1000)
        _text = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{ms:03d}Z"
        _millis = millis
    return _text


def render(event: Event, fp: str, event_id: str, node: str, epoch: int = 0) -> bytes:
    """The JSON line for a forwarded event; the envelope keys win over fields.

    `epoch` is the forwarding master's (0 on a single node).
    """
    base = {
        "id": event_id,
        "fingerprint": fp,
        "format": event.format,
        "peer": event.peer[0],
        "received_at": rfc3339(event.received_at),
        "node": node,
        "epoch": epoch,
    }
    fields = event.fields
    doc = {**base, **fields}
    if len(doc) != 7 + len(fields):
        doc.update(base)
    return _dumps(doc, option=_NEWLINE)
