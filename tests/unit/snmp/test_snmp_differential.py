"""Our decoder reads every message exactly as pysnmp, the reference, reads it.

The corpus is encoded by pysnmp: every version, security level, auth and
privacy protocol and value type, with hypothesis-generated varbind lists.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pysnmp.proto import rfc1905
from pysnmp.proto.api import v2c
from snmp_reference import (
    RECEIVER_ENGINE,
    V3Pair,
    encode_v1_trap,
    encode_v2c,
    notification_varbinds,
    oids,
    our_decode,
    pysnmp_decode_community,
    varbind_lists,
)

from formats.snmp._usm import Usm, UsmUser

EVERY_TYPE: list[tuple[str, Any]] = [
    ("1.3.6.1.9.1", v2c.Integer32(-(2**31))),
    ("1.3.6.1.9.2", v2c.Integer32(2**31 - 1)),
    ("1.3.6.1.9.3", v2c.OctetString(b"text")),
    ("1.3.6.1.9.4", v2c.OctetString(b"\x00\xff" * 100)),
    ("1.3.6.1.9.5", v2c.Null()),
    ("1.3.6.1.9.6", v2c.ObjectIdentifier("2.999.4294967295")),
    ("1.3.6.1.9.7", v2c.IpAddress("192.0.2.1")),
    ("1.3.6.1.9.8", v2c.Counter32(2**32 - 1)),
    ("1.3.6.1.9.9", v2c.Gauge32(0)),
    ("1.3.6.1.9.10", v2c.TimeTicks(2**31)),
    ("1.3.6.1.9.11", v2c.Opaque(b"\x9f\x78\x04\x3f\x80\x00\x00")),
    ("1.3.6.1.9.12", v2c.Counter64(2**64 - 1)),
    ("1.3.6.1.9.13", rfc1905.noSuchObject),
    ("1.3.6.1.9.14", rfc1905.noSuchInstance),
    ("1.3.6.1.9.15", rfc1905.endOfMibView),
]

USERS = [
    UsmUser("none"),
    *(
        UsmUser(f"auth-{a}", a, "auth-pass-" + a)
        for a in ("MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
    ),
    *(
        UsmUser(f"priv-{p}", "SHA", "auth-pass-sha", p, "priv-pass-" + p)
        for p in ("DES", "AES", "AES-192", "AES-256", "AES-192-C", "AES-256-C")
    ),
    UsmUser("md5-aes256", "MD5", "auth-pass-md5", "AES-256", "priv-pass-b"),
    UsmUser("md5-aes256c", "MD5", "auth-pass-md5", "AES-256-C", "priv-pass-r"),
    UsmUser("sha512-des", "SHA-512", "auth-pass-512", "DES", "priv-pass-des"),
]

settle = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def pair() -> V3Pair:
    return V3Pair(USERS)


@pytest.fixture(scope="module")
def usm() -> Usm:
    return Usm(USERS, RECEIVER_ENGINE, 1, 0.0, 0)


@settle
@given(
    community=st.binary(max_size=24),
    enterprise=oids(),
    agent=st.binary(min_size=4, max_size=4),
    generic=st.integers(0, 6),
    specific=st.integers(0, 2**31 - 1),
    stamp=st.integers(0, 2**32 - 1),
    varbinds=varbind_lists(v1=True),
)
def test_v1_trap_reads_as_pysnmp_reads_it(
    community: bytes, enterprise: str, agent: bytes, generic: int, specific: int, stamp: int, varbinds: Any
) -> None:
    address = ".".join(str(b) for b in agent)
    data = encode_v1_trap(community, enterprise, address, generic, specific, stamp, varbinds)
    assert our_decode(data) == pysnmp_decode_community(data)


@settle
@given(
    community=st.binary(max_size=24),
    inform=st.booleans(),
    request_id=st.integers(-(2**31), 2**31 - 1),
    varbinds=varbind_lists(),
)
def test_v2c_trap_and_inform_read_as_pysnmp_reads_them(
    community: bytes, inform: bool, request_id: int, varbinds: Any
) -> None:
    data = encode_v2c(community, inform, request_id, varbinds)
    assert our_decode(data) == pysnmp_decode_community(data)


@pytest.mark.parametrize("inform", [False, True], ids=["trap", "inform"])
def test_every_value_type_reads_as_pysnmp_reads_it_v2c(inform: bool) -> None:
    data = encode_v2c(b"public", inform, 1, notification_varbinds(99, "1.3.6.1.6.3.1.1.5.3", EVERY_TYPE))
    ours = our_decode(data)
    assert ours == pysnmp_decode_community(data)
    assert {tag for _, tag, _ in ours.varbinds} == {
        0x02,
        0x04,
        0x05,
        0x06,
        0x40,
        0x41,
        0x42,
        0x43,
        0x44,
        0x46,
        0x80,
        0x81,
        0x82,
    }


def test_every_value_type_reads_as_pysnmp_reads_it_v1() -> None:
    data = encode_v1_trap(b"public", "1.3.6.1.4.1.8072", "10.0.0.1", 6, 1, 5, EVERY_TYPE[:11])
    assert our_decode(data) == pysnmp_decode_community(data)


@pytest.mark.parametrize("user", USERS, ids=[u.name for u in USERS])
def test_v3_every_value_type_reads_as_pysnmp_reads_it(pair: V3Pair, usm: Usm, user: UsmUser) -> None:
    data = pair.encode_trap(user, 1234, notification_varbinds(7, "1.3.6.1.6.3.1.1.5.4", EVERY_TYPE))
    assert our_decode(data, usm) == pair.decode(data)


@pytest.mark.parametrize("user", USERS, ids=[u.name for u in USERS])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_id=st.integers(-(2**31), 2**31 - 1), varbinds=varbind_lists(max_size=6))
def test_v3_trap_reads_as_pysnmp_reads_it(
    pair: V3Pair, usm: Usm, user: UsmUser, request_id: int, varbinds: Any
) -> None:
    data = pair.encode_trap(user, request_id, varbinds)
    assert our_decode(data, usm) == pair.decode(data)
