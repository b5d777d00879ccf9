"""A BER decoder for exactly the SNMP message layer and PDUs trapgate receives.

Strategy: one pass over the datagram with integer offsets, never a tree of
objects. Every TLV header is checked against the end of its enclosing
container, so a length that lies makes a `BerError`, never an IndexError.
Short-form lengths (all of a typical trap) are read inline; long forms go
through `_long_length`, which also notes whether the form was minimal so
`Pdu.identity_varbinds` can use the raw bytes as they are in the common case.
OID contents map to dotted strings through a bounded module-level cache:
the same few hundred OIDs arrive again and again, so the per-byte loop of a
real OID decode runs only on a cache miss. Integers go through
`int.from_bytes`, strings are slices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from formats.snmp._errors import BerError

# Value tags (RFC 2578 / RFC 3416 application and context types).
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
SEQUENCE = 0x30
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

# PDU tags.
RESPONSE = 0xA2
TRAP_V1 = 0xA4
INFORM = 0xA6
TRAP_V2 = 0xA7
REPORT = 0xA8

TYPE_NAMES: dict[int, str] = {
    INTEGER: "INTEGER",
    OCTET_STRING: "OCTET STRING",
    NULL: "NULL",
    OID: "OID",
    IP_ADDRESS: "IpAddress",
    COUNTER32: "Counter32",
    GAUGE32: "Gauge32",
    TIMETICKS: "TimeTicks",
    OPAQUE: "Opaque",
    COUNTER64: "Counter64",
    NO_SUCH_OBJECT: "noSuchObject",
    NO_SUCH_INSTANCE: "noSuchInstance",
    END_OF_MIB_VIEW: "endOfMibView",
}
"""Printable names of the value types a varbind may carry."""

Value: TypeAlias = int | bytes | str | None
"""A decoded value: int (numbers), bytes (OCTET STRING, Opaque), str (OID,
IpAddress), None (NULL and the three exceptions)."""

VarBind: TypeAlias = tuple[str, int, Value]
"""(dotted OID, value tag, value)."""

_MAX_OID_BYTES = 640  # 128 sub-identifiers (RFC 2578) of at most 5 bytes
_MAX_ARC = 0xFFFFFFFF
_OID_CACHE_SIZE = 16384
_NO_ERROR = b"\x02\x01\x00\x02\x01\x00"  # error-status 0, error-index 0
_oid_cache: dict[bytes, str] = {}


@dataclass(slots=True)
class Pdu:
    """One decoded PDU.

    `varbinds` holds every binding in order; `spans[i]:spans[i+1]` is the raw
    TLV of binding i in `buf` (the datagram, or the decrypted scopedPDU).
    `canonical` is False when some header inside the list used a non-minimal
    length form. The v1 trap fields are left at their defaults otherwise.
    """

    tag: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[VarBind]
    buf: bytes
    spans: list[int]
    canonical: bool
    enterprise: str = ""
    agent_addr: str = ""
    generic_trap: int = 0
    specific_trap: int = 0
    timestamp: int = 0

    @property
    def varbind_list(self) -> bytes:
        """The content of the variable-bindings SEQUENCE, as received."""
        return self.buf[self.spans[0] : self.spans[-1]]

    def identity_varbinds(self, keep: Sequence[int]) -> bytes:
        """Canonical bytes of the bindings at indexes `keep` (ascending).

        The raw TLVs when every header was minimal (a slice when `keep` is a
        contiguous run), else each binding re-encoded with minimal lengths,
        so two encoders that differ only in length forms give equal bytes.
        """
        spans, buf = self.spans, self.buf
        if not keep:
            return b""
        if self.canonical:
            first, last = keep[0], keep[-1]
            if last - first + 1 == len(keep):
                return buf[spans[first] : spans[last + 1]]
            return b"".join([buf[spans[i] : spans[i + 1]] for i in keep])
        return b"".join([_reencode_varbind(buf, spans[i], spans[i + 1]) for i in keep])


def _long_length(buf: bytes, pos: int, end: int) -> tuple[int, int, bool]:
    """Content start, content stop and minimality of a long-form header at pos."""
    n = buf[pos + 1] & 0x7F
    if n == 0 or n > 4:
        raise BerError(f"unsupported length form at offset {pos}", "bad_length")
    start = pos + 2 + n
    if start > end:
        raise BerError(f"length runs past the end at offset {pos}", "truncated")
    length = int.from_bytes(buf[pos + 2 : start], "big")
    stop = start + length
    if stop > end:
        raise BerError(f"content runs past the end at offset {pos}", "truncated")
    return start, stop, length >= 0x80 and buf[pos + 2] != 0


def header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Tag, content start and content stop of the TLV at `pos`, within `end`."""
    if pos + 2 > end:
        raise BerError(f"truncated header at offset {pos}", "truncated")
    tag = buf[pos]
    n = buf[pos + 1]
    if n < 0x80:
        start = pos + 2
    elif n == 0x81 and pos + 3 <= end:
        n = buf[pos + 2]
        start = pos + 3
    elif n == 0x82 and pos + 4 <= end:
        n = buf[pos + 2] << 8 | buf[pos + 3]
        start = pos + 4
    else:
        start, stop, _ = _long_length(buf, pos, end)
        return tag, start, stop
    stop = start + n
    if stop > end:
        raise BerError(f"content runs past the end at offset {pos}", "truncated")
    return tag, start, stop


def expect(buf: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """Content start and stop of the TLV at `pos`, which must have `tag`."""
    if pos + 2 <= end and buf[pos] == tag:
        stop = pos + 2 + buf[pos + 1]
        if buf[pos + 1] < 0x80 and stop <= end:
            return pos + 2, stop
    got, start, stop = header(buf, pos, end)
    if got != tag:
        raise BerError(f"{what}: expected tag 0x{tag:02x}, got 0x{got:02x}", "bad_tag")
    return start, stop


def read_int(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """A signed INTEGER of at most 8 content bytes; returns (value, next offset)."""
    if pos + 2 <= end and buf[pos] == INTEGER:
        n = buf[pos + 1]
        stop = pos + 2 + n
        if 0 < n <= 8 and stop <= end:
            return int.from_bytes(buf[pos + 2 : stop], "big", signed=True), stop
    start, stop = expect(buf, pos, end, INTEGER, what)
    if not 0 < stop - start <= 8:
        raise BerError(f"{what}: bad INTEGER length", "bad_value")
    return int.from_bytes(buf[start:stop], "big", signed=True), stop


def read_octets(buf: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    """An OCTET STRING; returns (content, next offset)."""
    start, stop = expect(buf, pos, end, OCTET_STRING, what)
    return buf[start:stop], stop


def oid_to_str(content: bytes) -> str:
    """Dotted text of an OID's content octets, cached."""
    text = _oid_cache.get(content)
    if text is None:
        text = _decode_oid(content)
        if len(_oid_cache) >= _OID_CACHE_SIZE:
            _oid_cache.clear()
        _oid_cache[content] = text
    return text


def _decode_oid(content: bytes) -> str:
    if not content or len(content) > _MAX_OID_BYTES or content[-1] & 0x80:
        raise BerError("malformed OBJECT IDENTIFIER", "bad_oid")
    if content.isascii():
        arcs = list(content)
    else:
        arcs = []
        value = 0
        for byte in content:
            if value == 0 and byte == 0x80:
                raise BerError("OBJECT IDENTIFIER sub-identifier is padded", "bad_oid")
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                arcs.append(value)
                value = 0
    first = arcs[0]
    if first < 40:
        arcs[0:1] = [0, first]
    elif first < 80:
        arcs[0:1] = [1, first - 40]
    else:
        arcs[0:1] = [2, first - 80]
    if max(arcs) > _MAX_ARC:
        raise BerError("OBJECT IDENTIFIER sub-identifier too large", "bad_oid")
    return ".".join(map(str, arcs))


def _unsigned(buf: bytes, start: int, stop: int, limit: int) -> int:
    if start == stop:
        raise BerError("empty unsigned value", "bad_value")
    # Leniently unsigned: some agents encode 0xFFFFFFFF without the leading 0.
    value = int.from_bytes(buf[start:stop], "big")
    if value > limit:
        raise BerError("unsigned value out of range", "bad_value")
    return value


def _ip_address(buf: bytes, start: int, stop: int) -> str:
    if stop - start != 4:
        raise BerError("IpAddress is not 4 octets", "bad_value")
    a, b, c, d = buf[start:stop]
    return f"{a}.{b}.{c}.{d}"


def _integer32(buf: bytes, start: int, stop: int) -> int:
    if not 0 < stop - start <= 5:
        raise BerError("bad INTEGER length", "bad_value")
    value = int.from_bytes(buf[start:stop], "big", signed=True)
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise BerError("INTEGER out of range", "bad_value")
    return value


def _null(buf: bytes, start: int, stop: int) -> None:
    if start != stop:
        raise BerError("NULL with content", "bad_value")


def _exception(buf: bytes, start: int, stop: int) -> None:
    return None


_DECODERS: dict[int, Callable[[bytes, int, int], Value]] = {
    INTEGER: _integer32,
    OCTET_STRING: lambda buf, start, stop: buf[start:stop],
    NULL: _null,
    OID: lambda buf, start, stop: oid_to_str(buf[start:stop]),
    IP_ADDRESS: _ip_address,
    COUNTER32: lambda buf, start, stop: _unsigned(buf, start, stop, 0xFFFFFFFF),
    GAUGE32: lambda buf, start, stop: _unsigned(buf, start, stop, 0xFFFFFFFF),
    TIMETICKS: lambda buf, start, stop: _unsigned(buf, start, stop, 0xFFFFFFFF),
    OPAQUE: lambda buf, start, stop: buf[start:stop],
    COUNTER64: lambda buf, start, stop: _unsigned(buf, start, stop, 0xFFFFFFFFFFFFFFFF),
    NO_SUCH_OBJECT: _exception,
    NO_SUCH_INSTANCE: _exception,
    END_OF_MIB_VIEW: _exception,
}


def decode_value(tag: int, buf: bytes, start: int, stop: int) -> Value:
    """The value of a varbind whose content is `buf[start:stop]`."""
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise BerError(f"unsupported value type 0x{tag:02x}", "bad_value_type")
    return decoder(buf, start, stop)


def decode_varbinds(buf: bytes, pos: int, end: int) -> tuple[list[VarBind], list[int], bool]:
    """The bindings in `buf[pos:end]`, their TLV start offsets, canonical flag.

    The offsets list ends with `end`, so binding i spans offsets i and i + 1.
    """
    # The hot loop of the whole format: headers and the usual value types
    # are decoded inline, the rest through `_DECODERS`.
    varbinds: list[VarBind] = []
    spans: list[int] = []
    canonical = True
    cache = _oid_cache
    add_varbind, add_span = varbinds.append, spans.append
    while pos < end:
        add_span(pos)
        if pos + 2 > end or buf[pos] != SEQUENCE:
            raise BerError(f"varbind is not a SEQUENCE at offset {pos}", "bad_varbind")
        n = buf[pos + 1]
        if n < 0x80:
            p = pos + 2
            vb_end = p + n
            if vb_end > end:
                raise BerError(f"varbind runs past its list at offset {pos}", "truncated")
        else:
            p, vb_end, minimal = _long_length(buf, pos, end)
            canonical = canonical and minimal
        # Smallest binding: an OID of one octet and a NULL (06 01 xx 05 00).
        if vb_end - p < 5 or buf[p] != OID:
            raise BerError(f"varbind name is not an OID at offset {p}", "bad_varbind")
        n = buf[p + 1]
        if n < 0x80:
            start = p + 2
            stop = start + n
        else:
            start, stop, minimal = _long_length(buf, p, vb_end)
            canonical = canonical and minimal
        if stop + 2 > vb_end:
            raise BerError(f"varbind without a value at offset {pos}", "bad_varbind")
        content = buf[start:stop]
        name = cache.get(content)
        if name is None:
            name = oid_to_str(content)
        tag = buf[stop]
        n = buf[stop + 1]
        if n < 0x80:
            start = stop + 2
            stop = start + n
        else:
            start, stop, minimal = _long_length(buf, stop, vb_end)
            canonical = canonical and minimal
        if stop != vb_end:
            raise BerError(f"varbind value does not end its varbind at offset {pos}", "bad_varbind")
        value: Value
        if tag == OCTET_STRING:
            value = buf[start:stop]
        elif tag == INTEGER and stop - start == 1:
            value = buf[start]
            if value > 0x7F:
                value -= 0x100
        elif tag == OID:
            content = buf[start:stop]
            value = cache.get(content) or oid_to_str(content)
        elif COUNTER32 <= tag <= TIMETICKS and 0 < stop - start <= 5:
            value = int.from_bytes(buf[start:stop], "big")
            if value > 0xFFFFFFFF:
                raise BerError("unsigned value out of range", "bad_value")
        else:
            value = decode_value(tag, buf, start, stop)
        add_varbind((name, tag, value))
        pos = vb_end
    spans.append(end)
    return varbinds, spans, canonical


def decode_pdu(buf: bytes, pos: int, end: int) -> tuple[Pdu, int]:
    """The PDU at `pos` (any tag with the RFC 3416 or v1 Trap-PDU layout)."""
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
    varbinds, spans, canonical = decode_varbinds(buf, vb_start, vb_stop)
    return Pdu(tag, request_id, error_status, error_index, varbinds, buf, spans, canonical), stop


def _decode_trap_v1(buf: bytes, pos: int, end: int) -> Pdu:
    start, stop = expect(buf, pos, end, OID, "enterprise")
    enterprise = oid_to_str(buf[start:stop])
    start, stop = expect(buf, stop, end, IP_ADDRESS, "agent-addr")
    agent_addr = _ip_address(buf, start, stop)
    generic, p = read_int(buf, stop, end, "generic-trap")
    specific, p = read_int(buf, p, end, "specific-trap")
    start, stop = expect(buf, p, end, TIMETICKS, "time-stamp")
    timestamp = _unsigned(buf, start, stop, 0xFFFFFFFF)
    vb_start, vb_stop = expect(buf, stop, end, SEQUENCE, "variable-bindings")
    if vb_stop != end:
        raise BerError("data after the variable-bindings", "trailing_data")
    if not 0 <= generic <= 6:
        raise BerError(f"generic-trap {generic} out of range", "bad_value")
    varbinds, spans, canonical = decode_varbinds(buf, vb_start, vb_stop)
    return Pdu(
        TRAP_V1, 0, 0, 0, varbinds, buf, spans, canonical,
        enterprise=enterprise, agent_addr=agent_addr,
        generic_trap=generic, specific_trap=specific, timestamp=timestamp,
    )  # fmt: skip


def _reencode_varbind(buf: bytes, pos: int, end: int) -> bytes:
    _, start, stop = header(buf, pos, end)
    _, name_start, name_stop = header(buf, start, stop)
    tag, value_start, value_stop = header(buf, name_stop, stop)
    return tlv(
        SEQUENCE,
        tlv(OID, buf[name_start:name_stop]) + tlv(tag, buf[value_start:value_stop]),
    )


def tlv(tag: int, content: bytes) -> bytes:
    """The minimal BER encoding of one TLV."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def encode_int(value: int) -> bytes:
    """A two's-complement INTEGER in minimal form."""
    size = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def encode_unsigned(value: int, tag: int) -> bytes:
    """An unsigned application value (Counter32, TimeTicks ...) in minimal form."""
    size = value.bit_length() // 8 + 1
    return tlv(tag, value.to_bytes(size, "big"))


def encode_oid(text: str) -> bytes:
    """The TLV of a dotted OID."""
    arcs = [int(arc) for arc in text.split(".")]
    subids = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    out = bytearray()
    for subid in subids:
        chunk = [subid & 0x7F]
        subid >>= 7
        while subid:
            chunk.append(0x80 | (subid & 0x7F))
            subid >>= 7
        out.extend(reversed(chunk))
    return tlv(OID, bytes(out))
