"""How an event travels on the rescue stream and sits in a spool: one msgpack record."""

from __future__ import annotations

import msgpack

from formats import Event

_packer = msgpack.Packer(use_bin_type=True)  # one for all: making one per call costs as much as packing


def encode_rescue(event: Event, fp: str, event_id: str) -> bytes:
    """An event as it travels on the rescue stream (and sits in the spool)."""
    return _packer.pack(  # type: ignore[no-any-return]
        [event_id, fp, event.format, event.peer[0], event.peer[1], event.received_at, event.fields]
    )


def decode_rescue(data: bytes) -> tuple[Event, str, str]:
    """The (event, fingerprint, id) of a rescue stream entry.

    Entries of earlier versions carry one more field (whether a master had
    claimed the id), which nothing needs any more.
    """
    event_id, fp, fmt, host, port, received_at, fields, *_ = msgpack.unpackb(data, raw=False)
    return Event(fmt, (host, port), received_at, fields, b"", ()), fp, event_id
