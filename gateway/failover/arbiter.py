"""The arbiter: a third party that gives the master vote to one node of the pair at a time.

Strategy: `trapgate witness` runs on a third host (like corosync-qnetd for a
two-node cluster). A controller asks it for the vote with an HMAC-sealed
request naming its node and epoch; the arbiter grants the vote when nobody
holds it, when the holder's vote ran out (`vote_lease` after its last
renewal), or to the holder itself (a renewal), and refuses it otherwise. With
an arbiter, a standby that lost its peer promotes only once it holds the vote,
and a master keeps its term only while it holds the vote or hears its peer
(two nodes that hear each other need no third); so a cut of every
heartbeat path while both nodes reach the arbiter leaves one master. The
vote lease is longer than the gateway's lease: a master that lost both the
peer and the arbiter has stopped forwarding before the vote can pass on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import ListenError
from gateway.failover._heartbeat import Opener, seal

log = logging.getLogger(__name__)


@dataclass
class Vote:
    """Who holds the master vote, for which epoch, until when (the arbiter's monotonic clock)."""

    holder: str = ""
    epoch: int = 0
    until: float = -math.inf


class Arbiter:
    """Grants the master vote to one node at a time (see the module docstring)."""

    def __init__(self, key: bytes, vote_lease: float, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.key = key
        self.vote_lease = vote_lease
        self.monotonic = monotonic
        self.wall = wall
        self.vote = Vote()
        self.opener = Opener(key, "arbiter")

    def decide(self, node: str, epoch: int) -> bool:
        """Give `node` the vote for `epoch` if it is free, ran out, or is `node`'s already."""
        now = self.monotonic()
        vote = self.vote
        if vote.holder in ("", node) or now >= vote.until:
            if vote.holder != node:
                log.warning("master vote: %s (epoch %d), was %s", node, epoch, vote.holder or "nobody")
            self.vote = Vote(node, max(epoch, vote.epoch), now + self.vote_lease)
            return True
        return False

    def answer(self, datagram: bytes) -> bytes | None:
        """The sealed reply to a sealed vote request, or None for a datagram that must change nothing."""
        request = self.opener.open_fields(datagram, self.wall(), "votes")
        if request is None:
            return None
        granted = self.decide(request["node"], int(request["epoch"]))
        return seal(self.key, {"seq": request["seq"], "node": request["node"], "granted": granted,
                               "holder": self.vote.holder, "epoch": self.vote.epoch})


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, arbiter: Arbiter) -> None:
        self.arbiter = arbiter
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.arbiter.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def run_arbiter(host: str, port: int, key: bytes, vote_lease: float) -> None:
    """Serve votes on UDP `host`:`port` until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(Arbiter(key, vote_lease)),
                                                           local_addr=(host, port))
    except OSError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc  # uvloop wraps the reason
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        raise ListenError("arbiter", f"{host}:{port}", reason.lower()) from None
    log.warning("arbiter on %s:%d, vote lease %.1fs", host, port, vote_lease)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
    transport.close()
