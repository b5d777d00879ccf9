"""bench.report: percentiles, medians, ratios and the report shape."""

from __future__ import annotations

import pytest

from bench.report import build_report, human_summary, median, percentile, ratio, ratios, summarize


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 50, 50.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 100, 100.0),
        ([5.0, 1.0], 0, 1.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], pct: float, expected: float | None) -> None:
    assert percentile(values, pct) == expected


def test_median_skips_missing_values_and_is_none_when_all_missing() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None, None]) is None


def test_ratio_is_none_when_a_side_is_missing_or_divisor_zero() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(None, 3.0) is None
    assert ratio(1.0, 0.0) is None


def test_summarize_takes_medians_per_system_of_numeric_fields_only() -> None:
    runs = [
        {"system": "a", "run": 1, "x": 1.0, "name": "n", "ok": True},
        {"system": "a", "run": 2, "x": 3.0, "name": "n", "ok": True},
        {"system": "a", "run": 3, "x": 2.0, "name": "n", "ok": False},
        {"system": "b", "run": 1, "x": 10.0, "name": "n", "ok": True},
    ]
    assert summarize(runs) == {"a": {"runs": 3, "x": 2.0}, "b": {"runs": 1, "x": 10.0}}


def test_ratios_compare_the_subject_with_every_peer() -> None:
    summary = {"trapgate": {"t": 100.0, "c": 2.0}, "rsyslog": {"t": 50.0, "c": 4.0}}
    assert ratios(summary, "trapgate", ["t", "c"]) == {"trapgate/rsyslog": {"t": 2.0, "c": 0.5}}
    assert ratios(summary, "absent", ["t"]) == {}


def test_build_report_has_runs_medians_ratios_and_prints_a_summary() -> None:
    runs = [
        {"system": "trapgate", "run": 1, "throughput": 90.0, "cpu_us_per_msg": 4.0, "latency_p99_ms": 2.0},
        {"system": "rsyslog", "run": 1, "throughput": 100.0, "cpu_us_per_msg": 4.0, "latency_p99_ms": None},
    ]
    report = build_report("syslog", {"rate": 100, "duration": 10, "runs": 1}, {"cpus": 2}, runs, "trapgate")
    assert report["ratios"] == {
        "trapgate/rsyslog": {"throughput": 0.9, "cpu_us_per_msg": 1.0, "latency_p99_ms": None}
    }
    text = human_summary(report)
    assert "ratio trapgate/rsyslog: throughput 0.9" in text
    assert "rsyslog" in text
