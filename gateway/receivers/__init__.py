"""Receivers, registered by the `type` of their config table.

A receiver is built from its config and an `Intake`, binds in `start()` (a
bind failure is a `ListenError`), feeds its intake, and closes in `stop()`.
A new transport is one module plus one entry in `RECEIVERS`.
"""

from __future__ import annotations

from typing import Protocol

from gateway.config import ReceiverConfig
from gateway.pipeline import Intake
from gateway.receivers.http import HttpReceiver
from gateway.receivers.snmp import SnmpReceiver
from gateway.receivers.tcp import TcpReceiver
from gateway.receivers.udp import UdpReceiver


class Receiver(Protocol):
    """One listening socket feeding one intake."""

    intake: Intake

    async def start(self) -> str:
        """Bind and start serving; return a line saying where it listens."""
        ...

    async def stop(self) -> None:
        """Stop taking input; what was received stays in the intake."""
        ...


RECEIVERS: dict[str, type[UdpReceiver] | type[TcpReceiver] | type[HttpReceiver] | type[SnmpReceiver]] = {
    "udp": UdpReceiver,
    "tcp": TcpReceiver,
    "http": HttpReceiver,
    "snmp": SnmpReceiver,
}


def build_receiver(config: ReceiverConfig, intake: Intake) -> Receiver:
    """The receiver for `config.type`, feeding `intake`."""
    return RECEIVERS[config.type](config, intake)
