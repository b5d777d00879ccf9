"""Config loading: defaults, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import DEFAULT_RECEIVERS, config_from_dict, default_config, load_config
from gateway.errors import ConfigError

FORMATS = ["custom", "syslog"]


def test_defaults_listen_on_loopback_ports_of_the_quick_start() -> None:
    c = default_config(FORMATS)
    assert {n: (r.type, r.address) for n, r in c.receivers.items()} == {
        "syslog_udp": ("udp", "127.0.0.1:1514"),
        "syslog_tcp": ("tcp", "127.0.0.1:1514"),
        "custom_http": ("http", "127.0.0.1:8082"),
    }
    assert c.admin.address == "127.0.0.1:9180"
    assert (c.dedup.mode, c.dedup.window, c.dedup.store) == ("exact", 30.0, "memory")
    assert c.sink.type == "stdout"


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
