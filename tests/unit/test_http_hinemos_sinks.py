"""The `http` and `hinemos` sinks' config keys, and how the hinemos sink cuts a batch into bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yarl

from formats import Event
from gateway.config import config_from_dict
from gateway.errors import ConfigError, SinkError
from gateway.sinks import Outgoing, open_sinks
from gateway.sinks.hinemos import HinemosOptions, bodies, hinemos_date
from gateway.sinks.http import HttpOptions

FORMATS = ("syslog", "snmp", "custom")


def sinks(table: dict[str, Any]) -> Any:
    return config_from_dict({"sinks": {"x": table}}, FORMATS).sinks["x"]


def test_http_and_hinemos_keys_are_checked_with_the_key_named() -> None:
    config = sinks({"type": "http", "url": "https://h/in", "body": "ndjson", "headers": {"A": "b"},
                    "batch_size": 64})
    assert config.options == HttpOptions(url="https://h/in", body="ndjson", headers={"A": "b"})
    assert config.batch_size == 64
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "http"}, "sinks.x.url"),
        ({"type": "http", "url": "ftp://h/"}, "sinks.x.url"),
        ({"type": "http", "url": "http://h", "body": "xml"}, "sinks.x.body"),
        ({"type": "http", "url": "http://h", "idempotency": "x"}, "sinks.x.idempotency"),
        ({"type": "hinemos", "url": "http://m"}, "sinks.x.facility_id"),
        ({"type": "hinemos", "url": "http://m", "facility_id": ""}, "sinks.x.facility_id"),
        ({"type": "hinemos", "url": "http://m", "facility_id": "f", "max_body_bytes": 10},
         "sinks.x.max_body_bytes"),
    ]
    for table, key in cases:
        with pytest.raises(ConfigError) as info:
            sinks(table)
        assert info.value.key == key, table


def test_hinemos_url_gets_port_8082_and_path_slash_unless_given() -> None:
    url = yarl.URL(HinemosOptions(url="http://manager", facility_id="f").endpoint())
    assert (url.host, url.port, url.path) == ("manager", 8082, "/")
    assert HinemosOptions(url="https://m:9000/x", facility_id="f").endpoint() == "https://m:9000/x"


def test_an_unreadable_tls_ca_is_a_sink_error(tmp_path: Any) -> None:
    config = config_from_dict({"sinks": {"x": {"type": "http", "url": "https://h",
                                                "tls_ca": str(tmp_path / "none.pem")}}}, FORMATS)
    with pytest.raises(SinkError, match="cannot read tls_ca"):
        open_sinks(config.sinks)


def out(format: str, fields: dict[str, Any], n: int = 0) -> Outgoing:
    event = Event(format, ("10.0.0.1", 1), 1_709_294_400.0 + n, fields, b"", (n,))
    return Outgoing(event, "f", f"id{n}", json.dumps({"id": f"id{n}", **fields}).encode() + b"\n")


def custom(n: int, facility_id: str | None = "web01", msg: str = "m", date: str | None = None) -> Outgoing:
    return out("custom", {"facility_id": facility_id, "date": date, "type": "NUM", "key": "k", "msg": msg}, n)


def decoded(batch: list[Outgoing], **options: Any) -> list[tuple[str, list[dict[str, Any]], int]]:
    result = []
    for body, entries, cut in bodies(batch, HinemosOptions(url="http://m", facility_id="gw", **options)):
        assert body.count(b"\n") == 1 and body.endswith(b"\n")
        assert len(body) <= options.get("max_body_bytes", 65536)
        doc = json.loads(body)
        assert len(doc["DATA"]) == entries
        result.append((doc["FacilityID"], doc["DATA"], cut))
    return result


def test_a_body_holds_consecutive_events_of_one_facility_within_max_entries() -> None:
    batch = [custom(0), custom(1), custom(2, "db01"), custom(3), custom(4), custom(5), custom(6)]
    got = decoded(batch, max_entries=3)
    assert [(f, [e["MSG"] for e in d]) for f, d, _ in got] == [
        ("web01", ["m", "m"]), ("db01", ["m"]), ("web01", ["m", "m", "m"]), ("web01", ["m"])]


def test_custom_traps_keep_their_entry_and_other_events_carry_their_json_line() -> None:
    syslog = out("syslog", {"hostname": "r1", "msg": "a\n\nb"}, 7)
    [(facility, data, _), (default, other, _)] = decoded([custom(0, date="2024-03-01 12:00:00"), syslog])
    assert (facility, data) == ("web01", [{"DATE": "2024-03-01 12:00:00", "TYPE": "NUM", "KEY": "k",
                                           "MSG": "m"}])
    assert default == "gw" and other[0]["KEY"] == "syslog" and other[0]["TYPE"] == "STRING"
    assert json.loads(other[0]["MSG"]) == {"id": "id7", "hostname": "r1", "msg": "a\n\nb"}
    assert other[0]["DATE"] == hinemos_date(syslog.event.received_at)
    [(facility, data, _)] = decoded([custom(3, facility_id=None)], key="trapgate")
    assert facility == "gw" and data[0]["KEY"] == "k" and data[0]["DATE"] == hinemos_date(1_709_294_403.0)


def test_bodies_stay_within_max_body_bytes_and_an_entry_too_long_alone_has_its_msg_cut() -> None:
    batch = [custom(i, msg="é" * (i * 11)) for i in range(40)] + [custom(99, msg="\"\\é" * 2000)]
    got = decoded(batch, max_body_bytes=1024)
    msgs = [e["MSG"] for _, data, _ in got for e in data]
    assert msgs[:40] == [c.event.fields["msg"] for c in batch[:40]]
    assert msgs[40].endswith("...[truncated]") and msgs[40].startswith("\"\\é")
    assert [cut for *_, cut in got].count(1) == 1 and got[-1][2] == 1
