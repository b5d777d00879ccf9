"""Reading Prometheus text exposition, defensively.

Metric names of a system under development shift; the readers here take a
list of candidate names, use the first one present, and sum over the series
whose labels pass a predicate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_SAMPLE = re.compile(
    r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"\s+(?P<value>\S+)(?:\s+\S+)?\s*$"
)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    """One line of the exposition: a series name, its labels and its value."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_prometheus(text: str) -> list[Sample]:
    """All samples in Prometheus text format; comments and junk lines skipped."""
    samples: list[Sample] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(match.group("labels") or "")}
        samples.append(Sample(match.group("name"), value, labels))
    return samples


Where = Callable[[Mapping[str, str]], bool]


def pick_total(
    samples: Iterable[Sample],
    candidates: Sequence[str],
    where: Where | None = None,
) -> float | None:
    """Sum of the first candidate name present, over series whose labels pass `where`.

    None when no candidate name is present (a present name whose series
    all fail `where` sums to 0).
    """
    pool = list(samples)
    for name in candidates:
        series = [s for s in pool if s.name == name and not math.isnan(s.value)]
        if series:
            return sum(s.value for s in series if where is None or where(s.labels))
    return None


def by_labels(
    samples: Iterable[Sample],
    candidates: Sequence[str],
    keys: Sequence[str],
    where: Where | None = None,
) -> dict[str, float]:
    """Values of the first candidate name present, summed per combination of `keys`.

    The combination is the label values joined with ':' (missing labels
    as empty strings).
    """
    pool = list(samples)
    for name in candidates:
        series = [s for s in pool if s.name == name and (where is None or where(s.labels))]
        if series:
            result: dict[str, float] = {}
            for s in series:
                key = ":".join(s.labels.get(k, "") for k in keys)
                result[key] = result.get(key, 0.0) + s.value
            return result
    return {}
