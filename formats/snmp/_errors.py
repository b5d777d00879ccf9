"""The SNMP layer's typed rejects, all `FormatError` subclasses.

`reason` is a stable token. The USM ones match the usmStats counters of
RFC 3414 (`unknown_user_name`, `wrong_digest`, ...), so a metric labelled by
reason reads like the MIB an SNMP operator already knows.
"""

from __future__ import annotations

from formats._base import FormatError


class SnmpError(FormatError):
    """Any SNMP message trapgate does not accept.

    `reply` is the datagram to send back to the sender when the protocol asks
    for one (a Report PDU for a reportable v3 message), else None.
    """

    reason = "malformed"
    reply: bytes | None = None

    def __init__(self, message: str, reason: str | None = None, reply: bytes | None = None) -> None:
        super().__init__(message, reason)
        self.reply = reply


class BerError(SnmpError):
    """The bytes are not a well-formed SNMP message (BER or structure)."""


class AccessError(SnmpError):
    """A well-formed message that the community list or USM refuses."""


class DiscoveryError(AccessError):
    """A v3 message refused so that its sender learns this engine's id or
    its boots and time (RFC 3414 section 4): reason `unknown_engine_id` or
    `not_in_time_window`, and always a Report to send back.

    A sender goes through this before its first inform to this engine and
    again whenever its notion of the engine's time is stale, so a caller
    counts it like any refusal but need not keep the datagram as bad input.
    """
