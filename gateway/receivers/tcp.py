"""TCP receiver: a stream per connection, cut into frames (RFC 6587)."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from formats import Peer
from formats.framing import FramingError, SyslogStreamDecoder
from gateway.config import ReceiverConfig
from gateway.pipeline import Intake
from gateway.receivers._sockets import bind_socket


class _Connection(asyncio.Protocol):
    def __init__(self, receiver: TcpReceiver) -> None:
        self.receiver = receiver
        self.intake = receiver.intake
        self.decoder = SyslogStreamDecoder(receiver.config.max_frame)
        self.peer: Peer = ("", 0)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else ("", 0)
        if len(self.receiver.connections) >= self.receiver.config.max_connections:
            self.intake.counters.dropped["too_many_connections"] += 1
            transport.abort()
            return
        self.receiver.connections.add(self)

    def _take(self, frames: list[bytes | FramingError]) -> None:
        add = self.intake.add
        for frame in frames:
            if isinstance(frame, FramingError):
                self.intake.reject(self.peer, frame, b"")
            else:
                add(frame, self.peer)

    def data_received(self, data: bytes) -> None:
        self._take(self.decoder.feed(data))
        if self.decoder.broken and self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        self._take(self.decoder.close())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver.connections.discard(self)


class TcpReceiver:
    """Framed messages from TCP connections into an intake.

    Octet counting or LF/NUL framing is detected per connection; a frame
    over `max_frame` is rejected (counted, quarantined) and, where the stream
    cannot be resynchronized, the connection is closed.
    """

    def __init__(self, config: ReceiverConfig, intake: Intake) -> None:
        self.config = config
        self.intake = intake
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        """Bind, listen and accept; return where it listens."""
        name = f"receivers.{self.intake.name}"
        sock = bind_socket(name, self.config.address, socket.SOCK_STREAM, self.config.rcvbuf)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=512)
        return f"{self.intake.parser.name} tcp://{self.config.address} (receiver {self.intake.name})"

    async def stop(self) -> None:
        """Stop accepting and close every connection after its last frame."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn._take(conn.decoder.close())
            if conn.transport is not None:
                conn.transport.close()
