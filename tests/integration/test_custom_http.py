"""`curl` posting Hinemos custom traps to a running trapgate."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from tests.integration.harness import SCHEMA, Trapgate

pytestmark = pytest.mark.integration


def curl(port: int, body: bytes, path: str = "/") -> tuple[int, dict[str, object]]:
    r = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
         "--data-binary", "@-", f"http://127.0.0.1:{port}{path}"],
        input=body, capture_output=True, check=True, timeout=10,
    )
    text, _, code = r.stdout.rpartition(b"\n")
    return int(code), json.loads(text)


ENTRY = {"DATE": "2024-03-01 12:00:00", "TYPE": "STRING", "KEY": "app", "MSG": "disk full"}


def test_custom_trap_on_any_path_is_forwarded(trapgate: Trapgate) -> None:
    body = json.dumps({"FacilityID": "web01", "DATA": [ENTRY, {**ENTRY, "TYPE": "NUM", "MSG": "42"}]})
    code, reply = curl(trapgate.http_port, body.encode(), "/HinemosAgent/custom")
    assert (code, reply) == (200, {"accepted": 2, "rejected": []})
    events = trapgate.events()  # answered after forwarding: no wait needed
    assert [(e["facility_id"], e["type"], e["key"], e["msg"]) for e in events] == [
        ("web01", "STRING", "app", "disk full"), ("web01", "NUM", "app", "42")]
    assert all(e["format"] == "custom" and e["date"] == "2024-03-01 12:00:00" for e in events)
    for event in events:
        jsonschema.validate(event, SCHEMA)


def test_bad_entries_get_400_naming_each_and_valid_ones_are_kept(trapgate: Trapgate) -> None:
    body = json.dumps({"FacilityID": "web01", "DATA": [ENTRY, {**ENTRY, "TYPE": "X"}, {"TYPE": "NUM"}]})
    code, reply = curl(trapgate.http_port, body.encode())
    assert code == 400
    assert reply["accepted"] == 1
    assert [(r["entry"], r["reason"]) for r in reply["rejected"]] == [  # type: ignore[union-attr]
        ("body[0].DATA[1]", "bad_type"), ("body[0].DATA[2]", "bad_key")]
    assert len(trapgate.events()) == 1
    assert trapgate.metric("trapgate_errors_total", component="custom_http", reason="bad_type") == 1
    assert "bad_type" in trapgate.quarantine.read_text()


def test_ndjson_batch_is_accepted(trapgate: Trapgate) -> None:
    lines = [json.dumps({"FacilityID": f"h{i}", "DATA": [ENTRY]}) for i in range(5)]
    code, reply = curl(trapgate.http_port, "\n".join(lines).encode())
    assert (code, reply["accepted"]) == (200, 5)


def test_not_json_is_400(trapgate: Trapgate) -> None:
    code, reply = curl(trapgate.http_port, b"{nope")
    assert code == 400 and reply["rejected"][0]["reason"] == "not_json"  # type: ignore[index]


def test_body_over_limit_is_413(trapgate: Trapgate) -> None:
    big = json.dumps({"FacilityID": "x", "DATA": [{**ENTRY, "MSG": "y" * 70000}]}).encode()
    code, _ = curl(trapgate.http_port, big)
    assert code == 413
    assert trapgate.events() == []
    assert trapgate.metric("trapgate_dropped_total", component="custom_http", reason="too_large") == 1
