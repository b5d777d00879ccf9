"""UDP receiver: one datagram, one message."""

from __future__ import annotations

import asyncio
import socket

from gateway.config import ReceiverConfig
from gateway.pipeline import Intake
from gateway.receivers._sockets import bind_socket, kernel_drops


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, intake: Intake) -> None:
        self.datagram_received = intake.add  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected socket say nothing about our input.
        pass


class UdpReceiver:
    """Datagrams from a bound UDP socket into an intake.

    The kernel's own drop counter for the socket (full receive buffer) is
    exported as the `kernel` drop reason of this receiver.
    """

    def __init__(self, config: ReceiverConfig, intake: Intake) -> None:
        self.config = config
        self.intake = intake
        self.rcvbuf = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> str:
        """Bind and start reading; return where it listens."""
        name = f"receivers.{self.intake.name}"
        sock = bind_socket(name, self.config.address, socket.SOCK_DGRAM, self.config.rcvbuf)
        self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.intake.counters.live_drops = lambda: {"kernel": kernel_drops(sock)}
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self.intake), sock=sock
        )
        return (
            f"{self.intake.parser.name} udp://{self.config.address} "
            f"(receiver {self.intake.name}, rcvbuf {self.rcvbuf})"
        )

    async def stop(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()
