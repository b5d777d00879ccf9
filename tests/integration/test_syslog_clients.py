"""util-linux `logger` against a running trapgate, over UDP and both TCP framings."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest

from tests.integration.harness import SCHEMA, Trapgate, occurrence

pytestmark = pytest.mark.integration


def logger(port: int, *args: str) -> None:
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(port), *args], check=True, timeout=10)


def validate(event: dict[str, object]) -> None:
    jsonschema.validate(event, SCHEMA)


@pytest.mark.parametrize(
    ("transport", "framing"),
    [(["-d"], "udp"), (["-T"], "lf"), (["-T", "--octet-count"], "octet-count")],
)
def test_logger_rfc5424_message_is_forwarded_with_its_fields(
    trapgate: Trapgate, transport: list[str], framing: str
) -> None:
    logger(trapgate.syslog_port, *transport, "--rfc5424", "-p", "local3.warning", "-t", "myapp",
           "--msgid", "ID47", "--sd-id", "exampleSDID@32473", "--sd-param", 'iut="3"',
           f"hello over {framing}")
    [event] = trapgate.wait_events(1)
    validate(event)
    assert event["format"] == "syslog"
    assert (event["facility"], event["severity"]) == (19, 4)
    assert event["app_name"] == "myapp"
    assert event["msgid"] == "ID47"
    assert event["msg"] == f"hello over {framing}"
    assert event["structured_data"]["exampleSDID@32473"] == {"iut": "3"}
    assert event["peer"] == "127.0.0.1"
    assert event["node"] == "test-node"
    assert event["hostname"] == socket.gethostname()
    assert occurrence(event) == (event["fingerprint"], 1)


@pytest.mark.parametrize("transport", [["-d"], ["-T"]])
def test_logger_rfc3164_message_is_forwarded(trapgate: Trapgate, transport: list[str]) -> None:
    logger(trapgate.syslog_port, *transport, "--rfc3164", "-p", "auth.err", "-t", "sshd", "bad login")
    [event] = trapgate.wait_events(1)
    validate(event)
    assert (event["facility"], event["severity"]) == (4, 3)
    assert event["app_name"] == "sshd"
    assert event["msg"] == "bad login"


def test_same_message_over_udp_and_tcp_has_one_fingerprint(trapgate: Trapgate) -> None:
    line = b"<34>1 2024-03-01T10:00:00Z host1 app 77 M1 - same message"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(line, ("127.0.0.1", trapgate.syslog_port))
    with socket.create_connection(("127.0.0.1", trapgate.syslog_port)) as t:
        t.sendall(line + b"\n")
    events = trapgate.wait_events(2)
    assert len(events) == 2
    assert events[0]["fingerprint"] == events[1]["fingerprint"]
    # exact mode keeps multiplicity: two copies are two occurrences.
    assert sorted(e["id"][-2:] for e in events) == ["-1", "-2"]


def test_malformed_datagram_is_counted_quarantined_and_next_one_served(trapgate: Trapgate) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"<999>1 bad pri", ("127.0.0.1", trapgate.syslog_port))
        u.sendto(b"", ("127.0.0.1", trapgate.syslog_port))
        u.sendto(b"<13>1 - - - - - - still served", ("127.0.0.1", trapgate.syslog_port))
    [event] = trapgate.wait_events(1)
    assert event["msg"] == "still served"
    assert trapgate.metric("trapgate_errors_total", component="syslog_udp", reason="bad_pri") == 1
    assert trapgate.metric("trapgate_errors_total", component="syslog_udp") == 2
    records = [json.loads(line) for line in trapgate.quarantine.read_text().splitlines()]
    assert {r["reason"] for r in records} >= {"bad_pri"}
    assert all(r["receiver"] == "syslog_udp" and r["peer"].startswith("127.0.0.1:") for r in records)


def test_oversized_tcp_frame_is_rejected_and_following_frames_served(trapgate: Trapgate) -> None:
    with socket.create_connection(("127.0.0.1", trapgate.syslog_port)) as t:
        t.sendall(b"<13>1 - - - - - - " + b"x" * 5000 + b"\n<13>1 - - - - - - after the big one\n")
    [event] = trapgate.wait_events(1)
    assert event["msg"] == "after the big one"
    assert trapgate.metric("trapgate_errors_total", component="syslog_tcp", reason="frame_too_large") == 1


def test_metrics_count_received_and_forwarded(trapgate: Trapgate) -> None:
    for i in range(20):
        logger(trapgate.syslog_port, "-d", "--rfc5424", f"m{i}")
    trapgate.wait_events(20)
    assert trapgate.metric("trapgate_received_total", component="syslog_udp") == 20
    assert trapgate.metric("trapgate_sent_total", component="file") == 20
    assert trapgate.metric("trapgate_dropped_total", component="syslog_udp", reason="kernel") == 0
    status = trapgate.status()
    assert status["components"]["syslog_udp"]["received"] == 20


def test_suppress_mode_forwards_one_copy_per_window_and_counts_the_rest(tmp_path: Path) -> None:
    node = Trapgate(tmp_path, {"dedup": {"mode": "suppress", "window": 30.0}}).start()
    try:
        for _ in range(3):
            logger(node.syslog_port, "-d", "--rfc5424=notime,notq", "-t", "app", "repeated")
        logger(node.syslog_port, "-d", "--rfc5424=notime,notq", "-t", "app", "different")
        time.sleep(0.5)
        events = node.events()
        assert sorted(e["msg"] for e in events) == ["different", "repeated"]
        assert node.metric("trapgate_dropped_total", component="dedup", reason="duplicate") == 2
    finally:
        node.stop()
