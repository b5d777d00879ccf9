"""The controller's parts without a network: heartbeats, election rules, its config."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from formats import parser_names
from gateway.config import (
    CheckConfig,
    Config,
    ControllerConfig,
    PathConfig,
    config_from_dict,
    validate_for_controller,
)
from gateway.errors import ConfigError
from gateway.failover._health import Checked
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
    """`peer` arrives now, acknowledging the heartbeat `c` sent last (now)."""
    c.peer, c.heard["p"], c.acked_at = peer, clock.now, clock.now


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


class Captured:
    """A heartbeat path's transport that keeps what is sent on it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent.append(data)


def exchange(sender: Controller, receiver: Controller) -> None:
    """`sender` sends one heartbeat; it reaches `receiver`."""
    path = Captured()
    sender._transports = {"p": path}  # type: ignore[dict-item]
    sender._send_heartbeats()
    receiver._received("p", path.sent[-1])


@pytest.mark.parametrize("cut", ["both ways", "a to b only"])
def test_a_masters_term_ends_before_its_peer_may_promote_however_the_cut_falls(cut: str) -> None:
    """netns, master isolated: a's controller renewed full terms until it saw itself isolated
    (1.02 s after the cut), b promoted 1.54 s after it: both gateways held a lease at once."""
    clock = Clock()
    a, _ = controller(name="a")
    b, _ = controller(name="b", priority=50)
    a.monotonic = b.monotonic = clock  # type: ignore[method-assign]
    a.role = "master"
    for _ in range(5):  # heartbeats both ways every 0.2 s: each acknowledges the other's
        exchange(a, b)
        exchange(b, a)
        a.witnesses_seen(True, clock.now)
        b.witnesses_seen(True, clock.now)
        clock.now += 0.2
    assert a.term_allowed() == pytest.approx(0.6)  # the last acknowledged heartbeat went 0.2 s ago
    term_ends = clock.now + a.term_allowed()
    cut_at = clock.now
    while b._promotion_due() is None:  # every 10 ms: a renews what it may, b waits for dead_after
        clock.now += 0.01
        if round((clock.now - cut_at) * 100) % 20 == 0:  # a heartbeat tick
            if cut == "a to b only":
                exchange(b, a)  # b's heartbeats still arrive, acknowledging nothing new
            else:
                a.witnesses_seen(False, clock.now)  # cut off from its witness too: isolated
            b.witnesses_seen(True, clock.now)
            a.update_isolation()
            if not a.isolated and a.term_allowed():
                term_ends = max(term_ends, clock.now + a.term_allowed())
        assert clock.now - cut_at < 2.0, "b never promoted"
    assert term_ends < clock.now, (term_ends - cut_at, clock.now - cut_at)


def test_a_master_whose_peer_went_silent_renews_only_after_a_witness_answered_since() -> None:
    c, clock = controller()
    c.role = "master"
    hear(c, clock, beat())
    c.witnesses_seen(True, clock.now)
    clock.now += c.c.dead_after + 0.01  # the peer is silent: dead, or this node is cut off
    assert c.term_allowed() == 0.0  # the witness was last reached before the silence
    c.witnesses_seen(True, clock.now - 0.05)  # a round that began after the silence reached it
    assert c.term_allowed() == c.c.lease
    c.witnesses_seen(False, clock.now)
    c.update_isolation()
    assert c.isolated


def test_a_standby_whose_own_check_fails_never_promotes_whatever_its_master_does() -> None:
    """The loopback pair: b's Redis stopped, then a's gateway killed: b stays standby until its
    Redis answers again."""
    answers = [False, False, False]

    async def redis_answers() -> bool:
        return answers.pop(0) if answers else True

    redis = Checked("redis", redis_answers, every=0.2, fail_after=3)
    c, clock = controller()
    c.checks = [redis]
    for _ in range(3):
        assert c.healthy()  # one slow answer, or two, is not a failing check
        asyncio.run(redis.run())
    assert not redis.ok and not c.healthy()
    hear(c, clock, beat(role="unknown", epoch=4, priority=300, healthy=False))  # its gateway died
    assert c._promotion_reason() is None
    clock.now += 1.01  # then its controller: every path silent
    assert c._promotion_reason() is None
    asyncio.run(redis.run())  # the Redis answers again
    assert c._promotion_reason() == "peer_dead"
    hear(c, clock, beat(role="unknown", epoch=4, priority=300, healthy=False, seq=2))
    assert c._promotion_reason() == "peer_unhealthy"


def metrics_samples(c: Controller) -> dict[str, float]:
    """The controller's /metrics page as `name` or `name{label="value"}` -> value."""
    reply = asyncio.run(c._metrics_page(make_mocked_request("GET", "/metrics")))
    assert isinstance(reply.body, bytes)
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return samples


def test_the_tcp_session_path_is_one_more_path_in_the_status_and_the_metrics() -> None:
    c, clock = controller(tcp=PathConfig("127.0.0.2:7401", "127.0.0.3:7401"))
    c._received("tcp", Sealer(b"k", "b").seal(clock.now, **STATE))
    clock.now += 0.25
    assert c.peer_alive() and c.peer is not None and c.peer.node == "b"
    assert c.status()["peer"]["paths"] == {"p": None, "tcp": 0.25}
    samples = metrics_samples(c)
    assert samples['trapgate_heartbeat_age_seconds{path="tcp"}'] == pytest.approx(0.25)
    assert samples['trapgate_heartbeat_age_seconds{path="p"}'] == float("inf")


def test_the_metrics_page_shows_role_epoch_switchovers_health_and_lease() -> None:
    async def passes() -> bool:
        return True

    c, _ = controller()
    c.checks = [Checked("gateway", passes, every=0.2, fail_after=3)]
    c.role, c.epoch, c.gateway = "master", 3, {"role": "master", "epoch": 3, "lease_remaining": 0.5}
    c.switchovers["election"] += 1
    samples = metrics_samples(c)
    assert (samples["trapgate_role"], samples["trapgate_epoch"]) == (1.0, 3.0)
    assert samples['trapgate_switchovers_total{reason="election"}'] == 1.0
    assert samples['trapgate_health_check{check="gateway"}'] == 1.0
    assert samples["trapgate_lease_remaining_seconds"] == 0.5
    c.role, c.gateway = "standby", {"role": "standby", "epoch": 3, "lease_remaining": None}
    samples = metrics_samples(c)
    assert (samples["trapgate_role"], samples["trapgate_lease_remaining_seconds"]) == (0.0, 0.0)


def test_witnesses_count_as_lost_after_their_own_failure_threshold() -> None:
    c, clock = controller(checks={"witnesses": CheckConfig(every=0.5, fail_after=2)})
    c.witnesses_seen(False, clock.now)
    assert c.witnesses_ok  # one failed round of two
    c.witnesses_seen(False, clock.now)
    assert c.witnesses_ok is False
    c.witnesses_seen(True, clock.now)
    assert c.witnesses_ok and c.witnesses_seen_at == clock.now
    d, _ = controller()
    d.witnesses_seen(False, clock.now)
    assert d.witnesses_ok is False  # by default the first failed round counts
