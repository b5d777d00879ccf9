"""From a decoded notification to an `Event`: fields, source and identity.

Strategy: v1 traps are mapped per RFC 3584 so that a v1 trap and its v2c
translation (by a proxy on another path) have equal identities. Identity is
(source, snmpTrapOID, sysUpTime, varbind bytes), where the varbind bytes are
the canonical raw TLVs of the bindings minus sysUpTime.0, snmpTrapOID.0 and
the three that RFC 3584 translation appends. Hashing raw bytes is exact and
is cheaper than hashing decoded values (DESIGN.md section 3). Each `Binding`
arrives with its printable row and canonical TLV already made (and cached
with it), so an event is mostly lists of what the bindings hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from formats._base import Event, Peer
from formats.snmp._ber import IP_ADDRESS, TIMETICKS, TRAP_V1
from formats.snmp._decoded import CommunityMessage, Pdu, V3Message
from formats.snmp._errors import BerError

if TYPE_CHECKING:
    from formats.snmp._receiver import SnmpConfig

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
SNMP_TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
SNMP_TRAP_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"
SNMP_TRAPS = "1.3.6.1.6.3.1.1.5"
_TRANSLATION_ADDED = frozenset({SNMP_TRAP_ADDRESS, SNMP_TRAP_COMMUNITY, SNMP_TRAP_ENTERPRISE})

SOURCE_RULES = ("agent_addr", "trap_address", "engine_id", "peer")
"""The source rules, in their default order."""

_PDU_NAMES = {TRAP_V1: "trap", 0xA7: "trap", 0xA6: "inform"}
_VERSIONS = {0: "1", 1: "2c"}


def build_event(
    config: SnmpConfig,
    msg: CommunityMessage | V3Message,
    pdu: Pdu,
    engine_id: bytes | None,
    data: bytes,
    peer: Peer,
    received_at: float,
) -> Event:
    """The Event for a trap or inform `pdu` of `msg` that passed access checks.

    `data` is the datagram; `engine_id` is the v3 sending device's engine id
    (None for v1/v2c). The event names the community or the v3 user.
    """
    if isinstance(msg, V3Message):
        version, principal, name = "3", "user", msg.user
    else:
        version, principal, name = _VERSIONS[msg.version], "community", msg.community
    bindings = pdu.varbinds
    if pdu.tag == TRAP_V1:
        trap_oid = _v1_trap_oid(pdu)
        uptime = pdu.timestamp
        agent_addr: str | None = pdu.agent_addr
    else:
        if (
            len(bindings) < 2
            or bindings[0].name != SYS_UPTIME
            or bindings[0].tag != TIMETICKS
            or bindings[1].name != SNMP_TRAP_OID
            or not isinstance(bindings[1].value, str)
        ):
            raise BerError("notification does not start with sysUpTime.0, snmpTrapOID.0", "bad_notification")
        uptime = bindings[0].value  # type: ignore[assignment]
        trap_oid = bindings[1].value
        bindings = bindings[2:]
        agent_addr = None
    kept = [binding.tlv for binding in bindings if binding.name not in _TRANSLATION_ADDED]
    trap_address: str | None = None
    if len(kept) != len(bindings):
        for binding in bindings:
            if binding.name == SNMP_TRAP_ADDRESS and binding.tag == IP_ADDRESS:
                trap_address = binding.value  # type: ignore[assignment]
    engine_hex = engine_id.hex() if engine_id else None
    if agent_addr or trap_address or engine_hex:
        source, rule = _source(
            config.source_order, agent_addr, trap_address, engine_hex, config.engine_sources, peer[0]
        )
    else:
        source, rule = peer[0], "peer"  # what every order of the rules comes to
    fields: dict[str, Any] = {
        "version": version,
        "pdu": _PDU_NAMES[pdu.tag],
        principal: name.decode("utf-8", "backslashreplace"),
        "engine_id": engine_hex,
        "trap_oid": trap_oid,
        "uptime": uptime,
        "agent_addr": agent_addr,
        "source": source,
        "source_rule": rule,
        "varbinds": [[*binding.row] for binding in bindings],
    }
    if pdu.tag == TRAP_V1:
        fields["enterprise"] = pdu.enterprise
    identity = (source, trap_oid, uptime, b"".join(kept))
    return Event("snmp", peer, received_at, fields, data, identity)


def _v1_trap_oid(pdu: Pdu) -> str:
    # RFC 3584 3.1 (1): enterpriseSpecific -> enterprise.0.specific, else snmpTraps.(generic+1)
    if pdu.generic_trap == 6:
        return f"{pdu.enterprise}.0.{pdu.specific_trap}"
    return f"{SNMP_TRAPS}.{pdu.generic_trap + 1}"


def _source(
    order: Sequence[str],
    agent_addr: str | None,
    trap_address: str | None,
    engine_hex: str | None,
    engine_sources: Mapping[str, str],
    peer_host: str,
) -> tuple[str, str]:
    for rule in order:
        if rule == "agent_addr":
            if agent_addr and agent_addr != "0.0.0.0":
                return agent_addr, rule
        elif rule == "trap_address":
            if trap_address:
                return trap_address, rule
        elif rule == "engine_id":
            if engine_hex:
                return engine_sources.get(engine_hex, engine_hex), rule
        elif rule == "peer":
            return peer_host, rule
    return peer_host, "peer"
