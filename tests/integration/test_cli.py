"""The `trapgate` command: defaults, config errors, busy ports, stdout output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, Trapgate, run_cli

pytestmark = pytest.mark.integration


def test_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[dedup]\nmode = "suppress"\nwindow = 10\n')
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 0 and "is valid" in r.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[dedup]\nmode = "maybe"\n', "config key 'dedup.mode': 'maybe' is not one of exact, suppress"),
        ("[dedup]\nwindow = -1\n", "config key 'dedup.window': must be greater than 0"),
        ("[sink]\ntype = 'file'\n", "config key 'sink.path': is required when sink.type is 'file'"),
        ("[dedup\n", "bad.toml: is not valid TOML"),
        ('[dedup]\nstore = "redis"\n[redis]\nlocal = "redis://127.0.0.2:6379"\npeer = "redis://127.0.0.3:99999"'
         '\n[ha]\ntoken = "t"\n', "config key 'redis.peer': 'redis://127.0.0.3:99999': Port out of range"),
        ('[sinks.x]\ntype = "jsonl"\nfsync = "always"\n',
         "config key 'sinks.x.fsync': 'always' is not one of none, batch, interval"),
        ('[sinks.x]\ntype = "kafka"\n', "config key 'sinks.x.type': 'kafka' is not one of jsonl"),
        ('[sinks.x]\ntype = "jsonl"\nbrokers = 3\n', "config key 'sinks.x.brokers': unknown key"),
        ('[sink]\ntype = "stdout"\n[sinks.x]\ntype = "jsonl"\n', "use [sinks.NAME] tables only"),
    ],
)
def test_bad_config_ends_with_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    for args in (["check-config", str(cfg)], ["run", "-c", str(cfg)]):
        r = run_cli(*args)
        assert r.returncode == 2
        assert expected in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_port_in_use_ends_with_one_line_naming_the_address(tmp_path: Path) -> None:
    node = Trapgate(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", node.syslog_port))
        r = run_cli("run", "-c", str(node.config), cwd=tmp_path)
    assert r.returncode == 2
    address = f"127.0.0.1:{node.syslog_port}"
    assert r.stderr.strip() == (
        f"trapgate: cannot listen on {address} (receivers.syslog_udp): address already in use"
    )


def test_witness_on_a_busy_port_ends_with_one_line_naming_the_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        r = run_cli("witness", "--listen", address, "--key", "k")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"trapgate: cannot listen on {address} (arbiter): address already in use"


def test_unwritable_out_file_is_one_line(tmp_path: Path) -> None:
    node = Trapgate(tmp_path)
    r = run_cli("run", "-c", str(node.config), "--out", str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert r.returncode == 2
    assert "cannot open sink file" in r.stderr and "Traceback" not in r.stderr


def test_run_without_arguments_uses_embedded_defaults_and_writes_stdout(tmp_path: Path) -> None:
    for port, kind in ((1514, socket.SOCK_DGRAM), (1514, socket.SOCK_STREAM), (8082, socket.SOCK_STREAM),
                       (1162, socket.SOCK_DGRAM), (9180, socket.SOCK_STREAM)):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip(f"default port {port} is taken on this machine")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        lines = [proc.stderr.readline().decode() for _ in range(5)]
        assert "syslog udp://127.0.0.1:1514" in lines[0]
        assert "syslog tcp://127.0.0.1:1514" in lines[1]
        assert "custom http://127.0.0.1:8082" in lines[2]
        assert "snmp udp://127.0.0.1:1162" in lines[3]
        assert "admin http://127.0.0.1:9180" in lines[4]
        logger = ["logger", "-n", "127.0.0.1", "-P", "1514", "-d", "--rfc5424", "to stdout"]
        subprocess.run(logger, check=True)
        event = json.loads(proc.stdout.readline())
        assert event["msg"] == "to stdout" and event["format"] == "syslog"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert b"Traceback" not in err


def test_sigterm_forwards_what_was_received_before_exit(tmp_path: Path) -> None:
    node = Trapgate(tmp_path, {"pipeline": {"flush_ms": 2000.0, "batch_size": 100000}}).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(50):
            u.sendto(f"<13>1 - h a - - - n{i}".encode(), ("127.0.0.1", node.syslog_port))
    time.sleep(0.3)
    assert node.events() == []  # still in the intake: the flush timer is 2 s
    code, err = node.stop()
    assert code == 0, err
    assert len(node.events()) == 50

