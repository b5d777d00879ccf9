"""bench.snmpload, bench.snmp and the SNMP peers: the load, the configs, the goals."""

from __future__ import annotations

import shutil
import socket
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import build_parser
from bench._ntfrcv import format_line
from bench.outfile import PROBE_PATTERN, SEQ_PATTERN, count_sequences
from bench.pysnmp_peer import PysnmpReceiver, receiver_argv
from bench.report import build_report, human_summary
from bench.snmp import judge_goals, system_rates, trapgate_snmp_options, trapgate_users
from bench.snmpload import SEQ_OID, V3Encoder, V3Identity, v2c_template
from bench.snmptrapd import Snmptrapd
from bench.snmptrapd import render_config as render_snmptrapd_config
from bench.targets import UdpTarget
from bench.trapgate import counters_from_metrics
from bench.trapgate import render_config as render_trapgate_config
from formats.snmp import AccessError, SnmpConfig, SnmpReceiver, UsmUser
from gateway.config import config_from_dict

IDENTITY = V3Identity()
PEER = ("127.0.0.1", 40000)


def _user(identity: V3Identity = IDENTITY, auth_passphrase: str | None = None) -> UsmUser:
    return UsmUser(
        identity.user,
        identity.auth,
        auth_passphrase or identity.auth_passphrase,
        identity.priv,
        identity.priv_passphrase,
    )


def _receiver(**kwargs: Any) -> SnmpReceiver:
    return SnmpReceiver(SnmpConfig(communities=frozenset({"public"}), **kwargs))


def test_v2c_template_renders_a_linkdown_trap_numbered_in_its_last_varbind() -> None:
    template = v2c_template("public")
    event, reply = _receiver().handle(template % 42, PEER, 1.0)
    assert reply is None and event is not None
    fields = event.fields
    assert (fields["version"], fields["community"], fields["trap_oid"]) == (
        "2c",
        "public",
        "1.3.6.1.6.3.1.1.5.3",
    )
    assert [v[0] for v in fields["varbinds"]] == [
        "1.3.6.1.2.1.2.2.1.1.3",
        "1.3.6.1.2.1.2.2.1.2.3",
        "1.3.6.1.2.1.2.2.1.3.3",
        "1.3.6.1.2.1.2.2.1.7.3",
        "1.3.6.1.2.1.2.2.1.8.3",
        SEQ_OID,
    ]
    assert list(fields["varbinds"][-1]) == [SEQ_OID, "OCTET STRING", "seq=0000000042 kind=d"]


def test_v2c_templates_have_one_length_and_probes_differ_only_in_kind() -> None:
    normal, probe = v2c_template("public"), v2c_template("public", b"p")
    assert {len(normal % n) for n in (0, 7, 9_999_999_999)} == {len(probe % 0)}
    assert (normal % 5).replace(b"kind=d", b"kind=p") == probe % 5
    assert SEQ_PATTERN.findall(normal % 5) == [b"0000000005"]
    assert PROBE_PATTERN.findall(probe % 5) == [b"0000000005"]


def test_v2c_template_survives_percent_octets_in_the_encoding() -> None:
    template = v2c_template("50%off")
    event, _ = SnmpReceiver(SnmpConfig()).handle(template % 3, PEER, 1.0)
    assert event is not None and event.fields["community"] == "50%off"


def test_v3_pool_is_distinct_authpriv_traps_of_one_length_that_a_user_without_engine_id_reads() -> None:
    pool = V3Encoder(IDENTITY, rate=1000).pool(30, probe_every=10)
    assert len(set(pool)) == 30 and len({len(d) for d in pool}) == 1
    receiver = _receiver(users=(_user(),))
    texts = []
    for data in pool:
        event, reply = receiver.handle(data, PEER, 1.0)
        assert reply is None and event is not None
        assert (event.fields["version"], event.fields["user"]) == ("3", IDENTITY.user)
        assert event.fields["engine_id"] == IDENTITY.engine_id.hex()
        texts.append(event.fields["varbinds"][-1][2])
    assert texts[:2] == ["seq=0000000000 kind=p", "seq=0000000001 kind=d"]
    assert [n for n, t in enumerate(texts) if t.endswith("kind=p")] == [0, 10, 20]


def test_v3_traps_are_signed_with_the_configured_passphrase() -> None:
    data = V3Encoder(IDENTITY, rate=1000).message(1)
    with pytest.raises(AccessError) as caught:
        _receiver(users=(_user(auth_passphrase="not-the-passphrase"),)).handle(data, PEER, 1.0)
    assert caught.value.reason == "wrong_digest"


def test_trapgate_snmp_config_is_valid_for_the_gateway(tmp_path: Path) -> None:
    text = render_trapgate_config(
        receiver="snmp",
        fmt="snmp",
        udp_port=1162,
        admin_port=9999,
        rcvbuf=33554432,
        out_path=tmp_path / "out.jsonl",
        quarantine_path=tmp_path / "q.jsonl",
        options=trapgate_snmp_options(tmp_path),
        users=trapgate_users(IDENTITY),
    )
    data = tomllib.loads(text)
    receiver = data["receivers"]["snmp"]
    assert receiver["type"] == "snmp" and "format" not in receiver
    assert receiver["communities"] == ["public"]
    assert receiver["engine_boots_file"] == str(tmp_path / "engine-boots")
    assert receiver["users"] == [
        {"name": "bench", "auth": "SHA", "auth_passphrase": "bench-auth-pass", "priv": "AES",
         "priv_passphrase": "bench-priv-pass"}
    ]  # fmt: skip
    config = config_from_dict(data, ["syslog"])
    assert config.receivers["snmp"].users[0].engine_ids == ()


def test_trapgate_counters_include_errors_by_reason() -> None:
    text = 'trapgate_errors_total{component="snmp",kind="snmp",reason="wrong_digest"} 3\n'
    assert counters_from_metrics(text, "snmp").extra["errors_by_component_reason"] == {
        "snmp:wrong_digest": 3.0
    }


def test_snmptrapd_config_creates_the_user_with_the_sender_engine_id_only_for_v3() -> None:
    v3 = render_snmptrapd_config(rcvbuf=1234, identity=IDENTITY)
    assert "[snmp] serverRecvBuf 1234" in v3
    assert f"createUser -e 0x{IDENTITY.engine_id.hex()} bench SHA bench-auth-pass AES bench-priv-pass" in v3
    assert "createUser" not in render_snmptrapd_config(rcvbuf=1234, identity=None)


def test_pysnmp_receiver_argv_gives_the_engine_id_only_for_v3(tmp_path: Path) -> None:
    v3 = receiver_argv(5000, tmp_path / "o", 99, IDENTITY)
    assert v3[v3.index("--engine-id") + 1] == IDENTITY.engine_id.hex()
    assert "--user" not in receiver_argv(5000, tmp_path / "o", 99, None)


class _Pretty:
    def __init__(self, text: str) -> None:
        self.text = text

    def prettyPrint(self) -> str:
        return self.text


def test_pysnmp_output_is_one_line_per_notification() -> None:
    line = format_line(
        [(_Pretty("1.3.6.1.2.1.1.3.0"), _Pretty("5")), (_Pretty(SEQ_OID), _Pretty("seq=1 kind=d"))]
    )
    assert line == f"1.3.6.1.2.1.1.3.0 = 5\t{SEQ_OID} = seq=1 kind=d\n"


def _deliver(target: UdpTarget, datagrams: list[bytes], expect: int) -> int:
    with target:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in datagrams:
                sock.sendto(data, ("127.0.0.1", target.port))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if count_sequences(target.out_path, expect, SEQ_PATTERN).distinct == expect:
                break
            time.sleep(0.05)
    return count_sequences(target.out_path, expect, SEQ_PATTERN).distinct


def _mixed_load(count: int) -> tuple[list[bytes], list[bytes]]:
    template = v2c_template("public")
    pool = V3Encoder(IDENTITY, rate=1000).pool(count, probe_every=0)
    return [template % n for n in range(count)], pool


@pytest.mark.skipif(shutil.which("snmptrapd") is None, reason="snmptrapd is not installed")
@pytest.mark.parametrize("version", ["2c", "3"])
def test_snmptrapd_peer_writes_one_numbered_line_per_trap(tmp_path: Path, version: str) -> None:
    v2c, v3 = _mixed_load(5)
    identity = IDENTITY if version == "3" else None
    target = Snmptrapd(tmp_path, 1 << 20, identity)
    assert _deliver(target, v3 if identity else v2c, 5) == 5
    assert (tmp_path / "persist").is_dir()


@pytest.mark.parametrize("version", ["2c", "3"])
def test_pysnmp_peer_writes_one_numbered_line_per_trap(tmp_path: Path, version: str) -> None:
    v2c, v3 = _mixed_load(5)
    identity = IDENTITY if version == "3" else None
    assert _deliver(PysnmpReceiver(tmp_path, 1 << 20, identity), v3 if identity else v2c, 5) == 5


def _run(system: str, achieved: float, lost: int, cpu: float, throughput: float) -> dict[str, Any]:
    return {
        "system": system, "run": 1, "achieved_rate": achieved, "offered_rate": achieved, "lost": lost,
        "cpu_us_per_msg": cpu, "throughput": throughput, "latency_p99_ms": 1.0,
    }  # fmt: skip


def _goals(version: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    report = build_report("snmp", {"rate": 1, "duration": 10, "runs": 1}, {}, runs, "trapgate")
    return judge_goals(version, runs, report["summary"], report["ratios"])


def test_goals_are_met_at_the_goal_rate_without_loss_and_judged_only_there() -> None:
    met = _goals("2c", [_run("trapgate", 50_000, 0, 15.0, 49_900), _run("snmptrapd", 50_000, 1, 90, 11_000)])
    assert [g["met"] for g in met] == [True, True, True]
    missed = _goals(
        "2c", [_run("trapgate", 50_000, 7, 25.0, 40_000), _run("snmptrapd", 50_000, 1, 90, 11_000)]
    )
    assert [g["met"] for g in missed] == [False, False, False]
    untested = _goals("2c", [_run("trapgate", 5_000, 0, 15.0, 5_000)])
    assert [g["met"] for g in untested] == [None, None, None]
    v3 = _goals("3", [_run("trapgate", 10_000, 0, 40.0, 9_990)])
    assert [(g["goal"], g["met"]) for g in v3] == [("v3 traps forwarded at >= 10,000/s with zero loss", True)]
    assert _goals("3", [_run("snmptrapd", 10_000, 0, 40.0, 9_990)]) == []


def test_summary_prints_the_goals() -> None:
    runs = [_run("trapgate", 50_000, 0, 15.0, 49_900)]
    report = build_report("snmp", {"rate": 50_000, "duration": 10, "runs": 1}, {}, runs, "trapgate")
    report["goals"] = judge_goals("2c", runs, report["summary"], report["ratios"])
    assert "goal v2c traps forwarded at >= 50,000/s with zero loss: " in human_summary(report)
    assert "-> MET" in human_summary(report)


def test_pysnmp_is_offered_a_capped_rate_unless_told_otherwise() -> None:
    parser = build_parser()
    args = parser.parse_args(["snmp", "--rate", "50000"])
    assert system_rates(args, ["trapgate", "snmptrapd", "pysnmp"]) == {
        "trapgate": 50_000, "snmptrapd": 50_000, "pysnmp": 1000,
    }  # fmt: skip
    args = parser.parse_args(["snmp", "--rate", "10000", "--version", "3", "--peers", "pysnmp"])
    assert system_rates(args, ["pysnmp"]) == {"pysnmp": 500}
    args = parser.parse_args(["snmp", "--rate", "300", "--pysnmp-rate", "200"])
    assert system_rates(args, ["pysnmp", "trapgate"]) == {"pysnmp": 200, "trapgate": 300}


def test_both_benchmarks_parse_their_options() -> None:
    parser = build_parser()
    syslog = parser.parse_args(["syslog", "--rate", "1000", "--peers", "none", "--size", "200"])
    assert (syslog.rate, syslog.peers, syslog.size, syslog.runs) == (1000, [], 200, 3)
    snmp = parser.parse_args(["snmp", "--version", "3", "--peers", "snmptrapd", "--duration", "5"])
    assert (snmp.version, snmp.peers, snmp.duration, snmp.rate) == ("3", ["snmptrapd"], 5.0, 50_000)
    with pytest.raises(SystemExit):
        parser.parse_args(["snmp", "--peers", "rsyslog"])
