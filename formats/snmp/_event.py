"""From a decoded notification to an `Event`: fields, source and identity.

Strategy: v1 traps are mapped per RFC 3584 so that a v1 trap and its v2c
translation (by a proxy on another path) have equal identities. Identity is
(source, snmpTrapOID, sysUpTime, varbind bytes), where the varbind bytes are
the canonical raw TLVs of the bindings minus sysUpTime.0, snmpTrapOID.0 and
the three that RFC 3584 translation appends. Hashing raw bytes is exact and
is cheaper than hashing decoded values (DESIGN.md section 3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from formats._base import Event, Peer
from formats.snmp._ber import (
    IP_ADDRESS,
    OCTET_STRING,
    OPAQUE,
    TIMETICKS,
    TRAP_V1,
    TYPE_NAMES,
    Pdu,
    Value,
)
from formats.snmp._errors import BerError

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
SNMP_TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
SNMP_TRAP_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"
SNMP_TRAPS = "1.3.6.1.6.3.1.1.5"
_TRANSLATION_ADDED = frozenset({SNMP_TRAP_ADDRESS, SNMP_TRAP_COMMUNITY, SNMP_TRAP_ENTERPRISE})

SOURCE_RULES = ("agent_addr", "trap_address", "engine_id", "peer")
"""The source rules, in their default order."""

_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e\t\r\n]")
_PDU_NAMES = {TRAP_V1: "trap", 0xA7: "trap", 0xA6: "inform"}


def printable(tag: int, value: Value) -> tuple[str, Value]:
    """(type name, printable value) of one decoded varbind value.

    OCTET STRING is text when it is printable ASCII or UTF-8, else its hex
    digits under the type name "Hex-STRING" (Net-SNMP's convention), so a
    reader can tell "00ff" the text from 00 ff the octets. Opaque is hex.
    """
    if isinstance(value, bytes):
        if tag == OCTET_STRING:
            text = _text(value)
            if text is not None:
                return "OCTET STRING", text
            return "Hex-STRING", value.hex()
        return TYPE_NAMES[tag], value.hex()
    return TYPE_NAMES[tag], value


def _text(value: bytes) -> str | None:
    if _NOT_PRINTABLE.search(value) is None:
        return value.decode("ascii")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return text
    return None


def build_event(
    *,
    version: str,
    pdu: Pdu,
    principal: tuple[str, str],
    engine_id: bytes | None,
    data: bytes,
    peer: Peer,
    received_at: float,
    source_order: Sequence[str],
    engine_sources: Mapping[str, str],
) -> Event:
    """The Event for a trap or inform PDU that passed access checks.

    `principal` is ("community", text) or ("user", name); `engine_id` is the
    v3 sending device's engine id (None for v1/v2c).
    """
    varbinds = pdu.varbinds
    if pdu.tag == TRAP_V1:
        trap_oid = _v1_trap_oid(pdu)
        uptime = pdu.timestamp
        first = 0
        agent_addr: str | None = pdu.agent_addr
    else:
        if (
            len(varbinds) < 2
            or varbinds[0][0] != SYS_UPTIME
            or varbinds[0][1] != TIMETICKS
            or varbinds[1][0] != SNMP_TRAP_OID
            or not isinstance(varbinds[1][2], str)
        ):
            raise BerError("notification does not start with sysUpTime.0, snmpTrapOID.0", "bad_notification")
        uptime = varbinds[0][2]  # type: ignore[assignment]
        trap_oid = varbinds[1][2]
        first = 2
        agent_addr = None
    shown = [
        [oid, *printable(tag, value)] if tag in (OCTET_STRING, OPAQUE) else [oid, TYPE_NAMES[tag], value]
        for oid, tag, value in varbinds[first:]
    ]
    keep: Sequence[int] = range(first, len(varbinds))
    added = [i for i in keep if varbinds[i][0] in _TRANSLATION_ADDED]
    trap_address: str | None = None
    if added:
        keep = [i for i in keep if i not in added]
        for oid, tag, value in (varbinds[i] for i in added):
            if oid == SNMP_TRAP_ADDRESS and tag == IP_ADDRESS:
                trap_address = value  # type: ignore[assignment]
    engine_hex = engine_id.hex() if engine_id else None
    source, rule = _source(source_order, agent_addr, trap_address, engine_hex, engine_sources, peer[0])
    fields: dict[str, Any] = {
        "version": version,
        "pdu": _PDU_NAMES[pdu.tag],
        principal[0]: principal[1],
        "engine_id": engine_hex,
        "trap_oid": trap_oid,
        "uptime": uptime,
        "agent_addr": agent_addr,
        "source": source,
        "source_rule": rule,
        "varbinds": shown,
    }
    if pdu.tag == TRAP_V1:
        fields["enterprise"] = pdu.enterprise
    identity = (source, trap_oid, uptime, pdu.identity_varbinds(keep))
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
