"""SNMP message layer: v1/v2c community messages, v3 messages (RFC 3412), PDUs.

Decoding stops at the v3 msgData: whether it is a plaintext scopedPDU or an
encrypted one, and what it means, is USM's business (`_usm`). The encoders
build the few messages trapgate sends: Responses to informs and Reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from formats.snmp._ber import (
    INFORM,
    INTEGER,
    IP_ADDRESS,
    OCTET_STRING,
    OID,
    REPORT,
    SEQUENCE,
    TIMETICKS,
    TRAP_V1,
    TRAP_V2,
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
from formats.snmp._errors import BerError
from formats.snmp._varbinds import Binding, decode_varbinds

FLAG_AUTH = 0x01
FLAG_PRIV = 0x02
FLAG_REPORTABLE = 0x04
USM_SECURITY_MODEL = 3
_NO_ERROR = b"\x02\x01\x00\x02\x01\x00"  # error-status 0, error-index 0
_NO_ERROR_VARBINDS = _NO_ERROR + b"\x30"


@dataclass(slots=True)
class Pdu:
    """One decoded PDU.

    `varbinds` holds every binding in order; `buf[vb_start:vb_stop]` is the
    content of the variable-bindings SEQUENCE (`buf` is the datagram, or the
    decrypted scopedPDU). The v1 trap fields are left at their defaults
    otherwise.
    """

    tag: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[Binding]
    buf: bytes
    vb_start: int
    vb_stop: int
    enterprise: str = ""
    agent_addr: str = ""
    generic_trap: int = 0
    specific_trap: int = 0
    timestamp: int = 0

    @property
    def varbind_list(self) -> bytes:
        """The content of the variable-bindings SEQUENCE, as received."""
        return self.buf[self.vb_start : self.vb_stop]


@dataclass(slots=True)
class CommunityMessage:
    """A v1 (version 0) or v2c (version 1) message."""

    version: int
    community: bytes
    pdu: Pdu


@dataclass(slots=True)
class V3Message:
    """A v3 message up to its msgData, which `data_tag` says is plain or not.

    `auth_offset` is where the authentication parameters start in `buf`, so
    the digest can be checked over the message with them zeroed. msgData's
    TLV starts at `data_offset`, its content spans `data_start:data_stop`.
    """

    buf: bytes
    msg_id: int
    max_size: int
    flags: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth_params: bytes
    auth_offset: int
    priv_params: bytes
    data_offset: int
    data_tag: int
    data_start: int
    data_stop: int


@dataclass(slots=True)
class ScopedPdu:
    """The plaintext scopedPDU of a v3 message."""

    context_engine_id: bytes
    context_name: bytes
    pdu: Pdu


def decode_message(buf: bytes) -> CommunityMessage | V3Message:
    """Decode a whole datagram; v3 msgData is located but not decoded."""
    msg = _usual_message(buf)
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


# The `_usual_*` readers take the shapes nearly every message has and read
# them inline, without the general path's call per field: lengths in short
# form (or 81/82 where a message outgrows 127 octets), integers of one to
# eight octets. Each returns None for anything else, which the general path
# then reads, or refuses with its reason. They never raise: an IndexError
# from a header cut short means None too. Each field's end is the next
# one's start and the last must end exactly where its container does, so a
# length that lies cannot make them read outside the container.


def _usual_message(buf: bytes) -> CommunityMessage | V3Message | None:
    # A v1/v2c message with a short community around `_usual_pdu`, or a v3
    # one as `_usual_v3` reads it.
    try:
        n = buf[1]
        if n < 0x80:
            p = 2
        elif n == 0x81:
            n = buf[2]
            p = 3
        elif n == 0x82:
            n = buf[2] << 8 | buf[3]
            p = 4
        else:
            return None
        end = len(buf)
        version = buf[p + 2]
        if buf[0] != SEQUENCE or p + n != end or buf[p] != INTEGER or buf[p + 1] != 1:
            return None
        if version == 3:
            return _usual_v3(buf, p + 3, end)
        if version > 1 or buf[p + 3] != OCTET_STRING or buf[p + 4] >= 0x80:
            return None
        p += 5
        community = buf[p : p + buf[p - 1]]
        p += len(community)
    except IndexError:
        return None
    pdu = _usual_pdu(buf, p, end)
    return None if pdu is None else CommunityMessage(version, community, pdu)


def _usual_v3(buf: bytes, p: int, end: int) -> V3Message | None:
    # msgGlobalData from `p`, the USM parameters (msgSecurityParameters'
    # length may also have the 81 form), then msgData up to `end`.
    try:
        n = buf[p + 3]
        if buf[p] != SEQUENCE or buf[p + 1] >= 0x80 or buf[p + 2] != INTEGER or not 0 < n <= 8:
            return None
        g_stop = p + 2 + buf[p + 1]
        msg_id = int.from_bytes(buf[p + 4 : p + 4 + n], "big", signed=True)
        p += 4 + n
        n = buf[p + 1]
        if buf[p] != INTEGER or not 0 < n <= 8:
            return None
        max_size = int.from_bytes(buf[p + 2 : p + 2 + n], "big", signed=True)
        p += 2 + n
        flags = buf[p + 2]
        if (
            buf[p : p + 2] != b"\x04\x01"
            or buf[p + 3 : p + 6] != b"\x02\x01\x03"  # msgSecurityModel: USM
            or p + 6 != g_stop
            or msg_id < 0
            or max_size < 484
            or flags & (FLAG_AUTH | FLAG_PRIV) == FLAG_PRIV
            or buf[g_stop] != OCTET_STRING
        ):
            return None
        n = buf[g_stop + 1]
        if n < 0x80:
            p = g_stop + 2
        elif n == 0x81:
            n = buf[g_stop + 2]
            p = g_stop + 3
        else:
            return None
        u_stop = p + n
        n = buf[p + 3]
        if (
            buf[p] != SEQUENCE
            or buf[p + 1] >= 0x80
            or p + 2 + buf[p + 1] != u_stop
            or buf[p + 2] != OCTET_STRING
            or n > 32
        ):
            return None
        engine_id = buf[p + 4 : p + 4 + n]
        p += 4 + n
        n = buf[p + 1]
        if buf[p] != INTEGER or not 0 < n <= 8:
            return None
        boots = int.from_bytes(buf[p + 2 : p + 2 + n], "big", signed=True)
        p += 2 + n
        n = buf[p + 1]
        if buf[p] != INTEGER or not 0 < n <= 8:
            return None
        time = int.from_bytes(buf[p + 2 : p + 2 + n], "big", signed=True)
        p += 2 + n
        n = buf[p + 1]
        if buf[p] != OCTET_STRING or n > 32:
            return None
        user = buf[p + 2 : p + 2 + n]
        p += 2 + n
        n = buf[p + 1]
        if buf[p] != OCTET_STRING or n >= 0x80:
            return None
        auth_offset = p + 2
        auth_params = buf[auth_offset : auth_offset + n]
        p = auth_offset + n
        n = buf[p + 1]
        if buf[p] != OCTET_STRING or n >= 0x80 or p + 2 + n != u_stop or boots < 0 or time < 0:
            return None
        priv_params = buf[p + 2 : u_stop]
        data_tag = buf[u_stop]
        n = buf[u_stop + 1]
        if n < 0x80:
            d_start = u_stop + 2
        elif n == 0x81:
            n = buf[u_stop + 2]
            d_start = u_stop + 3
        elif n == 0x82:
            n = buf[u_stop + 2] << 8 | buf[u_stop + 3]
            d_start = u_stop + 4
        else:
            return None
    except IndexError:
        return None
    if d_start + n != end or data_tag != (OCTET_STRING if flags & FLAG_PRIV else SEQUENCE):
        return None
    return V3Message(
        buf, msg_id, max_size, flags, engine_id, boots, time, user,
        auth_params, auth_offset, priv_params, u_stop, data_tag, d_start, end,
    )  # fmt: skip


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
    scoped = _usual_scoped_pdu(buf, pos, end, padded)
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


def _usual_scoped_pdu(buf: bytes, pos: int, end: int, padded: bool) -> ScopedPdu | None:
    # Short-form contextEngineID and contextName around `_usual_pdu`.
    try:
        n = buf[pos + 1]
        if n < 0x80:
            p = pos + 2
        elif n == 0x81:
            n = buf[pos + 2]
            p = pos + 3
        elif n == 0x82:
            n = buf[pos + 2] << 8 | buf[pos + 3]
            p = pos + 4
        else:
            return None
        stop = p + n
        n = buf[p + 1]
        if (
            buf[pos] != SEQUENCE
            or stop > end
            or (stop != end and not padded)
            or buf[p] != OCTET_STRING
            or n >= 0x80
        ):
            return None
        context_engine_id = buf[p + 2 : p + 2 + n]
        p += 2 + n
        n = buf[p + 1]
        if buf[p] != OCTET_STRING or n >= 0x80:
            return None
        context_name = buf[p + 2 : p + 2 + n]
        p += 2 + n
    except IndexError:
        return None
    pdu = _usual_pdu(buf, p, stop)
    return None if pdu is None else ScopedPdu(context_engine_id, context_name, pdu)


def decode_pdu(buf: bytes, pos: int, end: int) -> tuple[Pdu, int]:
    """The PDU at `pos` (any tag with the RFC 3416 or v1 Trap-PDU layout)."""
    pdu = _usual_pdu(buf, pos, end)
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


def _usual_pdu(buf: bytes, pos: int, end: int) -> Pdu | None:
    # A trap or inform that fills buf[pos:end], read inline: its length and
    # the variable-bindings' in short, 81 or 82 form, a request-id of one to
    # eight octets, error-status and error-index 0. None for anything else.
    try:
        tag = buf[pos]
        n = buf[pos + 1]
        if n < 0x80:
            p = pos + 2
        elif n == 0x81:
            n = buf[pos + 2]
            p = pos + 3
        elif n == 0x82:
            n = buf[pos + 2] << 8 | buf[pos + 3]
            p = pos + 4
        else:
            return None
        size = buf[p + 1]
        if (tag != TRAP_V2 and tag != INFORM) or p + n != end or buf[p] != INTEGER or not 0 < size <= 8:
            return None
        request_id = int.from_bytes(buf[p + 2 : p + 2 + size], "big", signed=True)
        p += 2 + size
        if buf[p : p + 7] != _NO_ERROR_VARBINDS:
            return None
        n = buf[p + 7]
        if n < 0x80:
            p += 8
        elif n == 0x81:
            n = buf[p + 8]
            p += 9
        elif n == 0x82:
            n = buf[p + 8] << 8 | buf[p + 9]
            p += 10
        else:
            return None
    except IndexError:
        return None
    if p + n != end:
        return None
    return Pdu(tag, request_id, 0, 0, decode_varbinds(buf, p, end), buf, p, end)


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
