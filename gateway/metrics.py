"""Counters every component keeps, and their Prometheus exposition.

Strategy: the hot path increments plain ints on a `Counters` object (a
prometheus_client counter costs a lock per increment); a collector turns them
into metric families when `/metrics` is scraped. Every component has the same
shape: received, sent, dropped by reason, errors by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector


@dataclass
class Counters:
    """The counters of one component (a receiver, the dedup stage, a sink).

    `live_drops` is read at scrape time for drops counted elsewhere (the
    kernel's counter of a socket); its reasons are added to `dropped`.
    """

    component: str
    kind: str
    received: int = 0
    sent: int = 0
    replies: int = 0
    handed_over: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    live_drops: Callable[[], dict[str, int]] | None = None
    # Sinks: items whose send failed, items sent again, and how long an accepted send took.
    failed: int = 0
    retried: int = 0
    latency: Latency | None = None
    # Sinks: (events in its lane, age in seconds of the oldest), read at scrape time.
    backlog: Callable[[], tuple[int, float]] | None = None

    def all_dropped(self) -> dict[str, int]:
        """`dropped` plus whatever `live_drops` reports now."""
        total = dict(self.dropped)
        if self.live_drops is not None:
            for reason, n in self.live_drops().items():
                total[reason] = total.get(reason, 0) + n
        return total

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for `/status`."""
        return {
            "kind": self.kind,
            "received": self.received,
            "sent": self.sent,
            "replies": self.replies,
            "handed_over": dict(self.handed_over),
            "dropped": self.all_dropped(),
            "errors": dict(self.errors),
            **({} if self.backlog is None else
               dict(zip(("backlog_events", "backlog_oldest_seconds"), self.backlog(), strict=True))),
        }


class Latency:
    """A histogram of durations in seconds, with fixed buckets (for `/metrics`)."""

    BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        i = 0
        bounds = self.BOUNDS
        while i < len(bounds) and seconds > bounds[i]:
            i += 1
        self.counts[i] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (upper bound, count) pairs, ending with +Inf."""
        out, running = [], 0
        for bound, n in zip([*map(str, self.BOUNDS), "+Inf"], self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class _Collector(Collector):
    def __init__(
        self, components: Iterable[Counters], gauges: Callable[[], dict[str, float]]
    ) -> None:
        self._components = list(components)
        self._gauges = gauges

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        labels = ["component", "kind"]
        received = CounterMetricFamily("trapgate_received", "Items a component took in.", labels=labels)
        sent = CounterMetricFamily("trapgate_sent", "Items a component passed on.", labels=labels)
        replies = CounterMetricFamily(
            "trapgate_replies", "Replies sent back to senders (SNMP Responses, Reports).", labels=labels
        )
        handed = CounterMetricFamily(
            "trapgate_handed_over", "Items handed to another node to forward (rescues), by reason.",
            labels=[*labels, "reason"],
        )
        dropped = CounterMetricFamily(
            "trapgate_dropped", "Items a component lost or discarded, by reason.", labels=[*labels, "reason"]
        )
        errors = CounterMetricFamily(
            "trapgate_errors", "Errors a component met, by reason.", labels=[*labels, "reason"]
        )
        failed = CounterMetricFamily("trapgate_failed", "Items a sink failed to send (each attempt).",
                                     labels=labels)
        retried = CounterMetricFamily("trapgate_retried", "Items a sink sent again after a failure.",
                                      labels=labels)
        latency = HistogramMetricFamily("trapgate_send_latency_seconds", "How long a sink's accepted "
                                        "sends took, from the first attempt.", labels=labels)
        backlog = GaugeMetricFamily("trapgate_sink_backlog_events", "Events queued for a sink and not "
                                    "yet taken by it.", labels=labels)
        backlog_age = GaugeMetricFamily("trapgate_sink_backlog_oldest_seconds", "Age of the oldest event "
                                        "queued for a sink.", labels=labels)
        sinks = [c for c in self._components if c.kind == "sink"]
        for c in sinks:
            key = [c.component, c.kind]
            failed.add_metric(key, c.failed)
            retried.add_metric(key, c.retried)
            if c.latency is not None:
                latency.add_metric(key, c.latency.buckets(), c.latency.total)
            if c.backlog is not None:
                events, age = c.backlog()
                backlog.add_metric(key, events)
                backlog_age.add_metric(key, age)
        for c in self._components:
            key = [c.component, c.kind]
            received.add_metric(key, c.received)
            sent.add_metric(key, c.sent)
            replies.add_metric(key, c.replies)
            for reason, n in sorted(c.handed_over.items()):
                handed.add_metric([*key, reason], n)
            for reason, n in sorted(c.all_dropped().items()):
                dropped.add_metric([*key, reason], n)
            for reason, n in sorted(c.errors.items()):
                errors.add_metric([*key, reason], n)
        yield from (received, sent, replies, handed, dropped, errors)
        if sinks:
            yield from (failed, retried, latency, backlog, backlog_age)
        for name, value in sorted(self._gauges().items()):
            yield GaugeMetricFamily(f"trapgate_{name}", name.replace("_", " ") + ".", value=value)


def exposition(components: Iterable[Counters], gauges: Callable[[], dict[str, float]]) -> bytes:
    """The Prometheus text format for `components` and the current gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(components, gauges))
    return generate_latest(registry)
