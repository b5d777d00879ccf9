"""The controller of one node: heartbeats, health, isolation, election, lease renewal.

Strategy: every `heartbeat` seconds the controller reads its gateway's role
(`GET /status`), sends a heartbeat on every path, and decides:

* as master, it renews its gateway's term (`POST /role master` with `lease`)
  unless the node is isolated (peer and every witness lost: the lease runs
  out), or it hands over: to a healthy standby when its own node is not
  healthy, or to the peer when both are masters and the peer wins (higher
  epoch, then priority, then the lower name);
* as standby, it promotes its gateway when the peer is dead (every path
  silent for `dead_after`), or is a master that reports itself unhealthy, or
  when both are standby and this node is preferred (priority, then name);
  never while its own node is unhealthy or isolated, never before `settle`
  at start unless it has heard the peer, never within `min_switch_interval`
  of the last switch (the flapping guard).

The gateway's term is shorter than the peer's `dead_after`, so a dead or
paused controller never leaves a master forwarding after the peer takes
over. A live controller cut off from its peer must stop its gateway in time
too, however the cut falls (one direction or both, whichever heartbeat was
last): each heartbeat acknowledges the newest one received from the peer,
and while the peer is heard a term ends at most `dead_after - heartbeat`
after this node sent the last heartbeat the peer acknowledged. The peer,
which counts `dead_after` from its receipt of that heartbeat or a later one,
promotes only after the term has ended (`term_allowed`). A switch runs as a
task; heartbeats go on meanwhile. Health checks run on their own interval
and count as failing only after `fail_after` failures in a row, so an
overloaded master whose answers are slow is not deposed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway._http import serve_app
from gateway.config import Config, parse_address
from gateway.failover import _health as health
from gateway.failover._heartbeat import Beat, Opener, Sealer, open_sealed

log = logging.getLogger(__name__)

_RELEASE_HOLD = 10.0  # seconds a node that released the master role for a switch-back does not promote
_SENT_KEPT = 64  # heartbeats whose send times are kept for the peer's acknowledgements
_SHORTEST_TERM = 0.05  # seconds: a term that would end sooner is not granted


class _PathProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable: the peer is down
        pass


class _VoteReplies(asyncio.DatagramProtocol):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.controller._vote_reply(data)

    def error_received(self, exc: Exception) -> None:  # the arbiter is down: the request times out
        pass



class Rates:
    """Events per second into the gateway's HA stage and forwarded by it, over the last `span`
    seconds of its counters as the controller reads them."""

    def __init__(self, span: float = 5.0) -> None:
        self.span = span
        self._samples: deque[tuple[float, int, int]] = deque()  # (when, received, sent)

    def add(self, at: float, received: int, sent: int) -> None:
        samples = self._samples
        if samples and (received < samples[-1][1] or sent < samples[-1][2]):
            samples.clear()  # the gateway restarted: its counters began again
        samples.append((at, received, sent))
        while len(samples) > 2 and samples[1][0] <= at - self.span:
            samples.popleft()

    def per_second(self) -> dict[str, float] | None:
        """{"received": ..., "forwarded": ...}, or None before two readings."""
        if len(self._samples) < 2:
            return None
        (t0, r0, s0), (t1, r1, s1) = self._samples[0], self._samples[-1]
        elapsed = t1 - t0
        if elapsed <= 0:
            return None
        return {"received": round((r1 - r0) / elapsed, 1), "forwarded": round((s1 - s0) / elapsed, 1)}

class Controller:
    """The failover controller of the node whose config is `config` (see the module docstring)."""

    def __init__(self, config: Config, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.c = c = config.controller
        self.node = config.node.name
        self.admin = config.admin.address
        self.token = config.ha.token
        self.monotonic = monotonic
        self.wall = wall
        key = c.key.encode()
        self.sealer = Sealer(key, self.node)
        self.opener = Opener(key, self.node)
        self.peer: Beat | None = None
        self.heard: dict[str, float] = {}  # path -> when a heartbeat last arrived on it (monotonic)
        self.gateway: dict[str, Any] | None = None  # the gateway's /status role, None while unreachable
        self.gateway_gauges: dict[str, Any] = {}  # the gateway's gauges, last read
        self.rates = Rates()
        self.role = "unknown"
        self.epoch = 0
        self.witnesses_ok: bool | None = None  # None: no witness configured
        self.witnesses_seen_at = -math.inf  # when the last witness round that reached one began
        self._witness_failures = 0  # witness rounds in a row that reached none
        self._witness_every, self._witness_fail_after = self._check_timing("witnesses", 1)
        # When this node sent the newest heartbeat the peer acknowledged (monotonic), and the send
        # times of the recent ones by seq.
        self.acked_at = -math.inf
        self._sent: OrderedDict[int, float] = OrderedDict()
        self.started_at = monotonic()
        self.last_switch_at = -math.inf
        self.hold_until = 0.0
        self.hear_from = -math.inf  # the peer's silence before this does not count (see update_isolation)
        self.switchovers: Counter[str] = Counter()
        self.notify_failures = 0
        self.isolated = False
        self._switch: asyncio.Task[None] | None = None
        self._switching_to = ""  # the role `_switch` asks for
        self._switch_reason = ""  # why, until the switch is counted
        self._transports: dict[str, asyncio.DatagramTransport] = {}
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.checks: list[health.Checked] = []
        self.redis: dict[str, object] = {}  # the local Redis's replication role and offset, last seen
        self._reported: set[str] = set()
        # The arbiter's vote: held until (monotonic), and the requests waiting for a reply, by seq.
        self.vote_until = -math.inf
        self.vote_holder = ""
        self._arbiter: asyncio.DatagramTransport | None = None
        self._votes: dict[int, asyncio.Future[bool]] = {}
        # The TCP session path: the server for the peer's session, and this node's session to the peer.
        self._tcp_server: asyncio.Server | None = None
        self._tcp_out: asyncio.StreamWriter | None = None

    # -- start and stop --------------------------------------------------------

    async def start(self) -> None:
        """Bind the heartbeat paths and the status API, and start the loops."""
        c = self.c
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        loop = asyncio.get_running_loop()
        for name, path in c.paths.items():
            host, port = parse_address(f"controller.paths.{name}.local", path.local)
            transport, _ = await loop.create_datagram_endpoint(
                lambda name=name: _PathProtocol(lambda data: self._received(name, data)),  # type: ignore[misc]
                local_addr=(host, port))
            self._transports[name] = transport
        if c.arbiter:
            host, port = parse_address("controller.arbiter", c.arbiter)
            self._arbiter, _ = await loop.create_datagram_endpoint(lambda: _VoteReplies(self),
                                                                   remote_addr=(host, port))
        redis = self.config.redis
        spool_dir = Path(self.config.ha.spool).resolve().parent
        checks = {
            "gateway": health.gateway_health(self._session, self.admin),
            "redis": health.redis_ping(redis.local, lambda: self.role == "master", self.redis,
                                       password=redis.password or None, username=redis.username or None),
            "data_dir": health.data_dir(spool_dir, c.min_free_mb),
        }
        if c.interfaces:
            checks["interfaces"] = health.interfaces(c.interfaces)
        if c.floating_ip:
            checks["floating_ip"] = health.floating_ip(c.floating_ip)
        for name, check in checks.items():
            self.checks.append(health.Checked(name, check, *self._check_timing(name, c.fail_after)))
        app = web.Application()
        app.router.add_get("/status", self._status_page)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_post("/release", self._release_page)
        app.router.add_post("/switch-back", self._switch_back_page)
        self._runner = await serve_app(app, "controller.status", c.status)
        self._tasks = [loop.create_task(self._beat_loop()),
                       *(loop.create_task(self._check_loop(ch)) for ch in self.checks)]
        if c.tcp is not None:
            host, port = parse_address("controller.tcp.local", c.tcp.local)
            self._tcp_server = await asyncio.start_server(self._tcp_serve, host, port, reuse_address=True)
            self._tasks.append(loop.create_task(self._tcp_connect_loop()))
        if c.witnesses:
            self._tasks.append(loop.create_task(self._witness_loop()))
        log.warning("controller of %s: priority %d, paths %s, settle %.1fs", self.node, c.priority,
                    ", ".join(self._path_names()), c.settle)

    async def stop(self) -> None:
        """Stop the loops and close everything (the gateway's term then runs out by itself)."""
        for task in [*self._tasks, *([self._switch] if self._switch else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for transport in [*self._transports.values(), *([self._arbiter] if self._arbiter else [])]:
            transport.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._tcp_out is not None:
            self._tcp_out.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- heartbeats ----------------------------------------------------------------

    def _received(self, path: str, data: bytes) -> None:
        beat = self.opener.open(data, self.wall(), path)
        if beat is not None:
            self.heard[path] = self.monotonic()
            peer = self.peer
            if peer is None or peer.boot != beat.boot or beat.seq > peer.seq:
                self.peer = beat  # the newest, whichever path brought it first
            if beat.acked_boot == self.sealer.boot:
                self.acked_at = max(self.acked_at, self._sent.get(beat.acked, -math.inf))

    def _path_names(self) -> list[str]:
        return [*self.c.paths, *(["tcp"] if self.c.tcp is not None else [])]

    def peer_alive(self) -> bool:
        """True while a heartbeat arrived on some path within `dead_after`."""
        now = self.monotonic()
        return any(now - at < self.c.dead_after for at in self.heard.values())

    def healthy(self) -> bool:
        """Every health check passes (the floating IP only matters on a master)."""
        return all(ch.ok for ch in self.checks if ch.name != "floating_ip" or self.role == "master")

    def _send_heartbeats(self) -> None:
        lease = None if self.gateway is None else self.gateway.get("lease_remaining")
        peer = self.peer
        datagram = self.sealer.seal(self.wall(), role=self.role, epoch=self.epoch, priority=self.c.priority,
                                    healthy=self.healthy(), isolated=self.isolated, lease=lease,
                                    acked_boot=peer.boot if peer else "", acked=peer.seq if peer else 0)
        self._sent[self.sealer.seq] = self.monotonic()
        if len(self._sent) > _SENT_KEPT:
            self._sent.popitem(last=False)
        for name, path in self.c.paths.items():
            host, port = parse_address(f"controller.paths.{name}.peer", path.peer)
            with contextlib.suppress(OSError):
                self._transports[name].sendto(datagram, (host, port))
        if self._tcp_out is not None and not self._tcp_out.is_closing():
            self._tcp_out.write(len(datagram).to_bytes(2, "big") + datagram)

    # -- the TCP session path ----------------------------------------------------------

    async def _tcp_connect_loop(self) -> None:
        """Keep a session to the peer's TCP path open; heartbeats go on it too (length-prefixed)."""
        assert self.c.tcp is not None
        host, port = parse_address("controller.tcp.peer", self.c.tcp.peer)
        while True:
            try:
                async with asyncio.timeout(self.c.dead_after):
                    _, writer = await asyncio.open_connection(host, port)
                self._tcp_out = writer
                await writer.wait_closed()
            except (OSError, TimeoutError):
                pass
            self._tcp_out = None
            await asyncio.sleep(self.c.heartbeat)

    async def _tcp_serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the peer's session: each heartbeat is a 2-byte length and a sealed datagram.

        A cancelled read (the session torn down under it) ends the session quietly: asyncio's
        server would otherwise log the handler's CancelledError with a traceback.
        """
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                self._received("tcp", await reader.readexactly(size))
        except (asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    # -- the loops -----------------------------------------------------------------

    async def _beat_loop(self) -> None:
        while True:
            started = self.monotonic()
            try:
                await self.tick()
            except Exception:  # the loop must outlive a bug in one tick
                log.exception("controller tick failed")
            await asyncio.sleep(max(0.0, self.c.heartbeat - (self.monotonic() - started)))

    async def _check_loop(self, check: health.Checked) -> None:
        while True:
            await check.run()
            self._report_change(f"check {check.name}", check.ok, check.last_error)
            await asyncio.sleep(check.every)

    async def _witness_loop(self) -> None:
        timeout = min(0.5, self.c.dead_after / 2)
        every = self._witness_every
        while True:
            began = self.monotonic()
            seen = await asyncio.gather(*(health.reachable(w, timeout) for w in self.c.witnesses))
            self.witnesses_seen(any(seen), began)
            await asyncio.sleep(every)

    def _check_timing(self, name: str, fail_after: int) -> tuple[float, int]:
        """(every, fail_after) of check `name`: its [controller.checks.NAME] values where set, else
        `health_every` and `fail_after`."""
        own = self.c.checks.get(name)
        return (own.every if own is not None and own.every else self.c.health_every,
                own.fail_after if own is not None and own.fail_after else fail_after)

    def witnesses_seen(self, ok: bool, began: float) -> None:
        """The result of a witness round that began at `began` (monotonic): the witnesses count as
        lost after `fail_after` failed rounds in a row ([controller.checks.witnesses]; 1 unless set,
        so that isolation shows within `dead_after`)."""
        self._witness_failures = 0 if ok else self._witness_failures + 1
        self.witnesses_ok = self._witness_failures < self._witness_fail_after
        self._report_change("witnesses", self.witnesses_ok, "none reached")
        if ok:
            self.witnesses_seen_at = max(self.witnesses_seen_at, began)

    def _report_change(self, what: str, ok: bool, detail: str = "") -> None:
        """One log line when a condition changes, not one per tick."""
        if ok and what in self._reported:
            self._reported.discard(what)
            log.warning("%s: ok again", what)
        elif not ok and what not in self._reported:
            self._reported.add(what)
            log.warning("%s: failing%s", what, f" ({detail})" if detail else "")

    # -- one tick ------------------------------------------------------------------

    async def tick(self) -> None:
        """Read the gateway's role, heartbeat, decide (see the module docstring)."""
        await self._read_gateway()
        self.update_isolation()
        self._report_change("isolation (peer and every witness lost)", not self.isolated)
        self._send_heartbeats()
        if self._switch is not None and not self._switch.done():
            if self._switching_to == "master" and self.role == "master":
                await self._renew_while_promoting()
            return
        if self.role == "master":
            await self._as_master()
        elif self.role == "standby":
            reason = self._promotion_due()
            # The vote only matters when the peer is silent: two nodes that hear each other agree.
            if reason is not None and (reason != "peer_dead" or await self._ask_vote()):
                self._start_switch("master", reason)

    def update_isolation(self) -> None:
        """Isolated: the peer and every witness lost. Back from it, the peer's heartbeats may be on
        their way: the peer counts as dead only after `dead_after` of silence from then."""
        was_isolated = self.isolated
        self.isolated = not self.peer_alive() and self.witnesses_ok is False
        if was_isolated and not self.isolated:
            self.hear_from = self.monotonic()

    async def _read_gateway(self) -> None:
        old = self.role
        try:
            state = await self._admin("GET", "/status", timeout=max(0.1, self.c.heartbeat * 2))
            self.gateway = state["role"]
            self.gateway_gauges = state.get("gauges", {})
            stage = state.get("components", {}).get("ha", {})
            self.rates.add(self.monotonic(), int(stage.get("received", 0)), int(stage.get("sent", 0)))
        except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError):
            self.gateway = None
        gateway_ok = next((ch.ok for ch in self.checks if ch.name == "gateway"), True)
        if self.gateway is not None:
            self.role, self.epoch = str(self.gateway["role"]), int(self.gateway["epoch"])
        elif not gateway_ok:
            self.role = "unknown"
        if self.role != old:
            log.warning("gateway role: %s -> %s (epoch %d)", old, self.role, self.epoch)
            if self._switch is not None and not self._switch.done() and self.role == self._switching_to:
                self._switched()  # the role is taken; a promotion may still be flushing
            if old != "unknown" or self.role == "master":
                asyncio.get_running_loop().create_task(self._notify(old, self.role, self.epoch))

    # -- the arbiter -----------------------------------------------------------------

    async def _ask_vote(self) -> bool:
        """Ask the arbiter for the master vote (a renewal when this node holds it); True if granted."""
        if self._arbiter is None:
            return True
        asked_at = self.monotonic()
        datagram = self.sealer.seal(self.wall(), op="vote", epoch=self.epoch)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._votes[self.sealer.seq] = answer
        self._arbiter.sendto(datagram)
        try:
            async with asyncio.timeout(max(0.05, self.c.heartbeat * 0.75)):
                granted = await answer
        except TimeoutError:
            granted = False
        finally:
            self._votes.pop(self.sealer.seq, None)
        if granted:
            self.vote_until = asked_at + self.c.vote_lease
        self._report_change("arbiter vote", granted or self.role != "master", self.vote_holder)
        return granted

    def _vote_reply(self, data: bytes) -> None:
        fields = open_sealed(self.c.key.encode(), data)
        if fields is None or fields.get("node") != self.node:
            return
        self.vote_holder = str(fields.get("holder", ""))
        answer = self._votes.get(int(fields.get("seq", -1)))
        if answer is not None and not answer.done():
            answer.set_result(bool(fields.get("granted")))

    def holds_vote(self) -> bool:
        """True without an arbiter, or while the arbiter's vote for this node is valid."""
        return self._arbiter is None or self.monotonic() < self.vote_until

    def back_from_isolation(self) -> bool:
        """True while a node that was isolated has not heard its peer again, for up to `dead_after`
        after the cut healed: the peer may have taken over meanwhile (unfenced, when it could not
        reach this node's Redis), and its heartbeats are on their way."""
        return not self.peer_alive() and self.monotonic() - self.hear_from < self.c.dead_after

    async def _as_master(self) -> None:
        peer = self.peer if self.peer_alive() else None
        if self.isolated or self.back_from_isolation():
            return  # no renewal: the lease runs out and the gateway stops forwarding
        await self._ask_vote()
        if not self.holds_vote() and peer is None:
            return  # the vote is not this node's and the peer is silent: let the lease run out
        if peer is not None and peer.role == "master" and self._peer_wins(peer):
            self._start_switch("standby", "two_masters")
        elif not self.healthy() and peer is not None and peer.role == "standby" and peer.healthy \
                and not peer.isolated:
            self._start_switch("standby", "unhealthy")
        elif self.healthy() or self.gateway is not None:
            await self._renew()

    def term_allowed(self) -> float:
        """Seconds the gateway's next term may last (0: no renewal now).

        While the peer is heard: at most until `dead_after - heartbeat` after
        this node sent the newest heartbeat the peer acknowledged (see the
        module docstring). Once the peer has been silent for `dead_after` it
        is dead or this node is cut off: a full `lease` again, but with
        witnesses configured only once a witness round that began after the
        silence (and a heartbeat more) reached one, so a stale witness result
        never renews a node that is in fact isolated.
        """
        c, now = self.c, self.monotonic()
        if self.peer_alive():
            term = min(c.lease, self.acked_at + c.dead_after - c.heartbeat - now)
        elif self.witnesses_ok is not None and \
                self.witnesses_seen_at < max(self.heard.values(), default=-math.inf) + c.heartbeat:
            term = 0.0
        else:
            term = c.lease
        return term if term >= _SHORTEST_TERM else 0.0

    async def _renew(self) -> None:
        """Grant the gateway the master role for another term (`term_allowed`), if any."""
        term = self.term_allowed()
        self._report_change("term renewal", term > 0,
                            "the peer has not acknowledged a recent heartbeat: the term runs out")
        if not term:
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self._admin("POST", "/role", {"role": "master", "lease": round(term, 3)},
                              timeout=max(0.1, self.c.lease / 2))

    async def _renew_while_promoting(self) -> None:
        """The gateway is master already but still flushes what it held (its POST /role has not
        returned): its first term must not run out meanwhile. Renewed as a master's is, unless this
        node is isolated or has lost the arbiter's vote."""
        if self.isolated or self.back_from_isolation() or (
                self._arbiter is not None and not await self._ask_vote()):
            return
        await self._renew()

    def _promotion_reason(self) -> str | None:
        c = self.c
        now = self.monotonic()
        if not self.healthy() or self.isolated or now < self.hold_until:
            return None
        if now - self.last_switch_at < c.min_switch_interval:
            return None
        if not self.peer_alive():
            if self.peer is None and now - self.started_at < c.settle:
                return None  # at start: give the peer `settle` to show up
            if now - self.hear_from < c.dead_after:
                return None
            return "peer_dead"
        peer = self.peer
        assert peer is not None
        if peer.role == "master":
            return "peer_unhealthy" if not peer.healthy else None
        if not peer.healthy:
            return "peer_unhealthy"
        if (c.priority, _name_rank(self.node)) > (peer.priority, _name_rank(peer.node)):
            return "election"
        return None

    def _promotion_due(self) -> str | None:
        """Why to promote now (`_promotion_reason`), once a first term may be granted too."""
        reason = self._promotion_reason()
        return reason if reason is not None and self.term_allowed() else None

    def _peer_wins(self, peer: Beat) -> bool:
        """Both are masters: the lower epoch steps down; ties by priority, then the lower name."""
        mine = (self.epoch, self.c.priority, _name_rank(self.node))
        theirs = (peer.epoch, peer.priority, _name_rank(peer.node))
        return theirs > mine

    # -- switching -----------------------------------------------------------------

    def _start_switch(self, role: str, reason: str) -> None:
        self._switching_to, self._switch_reason = role, reason
        self._switch = asyncio.get_running_loop().create_task(self._do_switch(role, reason))

    def _switched(self) -> None:
        """Count the switch in flight once: when the gateway shows the role, or its POST returns."""
        if self._switch_reason:
            self.last_switch_at = self.monotonic()
            self.switchovers[self._switch_reason] += 1
            self._switch_reason = ""

    async def _do_switch(self, role: str, reason: str) -> None:
        log.warning("switching this node to %s (%s)", role, reason)
        term = self.term_allowed()
        if role == "master" and not term:
            log.warning("not switching to master (%s): no term may be granted now", reason)
            return
        body = {"role": role, "lease": round(term, 3) if role == "master" else None}
        try:
            state = await self._admin("POST", "/role", body, timeout=60.0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.error("the gateway did not switch to %s: %s", role, exc)
            return
        self.gateway = state
        self.role, self.epoch = state.get("role", self.role), int(state.get("epoch", self.epoch))
        if self.role != role:  # e.g. fenced while it flushed: decided again at the next tick
            log.warning("the gateway is %s at epoch %d after switching to %s (%s)", self.role, self.epoch,
                        role, reason)
            return
        self._switched()
        log.warning("this node is %s at epoch %d (%s)", self.role, self.epoch, reason)

    async def _admin(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 2.0,
                     address: str | None = None) -> Any:
        """Call a gateway's (or a controller's) admin API; raises aiohttp.ClientError on an HTTP error."""
        assert self._session is not None
        url = f"http://{address or self.admin}{path}"
        async with self._session.request(
            method, url, json=body, headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as reply:
            data = await reply.json(content_type=None)
            if reply.status != 200:
                raise aiohttp.ClientResponseError(reply.request_info, (), status=reply.status,
                                                  message=str(data.get("error", data)))
            return data

    async def _notify(self, old: str, new: str, epoch: int) -> None:
        """Run each notify hook as `HOOK OLD_ROLE NEW_ROLE EPOCH`; a failure is logged and counted."""
        for command in self.c.notify:
            try:
                proc = await asyncio.create_subprocess_exec(command, old, new, str(epoch))
            except OSError as exc:
                self.notify_failures += 1
                log.error("notify hook %s cannot run: %s", command, exc.strerror or exc)
                continue
            try:
                async with asyncio.timeout(self.c.notify_timeout):
                    code = await proc.wait()
            except TimeoutError:
                proc.kill()
                code = await proc.wait()
                log.error("notify hook %s took longer than %.1fs; killed", command, self.c.notify_timeout)
            if code != 0:
                self.notify_failures += 1
                log.error("notify hook %s exited %d", command, code)

    # -- the status API ------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    async def _release_page(self, request: web.Request) -> web.Response:
        """The peer asks for the master role back: hold off promotion, step the gateway down gracefully."""
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong token"}, status=401)
        self.hold_until = self.monotonic() + _RELEASE_HOLD
        if self._switch is not None and not self._switch.done():
            await self._switch
        try:
            state = await self._admin("POST", "/role", {"role": "standby", "lease": None}, timeout=60.0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response({"error": f"the gateway did not step down: {exc}"}, status=503)
        self.role = state.get("role", self.role)
        self.last_switch_at = self.monotonic()
        self.switchovers["released"] += 1
        return web.json_response(state)

    async def _switch_back_page(self, request: web.Request) -> web.Response:
        """Take the master role back online: the peer steps down at a barrier, then this node promotes."""
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong token"}, status=401)
        if not self.c.peer_status:
            return web.json_response({"error": "controller.peer_status is not configured"}, status=409)
        if self.role == "master":
            return web.json_response(self.status())
        if not self.healthy():
            return web.json_response({"error": "this node is not healthy"}, status=409)
        self.hold_until = 0.0
        try:
            await self._admin("POST", "/release", timeout=60.0, address=self.c.peer_status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"the peer did not release the master role: {exc}"
            return web.json_response({"error": error}, status=503)
        self._start_switch("master", "switch_back")
        assert self._switch is not None
        await self._switch
        return web.json_response(self.status())

    def status(self) -> dict[str, Any]:
        """What GET /status shows."""
        now = self.monotonic()
        peer = self.peer
        return {
            "node": self.node,
            "role": self.role,
            "epoch": self.epoch,
            "isolated": self.isolated,
            "healthy": self.healthy(),
            "health": {**{ch.name: ch.ok for ch in self.checks}, "witnesses": self.witnesses_ok},
            "lease_remaining": None if self.gateway is None else self.gateway.get("lease_remaining"),
            "pending": None if self.gateway is None else self.gateway.get("pending"),
            "rates": self.rates.per_second(),
            "spool": {"batches": self.gateway_gauges.get("spool_batches"),
                      "bytes": self.gateway_gauges.get("spool_bytes")},
            "redis": self.redis,
            "peer": {
                "node": peer.node if peer else None,
                "alive": self.peer_alive(),
                "role": peer.role if peer else None,
                "epoch": peer.epoch if peer else None,
                "healthy": peer.healthy if peer else None,
                "lease": peer.lease if peer else None,
                "paths": {name: (round(now - self.heard[name], 3) if name in self.heard else None)
                          for name in self._path_names()},
            },
            "arbiter": None if self._arbiter is None else {"holds_vote": self.holds_vote(),
                                                            "holder": self.vote_holder},
            "switchovers": sum(self.switchovers.values()),
            "switchovers_by_reason": dict(self.switchovers),
            "heartbeats_rejected": dict(self.opener.rejected),
        }

    async def _status_page(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _metrics_page(self, request: web.Request) -> web.Response:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Metrics(self))
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _name_rank(name: str) -> tuple[int, ...]:
    """Orders names so that the lower name ranks higher (ties between equal priorities)."""
    return tuple(-ord(ch) for ch in name)


class _Metrics(Collector):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def collect(self) -> Any:
        c = self.controller
        now = c.monotonic()
        yield GaugeMetricFamily("trapgate_role", "1 while this node's gateway is master.",
                                value=1.0 if c.role == "master" else 0.0)
        yield GaugeMetricFamily("trapgate_epoch", "The epoch of this node's gateway.", value=c.epoch)
        switches = CounterMetricFamily("trapgate_switchovers", "Role switches this controller made.",
                                       labels=["reason"])
        for reason, n in sorted(c.switchovers.items()):
            switches.add_metric([reason], n)
        yield switches
        ages = GaugeMetricFamily("trapgate_heartbeat_age_seconds", "Since the peer's last heartbeat.",
                                 labels=["path"])
        for name in c._path_names():
            ages.add_metric([name], now - c.heard[name] if name in c.heard else math.inf)
        yield ages
        checks = GaugeMetricFamily("trapgate_health_check", "1 while a health check passes.",
                                   labels=["check"])
        for ch in c.checks:
            checks.add_metric([ch.name], 1.0 if ch.ok else 0.0)
        yield checks
        remaining = (c.gateway or {}).get("lease_remaining") or 0.0
        yield GaugeMetricFamily("trapgate_lease_remaining_seconds",
                                "Forwarding time left on the gateway's lease.", value=float(remaining))
        yield CounterMetricFamily("trapgate_notify_failures", "Notify hooks that failed.",
                                  value=c.notify_failures)
        rejected = CounterMetricFamily("trapgate_heartbeats_rejected", "Heartbeats dropped, by reason.",
                                       labels=["reason"])
        for reason, n in sorted(c.opener.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected


async def run_controller(config: Config) -> None:
    """Run the controller of `config`'s node until SIGINT or SIGTERM."""
    import signal

    controller = Controller(config)
    await controller.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await controller.stop()
