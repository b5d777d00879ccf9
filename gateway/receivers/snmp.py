"""SNMP receiver: notifications over UDP, with the replies the senders wait for.

Strategy: the socket path is the UDP receiver's (one append per datagram);
decoding runs per batch in the pipeline through `formats.snmp.SnmpReceiver`,
and the reply it returns (the Response to an inform, a Report for engine
discovery or a refused v3 message) is sent from there, a few milliseconds
after the datagram arrived. Refusals are counted by reason and quarantined
by the pipeline, except engine discovery and time synchronisation: every v3
inform sender goes through them, so they are counted here and not kept.
Both nodes of a pair answer informs; only the master forwards.
snmpEngineBoots is kept in a small file and incremented at every start, as
RFC 3414 asks, so that informs keep working across restarts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from formats import Event, Peer
from formats.snmp import DiscoveryError, SnmpError
from formats.snmp import SnmpReceiver as SansIoReceiver
from gateway._ratelog import RateLimited
from gateway._snmp_config import snmp_config
from gateway.errors import GatewayError
from gateway.receivers.udp import UdpReceiver

_MAX_BOOTS = 2**31 - 1
_report = RateLimited(logging.getLogger(__name__))


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


class SnmpReceiver(UdpReceiver):
    """SNMP v1/v2c/v3 notifications from a UDP socket into an intake."""

    _sansio: SansIoReceiver

    def _decode(self, data: bytes, peer: Peer, received_at: float) -> Event | None:
        try:
            event, reply = self._sansio.handle(data, peer, received_at)
        except SnmpError as exc:
            if exc.reply is not None:
                self._send(exc.reply, peer)
            if not isinstance(exc, DiscoveryError):
                raise
            self.intake.counters.errors[exc.reason] += 1
            return None
        if reply is not None:
            self._send(reply, peer)
        return event

    def _send(self, reply: bytes, peer: Peer) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(reply, peer)
        except OSError as exc:  # a full send buffer, an unreachable sender: the reply is lost
            self.intake.counters.errors["reply_not_sent"] += 1
            _report(logging.WARNING, "reply", "cannot send an SNMP reply to %s: %s", peer[0], exc.strerror)
            return
        self.intake.counters.replies += 1

    async def start(self) -> str:
        """Bind and start reading; return where it listens."""
        snmp = snmp_config(self.intake.name, self.config, self.intake.pipeline.node)
        boots = next_engine_boots(Path(self.config.engine_boots_file))
        self._sansio = SansIoReceiver(snmp, engine_boots=boots)
        self.intake.decode = self._decode
        listening = await super().start()
        return f"{listening}, engine id {snmp.engine_id.hex()}, boots {boots}"
