"""How an event travels on the rescue stream and sits in the spool."""

from __future__ import annotations

import msgpack

from formats import Event

_packer = msgpack.Packer(use_bin_type=True)  # one for all: making one per call costs as much as packing


def encode_rescue(event: Event, fp: str, event_id: str, claimed: bool = False) -> bytes:
    """An event as it travels on the rescue stream (and sits in the spool).

    `claimed` says the id was claimed by a master (it comes from a spool);
    the master taking it treats both kinds alike (`RedisStore.take_ids`), the
    flag only tells where it came from.
    """
    return _packer.pack(  # type: ignore[no-any-return]
        [event_id, fp, event.format, event.peer[0], event.peer[1], event.received_at, event.fields, claimed]
    )


def decode_rescue(data: bytes) -> tuple[Event, str, str, bool]:
    """The (event, fingerprint, id, claimed) of a rescue stream entry."""
    event_id, fp, fmt, host, port, received_at, fields, claimed = msgpack.unpackb(data, raw=False)
    return Event(fmt, (host, port), received_at, fields, b"", ()), fp, event_id, claimed
