"""The `snmp` sink against Net-SNMP's snmptrapd: v2c and v3 traps, informs, the origin kept.

Each test starts its own snmptrapd on a free loopback port, writing one line
per notification (`%b|%P|%V~%v`: transport, security, the varbinds with
numeric OIDs and values), and drives either an `SnmpSink` directly with
events the project's parser made, or a whole trapgate process.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from formats import Event
from formats.snmp import SnmpParser
from formats.snmp._ber import (
    COUNTER64,
    IP_ADDRESS,
    OCTET_STRING,
    SEQUENCE,
    TIMETICKS,
    TRAP_V1,
    TRAP_V2,
    encode_int,
    encode_oid,
    encode_unsigned,
    tlv,
)
from formats.snmp._message import encode_community, encode_pdu
from gateway.config import SinkConfig
from gateway.errors import SinkError
from gateway.sinks import Outgoing
from gateway.sinks.snmp import SnmpSink, SnmpSinkOptions
from tests.integration.harness import Trapgate, free_port
from tests.toml_render import render_toml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists("/usr/sbin/snmptrapd"), reason="needs Net-SNMP's snmptrapd"),
]

TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
TRAP_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"
TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
UPTIME = "1.3.6.1.2.1.1.3.0"
ENTERPRISE = "1.3.6.1.4.1.99999"
SINK_ENGINE = "8000000004736b312d74657374"  # the sink's own engine id, for v3 traps
V3 = {"version": "3", "user": "fwd", "auth": "SHA", "auth_passphrase": "fwd-auth-pass", "priv": "AES",
      "priv_passphrase": "fwd-priv-pass"}
NO_MIBS = ["-m", "", "-M", "/dev/null"]


class Snmptrapd:
    """One snmptrapd on 127.0.0.1:`port`, knowing user `fwd` for traps (the sink's engine) and informs."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port or free_port()
        self.logs: list[Path] = []  # one per start: snmptrapd truncates its log file
        self.conf = workdir / "trapd.conf"
        self.conf.write_text(
            "disableAuthorization yes\n"
            f"createUser -e 0x{SINK_ENGINE} fwd SHA fwd-auth-pass AES fwd-priv-pass\n"
            "createUser fwd SHA fwd-auth-pass AES fwd-priv-pass\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Snmptrapd:
        log = self.workdir / f"trapd-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            ["snmptrapd", "-f", "-Lf", str(log), "-C", "-c", str(self.conf), *NO_MIBS, "-n", "-OQnt",
             "-F", "%b|%P|%V~%v\n", f"udp:127.0.0.1:{self.port}"],
            env={**os.environ, "SNMP_PERSISTENT_DIR": str(self.workdir / "persistent")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (log.exists() and "NET-SNMP version" in log.read_text()):
            assert time.monotonic() < deadline, "snmptrapd did not start"
            assert self.proc.poll() is None, "snmptrapd exited"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def notifications(self) -> list[dict[str, Any]]:
        """Each notification logged: transport, security and its varbinds as (oid, value) pairs."""
        out = []
        text = "".join(log.read_text() for log in self.logs if log.exists())
        for line in text.splitlines():
            if "|" not in line:
                continue
            transport, security, varbinds = line.split("|", 2)
            pairs = [tuple(vb.split(" = ", 1)) for vb in varbinds.split("~")]
            out.append({"transport": transport, "security": security,
                        "varbinds": [(oid.lstrip("."), value) for oid, value in pairs]})
        return out

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.notifications()) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return found


@pytest.fixture
def trapd(tmp_path: Path) -> Iterator[Snmptrapd]:
    server = Snmptrapd(tmp_path / "trapd").start()
    yield server
    server.stop()


def vb(oid: str, value: bytes) -> bytes:
    return tlv(SEQUENCE, encode_oid(oid) + value)


def v2c_event(mark: str, peer: tuple[str, int] = ("192.0.2.7", 40000), pdu: int = TRAP_V2) -> Event:
    """The event the project's parser makes of a v2c trap from `peer` carrying `mark`."""
    varbinds = (
        vb(UPTIME, encode_unsigned(4321, TIMETICKS))
        + vb(TRAP_OID, encode_oid(f"{ENTERPRISE}.0.1"))
        + vb(f"{ENTERPRISE}.1.1", tlv(OCTET_STRING, mark.encode()))
        + vb(f"{ENTERPRISE}.1.2", encode_int(-42))
        + vb(f"{ENTERPRISE}.1.3", tlv(OCTET_STRING, b"\x00\xff\x10"))
        + vb(f"{ENTERPRISE}.1.4", encode_unsigned(2**40, COUNTER64))
        + vb(f"{ENTERPRISE}.1.5", tlv(IP_ADDRESS, bytes([10, 1, 2, 3])))
        + vb(f"{ENTERPRISE}.1.6", encode_oid("1.3.6.1.2.1.2.2.1.1.7"))
    )
    data = encode_community(1, b"site-a", encode_pdu(pdu, 77, varbinds))
    return SnmpParser().parse(data, peer, time.time())


def v1_event(generic: int, specific: int, mark: str) -> Event:
    """The event of a v1 trap from agent 10.9.8.7, relayed by 192.0.2.8."""
    pdu = tlv(
        TRAP_V1,
        encode_oid(ENTERPRISE) + tlv(IP_ADDRESS, bytes([10, 9, 8, 7])) + encode_int(generic)
        + encode_int(specific) + encode_unsigned(999, TIMETICKS)
        + tlv(SEQUENCE, vb(f"{ENTERPRISE}.1.1", tlv(OCTET_STRING, mark.encode()))),
    )
    data = tlv(SEQUENCE, encode_int(0) + tlv(OCTET_STRING, b"v1-comm") + pdu)
    return SnmpParser().parse(data, ("192.0.2.8", 162), time.time())


def outgoing(events: Sequence[Event]) -> list[Outgoing]:
    return [Outgoing(e, "fp", f"fp-{i}-1", b"") for i, e in enumerate(events)]


async def run_sink(options: SnmpSinkOptions, *batches: list[Outgoing], during: Any = None) -> SnmpSink:
    """Start a sink, send each batch (while `during` runs, if given), close it."""
    options.check("sinks.test")
    sink = SnmpSink("test", SinkConfig("snmp", formats=("snmp",)), options)
    await sink.start()
    try:
        for batch in batches:
            if during is None:
                await sink.send(batch)
            else:
                await asyncio.gather(sink.send(batch), asyncio.to_thread(during))
    finally:
        await sink.close()
    return sink


def by_oid(notification: dict[str, Any]) -> dict[str, str]:
    return dict(notification["varbinds"])


def test_a_v2c_trap_arrives_with_all_its_varbinds_and_the_origin_appended(trapd: Snmptrapd) -> None:
    options = SnmpSinkOptions(address=trapd.address, community="mgr")
    asyncio.run(run_sink(options, outgoing([v2c_event("m1")])))
    [got] = trapd.wait(1)
    assert got["security"] == "TRAP2, SNMP v2c, community mgr"
    assert got["varbinds"] == [
        (UPTIME, "4321"),
        (TRAP_OID, f".{ENTERPRISE}.0.1"),
        (f"{ENTERPRISE}.1.1", '"m1"'),
        (f"{ENTERPRISE}.1.2", "-42"),
        (f"{ENTERPRISE}.1.3", '"00 FF 10 "'),
        (f"{ENTERPRISE}.1.4", str(2**40)),
        (f"{ENTERPRISE}.1.5", "10.1.2.3"),
        (f"{ENTERPRISE}.1.6", ".1.3.6.1.2.1.2.2.1.1.7"),
        (TRAP_ADDRESS, "192.0.2.7"),
        (TRAP_COMMUNITY, '"site-a"'),
    ]


def test_a_batch_is_one_datagram_per_trap_and_non_snmp_events_are_dropped(trapd: Snmptrapd) -> None:
    syslog = Event("syslog", ("127.0.0.1", 514), time.time(), {"msg": "x"}, b"", ("x",))
    events = [v2c_event(f"b{i}") for i in range(50)]
    sink = asyncio.run(run_sink(SnmpSinkOptions(address=trapd.address), outgoing([*events[:25], syslog,
                                                                                  *events[25:]])))
    got = trapd.wait(50)
    assert sorted(by_oid(n)[f"{ENTERPRISE}.1.1"] for n in got) == sorted(f'"b{i}"' for i in range(50))
    assert len({n["transport"] for n in got}) == 1
    assert sink.counters.dropped == {"not_snmp": 1}


@pytest.mark.parametrize(("generic", "specific", "trap_oid"), [
    (6, 17, f"{ENTERPRISE}.0.17"),  # enterpriseSpecific: enterprise.0.specific
    (2, 0, "1.3.6.1.6.3.1.1.5.3"),  # linkDown: snmpTraps.(generic + 1)
])
def test_a_v1_trap_is_mapped_per_rfc_3584(trapd: Snmptrapd, generic: int, specific: int,
                                          trap_oid: str) -> None:
    event = v1_event(generic, specific, "v1")
    asyncio.run(run_sink(SnmpSinkOptions(address=trapd.address), outgoing([event])))
    [got] = trapd.wait(1)
    assert got["varbinds"] == [
        (UPTIME, "999"),
        (TRAP_OID, f".{trap_oid}"),
        (f"{ENTERPRISE}.1.1", '"v1"'),
        (TRAP_ADDRESS, "10.9.8.7"),  # the agent-addr, not the relay that sent it
        (TRAP_COMMUNITY, '"v1-comm"'),
        (TRAP_ENTERPRISE, f".{ENTERPRISE}"),
    ]


def test_a_v3_auth_priv_trap_carries_the_sinks_engine_and_user(trapd: Snmptrapd, tmp_path: Path) -> None:
    options = SnmpSinkOptions(address=trapd.address, engine_id=SINK_ENGINE,
                              engine_boots_file=str(tmp_path / "boots"), **V3)
    asyncio.run(run_sink(options, outgoing([v2c_event("v3-a"), v2c_event("v3-b")])))
    got = trapd.wait(2)
    assert [n["security"] for n in got] == ["TRAP2, SNMP v3, user fwd, context "] * 2
    assert [by_oid(n)[f"{ENTERPRISE}.1.1"] for n in got] == ['"v3-a"', '"v3-b"']
    assert by_oid(got[0])[TRAP_ADDRESS] == "192.0.2.7"
    assert (tmp_path / "boots").read_text() == "1\n"


@pytest.mark.parametrize("version", ["2c", "3"])
def test_an_inform_is_sent_again_until_the_manager_answers(tmp_path: Path, version: str) -> None:
    trapd = Snmptrapd(tmp_path / "trapd")  # not started: it starts while the sink waits
    extra = V3 if version == "3" else {}
    options = SnmpSinkOptions(address=trapd.address, inform=True, inform_timeout=0.2, inform_retries=40,
                              engine_boots_file=str(tmp_path / "boots"), **extra)  # type: ignore[arg-type]

    def start_late() -> None:
        time.sleep(1.5)
        trapd.start()

    started = time.monotonic()
    try:
        asyncio.run(run_sink(options, outgoing([v2c_event("i1"), v2c_event("i2")]), during=start_late))
        took = time.monotonic() - started
        got = trapd.wait(2)
    finally:
        trapd.stop()
    assert took >= 1.5
    assert {by_oid(n)[f"{ENTERPRISE}.1.1"] for n in got} == {'"i1"', '"i2"'}
    assert {n["security"].split(",")[0] for n in got} == {"INFORM"}


def test_a_refused_v3_inform_fails_the_send_with_the_reason(trapd: Snmptrapd, tmp_path: Path) -> None:
    options = SnmpSinkOptions(address=trapd.address, inform=True, inform_timeout=0.5, inform_retries=1,
                              engine_boots_file=str(tmp_path / "boots"),
                              **{**V3, "auth_passphrase": "not-the-passphrase"})
    with pytest.raises(SinkError, match="refused an inform: wrong_digest"):
        asyncio.run(run_sink(options, outgoing([v2c_event("no")])))


def test_keep_source_sends_from_the_events_origin_through_a_raw_socket(trapd: Snmptrapd) -> None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except PermissionError:
        pytest.skip("needs CAP_NET_RAW")
    event = v2c_event("spoofed", peer=("127.0.0.9", 5555))
    asyncio.run(run_sink(SnmpSinkOptions(address=trapd.address, keep_source=True), outgoing([event])))
    [got] = trapd.wait(1)
    assert got["transport"].startswith("UDP: [127.0.0.9]:5555->")
    assert by_oid(got)[f"{ENTERPRISE}.1.1"] == '"spoofed"'


def _trapgate_to(trapd: Snmptrapd, tmp_path: Path, sink: dict[str, Any]) -> Trapgate:
    """A trapgate whose sinks are its usual file and `sink` (type snmp, SNMP events only)."""
    node = Trapgate(tmp_path)
    doc = tomllib.loads(node.config.read_text())
    del doc["sink"]
    doc["sinks"] = {"file": {"type": "jsonl", "path": str(node.out)},
                    "manager": {"type": "snmp", "formats": ["snmp"], "address": trapd.address,
                                "retry_max": 1.0, **sink}}
    node.config.write_text(render_toml(doc))
    return node


def _snmptrap(port: int, mark: str) -> None:
    subprocess.run(["snmptrap", *NO_MIBS, "-v2c", "-c", "edge", f"127.0.0.1:{port}", "55",
                    f"{ENTERPRISE}.0.3", f"{ENTERPRISE}.1.1", "s", mark], check=True, timeout=10)


def test_trapgate_forwards_a_trap_from_snmptrap_to_snmptrapd_with_keep_source_refused(
    trapd: Snmptrapd, tmp_path: Path
) -> None:
    node = _trapgate_to(trapd, tmp_path, {"keep_source": True})
    # Without CAP_NET_RAW (dropped from the bounding set), keep_source falls back with one line.
    node.proc = subprocess.Popen(
        ["setpriv", "--bounding-set", "-net_raw", "--inh-caps=-net_raw", sys.executable, "-m", "gateway",
         "run", "-c", str(node.config)],
        cwd=tmp_path, env=node.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        node.wait_healthy(lambda: node.proc.stderr.read().decode())  # type: ignore[union-attr]
        _snmptrap(node.snmp_port, "end-to-end")
        got = trapd.wait(1)
        assert node.wait_events(1)
    finally:
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err
    assert err.count("keep_source needs CAP_NET_RAW") == 1, err
    [got] = got
    assert got["security"] == "TRAP2, SNMP v2c, community public"
    assert got["varbinds"] == [
        (UPTIME, "55"),
        (TRAP_OID, f".{ENTERPRISE}.0.3"),
        (f"{ENTERPRISE}.1.1", '"end-to-end"'),
        (TRAP_ADDRESS, "127.0.0.1"),
        (TRAP_COMMUNITY, '"edge"'),
    ]


@pytest.mark.outage
def test_informs_to_a_manager_down_for_30_s_under_load_are_all_delivered(tmp_path: Path) -> None:
    trapd = Snmptrapd(tmp_path / "trapd").start()
    (tmp_path / "gw").mkdir()
    node = _trapgate_to(trapd, tmp_path / "gw", {
        "inform": True, "inform_timeout": 0.5, "inform_retries": 2, "timeout": 5.0, "batch_size": 64,
        "engine_boots_file": str(tmp_path / "gw" / "boots"), **V3,
    }).start()
    stop = threading.Event()
    sent: list[str] = []

    def load() -> None:  # 20 traps a second, each with its own mark
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        n = 0
        while not stop.is_set():
            mark = f"load-{n}"
            sock.sendto(v2c_event(mark).raw, ("127.0.0.1", node.snmp_port))
            sent.append(mark)
            n += 1
            time.sleep(0.05)
        sock.close()

    sender = threading.Thread(target=load)
    sender.start()
    try:
        time.sleep(3)
        trapd.stop()
        time.sleep(30)
        trapd.start()  # the same engine id, one boot later: the sink learns its new boots and time
        time.sleep(3)
        stop.set()
        sender.join()
        expected = {f'"{m}"' for m in sent}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = {by_oid(n)[f"{ENTERPRISE}.1.1"] for n in trapd.notifications()}
            if expected <= got:
                break
            time.sleep(0.5)
        assert expected - got == set()
        assert len(sent) > 600
        # One source (the load's socket): the first copy of each trap arrives in the order it was sent.
        marks = [by_oid(n).get(f"{ENTERPRISE}.1.1", "") for n in trapd.notifications()]
        firsts = list(dict.fromkeys(int(m.strip('"').split("-")[1]) for m in marks if m.startswith('"load-')))
        out_of_order = [(a, b) for a, b in itertools.pairwise(firsts) if b < a]
        assert not out_of_order, (len(out_of_order), out_of_order[:10])
    finally:
        stop.set()
        code, err = node.stop()
        trapd.stop()
    assert code == 0 and "Traceback" not in err, err
