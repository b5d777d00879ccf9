"""pysnmp as the reference: encode messages with it, decode them with it.

Both sides of the differential tests reduce a message to the same plain
shape (`Decoded`), so equality of two `Decoded` values means both decoders
read the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.entity import config, engine
from pysnmp.proto import api, rfc1905
from pysnmp.proto.api import v1, v2c
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from formats.snmp._message import CommunityMessage, Pdu, V3Message, decode_message, decode_scoped_pdu
from formats.snmp._usm import Usm, UsmUser

AUTH = {
    None: config.USM_AUTH_NONE,
    "MD5": config.USM_AUTH_HMAC96_MD5,
    "SHA": config.USM_AUTH_HMAC96_SHA,
    "SHA-224": config.USM_AUTH_HMAC128_SHA224,
    "SHA-256": config.USM_AUTH_HMAC192_SHA256,
    "SHA-384": config.USM_AUTH_HMAC256_SHA384,
    "SHA-512": config.USM_AUTH_HMAC384_SHA512,
}
PRIV = {
    None: config.USM_PRIV_NONE,
    "DES": config.USM_PRIV_CBC56_DES,
    "AES": config.USM_PRIV_CFB128_AES,
    "AES-192": config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES-256": config.USM_PRIV_CFB256_AES_BLUMENTHAL,
    "AES-192-C": config.USM_PRIV_CFB192_AES,
    "AES-256-C": config.USM_PRIV_CFB256_AES,
}
SENDER_ENGINE = bytes.fromhex("80000000011234567890")
RECEIVER_ENGINE = bytes.fromhex("8000000004747261706761746531")
DOMAIN = (1, 3, 6, 1, 6, 1, 1)
ADDRESS = ("127.0.0.1", 162)


@dataclass
class Decoded:
    """What a decoder read from one message."""

    version: int
    principal: bytes  # community or user name
    engine_id: bytes | None
    pdu_tag: int
    request_id: int
    varbinds: list[tuple[str, int, Any]]
    trap_v1: tuple[Any, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _tag(value: Any) -> int:
    tag = value.tagSet[-1]
    return int(tag.tagClass | tag.tagFormat | tag.tagId)


def plain_value(value: Any) -> tuple[int, Any]:
    """(tag, python value) of a pysnmp value, in our decoder's conventions."""
    tag = _tag(value)
    if tag in (0x04, 0x44):
        return tag, bytes(value.asOctets())
    if tag == 0x40:
        return tag, ".".join(str(n) for n in value.asNumbers())
    if tag == 0x06:
        return tag, str(value)
    if tag in (0x05, 0x80, 0x81, 0x82):
        return tag, None
    return tag, int(value)


def _plain_varbinds(varbinds: Any) -> list[tuple[str, int, Any]]:
    return [(str(oid), *plain_value(value)) for oid, value in varbinds]


def oids() -> st.SearchStrategy[str]:
    """Dotted OIDs with every first-arc form and sub-identifiers up to 2**32-1."""
    arc = st.one_of(st.integers(0, 200), st.integers(0, 2**32 - 1))
    first = st.one_of(
        st.tuples(st.integers(0, 1), st.integers(0, 39)),
        st.tuples(st.just(2), st.integers(0, 2**32 - 81)),
    )
    return st.builds(lambda head, tail: ".".join(map(str, (*head, *tail))), first, st.lists(arc, max_size=20))


def values(v1: bool = False) -> st.SearchStrategy[Any]:
    """pysnmp values of every type a varbind may carry (in v1 if `v1`)."""
    u32 = st.integers(0, 2**32 - 1)
    common = [
        st.integers(-(2**31), 2**31 - 1).map(v2c.Integer32),
        st.binary(max_size=300).map(v2c.OctetString),
        st.text(max_size=40).map(lambda s: v2c.OctetString(s.encode())),
        st.builds(lambda: v2c.Null("")),
        oids().map(v2c.ObjectIdentifier),
        st.binary(min_size=4, max_size=4).map(v2c.IpAddress),
        u32.map(v2c.Counter32),
        u32.map(v2c.Gauge32),
        u32.map(v2c.TimeTicks),
        st.binary(max_size=40).map(v2c.Opaque),
    ]
    if v1:
        return st.one_of(common)
    return st.one_of(
        *common,
        st.integers(0, 2**64 - 1).map(v2c.Counter64),
        st.integers(0, 2).map(
            lambda i: (rfc1905.noSuchObject, rfc1905.noSuchInstance, rfc1905.endOfMibView)[i]
        ),
    )


def varbind_lists(max_size: int = 12, v1: bool = False) -> st.SearchStrategy[list[tuple[str, Any]]]:
    """Varbind lists for any PDU (a v1 Trap-PDU if `v1`)."""
    return st.lists(st.tuples(oids(), values(v1)), max_size=max_size)


def notification_varbinds(uptime: int, trap_oid: str, rest: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """sysUpTime.0 and snmpTrapOID.0 followed by `rest`."""
    return [
        ("1.3.6.1.2.1.1.3.0", v2c.TimeTicks(uptime)),
        ("1.3.6.1.6.3.1.1.4.1.0", v2c.ObjectIdentifier(trap_oid)),
        *rest,
    ]


def encode_v1_trap(
    community: bytes, enterprise: str, agent: str, generic: int, specific: int, stamp: int, varbinds: Any
) -> bytes:
    """A v1 Trap-PDU message, encoded by pysnmp."""
    msg = v1.Message()
    v1.apiMessage.set_defaults(msg)
    v1.apiMessage.set_community(msg, community)
    pdu = v1.TrapPDU()
    v1.apiTrapPDU.set_defaults(pdu)
    v1.apiTrapPDU.set_enterprise(pdu, enterprise)
    v1.apiTrapPDU.set_agent_address(pdu, agent)
    v1.apiTrapPDU.set_generic_trap(pdu, generic)
    v1.apiTrapPDU.set_specific_trap(pdu, specific)
    v1.apiTrapPDU.set_timestamp(pdu, stamp)
    v1.apiTrapPDU.set_varbinds(pdu, varbinds)
    v1.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def encode_v2c(community: bytes, inform: bool, request_id: int, varbinds: Any) -> bytes:
    """A v2c SNMPv2-Trap or InformRequest message, encoded by pysnmp."""
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    pdu = v2c.InformRequestPDU() if inform else v2c.TrapPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_varbinds(pdu, varbinds)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def pysnmp_decode_community(data: bytes) -> Decoded:
    """pysnmp's reading of a v1/v2c message."""
    version = int(api.decodeMessageVersion(data))
    module = api.PROTOCOL_MODULES[version]
    msg, _ = decoder.decode(data, asn1Spec=module.Message())
    pdu = module.apiMessage.get_pdu(msg)
    community = bytes(module.apiMessage.get_community(msg).asOctets())
    if version == 0 and _tag(pdu) == 0xA4:
        trap = module.apiTrapPDU
        v1_fields = (
            str(trap.get_enterprise(pdu)),
            ".".join(str(n) for n in trap.get_agent_address(pdu).asNumbers()),
            int(trap.get_generic_trap(pdu)),
            int(trap.get_specific_trap(pdu)),
            int(trap.get_timestamp(pdu)),
        )
        return Decoded(0, community, None, 0xA4, 0, _plain_varbinds(trap.get_varbinds(pdu)), v1_fields)
    return Decoded(
        version,
        community,
        None,
        _tag(pdu),
        int(module.apiPDU.get_request_id(pdu)),
        _plain_varbinds(module.apiPDU.get_varbinds(pdu)),
    )


def _our_varbinds(pdu: Pdu) -> list[tuple[str, int, Any]]:
    return [(binding.name, binding.tag, binding.value) for binding in pdu.varbinds]


def our_decode(data: bytes, usm: Usm | None = None) -> Decoded:
    """Our reading of any message; v3 goes through `usm` (auth, decryption)."""
    msg = decode_message(data)
    if isinstance(msg, CommunityMessage):
        pdu = msg.pdu
        v1_fields = None
        if pdu.tag == 0xA4:
            v1_fields = (pdu.enterprise, pdu.agent_addr, pdu.generic_trap, pdu.specific_trap, pdu.timestamp)
        return Decoded(
            msg.version, msg.community, None, pdu.tag, pdu.request_id, _our_varbinds(pdu), v1_fields
        )
    assert isinstance(msg, V3Message) and usm is not None
    _, keys = usm.authenticate(msg, "127.0.0.1")
    if keys is not None and msg.flags & 0x02:
        plain = usm.decrypt(keys, msg)
        scoped = decode_scoped_pdu(plain, 0, len(plain), padded=True)
    else:
        scoped = decode_scoped_pdu(msg.buf, msg.data_offset, msg.data_stop, padded=False)
    return Decoded(
        3,
        msg.user,
        msg.engine_id,
        scoped.pdu.tag,
        scoped.pdu.request_id,
        _our_varbinds(scoped.pdu),
        extra={"context_engine_id": scoped.context_engine_id, "level": msg.flags & 3},
    )


def level_of(auth: str | None, priv: str | None) -> int:
    """pysnmp's securityLevel number (1 noAuthNoPriv .. 3 authPriv)."""
    return 1 + (auth is not None) + (priv is not None)


class _NoTransport:
    """What pysnmp's v3 message processing asks of a dispatcher, no sockets."""

    @staticmethod
    def get_timer_resolution() -> float:
        return 0.5


class V3Pair:
    """A pysnmp sending engine and a pysnmp receiving engine sharing users.

    The receiver knows each user under the sender's engine id, as pysnmp
    requires for traps.
    """

    def __init__(self, users: list[UsmUser]) -> None:
        self.sender = engine.SnmpEngine(snmpEngineID=univ.OctetString(SENDER_ENGINE))
        self.receiver = engine.SnmpEngine(snmpEngineID=univ.OctetString(RECEIVER_ENGINE))
        self.sender.transport_dispatcher = self.receiver.transport_dispatcher = _NoTransport()  # type: ignore[assignment]
        for user in users:
            args = (user.name, AUTH[user.auth], user.auth_passphrase or None, PRIV[user.priv])
            config.add_v3_user(self.sender, *args, user.priv_passphrase or None)
            config.add_v3_user(
                self.receiver,
                *args,
                user.priv_passphrase or None,
                securityEngineId=univ.OctetString(SENDER_ENGINE),
            )

    def encode_trap(self, user: UsmUser, request_id: int, varbinds: Any) -> bytes:
        """A v3 SNMPv2-Trap from the sender engine (which is authoritative)."""
        pdu = v2c.TrapPDU()
        v2c.apiPDU.set_defaults(pdu)
        v2c.apiPDU.set_request_id(pdu, request_id)
        v2c.apiPDU.set_varbinds(pdu, varbinds)
        mp = self.sender.message_processing_subsystems[3]
        level = level_of(user.auth, user.priv)
        _, _, whole = mp.prepare_outgoing_message(
            self.sender, DOMAIN, ADDRESS, 3, 3, user.name.encode(), level, None, b"", 1, pdu, False, None
        )
        return bytes(whole)

    def decode(self, data: bytes) -> Decoded:
        """pysnmp's reading of a v3 message from the sender."""
        mp = self.receiver.message_processing_subsystems[3]
        out = mp.prepare_data_elements(self.receiver, DOMAIN, ADDRESS, data)
        _, _, _, level, context_engine_id, _, _, pdu, *_ = out
        whole, _ = decoder.decode(data, asn1Spec=SNMPv3Message())
        usm, _ = decoder.decode(whole[2].asOctets(), asn1Spec=UsmSecurityParameters())
        return Decoded(
            3,
            bytes(usm[3].asOctets()),
            bytes(usm[0].asOctets()),
            _tag(pdu),
            int(v2c.apiPDU.get_request_id(pdu)),
            _plain_varbinds(v2c.apiPDU.get_varbinds(pdu)),
            extra={
                "context_engine_id": bytes(context_engine_id.asOctets()),
                "level": {1: 0, 2: 1, 3: 3}[level],
            },
        )
