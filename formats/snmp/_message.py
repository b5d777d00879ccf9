"""SNMP message layer: v1/v2c community messages, v3 messages (RFC 3412), PDUs.

Each decoder first lets `_usual` read the shape nearly every message has,
inline; what it declines, the general path here reads field by field with
every check, and refuses with a reason. Decoding stops at the v3 msgData:
whether it is a plaintext scopedPDU or an encrypted one, and what it means,
is USM's business (`_usm`). The encoders build the few messages trapgate
sends: Responses to informs and Reports.
"""

from __future__ import annotations

from formats.snmp._ber import (
    INTEGER,
    IP_ADDRESS,
    OCTET_STRING,
    OID,
    REPORT,
    SEQUENCE,
    TIMETICKS,
    TRAP_V1,
    encode_int,
    expect,
    header,
    ip_address,
    oid_to_str,
    read_int,
    read_octets,
    tlv,
    unsigned,
)
from formats.snmp._decoded import FLAG_AUTH as FLAG_AUTH
from formats.snmp._decoded import FLAG_PRIV as FLAG_PRIV
from formats.snmp._decoded import FLAG_REPORTABLE as FLAG_REPORTABLE
from formats.snmp._decoded import CommunityMessage as CommunityMessage
from formats.snmp._decoded import Pdu as Pdu
from formats.snmp._decoded import ScopedPdu as ScopedPdu
from formats.snmp._decoded import V3Message as V3Message
from formats.snmp._errors import BerError
from formats.snmp._usual import read_message, read_pdu, read_scoped_pdu
from formats.snmp._varbinds import decode_varbinds

USM_SECURITY_MODEL = 3
_NO_ERROR = b"\x02\x01\x00\x02\x01\x00"  # error-status 0, error-index 0


def decode_message(buf: bytes) -> CommunityMessage | V3Message:
    """Decode a whole datagram; v3 msgData is located but not decoded."""
    msg = read_message(buf)
    if msg is not None:
        return msg
    end = len(buf)
    start, stop = expect(buf, 0, end, SEQUENCE, "message")
    if stop != end:
        raise BerError("data after the message", "trailing_data")
    version, p = read_int(buf, start, stop, "version")
    if version in (0, 1):
        community, p = read_octets(buf, p, stop, "community")
        pdu, p = decode_pdu(buf, p, stop)
        if p != stop:
            raise BerError("data after the PDU", "trailing_data")
        return CommunityMessage(version, community, pdu)
    if version == 3:
        return _decode_v3(buf, p, stop)
    raise BerError(f"unsupported SNMP version {version}", "bad_version")


def _decode_v3(buf: bytes, pos: int, end: int) -> V3Message:
    g_start, g_stop = expect(buf, pos, end, SEQUENCE, "msgGlobalData")
    msg_id, p = read_int(buf, g_start, g_stop, "msgID")
    max_size, p = read_int(buf, p, g_stop, "msgMaxSize")
    flags, p = read_octets(buf, p, g_stop, "msgFlags")
    model, p = read_int(buf, p, g_stop, "msgSecurityModel")
    if p != g_stop:
        raise BerError("data after msgSecurityModel", "trailing_data")
    if msg_id < 0 or max_size < 484 or len(flags) != 1:
        raise BerError("bad msgGlobalData", "bad_header")
    if flags[0] & (FLAG_AUTH | FLAG_PRIV) == FLAG_PRIV:
        raise BerError("privacy without authentication", "bad_msg_flags")
    if model != USM_SECURITY_MODEL:
        raise BerError(f"security model {model} is not USM", "unknown_security_model")
    s_start, s_stop = expect(buf, g_stop, end, OCTET_STRING, "msgSecurityParameters")
    u_start, u_stop = expect(buf, s_start, s_stop, SEQUENCE, "UsmSecurityParameters")
    if u_stop != s_stop:
        raise BerError("data after UsmSecurityParameters", "trailing_data")
    engine_id, p = read_octets(buf, u_start, u_stop, "msgAuthoritativeEngineID")
    boots, p = read_int(buf, p, u_stop, "msgAuthoritativeEngineBoots")
    time, p = read_int(buf, p, u_stop, "msgAuthoritativeEngineTime")
    user, p = read_octets(buf, p, u_stop, "msgUserName")
    auth_offset, a_stop = expect(buf, p, u_stop, OCTET_STRING, "msgAuthenticationParameters")
    priv_params, p = read_octets(buf, a_stop, u_stop, "msgPrivacyParameters")
    if p != u_stop:
        raise BerError("data after msgPrivacyParameters", "trailing_data")
    if len(engine_id) > 32 or len(user) > 32 or boots < 0 or time < 0:
        raise BerError("bad UsmSecurityParameters", "bad_header")
    data_tag, d_start, d_stop = header(buf, u_stop, end)
    if d_stop != end:
        raise BerError("data after msgData", "trailing_data")
    if data_tag != (OCTET_STRING if flags[0] & FLAG_PRIV else SEQUENCE):
        raise BerError("msgData does not match the privacy flag", "bad_tag")
    return V3Message(
        buf, msg_id, max_size, flags[0], engine_id, boots, time, user,
        auth_params=buf[auth_offset:a_stop], auth_offset=auth_offset, priv_params=priv_params,
        data_offset=u_stop, data_tag=data_tag, data_start=d_start, data_stop=d_stop,
    )  # fmt: skip


def decode_scoped_pdu(buf: bytes, pos: int, end: int, padded: bool) -> ScopedPdu:
    """The scopedPDU at `pos`; `padded` allows cipher padding after it."""
    scoped = read_scoped_pdu(buf, pos, end, padded)
    if scoped is not None:
        return scoped
    start, stop = expect(buf, pos, end, SEQUENCE, "scopedPDU")
    if stop != end and not padded:
        raise BerError("data after the scopedPDU", "trailing_data")
    context_engine_id, p = read_octets(buf, start, stop, "contextEngineID")
    context_name, p = read_octets(buf, p, stop, "contextName")
    pdu, p = decode_pdu(buf, p, stop)
    if p != stop:
        raise BerError("data after the PDU", "trailing_data")
    return ScopedPdu(context_engine_id, context_name, pdu)


def decode_pdu(buf: bytes, pos: int, end: int) -> tuple[Pdu, int]:
    """The PDU at `pos` (any tag with the RFC 3416 or v1 Trap-PDU layout)."""
    pdu = read_pdu(buf, pos, end)
    if pdu is not None:
        return pdu, end
    tag, start, stop = header(buf, pos, end)
    if tag == TRAP_V1:
        return _decode_trap_v1(buf, start, stop), stop
    if tag & 0xE0 != 0xA0 or tag > REPORT:
        raise BerError(f"not an SNMP PDU: tag 0x{tag:02x}", "bad_pdu")
    request_id, p = read_int(buf, start, stop, "request-id")
    if buf[p : p + 6] == _NO_ERROR:
        error_status = error_index = 0
        p += 6
    else:
        error_status, p = read_int(buf, p, stop, "error-status")
        error_index, p = read_int(buf, p, stop, "error-index")
    vb_start, vb_stop = expect(buf, p, stop, SEQUENCE, "variable-bindings")
    if vb_stop != stop:
        raise BerError("data after the variable-bindings", "trailing_data")
    varbinds = decode_varbinds(buf, vb_start, vb_stop)
    return Pdu(tag, request_id, error_status, error_index, varbinds, buf, vb_start, vb_stop), stop


def _decode_trap_v1(buf: bytes, pos: int, end: int) -> Pdu:
    start, stop = expect(buf, pos, end, OID, "enterprise")
    enterprise = oid_to_str(buf[start:stop])
    start, stop = expect(buf, stop, end, IP_ADDRESS, "agent-addr")
    agent_addr = ip_address(buf, start, stop)
    generic, p = read_int(buf, stop, end, "generic-trap")
    specific, p = read_int(buf, p, end, "specific-trap")
    start, stop = expect(buf, p, end, TIMETICKS, "time-stamp")
    timestamp = unsigned(buf, start, stop, 0xFFFFFFFF)
    vb_start, vb_stop = expect(buf, stop, end, SEQUENCE, "variable-bindings")
    if vb_stop != end:
        raise BerError("data after the variable-bindings", "trailing_data")
    if not 0 <= generic <= 6:
        raise BerError(f"generic-trap {generic} out of range", "bad_value")
    varbinds = decode_varbinds(buf, vb_start, vb_stop)
    return Pdu(
        TRAP_V1, 0, 0, 0, varbinds, buf, vb_start, vb_stop,
        enterprise=enterprise, agent_addr=agent_addr,
        generic_trap=generic, specific_trap=specific, timestamp=timestamp,
    )  # fmt: skip


def encode_pdu(tag: int, request_id: int, varbind_list: bytes) -> bytes:
    """A PDU with error-status and error-index 0 around raw varbind TLVs."""
    return tlv(
        tag,
        encode_int(request_id) + b"\x02\x01\x00\x02\x01\x00" + tlv(SEQUENCE, varbind_list),
    )


def encode_community(version: int, community: bytes, pdu: bytes) -> bytes:
    """A v1/v2c message around an encoded PDU."""
    return tlv(SEQUENCE, encode_int(version) + tlv(OCTET_STRING, community) + pdu)


def encode_scoped_pdu(context_engine_id: bytes, context_name: bytes, pdu: bytes) -> bytes:
    """A plaintext scopedPDU."""
    return tlv(
        SEQUENCE,
        tlv(OCTET_STRING, context_engine_id) + tlv(OCTET_STRING, context_name) + pdu,
    )


def encode_v3(
    msg_id: int,
    max_size: int,
    flags: int,
    engine_id: bytes,
    boots: int,
    time: int,
    user: bytes,
    auth_length: int,
    priv_params: bytes,
    msg_data: bytes,
) -> tuple[bytes, int]:
    """A v3 message with zeroed authentication parameters of `auth_length`.

    Returns the message and the offset of those parameters, where the
    caller writes the digest.
    """
    global_data = tlv(
        SEQUENCE,
        encode_int(msg_id)
        + encode_int(max_size)
        + tlv(OCTET_STRING, bytes((flags,)))
        + encode_int(USM_SECURITY_MODEL),
    )
    priv = tlv(OCTET_STRING, priv_params)
    usm = tlv(
        SEQUENCE,
        tlv(OCTET_STRING, engine_id)
        + encode_int(boots)
        + encode_int(time)
        + tlv(OCTET_STRING, user)
        + tlv(OCTET_STRING, bytes(auth_length))
        + priv,
    )
    whole = tlv(
        SEQUENCE,
        bytes((INTEGER, 1, 3)) + global_data + tlv(OCTET_STRING, usm) + msg_data,
    )
    return whole, len(whole) - len(msg_data) - len(priv) - auth_length
