"""The BER layer and varbind decoding: tables of (bytes, expected value or reason)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from snmp_reference import oids

from formats.snmp import BerError
from formats.snmp._ber import (
    _OID_CACHE_SIZE,
    _oid_cache,
    decode_value,
    encode_int,
    encode_oid,
    encode_unsigned,
    header,
    oid_to_str,
    read_int,
    tlv,
)
from formats.snmp._varbinds import _CACHE_SIZE, _cache, decode_varbinds


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("2b060102010103 00", "1.3.6.1.2.1.1.3.0"),
        ("00", "0.0"),
        ("27", "0.39"),
        ("28", "1.0"),
        ("4f", "1.39"),
        ("50", "2.0"),
        ("8837", "2.999"),
        ("2b 8fffffff7f", "1.3.4294967295"),
        ("2b 8101", "1.3.129"),
    ],
)
def test_oid_contents_decode_to_dotted_text(content: str, text: str) -> None:
    assert oid_to_str(bytes.fromhex(content)) == text


@pytest.mark.parametrize(
    "content",
    ["", "2b86", "2b 8001", "2b 9080808000", "2b" + "01" * 700],
    ids=["empty", "unterminated", "padded", "arc-over-32-bits", "too-long"],
)
def test_malformed_oids_are_refused(content: str) -> None:
    with pytest.raises(BerError) as info:
        oid_to_str(bytes.fromhex(content))
    assert info.value.reason == "bad_oid"


@given(oids())
def test_oid_encoding_round_trips(text: str) -> None:
    _, start, stop = header(encode_oid(text), 0, 64 * 1024)
    assert oid_to_str(encode_oid(text)[start:stop]) == text


def test_oid_cache_stays_bounded() -> None:
    for arc in range(_OID_CACHE_SIZE + 10):
        oid_to_str(encode_oid(f"1.3.6.1.4.1.{arc}")[2:])
    assert len(_oid_cache) <= _OID_CACHE_SIZE


VALUES: list[tuple[int, str, Any]] = [
    (0x02, "7f", 127),
    (0x02, "80", -128),
    (0x02, "00ff", 255),
    (0x02, "80000000", -(2**31)),
    (0x04, "", b""),
    (0x04, "00ff", b"\x00\xff"),
    (0x05, "", None),
    (0x06, "2b06", "1.3.6"),
    (0x40, "c0000201", "192.0.2.1"),
    (0x41, "00ffffffff", 2**32 - 1),
    (0x41, "ffffffff", 2**32 - 1),  # some agents omit the leading zero octet
    (0x42, "00", 0),
    (0x43, "0100", 256),
    (0x44, "9f7804", b"\x9f\x78\x04"),
    (0x46, "00ffffffffffffffff", 2**64 - 1),
    (0x80, "", None),
    (0x81, "", None),
    (0x82, "", None),
]


@pytest.mark.parametrize(("tag", "content", "value"), VALUES)
def test_values_decode_by_type(tag: int, content: str, value: Any) -> None:
    raw = bytes.fromhex(content)
    assert decode_value(tag, raw, 0, len(raw)) == value
    varbind = tlv(0x30, encode_oid("1.3.6.1.9") + tlv(tag, raw))
    [binding] = decode_varbinds(varbind, 0, len(varbind))
    assert binding[:3] == ("1.3.6.1.9", tag, value)


REFUSED_VALUES = [
    (0x02, "", "bad_value"),
    (0x02, "0100000000", "bad_value"),
    (0x05, "00", "bad_value"),
    (0x40, "c00002", "bad_value"),
    (0x41, "", "bad_value"),
    (0x41, "0100000000", "bad_value"),
    (0x46, "010000000000000000", "bad_value"),
    (0x47, "01", "bad_value_type"),
    (0x03, "00", "bad_value_type"),
]


@pytest.mark.parametrize(("tag", "content", "reason"), REFUSED_VALUES)
def test_out_of_range_values_and_unknown_types_are_refused(tag: int, content: str, reason: str) -> None:
    varbind = tlv(0x30, encode_oid("1.3.6.1.9") + tlv(tag, bytes.fromhex(content)))
    with pytest.raises(BerError) as info:
        decode_varbinds(varbind, 0, len(varbind))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("30", "truncated"),
        ("3005020101", "truncated"),
        ("3080020101", "bad_length"),
        ("3085000000000100", "bad_length"),
        ("308400010000", "truncated"),
        ("3081", "truncated"),
    ],
)
def test_lengths_that_lie_are_refused(data: str, reason: str) -> None:
    raw = bytes.fromhex(data)
    with pytest.raises(BerError) as info:
        header(raw, 0, len(raw))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [("3000", "bad_varbind"), ("3003060100", "bad_varbind"), ("300604012b020100", "bad_varbind")],
    ids=["empty", "no-value", "name-not-oid"],
)
def test_malformed_varbinds_are_refused(data: str, reason: str) -> None:
    raw = bytes.fromhex(data)
    with pytest.raises(BerError) as info:
        decode_varbinds(raw, 0, len(raw))
    assert info.value.reason == reason


@given(st.integers(-(2**63), 2**63 - 1))
def test_integer_encoding_is_minimal_and_round_trips(value: int) -> None:
    encoded = encode_int(value)
    assert read_int(encoded, 0, len(encoded), "x") == (value, len(encoded))
    if len(encoded) > 3:
        first, second = encoded[2], encoded[3]
        assert not (first == 0 and second < 0x80) and not (first == 0xFF and second >= 0x80)


@given(st.integers(0, 2**64 - 1))
def test_unsigned_encoding_round_trips(value: int) -> None:
    encoded = encode_unsigned(value, 0x46)
    assert decode_value(0x46, encoded, 2, len(encoded)) == value


@pytest.mark.parametrize(
    "encoded",
    [
        "300a 0604 2b060109 0481 0178",
        "3081 09 0604 2b060109 0401 78",
        "3082 000f 0682 0004 2b060109 0484 00000001 78",
    ],
    ids=["value", "binding", "every-header"],
)
def test_a_binding_with_non_minimal_lengths_has_the_minimal_tlv(encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    minimal = tlv(0x30, encode_oid("1.3.6.1.9") + b"\x04\x01x")
    [binding] = decode_varbinds(raw, 0, len(raw))
    assert binding.tlv == minimal
    assert binding[:3] == ("1.3.6.1.9", 0x04, b"x")
    assert decode_varbinds(minimal, 0, len(minimal))[0].tlv == minimal


def test_a_binding_decodes_alike_wherever_it_appears_and_when_cached() -> None:
    one = tlv(0x30, encode_oid("1.3.6.1.9.77") + tlv(0x04, b"eth0"))
    other = tlv(0x30, encode_oid("1.3.6.1.9.78") + encode_int(5))
    [first] = decode_varbinds(one, 0, len(one))
    listed = b"\xff" + other + one + one + b"\xff"
    [second] = decode_varbinds(other, 0, len(other))
    assert decode_varbinds(listed, 1, len(listed) - 1) == [second, first, first]
    assert first.row == ("1.3.6.1.9.77", "OCTET STRING", "eth0")


def test_refused_bindings_stay_refused() -> None:
    bad = tlv(0x30, encode_oid("1.3.6.1.9") + tlv(0x02, b""))
    for _ in range(2):
        with pytest.raises(BerError):
            decode_varbinds(bad, 0, len(bad))
    # The same binding cut short by its list's end is refused even once cached.
    good = tlv(0x30, encode_oid("1.3.6.1.9") + encode_int(1))
    decode_varbinds(good, 0, len(good))
    with pytest.raises(BerError) as info:
        decode_varbinds(good, 0, len(good) - 1)
    assert info.value.reason == "truncated"


def test_binding_cache_stays_bounded() -> None:
    for arc in range(_CACHE_SIZE + 10):
        raw = tlv(0x30, encode_oid("1.3.6.1.9") + encode_int(arc))
        decode_varbinds(raw, 0, len(raw))
    assert len(_cache) <= _CACHE_SIZE
