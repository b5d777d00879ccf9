"""RFC 5424 STRUCTURED-DATA: decoding and the identity key.

Strategy: no Python step per byte nor per param. One bytes pattern validates
the whole run of SD-ELEMENTs and finds its end; the run is then decoded once
(surrogateescape keeps invalid bytes one code point each, so offsets and
delimiters do not move) and each element yields its params in one `findall`,
turned into a dict in one call. Only escapes, invalid UTF-8 and repeated names
take a slower path. The identity key is the raw run when no per-destination
param is present, otherwise the run rebuilt without those params: what the
other copy of the message would give.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from formats._base import FormatError

SDParams: TypeAlias = dict[str, str | list[str]]
StructuredData: TypeAlias = dict[str, SDParams]

# SD-NAME: PRINTUSASCII except '=', SP, ']' and '"'. The RFC's 32-character
# limit is not enforced: devices exceed it and the value is still usable.
_NAME = r"[!#-<>-\\^-~]++"
# PARAM-VALUE: anything but an unescaped '"'. RFC 5424 section 6.3.3 asks for
# '"', '\' and ']' to be escaped; an unescaped ']' is tolerated.
_VALUE = r'[^"\\]*+(?:\\.[^"\\]*+)*+'
_PARAM = r" (" + _NAME + r')="(' + _VALUE + r')"'
_ELEMENT = r"\[(" + _NAME + r")((?:" + _PARAM + r")*+)\]"
# The same grammar over bytes, without groups: finds where the run ends.
_RUN = re.compile(
    rb"(?:\[" + _NAME.encode() + rb"(?: " + _NAME.encode() + rb'="' + _VALUE.encode() + rb'")*+\])++', re.S
)
_ELEMENT_RE = re.compile(_ELEMENT, re.S)
_PARAM_RE = re.compile(_PARAM, re.S)
_ESCAPE = re.compile(r'\\(["\\\]])')

# What differs between the copies a sender emits to each destination: RFC
# 5848 signature and certificate blocks, and the RFC 5424 section 7.3.1
# sequence counter, which a sender keeps per destination.
_DROPPED_IDS = frozenset({"ssign", "ssign-cert"})
_META = "meta"
_SEQUENCE_ID = "sequenceId"


def parse_structured_data(buf: bytes) -> tuple[StructuredData, int, bytes]:
    """Decode the SD-ELEMENTs at the start of `buf` (which starts with ``[``).

    Returns the decoded data (SD-ID -> param name -> value, a repeated name
    gives a list of values, a repeated SD-ID merges into one entry), the offset
    just past the last element, and the identity key: the raw elements minus
    the per-destination ones (``ssign``, ``ssign-cert``, ``meta``'s
    ``sequenceId``). Raises `FormatError` (``bad_structured_data``) when an
    element is malformed or is not followed by a space or the end.
    """
    m = _RUN.match(buf)
    end = 0 if m is None else m.end()
    if end == 0 or (end < len(buf) and buf[end] != 0x20):
        raise FormatError(f"malformed STRUCTURED-DATA at offset {end}", "bad_structured_data")
    raw = buf[:end]
    try:
        text = raw.decode()
        invalid = False
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "surrogateescape")
        invalid = True
    escaped = "\\" in text
    sd: StructuredData = {}
    drops = False
    for element in _ELEMENT_RE.finditer(text):
        sd_id = element.group(1)
        pairs: list[tuple[str, str]] = _PARAM_RE.findall(text, element.start(2), element.end(2))
        if escaped or invalid:
            pairs = [(name, _value(value, invalid)) for name, value in pairs]
        params: SDParams = dict(pairs)
        if len(params) != len(pairs) or sd_id in sd:
            params = _merge(sd.get(sd_id, {}), pairs)
        sd[sd_id] = params
        if sd_id in _DROPPED_IDS or (sd_id == _META and _SEQUENCE_ID in params):
            drops = True
    return sd, end, _identity_key(text) if drops else raw


def _value(value: str, invalid: bool) -> str:
    if "\\" in value:
        value = _ESCAPE.sub(r"\1", value)
    if invalid:
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def _merge(params: SDParams, pairs: list[tuple[str, str]]) -> SDParams:
    for name, value in pairs:
        seen = params.get(name)
        if seen is None:
            params[name] = value
        elif isinstance(seen, list):
            seen.append(value)
        else:
            params[name] = [seen, value]
    return params


def _identity_key(text: str) -> bytes:
    parts: list[str] = []
    for element in _ELEMENT_RE.finditer(text):
        sd_id = element.group(1)
        if sd_id in _DROPPED_IDS:
            continue
        if sd_id != _META:
            parts.append(element.group(0))
            continue
        kept = [
            param.group(0)
            for param in _PARAM_RE.finditer(text, element.start(2), element.end(2))
            if param.group(1) != _SEQUENCE_ID
        ]
        parts.append("[meta" + "".join(kept) + "]")
    return "".join(parts).encode("utf-8", "surrogateescape")
