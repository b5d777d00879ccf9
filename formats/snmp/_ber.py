"""BER for exactly the SNMP message layer and PDUs trapgate receives.

Strategy: one pass over the datagram with integer offsets, never a tree of
objects. Every TLV header is checked against the end of its enclosing
container, so a length that lies makes a `BerError`, never an IndexError.
Short-form lengths (nearly all of a typical trap) are read inline; long
forms go through `long_length`, which also notes whether the form was
minimal, for canonical encodings. OID contents map to dotted strings through
a bounded module-level cache: the same few hundred OIDs arrive again and
again, so the per-byte loop of a real OID decode runs only on a cache miss.
Integers go through `int.from_bytes`, strings are slices.
"""

from __future__ import annotations

from collections.abc import Callable
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

_MAX_OID_BYTES = 640  # 128 sub-identifiers (RFC 2578) of at most 5 bytes
_MAX_ARC = 0xFFFFFFFF
_OID_CACHE_SIZE = 16384
_oid_cache: dict[bytes, str] = {}


def long_length(buf: bytes, pos: int, end: int) -> tuple[int, int, bool]:
    """Content start, content stop and minimality of a long-form header at `pos`."""
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
        start, stop, _ = long_length(buf, pos, end)
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


def unsigned(buf: bytes, start: int, stop: int, limit: int) -> int:
    """An unsigned value of at most `limit` in `buf[start:stop]`."""
    if start == stop:
        raise BerError("empty unsigned value", "bad_value")
    # Leniently unsigned: some agents encode 0xFFFFFFFF without the leading 0.
    value = int.from_bytes(buf[start:stop], "big")
    if value > limit:
        raise BerError("unsigned value out of range", "bad_value")
    return value


def ip_address(buf: bytes, start: int, stop: int) -> str:
    """The dotted text of an IpAddress in `buf[start:stop]`."""
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
    IP_ADDRESS: ip_address,
    COUNTER32: lambda buf, start, stop: unsigned(buf, start, stop, 0xFFFFFFFF),
    GAUGE32: lambda buf, start, stop: unsigned(buf, start, stop, 0xFFFFFFFF),
    TIMETICKS: lambda buf, start, stop: unsigned(buf, start, stop, 0xFFFFFFFF),
    OPAQUE: lambda buf, start, stop: buf[start:stop],
    COUNTER64: lambda buf, start, stop: unsigned(buf, start, stop, 0xFFFFFFFFFFFFFFFF),
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
