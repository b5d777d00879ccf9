"""UDP receiver: one datagram, one message; a readable socket is drained in one call per batch.

Strategy: the socket is watched with `loop.add_reader`; each time it is
readable, up to a batch of datagrams is moved into the intake in one go:
with the compiled `_recvmmsg` module, by one recvmmsg(2) system call that
also carries the kernel's drop counter (SO_RXQ_OVFL); without it (no
compiler at install, not Linux, or TRAPGATE_PURE set), by `recv_batch_pure`,
its Python twin, one recvfrom per datagram. Either way there is one event
loop wakeup per batch instead of one callback per datagram.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from gateway.config import ReceiverConfig
from gateway.pipeline import Intake, RawItem
from gateway.receivers._sockets import bind_socket, kernel_drops

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
BATCH = 256  # datagrams moved per readable event at most
MAX_DATAGRAM = 65535


def recv_batch_pure(sock: socket.socket, max_msgs: int, max_size: int, received_at: float,
                    into: list[RawItem]) -> tuple[int, int]:
    """The Python twin of `_recvmmsg.recv_batch`: up to `max_msgs` datagrams from the
    non-blocking `sock` appended to `into` as (payload, peer, received_at); (count, -1)."""
    got = 0
    recvfrom = sock.recvfrom
    while got < max_msgs:
        try:
            data, peer = recvfrom(max_size)
        except (BlockingIOError, InterruptedError):
            break
        into.append((data, peer, received_at))
        got += 1
    return got, -1


def _compiled() -> Callable[[int, int, int, float, list[RawItem]], tuple[int, int]] | None:
    if os.environ.get("TRAPGATE_PURE"):
        return None
    try:
        from gateway.receivers._recvmmsg import recv_batch
    except ImportError:
        return None
    return recv_batch


recv_batch_compiled = _compiled()


class UdpReceiver:
    """Datagrams from a bound UDP socket into an intake.

    The kernel's own drop counter for the socket (full receive buffer) is
    exported as the `kernel` drop reason of this receiver.
    """

    def __init__(self, config: ReceiverConfig, intake: Intake) -> None:
        self.config = config
        self.intake = intake
        self.rcvbuf = 0
        self._sock: socket.socket | None = None
        self._kernel_drops = -1  # as the newest datagram carried it (SO_RXQ_OVFL); -1: not known
        self._receive: Callable[[list[RawItem], float], int] = lambda into, now: 0

    async def start(self) -> str:
        """Bind and start reading; return where it listens."""
        name = f"receivers.{self.intake.name}"
        sock = bind_socket(name, self.config.address, socket.SOCK_DGRAM, self.config.rcvbuf)
        self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._sock = sock
        compiled = recv_batch_compiled
        if compiled is not None:
            with contextlib.suppress(OSError):  # without it the counter is read from /proc
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            fd = sock.fileno()

            def receive(into: list[RawItem], now: float) -> int:
                got, drops = compiled(fd, BATCH, MAX_DATAGRAM, now, into)
                if drops >= 0:
                    self._kernel_drops = drops
                return got
        else:
            def receive(into: list[RawItem], now: float) -> int:
                return recv_batch_pure(sock, BATCH, MAX_DATAGRAM, now, into)[0]
        self._receive = receive
        self.intake.counters.live_drops = lambda: {
            "kernel": self._kernel_drops if self._kernel_drops >= 0 else kernel_drops(sock)}
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        return (
            f"{self.intake.parser.name} udp://{self.config.address} "
            f"(receiver {self.intake.name}, rcvbuf {self.rcvbuf}, "
            f"{'recvmmsg' if compiled is not None else 'recvfrom'})"
        )

    def _readable(self) -> None:
        try:
            self.intake.add_received(self._receive)
        except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: nothing about our input
            self.intake.counters.errors[f"socket_{exc.errno}"] += 1

    async def stop(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
