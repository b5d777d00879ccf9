"""The syslog sink against a real rsyslogd (imudp, imtcp, imtcp over TLS with gtls) started by each test."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.procs import die_with_parent
from formats import Event, get_parser
from gateway.config import SinkConfig
from gateway.errors import SinkError
from gateway.forward import Forwarder
from gateway.sinks import Outgoing
from gateway.sinks.syslog import SyslogOptions, SyslogSink
from tests.integration.harness import Trapgate
from tests.redis_servers import TlsFiles, free_port, write_tls_files
from tests.toml_render import render_toml

pytestmark = pytest.mark.integration

PEER = ("192.0.2.7", 51400)
MESSAGES = [
    b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
    b'eventSource="Application" eventID="1011"] An application event log entry "quoted" \\ back',
    b"<13>1 - host app 42 - - caf\xc3\xa9 \xe2\x9c\x93 nil structured data",
    b"<190>%ASA-6-302013: Built outbound TCP connection 12 for outside:10.0.0.1/443",
]


class Rsyslog:
    """rsyslogd in the foreground with one input on 127.0.0.1; each message's raw bytes go to `out`.

    `transport` is udp (imudp), tcp (imtcp) or tls (imtcp with the gtls driver, the client's
    certificate required and checked against `tls.ca`). A message is written JSON-escaped, one a line
    (control characters are kept as received), so embedded newlines and quotes survive.
    """

    def __init__(self, workdir: Path, transport: str, tls: TlsFiles | None = None) -> None:
        self.workdir, self.transport, self.tls = workdir, transport, tls
        self.port = free_port()
        self.out = workdir / "received.txt"
        self.config = workdir / "rsyslog.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        tls_global = module = ""
        if transport == "tls":
            assert tls is not None
            tls_global = (f' defaultNetstreamDriverCAFile="{tls.ca}"'
                          f' defaultNetstreamDriverCertFile="{tls.cert}"'
                          f' defaultNetstreamDriverKeyFile="{tls.key}"')
            module = ' streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid"'
        kind = "imudp" if transport == "udp" else "imtcp"
        self.config.write_text(f"""\
global(workDirectory="{workdir}" maxMessageSize="64k"
       parser.escapeControlCharactersOnReceive="off"{tls_global})
module(load="{kind}"{module})
template(name="raw" type="string" string="%rawmsg:::json%\\n")
ruleset(name="received") {{ action(type="omfile" file="{self.out}" template="raw") }}
input(type="{kind}" address="127.0.0.1" port="{self.port}" ruleset="received")
""")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Rsyslog:
        """Start rsyslogd and wait until its socket is bound (read from /proc, so nothing is sent)."""
        with open(self.workdir / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen(
                ["rsyslogd", "-n", "-f", str(self.config), "-i", str(self.workdir / "rsyslogd.pid")],
                stdout=stderr, stderr=stderr, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while not self._bound():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"rsyslogd {self.transport} on {self.port} not listening:\n{log[-2000:]}")
            time.sleep(0.02)
        return self

    def _bound(self) -> bool:
        table, state = ("/proc/net/udp", "07") if self.transport == "udp" else ("/proc/net/tcp", "0A")
        want = f"0100007F:{self.port:04X}"
        return any(cols[1] == want and cols[3] == state
                   for cols in (line.split() for line in Path(table).read_text().splitlines()[1:]))

    def stop(self) -> None:
        """SIGTERM (rsyslogd writes what it queued) and wait; SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def messages(self) -> list[bytes]:
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        return [json.loads(f'"{line}"').encode() for line in lines if line]

    def wait_messages(self, n: int, timeout: float = 10.0) -> list[bytes]:
        """The first `n` messages received; fails with what arrived when fewer arrive in time."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages()
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"rsyslogd got {len(got)} of {n} messages in {timeout}s: {got[-5:]!r}")
            time.sleep(0.05)


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    (tmp_path / "pki").mkdir()
    return write_tls_files(tmp_path / "pki")


@pytest.fixture
def receiver(request: pytest.FixtureRequest, tmp_path: Path, tls: TlsFiles) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path / "rsyslog", request.param, tls).start()
    yield server
    server.stop()


def options(server: Rsyslog, **extra: Any) -> SyslogOptions:
    tls = {}
    if server.transport == "tls":
        assert server.tls is not None
        tls = {"tls_ca": str(server.tls.ca), "tls_cert": str(server.tls.cert), "tls_key": str(server.tls.key)}
    return SyslogOptions(address=server.address, transport=server.transport, **{**tls, **extra})


def parsed(messages: Sequence[bytes], peer: tuple[str, int] = PEER) -> list[Event]:
    parser = get_parser("syslog")
    return [parser.parse(m, peer, time.time()) for m in messages]


def forward(sink: SyslogSink, events: Sequence[Event], **config: Any) -> list[str]:
    """Forward `events` through a `Forwarder` with `sink`; their ids."""
    ids = [f"{i:016x}-1-1" for i in range(len(events))]

    async def main() -> None:
        forwarder = Forwarder("gw", [sink], configs=[SinkConfig("syslog", **config)])
        assert await forwarder.forward(events, [i[:16] for i in ids], ids)
        await sink.close()

    asyncio.run(main())
    return ids


@pytest.mark.parametrize("receiver", ["udp", "tcp", "tls"], indirect=True)
def test_the_bytes_the_device_sent_arrive_unchanged(receiver: Rsyslog) -> None:
    sink = SyslogSink("out", SinkConfig("syslog"), options(receiver))
    forward(sink, parsed(MESSAGES))
    assert receiver.wait_messages(len(MESSAGES)) == MESSAGES
    assert sink.counters.sent == len(MESSAGES) and sink.counters.failed == 0


@pytest.mark.parametrize("receiver", ["tcp"], indirect=True)
def test_lf_framing_sends_one_line_per_message(receiver: Rsyslog) -> None:
    sink = SyslogSink("out", SinkConfig("syslog"), options(receiver, framing="lf"))
    forward(sink, parsed([m + b"\n" for m in MESSAGES]))  # a trailing LF is not doubled
    assert receiver.wait_messages(len(MESSAGES)) == MESSAGES


@pytest.mark.parametrize("receiver", ["tls"], indirect=True)
def test_rewrite_carries_the_event_id_and_the_original_peer_in_an_sd_element(receiver: Rsyslog) -> None:
    sink = SyslogSink("out", SinkConfig("syslog"), options(receiver, rewrite=True))
    events = parsed(MESSAGES)
    ids = forward(sink, events)
    got = parsed(receiver.wait_messages(len(MESSAGES)), ("127.0.0.1", 0))
    for event, original, event_id in zip(got, events, ids, strict=True):
        assert event.fields["protocol"] == "rfc5424"
        assert event.fields["structured_data"]["trapgate@32473"] == {
            "id": event_id, "peer": PEER[0], "port": str(PEER[1])}
        for key in ("facility", "severity", "app_name", "msg"):
            assert event.fields[key] == original.fields[key], key
        for sd_id, params in original.fields["structured_data"].items():
            assert event.fields["structured_data"][sd_id] == params


@pytest.mark.parametrize("receiver", ["udp"], indirect=True)
def test_other_formats_go_out_as_rfc5424_with_their_json_as_msg(receiver: Rsyslog) -> None:
    trap = Event("snmp", PEER, time.time(), {"trap_oid": "1.3.6.1.6.3.1.1.5.3", "varbinds": []}, b"", ())
    sink = SyslogSink("out", SinkConfig("syslog"), options(receiver))
    [event_id] = forward(sink, [trap])
    [message] = parsed(receiver.wait_messages(1))
    assert (message.fields["app_name"], message.fields["msgid"], message.fields["hostname"]) == (
        "trapgate", "snmp", PEER[0])
    assert message.fields["structured_data"]["trapgate@32473"]["id"] == event_id
    body = json.loads(message.fields["msg"])
    assert (body["id"], body["format"], body["trap_oid"]) == (event_id, "snmp", "1.3.6.1.6.3.1.1.5.3")


@pytest.mark.parametrize("receiver", ["tls"], indirect=True)
def test_a_server_certificate_for_another_name_fails_the_send_with_one_line(receiver: Rsyslog) -> None:
    sink = SyslogSink("out", SinkConfig("syslog"), options(receiver, tls_server_name="other.example"))

    async def main() -> None:
        await sink.start()
        with pytest.raises(SinkError, match=r"^cannot connect to 127\.0\.0\.1:\d+: .*certificate"):
            await sink.send([Outgoing(parsed(MESSAGES[:1])[0], "f", "f-1-1", b"{}\n")])
        await sink.close()

    asyncio.run(main())
    assert receiver.messages() == []


def numbered(n: int) -> bytes:
    return b"<13>1 - loadgen app - - - event %06d" % n


async def steady_load(sink: SyslogSink, rate: float, duration: float, config: SinkConfig) -> int:
    """`rate` numbered events a second for `duration` seconds, forwarded in order as a node does:
    whatever arrived while the last batch was being sent is the next batch. Returns how many."""
    queue: asyncio.Queue[Event] = asyncio.Queue()
    forwarder = Forwarder("gw", [sink], configs=[config])
    parser = get_parser("syslog")
    total = int(rate * duration)

    async def produce() -> None:
        start = time.monotonic()
        for n in range(total):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            queue.put_nowait(parser.parse(numbered(n), PEER, time.time()))

    producer = asyncio.create_task(produce())
    sent = 0
    while sent < total:
        batch = [await queue.get()]
        while not queue.empty():
            batch.append(queue.get_nowait())
        ids = [f"{sent + i:016x}-1-1" for i in range(len(batch))]
        assert await forwarder.forward(batch, [i[:16] for i in ids], ids)
        sent += len(batch)
    await producer
    await sink.close()
    return total


def numbers(messages: Sequence[bytes]) -> list[int]:
    return [int(m.rsplit(b" ", 1)[1]) for m in messages]


def first_occurrences(values: Sequence[int]) -> list[int]:
    seen: set[int] = set()
    return [v for v in values if not (v in seen or seen.add(v))]  # type: ignore[func-returns-value]


@pytest.mark.outage
@pytest.mark.parametrize("receiver", ["tcp", "tls"], indirect=True)
def test_a_receiver_stopped_30s_under_load_then_restarted_gets_every_event_in_order(
        receiver: Rsyslog) -> None:
    sink = SyslogSink("out", SinkConfig("syslog"), options(receiver))
    config = SinkConfig("syslog", retry_initial=0.1, retry_max=1.0)
    outage: dict[str, float] = {}

    async def main() -> int:
        load = asyncio.create_task(steady_load(sink, 200, 45, config))
        await asyncio.sleep(5)
        outage["stopped"] = time.monotonic()
        await asyncio.to_thread(receiver.stop)
        await asyncio.sleep(30)
        await asyncio.to_thread(receiver.start)
        outage["restarted"] = time.monotonic()
        return await load

    total = asyncio.run(main())
    got = numbers(receiver.wait_messages(total, timeout=30))
    missing = sorted(set(range(total)) - set(got))
    assert first_occurrences(got) == list(range(total)), f"missing {len(missing)}: {missing[:20]}"
    assert sink.counters.errors["send"] > 0  # the outage was seen
    print(f"{receiver.transport}: {total} events, {len(got) - total} delivered twice, "
          f"{sink.counters.errors['send']} failed sends, down {outage['restarted'] - outage['stopped']:.1f}s")


def udp_receive_buffer_drops() -> int:
    """Datagrams this host's kernel dropped for lack of room in a receiving socket's buffer."""
    header, values = [line.split()[1:] for line in Path("/proc/net/snmp").read_text().splitlines()
                      if line.startswith("Udp:")]
    return int(values[header.index("RcvbufErrors")])


@pytest.mark.parametrize("receiver", ["udp"], indirect=True)
def test_udp_while_the_receiver_is_down_batches_are_refused_and_sent_again_after_it_restarts(
        receiver: Rsyslog) -> None:
    """On this host the kernel reports the refusal (ICMP port unreachable) during the send, so the
    batch fails and is retried. What can be lost: datagrams the receiver had not read when it
    stopped, and the backlog sent as a burst at its restart beyond what its socket buffer holds (the
    kernel counts those). A remote receiver's refusal comes a round trip late: what was sent
    meanwhile is lost too."""
    sink = SyslogSink("out", SinkConfig("syslog"), options(receiver))
    config = SinkConfig("syslog", retry_initial=0.05, retry_max=0.2)
    drops_before = udp_receive_buffer_drops()

    async def main() -> int:
        load = asyncio.create_task(steady_load(sink, 200, 4, config))
        await asyncio.sleep(1)
        await asyncio.to_thread(receiver.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(receiver.start)
        return await load

    total = asyncio.run(main())
    time.sleep(0.5)
    got = numbers(receiver.messages())
    missing = sorted(set(range(total)) - set(got))
    buffer_drops = udp_receive_buffer_drops() - drops_before  # this host's: other tests' drops too
    print(f"udp: {total} events, {len(missing)} lost {missing[:5]}..., {buffer_drops} receive buffer "
          f"drops, {sink.counters.errors['send']} refused sends")
    assert sink.counters.errors["send"] > 0
    assert got == sorted(got)
    assert got[:150] == list(range(150)) and got[-100:] == list(range(total - 100, total))
    assert len(missing) <= buffer_drops + 2, missing


@pytest.mark.parametrize("receiver", ["tcp"], indirect=True)
def test_a_trapgate_process_forwards_what_devices_sent_to_rsyslog(receiver: Rsyslog, tmp_path: Path) -> None:
    workdir = tmp_path / "gw"
    workdir.mkdir()
    node = Trapgate(workdir)
    doc = tomllib.loads(node.config.read_text())
    del doc["sink"]  # the harness's file sink: this node has only the syslog sink
    doc["sinks"] = {"manager": {"type": "syslog", "address": receiver.address, "transport": "tcp",
                                "formats": ["syslog"]}}
    node.config.write_text(render_toml(doc))
    node.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as device:
            for message in MESSAGES:
                device.sendto(message, ("127.0.0.1", node.syslog_port))
        subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(node.syslog_port), "-d", "--rfc5424",
                        "-t", "e2e", "sent by logger"], check=True, timeout=10)
        got = receiver.wait_messages(len(MESSAGES) + 1)
    finally:
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err
    from_logger = [m for m in got if m.endswith(b"sent by logger")]
    assert [m for m in got if m not in from_logger] == MESSAGES
    assert len(from_logger) == 1 and b" e2e " in from_logger[0]
