"""SNMP receiver: notifications over UDP, with the replies the senders wait for.

Strategy: the socket path is the UDP receiver's (one append per datagram);
decoding runs per batch in the pipeline through `formats.snmp.SnmpReceiver`,
and the reply it returns (the Response to an inform, a Report for engine
discovery or a refused v3 message) is sent from there, a few milliseconds
after the datagram arrived. Both nodes of a pair answer informs; only the
master forwards. snmpEngineBoots is kept in a small file and incremented at
every start, as RFC 3414 asks, so that informs keep working across restarts.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from formats import Event, Peer
from formats.snmp import SnmpError
from formats.snmp import SnmpReceiver as SansIoReceiver
from gateway._snmp_config import snmp_config
from gateway.config import ReceiverConfig
from gateway.errors import GatewayError
from gateway.pipeline import Intake
from gateway.receivers._sockets import bind_socket, kernel_drops

_MAX_BOOTS = 2**31 - 1


def next_engine_boots(path: Path) -> int:
    """Read, increment and store snmpEngineBoots; 1 when the file is new."""
    try:
        boots = int(path.read_text().strip() or 0) + 1
    except FileNotFoundError:
        boots = 1
    except (OSError, ValueError) as exc:
        raise GatewayError(f"cannot read SNMP engine boots from {path}: {exc}") from None
    boots = min(boots, _MAX_BOOTS)
    try:
        path.write_text(f"{boots}\n")
    except OSError as exc:
        raise GatewayError(f"cannot write SNMP engine boots to {path}: {exc.strerror}") from None
    return boots


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, intake: Intake) -> None:
        self.datagram_received = intake.add  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        pass


class SnmpReceiver:
    """SNMP v1/v2c/v3 notifications from a UDP socket into an intake."""

    def __init__(self, config: ReceiverConfig, intake: Intake) -> None:
        self.config = config
        self.intake = intake
        self._sansio: SansIoReceiver | None = None
        self._transport: asyncio.DatagramTransport | None = None

    def _decode(self, data: bytes, peer: Peer, received_at: float) -> Event | None:
        assert self._sansio is not None
        try:
            event, reply = self._sansio.handle(data, peer, received_at)
        except SnmpError as exc:
            if exc.reply is not None:
                self._send(exc.reply, peer)
            raise
        if reply is not None:
            self._send(reply, peer)
        return event

    def _send(self, reply: bytes, peer: Peer) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, peer)
            self.intake.counters.replies += 1

    async def start(self) -> str:
        """Bind and start reading; return where it listens."""
        name = f"receivers.{self.intake.name}"
        snmp = snmp_config(self.intake.name, self.config, self.intake.pipeline.node)
        boots = next_engine_boots(Path(self.config.engine_boots_file))
        self._sansio = SansIoReceiver(snmp, engine_boots=boots)
        self.intake.decode = self._decode
        sock = bind_socket(name, self.config.address, socket.SOCK_DGRAM, self.config.rcvbuf)
        self.intake.counters.live_drops = lambda: {"kernel": kernel_drops(sock)}
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self.intake), sock=sock
        )
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        return (
            f"snmp udp://{self.config.address} (receiver {self.intake.name}, "
            f"engine id {snmp.engine_id.hex()}, boots {boots}, rcvbuf {rcvbuf})"
        )

    async def stop(self) -> None:
        """Close the socket once the pipeline has had its last replies to send."""
        if self._transport is not None:
            self._transport.close()
