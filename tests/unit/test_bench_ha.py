"""bench ha: the pair's layout, sending to both nodes, counting over both outputs, goals."""

from __future__ import annotations

import shutil
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bench.cpu import parse_host_cpu
from bench.ha import judge_goals
from bench.hapair import HOST_A, HOST_B, ha_pair, single_node
from bench.harunner import measure_deployment
from bench.outfile import PROBE_PATTERN, SEQ_PATTERN, count_union
from bench.pyspy import top_functions
from bench.runner import Load
from bench.sender import send_paced
from bench.syslog import message_templates
from bench.trapgate import DEFAULT_COMMAND, render_config


def _line(seq: int) -> bytes:
    return f'{{"msg": "seq={seq:010d} kind=d"}}\n'.encode()


def test_union_count_finds_numbers_forwarded_by_either_node_and_doubled_across_them(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(_line(0) + _line(1) + _line(2) + _line(2))
    b.write_bytes(_line(2) + _line(3) + _line(1) + b"noise\n")
    count = count_union([a, b, tmp_path / "absent"], 5, SEQ_PATTERN)
    assert (count.distinct, count.duplicates, count.doubled) == (4, 3, 2)
    assert count.lines_per_file == (4, 4, 0)
    assert (count.lines, count.unmatched_lines) == (8, 1)


def test_paced_send_to_two_destinations_gives_each_every_datagram_and_times_probes_once() -> None:
    normal, probe = message_templates(100, "-", 1)
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for sink in sinks:
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sink.bind(("127.0.0.1", 0))
        result = send_paced(
            [s.getsockname() for s in sinks], 10_000, 0.2, normal.__mod__, probe.__mod__, 500
        )
        got = []
        for sink in sinks:
            sink.setblocking(False)
            datagrams = []
            while True:
                try:
                    datagrams.append(sink.recv(2048))
                except BlockingIOError:
                    break
            got.append(sorted(datagrams))
    finally:
        for sink in sinks:
            sink.close()
    expected = sorted(probe % i if i % 500 == 0 else normal % i for i in range(2000))
    assert got == [expected, expected]
    assert (result.destinations, result.attempted, result.errors) == (2, 2000, 0)
    assert sorted(result.probe_times) == [0, 500, 1000, 1500]


def test_pair_configs_make_a_master_on_the_primary_and_b_a_standby_replicating_it(tmp_path: Path) -> None:
    pair = ha_pair(tmp_path, 1 << 20, DEFAULT_COMMAND)
    a, b = pair.nodes
    redis_a, redis_b = pair.redis
    configs = []
    for node in (a, b):
        node.command()
        configs.append(tomllib.loads(node.config_path.read_text()))
    ca, cb = configs
    assert ca["receivers"]["syslog_udp"]["address"] == f"{HOST_A}:{a.port}"
    assert cb["admin"]["address"] == f"{HOST_B}:{b.admin_port}"
    assert ca["dedup"] == cb["dedup"] == {"mode": "exact", "store": "redis"}
    assert (ca["ha"]["role"], cb["ha"]["role"]) == ("master", "standby")
    assert ca["redis"] == {"local": redis_a.url, "peer": redis_b.url}
    assert cb["redis"] == {"local": redis_b.url, "peer": redis_a.url}
    assert redis_b.command()[-3:] == ["--replicaof", HOST_A, str(redis_a.port)]
    assert "--replicaof" not in redis_a.command()
    assert pair.destinations == [(HOST_A, a.port), (HOST_B, b.port)]
    assert "token" not in a.config_summary()["ha"]
    assert single_node(tmp_path / "s", 1 << 20, DEFAULT_COMMAND).redis == []


def test_rendered_tables_take_floats_and_extend_dedup(tmp_path: Path) -> None:
    text = render_config(
        receiver="syslog_udp", fmt="syslog", udp_port=1, admin_port=2, rcvbuf=3,
        out_path=tmp_path / "o", quarantine_path=tmp_path / "q", host="127.0.0.9", node="x",
        tables={"dedup": {"window": 60.0}, "ha": {"grace": 1.5, "role": "standby"}},
    )  # fmt: skip
    config = tomllib.loads(text)
    assert config["node"]["name"] == "x"
    assert config["dedup"] == {"mode": "exact", "window": 60.0}
    assert config["ha"] == {"grace": 1.5, "role": "standby"}


def test_host_cpu_counts_everything_but_idle_and_iowait_as_busy() -> None:
    assert parse_host_cpu("cpu  10 2 3 100 5 1 1 0 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n") == (17, 122)


def test_top_functions_rank_by_own_samples_and_count_recursion_once() -> None:
    collapsed = "main (m.py);f (m.py);f (m.py) 30\nmain (m.py);g (m.py) 10\nbad line\n"
    top = top_functions(collapsed)
    assert [(s.function, s.self_pct, s.total_pct) for s in top] == [
        ("f (m.py)", 75.0, 75.0),
        ("g (m.py)", 25.0, 25.0),
    ]


def _run(
    system: str, achieved: float, lost: int, duplicated: int = 0, kept_up: bool = True
) -> dict[str, Any]:
    return {
        "system": system, "offered_rate": round(achieved, -4), "achieved_rate": achieved, "lost": lost,
        "duplicated": duplicated, "kept_up": kept_up,
    }  # fmt: skip


def test_goal_is_judged_only_at_the_goal_rate_and_needs_no_loss_no_duplicate_and_keeping_up() -> None:
    assert judge_goals([_run("single", 60_000, 9), _run("pair", 60_000, 0)])[0]["met"] is True
    assert judge_goals([_run("pair", 60_000, 0), _run("pair", 60_000, 3)])[0]["met"] is False
    assert judge_goals([_run("pair", 60_000, 0, duplicated=1)])[0]["met"] is False
    assert judge_goals([_run("pair", 60_000, 0, kept_up=False)])[0]["met"] is False
    assert judge_goals([_run("pair", 20_000, 0)])[0]["met"] is None
    assert judge_goals([_run("single", 60_000, 0)]) == []


def test_a_pair_failing_while_the_sender_fell_short_of_the_goal_rate_still_misses_the_goal() -> None:
    assert judge_goals([_run("pair", 60_000, 0), _run("pair", 58_000, 5)])[0]["met"] is False
    assert judge_goals([_run("pair", 58_000, 0)])[0]["met"] is None


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_a_short_pair_run_forwards_everything_once_and_drains_the_standby() -> None:
    normal, probe = message_templates(128, "2024-01-01T00:00:00Z", 1)
    load = Load(
        rate=1000, duration=1.0, render=normal.__mod__, render_probe=probe.__mod__,
        probe_pattern=PROBE_PATTERN, seq_pattern=SEQ_PATTERN, probe_every=100, drain_idle=0.3,
        drain_timeout=30.0,
    )  # fmt: skip
    record = measure_deployment(
        "pair", lambda workdir, rcvbuf: ha_pair(workdir, rcvbuf, DEFAULT_COMMAND), load, 1 << 20, 1
    )
    assert (record["forwarded"], record["lost"], record["duplicated"]) == (1000, 0, 0)
    assert (record["output_lines_a"], record["output_lines_b"]) == (1000, 0)
    assert record["drained"] and record["pending_final_b"] == 0
    assert record["roles"]["a"]["role"] == "master" and record["roles"]["b"]["role"] == "standby"
    assert set(record) >= {f"cpu_us_per_msg_{p}" for p in ("gateway_a", "gateway_b", "redis_a", "redis_b")}
    assert record["probes_seen"] == 10


def test_a_node_whose_admin_port_was_taken_meanwhile_starts_on_new_ports(tmp_path: Path) -> None:
    deployment = single_node(tmp_path, 1 << 20, DEFAULT_COMMAND)
    node = deployment.nodes[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST_A, node.admin_port))
        squatter.listen()
        taken = node.admin_port
        with deployment:
            assert node.admin_port != taken
            assert deployment.backlog()["a"].empty
