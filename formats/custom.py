"""Hinemos custom traps: JSON bodies posted over HTTP.

Strategy: one HTTP body holds one or more *bodies* (a JSON object, a JSON
array of objects, or NDJSON, one object a line), and each body holds a `DATA`
list whose entries are the events. `parse_many` returns an `Event` or a
`FormatError` per entry so that the receiver keeps the valid entries of a
request and names the bad ones. The body as a whole is unreadable only when it
is not JSON at all.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from formats._base import Event, FormatError, Peer, register

_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,3})?\Z")
_TYPES = frozenset({"NUM", "STRING"})


class CustomTrapError(FormatError):
    """A custom trap body or entry that does not follow the Hinemos format.

    `entry` is the position of the bad entry as ``body[i].DATA[j]`` (or
    ``body[i]`` for a body-level problem).
    """

    def __init__(self, message: str, reason: str, entry: str) -> None:
        super().__init__(f"{entry}: {message}", reason)
        self.entry = entry


def _bodies(data: bytes) -> list[Any]:
    text = data.strip()
    if not text:
        raise FormatError("empty body", "empty")
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    else:
        return parsed if isinstance(parsed, list) else [parsed]
    # Not one JSON document: NDJSON, one body a line.
    bodies = []
    for n, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            bodies.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise FormatError(f"line {n} is not JSON: {exc}", "not_json") from None
    return bodies


def _check_date(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.match(value):
        raise CustomTrapError("DATE must be 'yyyy-MM-dd HH:mm:ss'", "bad_date", where)
    try:
        datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise CustomTrapError(f"DATE {value!r} is not a date", "bad_date", where) from None
    return value


def _check_msg(kind: str, value: Any, where: str) -> str:
    if kind == "NUM":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise CustomTrapError("MSG of a NUM entry must be a number", "bad_msg", where)
        try:
            float(value)
        except ValueError:
            raise CustomTrapError(f"MSG {value!r} is not a number", "bad_msg", where) from None
        return str(value)
    if not isinstance(value, str):
        raise CustomTrapError("MSG must be a string", "bad_msg", where)
    return value


class CustomTrapParser:
    """Parser for Hinemos custom trap JSON (format name ``custom``)."""

    name = "custom"

    def parse(self, data: bytes, peer: Peer, received_at: float) -> Event:
        """Return the single event of `data`; raise if it holds none or several."""
        results = self.parse_many(data, peer, received_at)
        if len(results) != 1:
            raise FormatError(f"expected one entry, got {len(results)}", "not_single")
        result = results[0]
        if isinstance(result, FormatError):
            raise result
        return result

    def parse_many(
        self, data: bytes, peer: Peer, received_at: float
    ) -> list[Event | FormatError]:
        """One `Event` or `CustomTrapError` per DATA entry, in body order."""
        results: list[Event | FormatError] = []
        for i, body in enumerate(_bodies(data)):
            where = f"body[{i}]"
            if not isinstance(body, dict):
                results.append(CustomTrapError("body must be a JSON object", "not_object", where))
                continue
            facility_id = body.get("FacilityID")
            if facility_id is not None and not isinstance(facility_id, str):
                results.append(CustomTrapError("FacilityID must be a string", "bad_facility_id", where))
                continue
            entries = body.get("DATA")
            if not isinstance(entries, list) or not entries:
                results.append(CustomTrapError("DATA must be a non-empty list", "no_data", where))
                continue
            for j, entry in enumerate(entries):
                try:
                    results.append(
                        self._entry(entry, facility_id, f"{where}.DATA[{j}]", data, peer, received_at)
                    )
                except CustomTrapError as exc:
                    results.append(exc)
        return results

    def _entry(
        self,
        entry: Any,
        facility_id: str | None,
        where: str,
        raw: bytes,
        peer: Peer,
        received_at: float,
    ) -> Event:
        if not isinstance(entry, dict):
            raise CustomTrapError("entry must be a JSON object", "not_object", where)
        kind = entry.get("TYPE")
        if kind not in _TYPES:
            raise CustomTrapError("TYPE must be 'NUM' or 'STRING'", "bad_type", where)
        key = entry.get("KEY")
        if not isinstance(key, str) or not key:
            raise CustomTrapError("KEY must be a non-empty string", "bad_key", where)
        if "MSG" not in entry:
            raise CustomTrapError("MSG is missing", "bad_msg", where)
        msg = _check_msg(kind, entry["MSG"], where)
        date = _check_date(entry.get("DATE"), where)
        source = facility_id if facility_id else peer[0]
        return Event(
            format=self.name,
            peer=peer,
            received_at=received_at,
            fields={"facility_id": facility_id, "date": date, "type": kind, "key": key, "msg": msg},
            raw=raw,
            identity=(source, date, kind, key, msg),
        )


register(CustomTrapParser())
