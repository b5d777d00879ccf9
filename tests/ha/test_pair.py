"""The HA data path with real processes: two nodes, two Redis, a device sending to both."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.ha.conftest import ROOT, Device, Node, Pair, duplicate_ids, forwarded, report, wait_quiet

pytestmark = pytest.mark.ha


def test_steady_state_mixed_traffic_is_forwarded_exactly_once(pair: Pair) -> None:
    device = Device(pair.nodes)
    device.run(3000, rate=2000, custom_every=50, snmp_every=50)
    wait_quiet(pair.nodes)
    seen = forwarded(pair.nodes)
    lost, doubled = report("steady", device.sent, seen)
    assert not lost and not doubled
    assert set(seen) == set(device.sent)
    assert {m[0] for m in seen} == {"s", "c", "t"}  # syslog, custom and SNMP all went through
    assert {e["node"] for e in pair.a.events()} == {"a"} and pair.b.events() == []


def test_independent_loss_on_each_path_loses_nothing_and_doubles_nothing(pair: Pair) -> None:
    device = Device(pair.nodes, loss=0.01)
    device.run(4000, rate=2000)
    wait_quiet(pair.nodes)
    seen = forwarded(pair.nodes)
    lost, doubled = report("1% loss per path", device.sent, seen)
    only_b = [m for m, got in device.sent.items() if got == {"b"}]
    assert only_b, "the loss pattern should leave some events to the standby alone"
    assert not lost and not doubled
    assert set(only_b) <= set(seen)


def test_identical_events_in_one_window_keep_their_count(pair: Pair) -> None:
    device = Device(pair.nodes)
    for _ in range(3):
        device.syslog("same text")
    device.syslog("once")
    wait_quiet(pair.nodes)
    seen = forwarded(pair.nodes)
    print(f"repeats: sent 3+1 forwarded {dict(seen)}")
    assert seen == {"same text": 3, "once": 1}


def test_master_killed_and_standby_promoted_loses_nothing(pair: Pair) -> None:
    device = Device(pair.nodes)
    device.run(1500, rate=1500)
    pair.a.kill()
    in_flight = pair.a.spool_ids()
    device.run(500, rate=1500)  # only b receives these, as pending
    state = pair.b.set_role("master")
    assert state["role"] == "master" and state["forwarding"]
    device.run(1000, rate=1500)
    wait_quiet([pair.b])
    seen = forwarded(pair.nodes)
    lost, _ = report("master killed", device.sent, seen)
    assert not lost
    # Duplicates only from what a had in flight (its spool), and they keep their ids.
    assert set(duplicate_ids(pair.nodes)) <= in_flight
    ids = {}
    for node in pair.nodes:
        for event in node.events():
            assert ids.setdefault(event["msg"], event["id"]) == event["id"]


def test_redis_primary_killed_degraded_mode_forwards_and_resyncs(pair: Pair) -> None:
    device = Device(pair.nodes)
    device.run(1000, rate=1500)
    pair.redis_a.kill()
    device.run(1000, rate=1500)
    assert pair.a.status()["role"]["degraded"] is True
    pair.redis_a.start()
    pair.redis_b.replicate(pair.redis_a)
    device.run(1000, rate=1500)
    time.sleep(2)
    wait_quiet(pair.nodes)
    assert pair.a.status()["role"]["degraded"] is False
    seen = forwarded(pair.nodes)
    lost, doubled = report("redis primary killed", device.sent, seen)
    assert not lost and not doubled


def test_master_whose_lease_lapsed_forwards_nothing_until_renewed(pair: Pair) -> None:
    device = Device(pair.nodes)
    state = pair.a.set_role("master", lease=1.5)
    assert state["forwarding"] and state["term_remaining"] is not None
    device.run(200, rate=1000)
    time.sleep(1.6)  # the lease lapses; nobody renews it
    before = sum(forwarded(pair.nodes).values())
    assert pair.a.status()["role"]["forwarding"] is False
    device.run(200, rate=1000)
    time.sleep(1.5)
    assert sum(forwarded(pair.nodes).values()) == before, "a node without a lease forwarded"
    assert pair.a.status()["role"]["pending"] >= 200
    pair.a.set_role("master", lease=30)
    wait_quiet(pair.nodes)
    lost, doubled = report("lease lapsed", device.sent, forwarded(pair.nodes))
    assert not lost and not doubled


def test_pair_on_a_redis_cluster_forwards_exactly_once_and_fails_over(cluster_pair: list[Node]) -> None:
    a, b = cluster_pair
    device = Device(cluster_pair, loss=0.01)
    device.run(1500, rate=1500)
    wait_quiet(cluster_pair)
    lost, doubled = report("cluster, 1% loss per path", device.sent, forwarded(cluster_pair))
    assert not lost and not doubled
    device.loss = 0.0
    device.run(300, rate=1500)
    a.kill()
    in_flight = a.spool_ids()
    device.nodes = [b]
    device.run(300, rate=1500)
    assert b.set_role("master")["forwarding"]
    device.run(500, rate=1500)
    wait_quiet([b])
    lost, doubled = report("cluster, master killed", device.sent, forwarded(cluster_pair))
    assert not lost
    assert set(duplicate_ids(cluster_pair)) <= in_flight


def test_a_role_switch_that_cannot_be_made_is_one_line_and_exit_2(pair: Pair) -> None:
    pair.redis_b.kill()  # b cannot promote its own Redis
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "gateway", "role", "master", "-c", str(pair.b.config)],
                       capture_output=True, text=True, timeout=60, env=env)
    print(r.stderr)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "409 cannot switch to master: redis" in r.stderr
    assert pair.b.status()["role"]["role"] == "standby" and pair.a.status()["role"]["forwarding"]
