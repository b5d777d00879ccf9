"""Inline readers of the shapes nearly every datagram has.

Strategy: the general decoders in `_message` read a message with one call
per field (`expect`, `read_int` ...), and on a trap those calls cost more
than the rest of the decoding. The readers here take the usual shapes
(lengths in short form, or 81/82 where a message outgrows 127 octets;
integers of one to eight octets; error-status and error-index 0) and read
them inline. Each returns None for anything else, and `_message` then reads
the bytes with the general decoders, which refuse them with their reason or
accept them with the same result. Nothing here raises but `decode_varbinds`,
which both paths call on the same span; a header cut short (IndexError)
means None. Each field's end is the next one's start and the last must end
exactly where its container does, so a length that lies cannot make a
reader accept bytes outside their container.

The length, INTEGER and OCTET STRING reads are written out again at every
field on purpose: a Python call costs more than the read it would share.
The same readers built on three small helpers (header, INTEGER, OCTET
STRING) took 22% more instructions to decode a 6-varbind v2c trap and 24%
more for a v3 one; 12% and 11% more for the whole `SnmpReceiver.handle`
(callgrind, CPython 3.11).
"""

from __future__ import annotations

from formats.snmp._ber import INFORM, INTEGER, OCTET_STRING, SEQUENCE, TRAP_V2
from formats.snmp._decoded import FLAG_AUTH, FLAG_PRIV, CommunityMessage, Pdu, ScopedPdu, V3Message
from formats.snmp._varbinds import decode_varbinds

_NO_ERROR_VARBINDS = b"\x02\x01\x00\x02\x01\x00\x30"  # error-status 0, error-index 0, SEQUENCE


def read_message(buf: bytes) -> CommunityMessage | V3Message | None:
    """A v1/v2c message with a short community around a `read_pdu` PDU, or a
    v3 message whose headers have the usual shapes; else None."""
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
            return _read_v3(buf, p + 3, end)
        if version > 1 or buf[p + 3] != OCTET_STRING or buf[p + 4] >= 0x80:
            return None
        p += 5
        community = buf[p : p + buf[p - 1]]
        p += len(community)
    except IndexError:
        return None
    pdu = read_pdu(buf, p, end)
    return None if pdu is None else CommunityMessage(version, community, pdu)


def _read_v3(buf: bytes, p: int, end: int) -> V3Message | None:
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


def read_scoped_pdu(buf: bytes, pos: int, end: int, padded: bool) -> ScopedPdu | None:
    """A scopedPDU at `pos` with short-form contextEngineID and contextName
    around a `read_pdu` PDU; cipher padding after it if `padded`; else None."""
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
    pdu = read_pdu(buf, p, stop)
    return None if pdu is None else ScopedPdu(context_engine_id, context_name, pdu)


def read_pdu(buf: bytes, pos: int, end: int) -> Pdu | None:
    """A trap or inform that fills `buf[pos:end]` with error-status and
    error-index 0; else None."""
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
