"""Hinemos custom trap parsing: bodies, entries, errors per entry."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from formats import Event, FormatError, get_parser
from formats.custom import CustomTrapError

PEER = ("192.0.2.7", 40001)
P = get_parser("custom")


def body(*entries: dict[str, object], facility: str | None = "web01") -> bytes:
    doc: dict[str, object] = {"DATA": list(entries)}
    if facility is not None:
        doc["FacilityID"] = facility
    return orjson.dumps(doc)


OK = {"DATE": "2024-03-01 12:00:00", "TYPE": "STRING", "KEY": "app", "MSG": "disk full"}


@pytest.mark.parametrize(
    ("entry", "fields"),
    [
        (OK, {"facility_id": "web01", "date": "2024-03-01 12:00:00", "type": "STRING", "key": "app",
              "msg": "disk full"}),
        ({"TYPE": "NUM", "KEY": "cpu", "MSG": 93.5}, {"facility_id": "web01", "date": None, "type": "NUM",
                                                      "key": "cpu", "msg": "93.5"}),
        ({"TYPE": "NUM", "KEY": "cpu", "MSG": "12"}, {"facility_id": "web01", "date": None, "type": "NUM",
                                                      "key": "cpu", "msg": "12"}),
        ({**OK, "DATE": "2024-03-01 12:00:00.250"}, {"facility_id": "web01",
                                                      "date": "2024-03-01 12:00:00.250", "type": "STRING",
                                                      "key": "app", "msg": "disk full"}),
    ],
)
def test_valid_entry_gives_normalized_fields(entry: dict[str, object], fields: dict[str, object]) -> None:
    event = P.parse(body(entry), PEER, 5.0)
    assert dict(event.fields) == fields
    assert event.format == "custom" and event.peer == PEER and event.received_at == 5.0


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({**OK, "TYPE": "BOOL"}, "bad_type"),
        ({k: v for k, v in OK.items() if k != "TYPE"}, "bad_type"),
        ({**OK, "KEY": ""}, "bad_key"),
        ({**OK, "KEY": 5}, "bad_key"),
        ({k: v for k, v in OK.items() if k != "MSG"}, "bad_msg"),
        ({**OK, "MSG": 5}, "bad_msg"),
        ({**OK, "TYPE": "NUM", "MSG": "many"}, "bad_msg"),
        ({**OK, "TYPE": "NUM", "MSG": True}, "bad_msg"),
        ({**OK, "DATE": "2024/03/01 12:00:00"}, "bad_date"),
        ({**OK, "DATE": "2024-02-30 12:00:00"}, "bad_date"),
        ("not an object", "not_object"),
    ],
)
def test_invalid_entry_names_its_reason(entry: object, reason: str) -> None:
    results = P.parse_many(orjson.dumps({"FacilityID": "f", "DATA": [OK, entry]}), PEER, 0.0)
    assert isinstance(results[0], Event)
    err = results[1]
    assert isinstance(err, CustomTrapError)
    assert err.reason == reason and err.entry == "body[0].DATA[1]"


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty"), (b"   ", "empty"), (b"{not json", "not_json"), (b'{"a":1}\n{oops', "not_json")],
)
def test_unreadable_body_raises(data: bytes, reason: str) -> None:
    with pytest.raises(FormatError) as info:
        P.parse_many(data, PEER, 0.0)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("doc", "reason"),
    [({"FacilityID": "f"}, "no_data"), ({"DATA": []}, "no_data"), ({"FacilityID": 3, "DATA": [OK]},
                                                                    "bad_facility_id"), ([1], "not_object")],
)
def test_bad_body_is_one_error(doc: object, reason: str) -> None:
    [err] = P.parse_many(orjson.dumps(doc), PEER, 0.0)
    assert isinstance(err, CustomTrapError) and err.reason == reason


def test_array_and_ndjson_bodies_give_every_entry() -> None:
    one = orjson.loads(body(OK, {**OK, "KEY": "b"}))
    two = orjson.loads(body({**OK, "KEY": "c"}, facility="db01"))
    as_array = P.parse_many(orjson.dumps([one, two]), PEER, 0.0)
    as_ndjson = P.parse_many(orjson.dumps(one) + b"\n" + orjson.dumps(two) + b"\n", PEER, 0.0)
    for results in (as_array, as_ndjson):
        assert [e.fields["key"] for e in results if isinstance(e, Event)] == ["app", "b", "c"]


def test_identity_uses_facility_id_else_peer_and_ignores_receive_time() -> None:
    a = P.parse(body(OK), ("10.0.0.1", 1), 1.0)
    b = P.parse(body(OK), ("10.0.0.2", 2), 2.0)
    assert a.identity == b.identity
    c = P.parse(body(OK, facility=None), ("10.0.0.1", 1), 1.0)
    d = P.parse(body(OK, facility=None), ("10.0.0.2", 1), 1.0)
    assert c.identity != d.identity
    assert c.identity[0] == "10.0.0.1"


def test_parse_of_several_entries_is_an_error() -> None:
    with pytest.raises(FormatError):
        P.parse(body(OK, OK), PEER, 0.0)


@given(st.binary(max_size=300))
def test_any_bytes_give_events_or_format_errors(data: bytes) -> None:
    try:
        results = P.parse_many(data, PEER, 0.0)
    except FormatError:
        return
    assert all(isinstance(r, Event | FormatError) for r in results)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["FacilityID", "DATA", "DATE", "TYPE", "KEY", "MSG", "x"]), inner, max_size=5),
    max_leaves=15,
)


@given(json_values)
def test_any_json_gives_events_or_format_errors(doc: object) -> None:
    try:
        results = P.parse_many(orjson.dumps(doc), PEER, 0.0)
    except FormatError:
        return
    assert all(isinstance(r, Event | FormatError) for r in results)


def test_registry_knows_every_builtin_whatever_was_imported_first() -> None:
    import subprocess
    import sys

    code = "import formats.snmp, formats; print(formats.parser_names())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(name in out for name in ("'custom'", "'snmp'", "'syslog'"))
