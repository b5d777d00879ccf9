"""bench.metrics: reading Prometheus text defensively."""

from __future__ import annotations

from collections.abc import Mapping

from bench.metrics import by_labels, parse_prometheus, pick_total

EXPOSITION = """\
# HELP trapgate_received_total Datagrams and frames received.
# TYPE trapgate_received_total counter
trapgate_received_total{receiver="syslog_udp"} 1000.0
trapgate_received_total{receiver="syslog_tcp"} 5.0
trapgate_forwarded_total 990
trapgate_dropped_total{reason="parse",receiver="syslog_udp"} 7
trapgate_dropped_total{reason="overload",receiver="syslog_udp"} 3
trapgate_dropped_total{reason="parse",receiver="syslog_tcp"} 1
weird_line_without_value
trapgate_label_escape{path="a\\"b\\\\c"} 1 1700000000000
"""


def test_parse_reads_names_labels_values_and_skips_junk() -> None:
    samples = parse_prometheus(EXPOSITION)
    assert len(samples) == 7
    assert samples[0].name == "trapgate_received_total"
    assert samples[0].labels == {"receiver": "syslog_udp"}
    assert samples[-1].labels == {"path": 'a"b\\c'}
    assert samples[-1].value == 1.0


def _udp(labels: Mapping[str, str]) -> bool:
    return labels.get("receiver") == "syslog_udp"


def test_pick_total_uses_first_present_name_and_filters_by_labels() -> None:
    samples = parse_prometheus(EXPOSITION)
    assert pick_total(samples, ["nope", "trapgate_received_total"], _udp) == 1000.0
    assert pick_total(samples, ["trapgate_received_total"]) == 1005.0
    assert pick_total(samples, ["nope"]) is None


def test_pick_total_of_a_present_name_with_no_matching_series_is_zero() -> None:
    samples = parse_prometheus(EXPOSITION)
    assert pick_total(samples, ["trapgate_forwarded_total"], _udp) == 0.0


def test_by_labels_sums_per_combination_of_label_values() -> None:
    samples = parse_prometheus(EXPOSITION)
    assert by_labels(samples, ["trapgate_dropped_total"], ["reason"]) == {"parse": 8.0, "overload": 3.0}
    assert by_labels(samples, ["trapgate_dropped_total"], ["receiver", "reason"], _udp) == {
        "syslog_udp:parse": 7.0,
        "syslog_udp:overload": 3.0,
    }
    assert by_labels(samples, ["nope"], ["reason"]) == {}
