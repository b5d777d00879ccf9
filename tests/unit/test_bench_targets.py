"""bench.rsyslog and bench.trapgate: the configs they write and the counters they read."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bench.rsyslog import latest_counters, parse_impstats, render_config
from bench.trapgate import counters_from_metrics
from bench.trapgate import render_config as render_trapgate_config

IMPSTATS = """\
Wed Nov 25 03:06:35 2026: { "name": "imudp(127.0.0.1\\/15514\\/IPv4)", "origin": "imudp", "submitted": 10 }
Wed Nov 25 03:06:35 2026: { "name": "main Q", "origin": "core.queue", "discarded.full": 2, "discarded.nf": 1 }
not json at all
Wed Nov 25 03:06:36 2026: { "name": "imudp(127.0.0.1\\/15514\\/IPv4)", "origin": "imudp", "submitted": 25 }
Wed Nov 25 03:06:36 2026: { "name": "imudp(127.0.0.1\\/9999\\/IPv4)", "origin": "imudp", "submitted": 99 }
"""


def test_impstats_latest_submitted_of_our_port_and_queue_discards() -> None:
    objects = parse_impstats(IMPSTATS)
    assert len(objects) == 4
    assert latest_counters(objects, 15514) == (25, 3)
    assert latest_counters(objects, 1) == (None, 3)


def test_rsyslog_config_binds_loopback_with_the_asked_buffer(tmp_path: Path) -> None:
    conf = render_config(
        port=5555, rcvbuf=1234, workdir=tmp_path, out_path=tmp_path / "o", stats_path=tmp_path / "s"
    )
    assert 'address="127.0.0.1" port="5555" rcvbufSize="1234"' in conf
    assert 'string="%rawmsg%\\n"' in conf


def test_trapgate_config_is_toml_with_one_udp_receiver(tmp_path: Path) -> None:
    text = render_trapgate_config(
        receiver="syslog_udp",
        fmt="syslog",
        udp_port=5514,
        admin_port=9999,
        rcvbuf=33554432,
        out_path=tmp_path / 'o"ut.jsonl',
        quarantine_path=tmp_path / "q.jsonl",
    )
    config = tomllib.loads(text)
    assert config["receivers"] == {
        "syslog_udp": {"type": "udp", "format": "syslog", "address": "127.0.0.1:5514", "rcvbuf": 33554432}
    }
    assert config["admin"]["address"] == "127.0.0.1:9999"
    assert config["sink"] == {"type": "file", "path": str(tmp_path / 'o"ut.jsonl')}
    assert config["dedup"]["mode"] == "exact"


COMPONENT_METRICS = """\
trapgate_received_total{component="syslog_udp",kind="udp"} 100.0
trapgate_received_total{component="other_udp",kind="udp"} 7.0
trapgate_received_total{component="dedup",kind="stage"} 100.0
trapgate_received_total{component="file",kind="sink"} 100.0
trapgate_sent_total{component="file",kind="sink"} 98.0
trapgate_sent_total{component="quarantine",kind="quarantine"} 0.0
trapgate_dropped_total{component="syslog_udp",kind="udp",reason="kernel"} 4.0
trapgate_dropped_total{component="dedup",kind="stage",reason="duplicate"} 2.0
"""


def test_trapgate_counters_attribute_series_by_component_label() -> None:
    counters = counters_from_metrics(COMPONENT_METRICS, "syslog_udp")
    assert (counters.received, counters.source) == (100, "/metrics")
    assert counters.extra["forwarded_metric"] == 98.0
    assert counters.extra["kernel_drops_metric"] == 4.0
    assert counters.extra["dropped_by_component_reason"] == {"syslog_udp:kernel": 4.0, "dedup:duplicate": 2.0}


def test_trapgate_counters_prefer_dedicated_metric_names() -> None:
    text = (
        'trapgate_received_total{receiver="syslog_udp"} 10\n'
        "trapgate_forwarded_total 9\n"
        'trapgate_kernel_drops_total{receiver="syslog_udp"} 1\n'
    )
    counters = counters_from_metrics(text, "syslog_udp")
    assert counters.received == 10
    assert counters.extra["forwarded_metric"] == 9.0
    assert counters.extra["kernel_drops_metric"] == 1.0


def test_trapgate_counters_without_metrics_say_so() -> None:
    counters = counters_from_metrics("# nothing\n", "syslog_udp")
    assert (counters.received, counters.source) == (None, "none")
