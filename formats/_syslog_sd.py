"""RFC 5424 STRUCTURED-DATA: decoding and the identity key.

Strategy: two passes in compiled patterns, one Python step per SD-ID or param.
The first pattern validates the whole run of SD-ELEMENTs and finds its end;
the second, a tokenizer, lists the SD-IDs and params of that (now known to be
well-formed) run in order. The only bytes the tokenizer skips are the ``]``
that close elements, so no token can start inside a value. The identity key is
the raw run when no per-destination param is present, otherwise the same bytes
rebuilt without those params: what the other copy of the message would give.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from formats._base import FormatError

SDParams: TypeAlias = dict[str, str | list[str]]
StructuredData: TypeAlias = dict[str, SDParams]

# SD-NAME: PRINTUSASCII except '=', SP, ']' and '"'. The RFC's 32-character
# limit is not enforced: devices exceed it and the value is still usable.
_NAME = rb"[!#-<>-\\^-~]++"
# PARAM-VALUE: anything but an unescaped '"'. RFC 5424 section 6.3.3 asks for
# '"', '\' and ']' to be escaped; an unescaped ']' is tolerated.
_VALUE = rb'[^"\\]*+(?:\\.[^"\\]*+)*+'
_ELEMENTS = re.compile(rb"(?:\[" + _NAME + rb"(?: " + _NAME + rb'="' + _VALUE + rb'")*+\])++', re.S)
_TOKENS = re.compile(rb"\[(" + _NAME + rb")| (" + _NAME + rb')="(' + _VALUE + rb')"', re.S)
_ESCAPE = re.compile(rb'\\(["\\\]])')

# What differs between the copies a sender emits to each destination: RFC
# 5848 signature and certificate blocks, and the RFC 5424 section 7.3.1
# sequence counter, which a sender keeps per destination.
_DROPPED_IDS = frozenset({b"ssign", b"ssign-cert"})
_META = b"meta"
_SEQUENCE_ID = b"sequenceId"


def parse_structured_data(buf: bytes) -> tuple[StructuredData, int, bytes]:
    """Decode the SD-ELEMENTs at the start of `buf` (which starts with ``[``).

    Returns the decoded data (SD-ID -> param name -> value, a repeated name
    gives a list of values, a repeated SD-ID merges into one entry), the offset
    just past the last element, and the identity key: the raw elements minus
    the per-destination ones (``ssign``, ``ssign-cert``, ``meta``'s
    ``sequenceId``). Raises `FormatError` (``bad_structured_data``) when an
    element is malformed or is not followed by a space or the end.
    """
    m = _ELEMENTS.match(buf)
    end = 0 if m is None else m.end()
    if end == 0 or (end < len(buf) and buf[end] != 0x20):
        raise FormatError(f"malformed STRUCTURED-DATA at offset {end}", "bad_structured_data")
    tokens: list[tuple[bytes, bytes, bytes]] = _TOKENS.findall(buf, 0, end)
    sd: StructuredData = {}
    params: SDParams = {}
    for sd_id, name, raw in tokens:
        if sd_id:
            params = sd.setdefault(sd_id.decode("ascii"), {})
            continue
        if b"\\" in raw:
            raw = _ESCAPE.sub(rb"\1", raw)
        value = raw.decode("utf-8", "backslashreplace")
        key = name.decode("ascii")
        if key not in params:
            params[key] = value
            continue
        seen = params[key]
        if isinstance(seen, list):
            seen.append(value)
        else:
            params[key] = [seen, value]
    raw_sd = buf[:end]
    if b"[ssign" in raw_sd or b"sequenceId=" in raw_sd:
        return sd, end, _identity_key(tokens)
    return sd, end, raw_sd


def _identity_key(tokens: list[tuple[bytes, bytes, bytes]]) -> bytes:
    parts: list[bytes] = []
    sd_id = b""
    for token_id, name, raw in tokens:
        if token_id:
            if parts and sd_id not in _DROPPED_IDS:
                parts.append(b"]")
            sd_id = token_id
            if sd_id not in _DROPPED_IDS:
                parts.append(b"[" + sd_id)
        elif sd_id not in _DROPPED_IDS and not (sd_id == _META and name == _SEQUENCE_ID):
            parts.append(b" " + name + b'="' + raw + b'"')
    if parts and sd_id not in _DROPPED_IDS:
        parts.append(b"]")
    return b"".join(parts)
