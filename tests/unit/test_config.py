"""Config loading: defaults, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import DEFAULT_RECEIVERS, config_from_dict, default_config, load_config
from gateway.errors import ConfigError

FORMATS = ["custom", "snmp", "syslog"]
SNMP = {"type": "snmp", "address": "127.0.0.1:1162"}


def test_defaults_listen_on_loopback_ports_of_the_quick_start() -> None:
    c = default_config(FORMATS)
    assert {n: (r.type, r.address) for n, r in c.receivers.items()} == {
        "syslog_udp": ("udp", "127.0.0.1:1514"),
        "syslog_tcp": ("tcp", "127.0.0.1:1514"),
        "custom_http": ("http", "127.0.0.1:8082"),
        "snmp": ("snmp", "127.0.0.1:1162"),
    }
    assert c.admin.address == "127.0.0.1:9180"
    assert (c.dedup.mode, c.dedup.window, c.dedup.store) == ("exact", 30.0, "memory")
    assert list(c.sinks) == ["stdout"] and c.sinks["stdout"].type == "jsonl"
    assert c.sinks["stdout"].options.path == "-"


def test_receivers_table_replaces_the_default_set() -> None:
    c = config_from_dict(
        {"receivers": {"only": {"type": "udp", "format": "syslog", "address": "127.0.0.1:5514"}}}, FORMATS
    )
    assert list(c.receivers) == ["only"]
    assert c.receivers["only"].rcvbuf == DEFAULT_RECEIVERS["syslog_udp"].rcvbuf


def test_integer_is_accepted_where_a_number_is_expected() -> None:
    assert config_from_dict({"dedup": {"window": 10}}, FORMATS).dedup.window == 10.0


@pytest.mark.parametrize(
    ("doc", "key", "words"),
    [
        ({"dedup": {"mode": "maybe"}}, "dedup.mode", "not one of"),
        ({"dedup": {"window": 0}}, "dedup.window", "greater than 0"),
        ({"dedup": {"window": "30s"}}, "dedup.window", "must be a number"),
        ({"dedup": {"windw": 3}}, "dedup.windw", "unknown key"),
        ({"bogus": {}}, "bogus", "unknown section"),
        ({"sink": {"type": "file"}}, "sink.path", "required"),
        ({"admin": {"address": "localhost"}}, "admin.address", "not host:port"),
        ({"receivers": {"r": {"type": "udp", "format": "syslog"}}}, "receivers.r.address", "required"),
        ({"receivers": {"r": {"type": "sctp", "format": "syslog", "address": "127.0.0.1:1"}}},
         "receivers.r.type", "not one of"),
        ({"receivers": {"r": {"type": "udp", "format": "nope", "address": "127.0.0.1:1"}}},
         "receivers.r.format", "not one of"),
        ({"receivers": {"r": {"type": "udp", "format": "syslog", "address": "127.0.0.1:99999"}}},
         "receivers.r.address", "not host:port"),
        ({"receivers": {}}, "receivers", "at least one"),
        ({"pipeline": {"batch_size": True}}, "pipeline.batch_size", "must be an integer"),
        ({"node": "a"}, "node", "must be a table"),
        ({"receivers": {"r": {"type": "udp", "address": "127.0.0.1:1"}}}, "receivers.r.format", "required"),
        ({"receivers": {"r": {"type": "udp", "format": "syslog", "address": "127.0.0.1:1",
                              "communities": ["public"]}}}, "receivers.r.communities", "does not apply"),
        ({"receivers": {"t": {**SNMP, "communities": "public"}}}, "receivers.t.communities",
         "must be a list"),
        ({"receivers": {"t": {**SNMP, "engine_id": "zz"}}}, "receivers.t.engine_id", "not hexadecimal"),
        ({"receivers": {"t": {**SNMP, "engine_id": "8000"}}}, "receivers.t.engine_id", "5 to 32 octets"),
        ({"receivers": {"t": {**SNMP, "source_order": ["peer", "mac"]}}}, "receivers.t.source_order",
         "unknown source rules"),
        ({"receivers": {"t": {**SNMP, "users": [{"name": "u", "auth": "SHA-3"}]}}},
         "receivers.t.users[0].auth", "not one of"),
        ({"receivers": {"t": {**SNMP, "users": [{"name": "u", "auth": "SHA", "auth_passphrase": "short"}]}}},
         "receivers.t.users[0]", "at least 8 octets"),
        ({"receivers": {"t": {**SNMP, "users": [{"name": "u", "networks": ["10.0.0.0/33"]}]}}},
         "receivers.t.users[0].networks[0]", "not a network"),
        ({"receivers": {"t": {**SNMP, "users": [{"auth": "SHA"}]}}}, "receivers.t.users[0].name", "required"),
        ({"receivers": {"t": {**SNMP, "trap_time_window": 1}}}, "receivers.t.trap_time_window",
         "true or false"),
    ],
)
def test_bad_value_names_key_and_reason(doc: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(doc, FORMATS)
    assert info.value.key == key
    assert words in str(info.value)


def test_unreadable_file_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", FORMATS)
    bad = tmp_path / "bad.toml"
    bad.write_text("[dedup\nmode=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, FORMATS)


def test_snmp_receiver_takes_users_communities_and_engine_table() -> None:
    c = config_from_dict({"receivers": {"t": {
        **SNMP, "communities": ["public", "ops"], "engine_id": "0x8000000004747261700a",
        "engine_sources": {"80001F8880AA": "core-router"},
        "users": [{"name": "ops", "auth": "SHA", "auth_passphrase": "authpass1", "priv": "AES",
                   "priv_passphrase": "privpass1", "engine_ids": ["80001f8880aa"],
                   "networks": ["10.0.0.0/8"]}],
    }}}, FORMATS)
    r = c.receivers["t"]
    assert r.format == "snmp" and r.communities == ("public", "ops")
    assert r.users[0].name == "ops" and r.users[0].networks == ("10.0.0.0/8",)


def test_a_time_bound_on_the_queue_is_refused_in_a_pair() -> None:
    pair = {"dedup": {"store": "redis"}, "redis": {"local": "redis://127.0.0.1:1", "peer": "redis://127.0.0.1:2"},
            "ha": {"token": "t"}}
    assert config_from_dict({**pair, "pipeline": {"max_queue_ms": 0}}, FORMATS).pipeline.max_queue_ms == 0
    assert config_from_dict({"pipeline": {"max_queue_ms": 250}}, FORMATS).pipeline.max_queue_ms == 250
    with pytest.raises(ConfigError) as info:
        config_from_dict({**pair, "pipeline": {"max_queue_ms": 250}}, FORMATS)
    assert info.value.key == "pipeline.max_queue_ms" and "pair" in str(info.value)
