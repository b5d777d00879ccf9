"""An example trapgate format plugin: ``key=value`` pairs separated by spaces.

A message needs a ``host`` and an ``event`` key; the identity is the host and
the sorted pairs, so the order of the pairs does not matter.
"""

from __future__ import annotations

from formats import Event, FormatError, Peer


class KeyValueParser:
    """Parses ``host=web01 event=login user=alice`` into fields."""

    name = "keyvalue"

    def parse(self, data: bytes, peer: Peer, received_at: float) -> Event:
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise FormatError("not UTF-8", "not_utf8") from None
        fields: dict[str, str] = {}
        for pair in text.split():
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise FormatError(f"{pair!r} is not key=value", "bad_pair")
            fields[key] = value
        if "host" not in fields or "event" not in fields:
            raise FormatError("host and event are required", "missing_key")
        return Event(
            format=self.name,
            peer=peer,
            received_at=received_at,
            fields=fields,
            raw=data,
            identity=tuple(f"{k}={v}" for k, v in sorted(fields.items())),
        )
