"""The controller's parts without a network: heartbeats, election rules, its config."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from formats import parser_names
from gateway.config import Config, ControllerConfig, PathConfig, config_from_dict, validate_for_controller
from gateway.errors import ConfigError
from gateway.failover._heartbeat import Beat, Opener, Sealer, open_sealed
from gateway.failover.arbiter import Arbiter
from gateway.failover.controller import Controller, Rates

KEY = b"pair secret"
STATE = {"role": "master", "epoch": 3, "priority": 100, "healthy": True, "isolated": False, "lease": 0.6}


def test_a_heartbeat_is_accepted_once_per_path_and_never_replayed() -> None:
    sealer, opener = Sealer(KEY, "a"), Opener(KEY, "b")
    first = sealer.seal(1000.0, **STATE)
    beat = opener.open(first, 1000.1, "service")
    assert beat is not None
    assert (beat.node, beat.role, beat.epoch, beat.seq, beat.lease) == ("a", "master", 3, 1, 0.6)
    assert opener.open(first, 1000.2, "dedicated") is not None  # the same heartbeat on the other path
    assert opener.open(first, 1000.3, "service") is None  # replayed
    assert opener.open(sealer.seal(1000.4, **STATE), 1000.4, "service") is not None
    assert opener.rejected == {"replay": 1}


def test_forged_own_malformed_and_old_boot_heartbeats_change_nothing() -> None:
    opener = Opener(KEY, "b")
    assert opener.open(Sealer(b"wrong key", "a").seal(1000.0, **STATE), 1000.0, "p") is None
    assert opener.open(Sealer(KEY, "b").seal(1000.0, **STATE), 1000.0, "p") is None
    assert opener.open(b"short", 1000.0, "p") is None
    assert opener.open(Sealer(KEY, "a").seal(1000.0, **STATE), 1100.0, "p") is None  # a boot 100 s off
    tampered = bytearray(Sealer(KEY, "a").seal(1000.0, **STATE))
    tampered[10] ^= 1
    assert opener.open(bytes(tampered), 1000.0, "p") is None
    assert opener.rejected == {"bad_mac": 3, "own": 1, "stale": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def controller(priority: int = 100, name: str = "a", **overrides: object) -> tuple[Controller, Clock]:
    config = dataclasses.replace(
        Config(), node=dataclasses.replace(Config().node, name=name),
        controller=ControllerConfig(paths={"p": PathConfig("127.0.0.2:7400", "127.0.0.3:7400")}, key="k",
                                    priority=priority, **overrides),  # type: ignore[arg-type]
    )
    clock = Clock()
    c = Controller(config, monotonic=clock, wall=clock)
    c.role = "standby"
    return c, clock


def beat(node: str = "b", role: str = "standby", epoch: int = 1, priority: int = 100, healthy: bool = True,
         seq: int = 1) -> Beat:
    return Beat(node, "boot", seq, 0.0, role, epoch, priority, healthy, False)


def hear(c: Controller, clock: Clock, peer: Beat) -> None:
    c.peer, c.heard["p"] = peer, clock.now


def test_a_standby_waits_settle_for_its_peer_then_promotes_alone() -> None:
    c, clock = controller(settle=2.0)
    assert c._promotion_reason() is None
    clock.now += 2.1
    assert c._promotion_reason() == "peer_dead"


def test_the_preferred_standby_is_elected_and_the_other_waits() -> None:
    low, clock = controller(priority=100, name="b")
    hear(low, clock, beat("a", priority=200))
    assert low._promotion_reason() is None
    high, clock = controller(priority=200, name="a")
    hear(high, clock, beat("b", priority=100))
    assert high._promotion_reason() == "election"
    tie, clock = controller(priority=100, name="a")  # equal priorities: the lower name
    hear(tie, clock, beat("b", priority=100))
    assert tie._promotion_reason() == "election"


def test_a_standby_takes_over_from_a_dead_or_unhealthy_master_only() -> None:
    c, clock = controller()
    hear(c, clock, beat(role="master", epoch=4, priority=300))
    assert c._promotion_reason() is None
    hear(c, clock, beat(role="master", epoch=4, priority=300, healthy=False, seq=2))
    assert c._promotion_reason() == "peer_unhealthy"
    hear(c, clock, beat(role="master", epoch=4, priority=300, seq=3))
    clock.now += 1.01  # every path silent for dead_after
    assert c._promotion_reason() == "peer_dead"


def test_no_promotion_while_unhealthy_isolated_held_or_within_the_flapping_guard() -> None:
    c, clock = controller(min_switch_interval=10.0)
    clock.now += 5
    c.last_switch_at = clock.now - 3
    assert c._promotion_reason() is None
    clock.now += 8
    assert c._promotion_reason() == "peer_dead"
    c.isolated = True
    assert c._promotion_reason() is None
    c.isolated, c.hold_until = False, clock.now + 1
    assert c._promotion_reason() is None


def test_when_two_masters_meet_the_lower_epoch_steps_down_then_priority_then_name() -> None:
    c, _ = controller(priority=100, name="a")
    c.epoch = 5
    assert c._peer_wins(beat(role="master", epoch=6, priority=1))
    assert not c._peer_wins(beat(role="master", epoch=4, priority=900))
    assert c._peer_wins(beat(role="master", epoch=5, priority=200))
    assert not c._peer_wins(beat("b", role="master", epoch=5, priority=100))


def test_controller_config_errors_name_the_key() -> None:
    names = parser_names()
    with pytest.raises(ConfigError, match=r"controller\.lease"):
        config_from_dict({"controller": {"lease": 1.0, "dead_after": 1.0}}, names)
    with pytest.raises(ConfigError, match=r"controller\.paths\.x\.peer"):
        config_from_dict({"controller": {"paths": {"x": {"local": "127.0.0.1:1", "peer": "nope"}}}}, names)
    with pytest.raises(ConfigError, match=r"dedup\.store"):
        validate_for_controller(config_from_dict({}, names))


def test_the_arbiter_gives_the_vote_to_one_node_until_its_vote_runs_out() -> None:
    clock = Clock()
    arbiter = Arbiter(KEY, vote_lease=2.0, monotonic=clock, wall=clock)
    assert arbiter.decide("a", 3)
    assert not arbiter.decide("b", 4)  # a holds it: a full cut of the heartbeat paths gives one master
    clock.now += 1.5
    assert arbiter.decide("a", 3)  # a renewal
    clock.now += 1.9
    assert not arbiter.decide("b", 4)
    clock.now += 0.2  # a stopped renewing 2 s ago: its vote ran out
    assert arbiter.decide("b", 4) and arbiter.vote.holder == "b" and arbiter.vote.epoch == 4


def test_the_arbiter_answers_sealed_requests_and_ignores_forged_and_replayed_ones() -> None:
    clock = Clock()
    arbiter = Arbiter(KEY, vote_lease=2.0, monotonic=clock, wall=clock)
    a, b = Sealer(KEY, "a"), Sealer(KEY, "b")
    request = a.seal(clock.now, op="vote", epoch=1)
    reply = open_sealed(KEY, arbiter.answer(request) or b"")
    assert reply is not None and (reply["granted"], reply["holder"], reply["seq"]) == (True, "a", 1)
    assert arbiter.answer(request) is None  # replayed
    assert arbiter.answer(Sealer(b"forged", "b").seal(clock.now, op="vote", epoch=9)) is None
    refused = open_sealed(KEY, arbiter.answer(b.seal(clock.now, op="vote", epoch=2)) or b"")
    assert refused is not None and (refused["granted"], refused["holder"]) == (False, "a")


def test_notify_hooks_get_old_role_new_role_and_epoch_and_failures_are_counted(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    good, bad, slow = tmp_path / "good", tmp_path / "bad", tmp_path / "slow"
    good.write_text(f'#!/bin/sh\necho "$1 $2 $3" >> {seen}\n')
    bad.write_text("#!/bin/sh\nexit 3\n")
    slow.write_text("#!/bin/sh\nsleep 10\n")
    for hook in (good, bad, slow):
        hook.chmod(0o755)
    c, _ = controller(notify=(str(good), str(bad), str(slow), str(tmp_path / "missing")), notify_timeout=0.2)
    asyncio.run(c._notify("standby", "master", 4))
    assert seen.read_text() == "standby master 4\n"
    assert c.notify_failures == 3  # exit 3, killed after the timeout, cannot run


def test_back_from_isolation_the_peer_is_dead_only_after_dead_after_of_silence_from_then() -> None:
    c, clock = controller()
    hear(c, clock, beat(role="master"))
    clock.now += 5
    c.witnesses_ok = False  # cut from the peer and from the witness
    c.update_isolation()
    assert c.isolated and c._promotion_reason() is None
    c.witnesses_ok = True  # the cut heals; the peer's heartbeats are on their way
    c.update_isolation()
    assert not c.isolated and c._promotion_reason() is None
    clock.now += 1.01  # still silent a full dead_after later: dead
    assert c._promotion_reason() == "peer_dead"


def test_a_master_back_from_isolation_renews_its_term_only_once_it_heard_its_peer_or_its_silence() -> None:
    """netns, master isolated: back from the cut, a renewed its own term before b's first heartbeat
    arrived, and forwarded at epoch 1 what b had forwarded at epoch 2 (1,085 events under new ids)."""
    c, clock = controller()
    c.role = "master"
    hear(c, clock, beat(role="standby"))
    assert not c.back_from_isolation()
    clock.now += 5
    c.witnesses_ok = False
    c.update_isolation()
    c.witnesses_ok = True  # healed; b promoted meanwhile, its heartbeats are on their way
    c.update_isolation()
    assert c.back_from_isolation()
    hear(c, clock, beat(role="master", epoch=2, seq=2))
    assert not c.back_from_isolation()  # b heard: two masters, the lower epoch steps down
    c.witnesses_ok = False
    c.update_isolation()
    clock.now += 5
    c.witnesses_ok = True
    c.update_isolation()
    clock.now += 1.01  # still silent a full dead_after later: the peer is dead, a goes on
    assert not c.back_from_isolation()


def test_rates_are_per_second_over_the_last_span_and_begin_again_when_the_gateway_restarts() -> None:
    rates = Rates(span=2.0)
    assert rates.per_second() is None
    for i in range(11):  # 0.5 s apart: 1,000 received and 900 forwarded per second
        rates.add(i * 0.5, 500 * i, 450 * i)
    assert rates.per_second() == {"received": 1000.0, "forwarded": 900.0}
    rates.add(5.5, 10, 0)  # counters back to zero: a new process
    assert rates.per_second() is None
    rates.add(6.0, 110, 50)
    assert rates.per_second() == {"received": 200.0, "forwarded": 100.0}
