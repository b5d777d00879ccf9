"""bench.sender and bench.syslog: paced sending of numbered RFC 5424 datagrams."""

from __future__ import annotations

import socket

import pytest

from bench.cpu import parse_proc_stat, tree_cpu_seconds
from bench.sender import send_paced
from bench.syslog import message_templates


def test_templates_render_fixed_size_rfc5424_with_sequence_and_kind() -> None:
    normal, probe = message_templates(128, "2024-01-01T00:00:00.000000Z", 42)
    assert len(normal % 7) == len(probe % 7) == 128
    assert (normal % 7).startswith(
        b"<134>1 2024-01-01T00:00:00.000000Z bench-host bench 42 - - seq=0000000007 kind=d "
    )
    assert b"kind=p" in probe % 7


def test_templates_do_not_truncate_below_the_bare_message() -> None:
    normal, _ = message_templates(10, "-", 1)
    assert (normal % 1).endswith(b"seq=0000000001 kind=d")


@pytest.mark.parametrize("use_sendmmsg", [True, False])
def test_paced_send_delivers_every_number_once_with_probes(use_sendmmsg: bool) -> None:
    normal, probe = message_templates(100, "-", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sink.bind(("127.0.0.1", 0))
        result = send_paced(
            [sink.getsockname()], 20_000, 0.25, normal.__mod__, probe.__mod__, 1000, use_sendmmsg=use_sendmmsg
        )
        sink.setblocking(False)
        got = []
        while True:
            try:
                got.append(sink.recv(2048))
            except BlockingIOError:
                break
    assert result.method == ("sendmmsg" if use_sendmmsg else "send")
    assert (result.attempted, result.errors) == (5000, 0)
    assert sorted(got) == sorted([probe % i if i % 1000 == 0 else normal % i for i in range(5000)])
    assert sorted(result.probe_times) == [0, 1000, 2000, 3000, 4000]
    assert 0.2 < result.elapsed < 1.0


def test_paced_send_is_paced_by_the_injected_clock() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        result = send_paced(
            [sink.getsockname()], 1000, 0.5, b"%010d".__mod__, b"%010d".__mod__, 0, lambda: now[0], sleep
        )
    assert result.attempted == 500
    assert result.probe_times == {}
    assert 0.49 <= result.elapsed <= 0.51


def test_paced_send_counts_refused_datagrams_instead_of_raising() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_sock:
        probe_sock.bind(("127.0.0.1", 0))
        port = probe_sock.getsockname()[1]
    result = send_paced([("127.0.0.1", port)], 2000, 0.1, b"%010d".__mod__, b"%010d".__mod__, 0)
    assert result.attempted == 200
    assert result.sent + result.errors == 200


def test_proc_stat_parsing_survives_odd_command_names_and_counts_self() -> None:
    stat = parse_proc_stat("123 (a) b (c)) S 1 123 123 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 1 0 5 1 1")
    assert (stat.pid, stat.ppid, stat.utime_ticks, stat.stime_ticks) == (123, 1, 250, 50)
    assert tree_cpu_seconds(1) >= 0.0
