"""bench sinks: which cases run, the events they get, ratios to the baseline, counting deliveries."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bench._http_peer import events_in
from bench._sink_dests import LineCounter, messages_in_stream
from bench.sinks import add_baseline_ratios, build_events, filesystem_of, selected_cases, sink_type_list
from dedup import fingerprint


def _names(types: list[str]) -> list[str]:
    return [c.name for c in selected_cases(types)]


@pytest.mark.parametrize(("types", "expected"), [
    (["jsonl"], ["jsonl", "jsonl-fsync-batch", "jsonl-fsync-interval", "jsonl+spool", "jsonl+spool-batch",
                "jsonl+spool-interval"]),
    (["snmp"], ["jsonl-snmp", "snmp"]),
    (["hinemos", "syslog"], ["jsonl", "jsonl-custom", "syslog-udp", "syslog-tcp", "hinemos"]),
    (["nats", "redis-stream"], ["jsonl", "redis-stream", "redis-stream-json", "nats"]),
])
def test_chosen_sinks_run_with_the_jsonl_baseline_on_their_own_event_format(
    types: list[str], expected: list[str]
) -> None:
    assert _names(types) == expected


def test_sink_list_names_known_types_only() -> None:
    assert sink_type_list("redis-stream, http") == ["redis-stream", "http"]
    with pytest.raises(argparse.ArgumentTypeError, match="kafka"):
        sink_type_list("http,kafka")


@pytest.mark.parametrize("kind", ["syslog", "snmp", "custom"])
def test_events_are_parsed_from_the_wire_each_distinct_and_of_the_format(kind: str) -> None:
    events = build_events(kind, 70, 1_700_000_000.0)  # custom: more than two bodies, the last one short
    assert len(events) == 70
    assert {e.format for e in events} == {kind}
    assert len({fingerprint(e) for e in events}) == 70
    assert all(e.received_at == 1_700_000_000.0 for e in events)


def test_syslog_events_mix_rfc5424_and_rfc3164() -> None:
    assert {e.fields["protocol"] for e in build_events("syslog", 4, 0.0)} == {"rfc5424", "rfc3164"}


def _record(system: str, run: int, cpu: float, rate: int) -> dict[str, Any]:
    return {"system": system, "run": run, "cpu_us_per_event": cpu, "events_per_s": rate}


def test_ratios_divide_by_the_baseline_of_the_same_format_in_the_same_run() -> None:
    cases = selected_cases(["snmp", "http"])
    records = [_record("jsonl", 1, 4.0, 200_000), _record("jsonl-snmp", 1, 5.0, 100_000),
               _record("http", 1, 6.0, 100_000), _record("snmp", 1, 100.0, 10_000),
               _record("jsonl", 2, 2.0, 400_000), _record("http", 2, 6.0, 100_000),
               _record("snmp", 2, 100.0, 10_000)]
    add_baseline_ratios(records, cases)
    got = {(r["system"], r["run"]): (r["cpu_vs_jsonl"], r["rate_vs_jsonl"]) for r in records}
    assert got[("jsonl", 1)] == (1.0, 1.0)
    assert got[("http", 1)] == (1.5, 0.5)
    assert got[("snmp", 1)] == (20.0, 0.1)
    assert got[("http", 2)] == (3.0, 0.25)
    assert got[("snmp", 2)] == (None, None)  # its baseline did not run in that round


def test_filesystem_is_that_of_the_longest_mount_point_holding_the_path() -> None:
    mounts = ("/dev/vda / ext4 rw 0 0\n"
              "tmpfs /tmp tmpfs rw 0 0\n"
              "tmpfs /tmpx/inner tmpfs rw 0 0\n")
    assert filesystem_of(Path("/tmp/bench-sinks-1"), mounts) == "tmpfs"
    assert filesystem_of(Path("/tmpx/other"), mounts) == "ext4"
    assert filesystem_of(Path("/"), mounts) == "ext4"


def test_line_counter_reads_only_what_was_appended_and_counts_a_line_once_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    counter = LineCounter(path)
    assert counter.count() == 0
    path.write_bytes(b"one\ntwo\nthr")
    assert counter.count() == 2
    with path.open("ab") as f:
        f.write(b"ee\nfour\n")
    assert counter.count() == 4
    assert counter.offset == len(b"one\ntwo\nthree\nfour\n")


def test_nats_stream_count_comes_from_the_named_streams_state() -> None:
    jsz = {"account_details": [{"name": "$G", "stream_detail": [
        {"name": "BENCH_nats_r1", "state": {"messages": 50512}},
        {"name": "BENCH_nats_r2", "state": {"messages": 7}},
    ]}]}
    assert messages_in_stream(jsz, "BENCH_nats_r2") == 7
    assert messages_in_stream(jsz, "BENCH_nats_r3") == 0
    assert messages_in_stream({}, "BENCH_nats_r1") == 0


@pytest.mark.parametrize(("body", "events"), [
    (b'[{"id": "a"}, {"id": "b"}, {"id": "c"}]', 3),
    (b'{"FacilityID": "web-01", "DATA": [{"KEY": "k"}, {"KEY": "l"}]}\n', 2),
    (b'{"id": "a"}\n{"id": "b"}\n', 2),
])
def test_http_peer_counts_array_items_hinemos_entries_and_ndjson_lines(body: bytes, events: int) -> None:
    assert events_in(body) == events
