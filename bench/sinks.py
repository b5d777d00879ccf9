"""`python -m bench sinks`: throughput and CPU per event of each sink, against the `jsonl` sink.

Strategy: events of each format are made once, before anything is timed, the
way a receiver makes them (the project's parsers on realistic messages:
RFC 5424 and RFC 3164 syslog, SNMPv2c linkDown traps, Hinemos custom-trap
bodies), with their fingerprints. A measured run builds the sink from its
options, starts it, forwards one warm-up batch, then forwards `--events`
events through a `Forwarder`, one `forward` of `--batch` events at a time as
the pipeline does, in a uvloop loop of its own; only that part is timed
(wall clock) and charged (utime + stime of this process, all threads, from
getrusage). Each run gets event ids of its own, so a destination that drops
repeated ids (JetStream) keeps every run. What arrived is then counted at
the destination, a process of its own on 127.0.0.1 (see
`bench._sink_dests`). Every round runs each case once, in turn; each sink's
CPU per event is divided by that of the `jsonl` sink on the same events in
the same round, and the report gives the medians over `--runs` rounds.

The `jsonl+spool` cases write each batch to the master's spool before the
forward and acknowledge it after, as an HA master does, under each fsync
policy: their CPU per event over the plain `jsonl` case is the spool's cost.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench._sink_dests import (
    RSYSLOG_MAIN_QUEUE,
    Destination,
    FileDestination,
    HttpDestination,
    NatsDestination,
    RedisDestination,
    RsyslogDestination,
    SnmptrapdDestination,
)
from bench.report import Record, ratio, summarize, table
from bench.runner import host_info
from bench.snmpload import v2c_template
from dedup import event_id, fingerprint
from formats import Event, get_parser
from formats.custom import CustomTrapParser
from gateway.config import SinkConfig
from gateway.forward import Forwarder
from gateway.ha import encode_rescue
from gateway.sinks import sink_type
from gateway.sinks.redis_stream import supports_idmp
from gateway.spool import Spool

RCVBUF = 32 * 1024 * 1024
"""The receive buffer rsyslogd and snmptrapd ask for (snmptrapd gets at most net.core.rmem_max)."""

CUSTOM_BODY_ENTRIES = 32
"""Entries per custom-trap body, all of one FacilityID (the hinemos sink keeps runs of one together)."""

SETTLE_SECONDS = 1.0
"""A destination whose count has not grown for this long after the run has all it will get."""

DELIVERY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Case:
    """One measured configuration: a sink type, its variant, the events it gets and where they go."""

    name: str
    sink: str
    variant: str  # transport (syslog), fsync policy (jsonl), field layout (redis-stream), sink type (http)
    events: str  # "syslog", "snmp" or "custom"
    destination: str
    spool: str = ""  # the fsync policy of a spool written around each forward ("": no spool)

    @property
    def baseline(self) -> str:
        """The `jsonl` case on the same events."""
        return "jsonl" if self.events == "syslog" else f"jsonl-{self.events}"


CASES = (
    Case("jsonl", "jsonl", "none", "syslog", "file"),
    Case("jsonl-fsync-batch", "jsonl", "batch", "syslog", "file"),
    Case("jsonl-fsync-interval", "jsonl", "interval", "syslog", "file"),
    Case("jsonl+spool", "jsonl", "none", "syslog", "file", spool="none"),
    Case("jsonl+spool-batch", "jsonl", "none", "syslog", "file", spool="batch"),
    Case("jsonl+spool-interval", "jsonl", "none", "syslog", "file", spool="interval"),
    Case("jsonl-snmp", "jsonl", "none", "snmp", "file"),
    Case("jsonl-custom", "jsonl", "none", "custom", "file"),
    Case("syslog-udp", "syslog", "udp", "syslog", "rsyslogd"),
    Case("syslog-tcp", "syslog", "tcp", "syslog", "rsyslogd"),
    Case("snmp", "snmp", "2c", "snmp", "snmptrapd"),
    Case("http", "http", "http", "syslog", "http"),
    Case("hinemos", "hinemos", "hinemos", "custom", "http"),
    Case("redis-stream", "redis-stream", "flat", "syslog", "redis-server"),
    Case("redis-stream-json", "redis-stream", "json", "syslog", "redis-server"),
    Case("nats", "nats", "", "syslog", "nats-server"),
)
SINK_TYPES = ("jsonl", "syslog", "snmp", "http", "hinemos", "redis-stream", "nats")
BINARIES = {"rsyslogd": "rsyslogd", "snmptrapd": "snmptrapd", "redis-server": "redis-server",
            "nats-server": "nats-server"}


def selected_cases(types: Sequence[str]) -> list[Case]:
    """The cases of sink `types`, plus the `jsonl` baselines on their events, in `CASES` order.

    The `jsonl` cases on SNMP and custom events run only as baselines.
    """
    chosen = [c for c in CASES if c.sink in types and (c.sink != "jsonl" or c.events == "syslog")]
    wanted = {c.name for c in chosen} | {c.baseline for c in chosen}
    return [c for c in CASES if c.name in wanted]


def sink_type_list(text: str) -> list[str]:
    """An argparse type: comma-separated sink types out of `SINK_TYPES`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SINK_TYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown sink type(s) {', '.join(unknown) or '(none)'}; "
                                         f"known: {', '.join(SINK_TYPES)}")
    return names


def syslog_messages(n: int) -> list[bytes]:
    """`n` distinct syslog messages: RFC 5424 with structured data and RFC 3164 from devices, in turn."""
    out = []
    for i in range(n):
        host, second, ms = i % 16, (i // 1000) % 60, i % 1000
        if i % 2:
            out.append(
                f"<189>Nov 29 10:15:{second:02d} core-sw-{host:02d} %LINK-3-UPDOWN: Interface "
                f"GigabitEthernet1/0/{i % 48 + 1}, changed state to down (event {i})".encode())
        else:
            out.append(
                f'<134>1 2026-11-29T10:15:{second:02d}.{ms:03d}Z web-{host:02d}.example.net nginx '
                f'{2000 + host} ACCESS [origin@32473 ip="10.1.0.{host + 1}" software="nginx"] '
                f'GET /api/v1/items/{i} HTTP/1.1 200 512 "-" "curl/8.5.0" rt=0.004'.encode())
    return out


def custom_bodies(n: int) -> list[bytes]:
    """Hinemos custom-trap bodies holding `n` distinct entries, `CUSTOM_BODY_ENTRIES` to a body."""
    bodies = []
    for start in range(0, n, CUSTOM_BODY_ENTRIES):
        facility = f"web-{start // CUSTOM_BODY_ENTRIES % 8:02d}"
        entries = [{"DATE": f"2026-11-29 10:15:{i // 1000 % 60:02d}", "TYPE": "STRING", "KEY": "app.error",
                    "MSG": f"order service: payment gateway timed out after 3000 ms (request {i})"}
                   for i in range(start, min(n, start + CUSTOM_BODY_ENTRIES))]
        bodies.append(json.dumps({"FacilityID": facility, "DATA": entries}).encode())
    return bodies


def build_events(kind: str, n: int, received_at: float) -> list[Event]:
    """`n` distinct events of format `kind` as the project's parsers make them from the wire."""
    if kind == "syslog":
        parser = get_parser("syslog")
        return [parser.parse(m, (f"10.1.0.{i % 16 + 1}", 514), received_at)
                for i, m in enumerate(syslog_messages(n))]
    if kind == "snmp":
        parser = get_parser("snmp")
        template = v2c_template("public")
        return [parser.parse(template % i, (f"10.2.0.{i % 16 + 1}", 162), received_at) for i in range(n)]
    custom = CustomTrapParser()
    events: list[Event] = []
    for body in custom_bodies(n):
        parsed = custom.parse_many(body, ("10.3.0.1", 8082), received_at)
        events += [e for e in parsed if isinstance(e, Event)]
    return events


@dataclass(frozen=True)
class Pool:
    """Events of one format with their fingerprints."""

    events: list[Event]
    fps: list[str]


@dataclass(frozen=True)
class Forwarded:
    """What one measured run of forwarding took, and the sink's counters after it."""

    seconds: float
    cpu_seconds: float
    sent: int
    retried: int
    dropped: int


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def forward_run(case: Case, options: Any, pool: Pool, ids: list[str], batch: int,
                      spool_dir: Path) -> Forwarded:
    """Forward the pool's events (the first batch as warm-up, not timed) to a new sink of `case`;
    with `case.spool`, each batch is spooled in `spool_dir` before and acknowledged after."""
    config = SinkConfig(type=case.sink, batch_size=batch, formats=("snmp",) if case.sink == "snmp" else (),
                        options=options)
    sink = sink_type(case.sink).build(case.name, config, options)
    forwarder = Forwarder("bench", [sink], configs=[config])
    events, fps = pool.events, pool.fps
    batches = [(events[i : i + batch], fps[i : i + batch], ids[i : i + batch])
               for i in range(0, len(ids), batch)]
    spool = Spool(spool_dir / case.name, fsync=case.spool) if case.spool else None

    async def one(part: tuple[list[Event], list[str], list[str]]) -> None:
        if spool is None:
            await forwarder.forward(*part)
            return
        number = spool.append([encode_rescue(e, f, i) for e, f, i in zip(*part, strict=True)])
        await forwarder.forward(*part)
        spool.ack(number)

    await sink.start()
    try:
        await one(batches[0])
        cpu, started = _cpu_seconds(), time.perf_counter()
        for part in batches[1:]:
            await one(part)
            if spool is not None:
                spool.sync_if_due()
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    finally:
        await sink.close()
        if spool is not None:
            spool.close()
    c = sink.counters
    return Forwarded(seconds, cpu, c.sent, c.retried, sum(c.dropped.values()))


def wait_delivered(dest: Destination, tag: str, before: int, expected: int) -> int:
    """What arrived for run `tag` once `expected` did, or once the count stopped growing."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    last, last_change = -1, time.monotonic()
    while True:
        got = dest.delivered(tag) - before
        now = time.monotonic()
        if got >= expected or now >= deadline or (got == last and now - last_change >= SETTLE_SECONDS):
            return got
        if got != last:
            last, last_change = got, now
        time.sleep(0.05)


def measure(case: Case, dest: Destination, pool: Pool, events: int, batch: int, run: int,
            spool_dir: Path) -> Record:
    """One run of `case`: forward, count at the destination, the figures as a flat record."""
    tag = f"{case.name}-r{run}"
    before, drops_before = dest.delivered(tag), dest.kernel_drops()
    window = f"{time.time_ns() // 1000:x}"  # new ids every run
    ids = [event_id(fp, window, 1) for fp in pool.fps[: batch + events]]
    done: Forwarded = uvloop.run(forward_run(case, dest.options(case.variant, tag), pool, ids, batch,
                                             spool_dir))
    delivered = wait_delivered(dest, tag, before, len(ids))
    drops_after = dest.kernel_drops()
    dest.release(tag)
    measured = len(ids) - batch
    return {
        "system": case.name,
        "sink": case.sink,
        "event_format": case.events,
        "run": run,
        "events": measured,
        "seconds": round(done.seconds, 4),
        "events_per_s": round(measured / done.seconds),
        "cpu_us_per_event": round(1e6 * done.cpu_seconds / measured, 2),
        "sent": done.sent,  # the warm-up batch too
        "delivered": delivered,
        "lost": len(ids) - delivered,
        "retried": done.retried,
        "dropped": done.dropped,
        "kernel_drops": None if drops_before is None or drops_after is None else drops_after - drops_before,
    }


def add_baseline_ratios(records: Sequence[Record], cases: Sequence[Case]) -> None:
    """Give each record its CPU per event and rate over those of its baseline in the same run."""
    baseline = {c.name: c.baseline for c in cases}
    by_run = {(r["run"], r["system"]): r for r in records}
    for r in records:
        base = by_run.get((r["run"], baseline[r["system"]]), {})
        r["cpu_vs_jsonl"] = _ratio(r["cpu_us_per_event"], base.get("cpu_us_per_event"))
        r["rate_vs_jsonl"] = _ratio(r["events_per_s"], base.get("events_per_s"))


def _ratio(value: float, base: float | None) -> float | None:
    found = ratio(value, base)
    return None if found is None else round(found, 3)


def filesystem_of(path: Path, mounts: str) -> str:
    """The filesystem type of the mount holding `path`, from /proc/mounts text."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def _destinations(needed: set[str], workdir: Path, stack: contextlib.ExitStack) -> dict[str, Destination]:
    made: dict[str, Destination] = {"file": FileDestination(workdir / "jsonl")}
    (workdir / "jsonl").mkdir()
    if "rsyslogd" in needed:
        made["rsyslogd"] = stack.enter_context(RsyslogDestination(workdir / "rsyslogd", RCVBUF))
    if "snmptrapd" in needed:
        (workdir / "snmptrapd").mkdir()
        made["snmptrapd"] = stack.enter_context(SnmptrapdDestination(workdir / "snmptrapd", RCVBUF))
    if "http" in needed:
        made["http"] = stack.enter_context(HttpDestination(workdir / "http"))
    if "redis-server" in needed:
        made["redis-server"] = stack.enter_context(RedisDestination(workdir / "redis"))
    if "nats-server" in needed:
        made["nats-server"] = stack.enter_context(NatsDestination(workdir / "nats"))
    return made


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


COLUMNS = (
    ("system", "case"),
    ("events_per_s", "events/s"),
    ("cpu_us_per_event", "cpu µs/event"),
    ("cpu_vs_jsonl", "cpu/jsonl"),
    ("rate_vs_jsonl", "rate/jsonl"),
    ("delivered", "delivered"),
    ("lost", "lost"),
    ("retried", "retried"),
    ("kernel_drops", "kdrops"),
)


def _notes(cases: Sequence[Case], skipped: dict[str, str], fs: str, versions: dict[str, str],
           args: argparse.Namespace) -> list[str]:
    notes = [
        "CPU: utime+stime of the benchmark process (getrusage RUSAGE_SELF, all threads) over the timed "
        "forwarding only: rendering each event's JSON line, the sink, the forwarder; not the event "
        "parsing, the sink's start and close, nor the destination (a process of its own)",
        f"one forward of {args.batch} events at a time (sink batch_size {args.batch}, concurrency 1), "
        "as fast as the sink takes them: a closed loop, not an offered rate; the first batch is a "
        "warm-up, delivered and counted but not timed",
        "cpu_vs_jsonl and rate_vs_jsonl: the run's figure over that of the jsonl sink (fsync none) on "
        "the same event format in the same round (jsonl, jsonl-snmp, jsonl-custom); the summary "
        "gives the median over the rounds",
        "syslog-udp and snmp have no acknowledgement: their rate is what the socket took; lost counts "
        "what the destination did not write, kdrops the drops on its socket",
        f"disk: the jsonl sink's fsync policies (batch, interval at the default 1 s) and the master's "
        f"spool written around each forward under each fsync policy (jsonl+spool*), on {fs}",
        "event objects are built before the runs and frozen out of the garbage collector (gc.freeze), "
        "as a receiver's batch would be young and few",
    ]
    if any(c.sink == "redis-stream" for c in cases):
        idmp = supports_idmp({"redis_version": versions.get("redis-server", "")})
        notes.append("redis-stream: fields flat (the default) or json (one field holding the line), no "
                     f"MAXLEN; redis-server {versions.get('redis-server')}: "
                     + ("idempotent XADD (IDMP) in use" if idmp else "plain XADD (IDMP needs Redis 8.6)"))
    if any(c.sink == "nats" for c in cases):
        notes.append("nats: JetStream file storage, one stream per run created by the sink (create = true)")
    notes += [f"skipped {name}: {why}" for name, why in skipped.items()]
    return notes


def run(args: argparse.Namespace) -> int:
    """Run every selected case `--runs` times, print the JSON report and a summary on stderr."""
    cases = selected_cases(args.sinks)
    skipped: dict[str, str] = {}
    for c in cases:
        binary = BINARIES.get(c.destination)
        if binary is not None and shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            skipped[c.name] = f"{binary} not found"
    cases = [c for c in cases if c.name not in skipped]
    total = args.batch + args.events
    _log(f"building {total:,} events of each format ...")
    received_at = time.time()
    pools: dict[str, Pool] = {}
    for kind in sorted({c.events for c in cases}):
        events = build_events(kind, total, received_at)
        pools[kind] = Pool(events, [fingerprint(e) for e in events])
    gc.collect()
    gc.freeze()
    records: list[Record] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="bench-sinks-"))
        if not args.keep:  # removed after the destinations stopped
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        fs = filesystem_of(workdir, Path("/proc/mounts").read_text())
        dests = _destinations({c.destination for c in cases}, workdir, stack)
        versions = {name: dest.version() for name, dest in dests.items() if name != "file"}
        # One untimed pass of each baseline first: the process's first forwarding grows its heap,
        # which would otherwise be charged to whichever case comes first.
        for c in cases:
            if c.name == c.baseline:
                measure(c, dests[c.destination], pools[c.events], args.events, args.batch, 0, workdir)
        for index in range(1, args.runs + 1):
            for c in cases:
                record = measure(c, dests[c.destination], pools[c.events], args.events, args.batch, index,
                                 workdir)
                records.append(record)
                _log(f"run {index}/{args.runs} {c.name}: {record['events_per_s']:,} events/s, "
                     f"{record['cpu_us_per_event']} µs CPU/event, delivered {record['delivered']:,} "
                     f"of {total:,}, retried {record['retried']}")
        if args.keep:
            _log(f"kept {workdir}")
    add_baseline_ratios(records, cases)
    summary = summarize(records)
    report = {
        "benchmark": "sinks",
        "params": {"events": args.events, "batch": args.batch, "runs": args.runs,
                   "cases": [c.name for c in cases], "rcvbuf_requested": RCVBUF,
                   "rsyslog_main_queue": RSYSLOG_MAIN_QUEUE, "custom_body_entries": CUSTOM_BODY_ENTRIES,
                   "jsonl_filesystem": fs},
        "host": host_info(),
        "destinations": versions,
        "notes": _notes(cases, skipped, fs, versions, args),
        "runs": records,
        "summary": summary,
    }
    _log("")
    _log(f"sinks: {args.events:,} events per run after a warm-up batch, batches of {args.batch}, "
         f"{args.runs} round(s); medians:")
    _log(table([{"system": k, **v} for k, v in summary.items()], COLUMNS))
    for note in report["notes"]:
        _log(f"note: {note}")
    print(json.dumps(report, indent=None if args.compact else 2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `sinks` subcommand to the `python -m bench` parser."""
    parser = subparsers.add_parser(
        "sinks", help="throughput and CPU per event of each sink, against jsonl", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=50_000, help="events timed per run (50000)")
    parser.add_argument("--batch", type=int, default=512, help="events per forward and sink batch (512)")
    parser.add_argument("--runs", type=int, default=3, help="rounds over every case; medians (3)")
    parser.add_argument("--sinks", type=sink_type_list, default=list(SINK_TYPES),
                        help=f"comma-separated sink types (default all: {','.join(SINK_TYPES)}); "
                        "the jsonl baselines they need always run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (outputs, logs)")
    parser.add_argument("--compact", action="store_true", help="JSON on one line")
    parser.set_defaults(run=run)
