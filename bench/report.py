"""Per-run records, medians across runs, ratios between systems, and printing.

A run record is a flat dict of JSON values so that every benchmark can add
its own fields; the summary takes the median of each numeric field per
system and the ratios compare the subject (trapgate) with each peer.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Record = dict[str, Any]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (`pct` in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the divisor is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def summarize(records: Sequence[Record], key: str = "system") -> dict[str, Record]:
    """Per value of `key`: the run count and the median of every numeric field."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(str(record[key]), []).append(record)
    summary: dict[str, Record] = {}
    for name, group in groups.items():
        fields = [
            f
            for f, v in group[0].items()
            if isinstance(v, int | float) and not isinstance(v, bool) and f != "run"
        ]
        entry: Record = {"runs": len(group)}
        for f in fields:
            entry[f] = median(r.get(f) for r in group)
        summary[name] = entry
    return summary


def ratios(
    summary: Mapping[str, Record],
    subject: str,
    fields: Sequence[str],
) -> dict[str, Record]:
    """`subject`/peer of the median of each field, for every other system."""
    result: dict[str, Record] = {}
    mine = summary.get(subject)
    if mine is None:
        return result
    for peer, theirs in summary.items():
        if peer != subject:
            result[f"{subject}/{peer}"] = {f: ratio(mine.get(f), theirs.get(f)) for f in fields}
    return result


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table; `columns` are (field, heading) pairs."""
    cells = [[heading for _, heading in columns]]
    cells += [[_cell(row.get(f)) for f, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for r in cells:
        parts = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(parts))
    return "\n".join(lines)


RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("system", "system"),
    ("run", "run"),
    ("achieved_rate", "offered/s"),
    ("sent", "sent"),
    ("received", "received"),
    ("forwarded", "forwarded"),
    ("lost", "lost"),
    ("duplicated", "dup"),
    ("kernel_drops", "kdrops"),
    ("throughput", "thru/s"),
    ("cpu_us_per_msg", "cpu µs/msg"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("rcvbuf_effective", "rcvbuf"),
)

RATIO_FIELDS = ("throughput", "cpu_us_per_msg", "latency_p99_ms")


def build_report(
    benchmark: str,
    params: Record,
    host: Record,
    records: Sequence[Record],
    subject: str,
    notes: Sequence[str] = (),
    ratio_fields: Sequence[str] = RATIO_FIELDS,
) -> Record:
    """The one JSON object a benchmark prints: inputs, every run, medians, ratios."""
    summary = summarize(records)
    return {
        "benchmark": benchmark,
        "params": params,
        "host": host,
        "notes": list(notes),
        "runs": list(records),
        "summary": summary,
        "ratios": ratios(summary, subject, ratio_fields),
    }


def human_summary(report: Mapping[str, Any], columns: Sequence[tuple[str, str]] = RUN_COLUMNS) -> str:
    """The report as a few lines of text for a person at a terminal; `columns` as in `table`."""
    params = report["params"]
    host = report["host"]
    lines = [
        f"{report['benchmark']}: {params.get('rate'):,} msg/s offered for {params.get('duration')} s, "
        f"{params.get('runs')} run(s) per system",
        f"host: {host.get('cpus')} CPUs, kernel {host.get('kernel')}, "
        f"net.core.rmem_max={host.get('rmem_max')} rmem_default={host.get('rmem_default')}, "
        f"rcvbuf requested {params.get('rcvbuf')} for every system",
        "",
        table(report["runs"], columns),
        "",
        "medians:",
        table(
            [{"system": k, **v} for k, v in report["summary"].items()],
            [c for c in columns if c[0] != "run"],
        ),
    ]
    for pair, values in report["ratios"].items():
        parts = ", ".join(f"{f} {_cell(v)}" for f, v in values.items())
        lines.append(f"ratio {pair}: {parts}")
    for goal in report.get("goals", ()):
        verdict = {True: "MET", False: "NOT MET", None: "not tested"}[goal["met"]]
        lines.append(f"goal {goal['goal']}: {goal['value']} -> {verdict}")
    lines.extend(f"note: {n}" for n in report.get("notes", ()))
    return "\n".join(lines)
