"""Any datagram gives an Event, a reply, or a FormatError: nothing else escapes.

Seeds are valid messages of every version and security level; hypothesis
flips bits, truncates, rewrites single bytes (length octets among them),
inserts and deletes, and also feeds arbitrary bytes.
"""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats import FormatError
from formats.snmp import DiscoveryError, SnmpConfig, SnmpReceiver, UsmUser
from formats.snmp._ber import encode_int, encode_oid, encode_unsigned, tlv
from formats.snmp._message import (
    decode_scoped_pdu,
    encode_community,
    encode_pdu,
    encode_scoped_pdu,
    encode_v3,
)
from formats.snmp._usm import Usm

PEER = ("192.0.2.1", 50000)
SENDER = b"\x80\x00\x00\x00\x05fuzz-sender"
USERS = (
    UsmUser("plain"),
    UsmUser("auth", "SHA", "auth-pass-1"),
    UsmUser("des", "MD5", "auth-pass-1", "DES", "priv-pass-1"),
    UsmUser("aes", "SHA", "auth-pass-1", "AES-256", "priv-pass-1"),
)
CONFIG = SnmpConfig(users=USERS)


def _varbinds() -> bytes:
    def vb(oid: str, value: bytes) -> bytes:
        return tlv(0x30, encode_oid(oid) + value)

    return b"".join(
        [
            vb("1.3.6.1.2.1.1.3.0", encode_unsigned(12345, 0x43)),
            vb("1.3.6.1.6.3.1.1.4.1.0", encode_oid("1.3.6.1.6.3.1.1.5.3")),
            vb("1.3.6.1.2.1.2.2.1.1.3", encode_int(3)),
            vb("1.3.6.1.2.1.2.2.1.2.3", tlv(0x04, b"GigabitEthernet0/3")),
            vb("1.3.6.1.6.3.18.1.3.0", tlv(0x40, b"\x0a\x00\x00\x01")),
            vb("1.3.6.1.9.1", encode_unsigned(2**64 - 1, 0x46)),
            vb("1.3.6.1.9.2", b"\x05\x00"),
            vb("1.3.6.1.9.3", b"\x80\x00"),
            vb("1.3.6.1.9.4", tlv(0x44, b"\x9f\x78\x04\x00\x00\x00\x00")),
        ]
    )


def _v3_trap(user: UsmUser, usm: Usm) -> bytes:
    scoped = encode_scoped_pdu(SENDER, b"", encode_pdu(0xA7, 7, _varbinds()))
    level, priv, keys, auth_length = 0, b"", None, 0
    if user.auth:
        keys = usm.keys_for(user, SENDER)
        level, auth_length = 1, keys.digest_length
    if user.priv and keys is not None:
        ciphertext, priv = usm.encrypt(keys, scoped, 1, 100)
        scoped, level = tlv(0x04, ciphertext), 3
    whole, offset = encode_v3(99, 65507, level, SENDER, 1, 100, user.name.encode(), auth_length, priv, scoped)
    return Usm.sign(keys, whole, offset) if keys else whole


def _seeds() -> list[bytes]:
    usm = Usm(USERS, b"\x80\x00\x00\x00\x05local", 1, 0.0, 3)
    trap_v1 = tlv(
        0xA4,
        encode_oid("1.3.6.1.4.1.9")
        + tlv(0x40, b"\x0a\x01\x02\x03")
        + encode_int(6)
        + encode_int(17)
        + encode_unsigned(99, 0x43)
        + tlv(0x30, _varbinds()[41:]),
    )
    seeds = [
        encode_community(0, b"public", trap_v1),
        encode_community(1, b"public", encode_pdu(0xA7, 1, _varbinds())),
        encode_community(1, b"public", encode_pdu(0xA6, 2, _varbinds())),
        *(_v3_trap(user, usm) for user in USERS),
    ]
    receiver = SnmpReceiver(SnmpConfig(users=USERS), started_at=0.0, salt=1)
    probe = encode_v3(
        1, 65507, 4, b"", 0, 0, b"", 0, b"", encode_scoped_pdu(b"", b"", encode_pdu(0xA0, 5, b""))
    )
    with pytest.raises(DiscoveryError) as info:
        receiver.handle(probe[0], PEER, 1.0)
    assert info.value.reply is not None
    return [*seeds, probe[0], info.value.reply]


SEEDS = _seeds()
SCOPED_SEEDS = [
    encode_scoped_pdu(SENDER, b"ctx", encode_pdu(0xA7, 1, _varbinds())),
    encode_scoped_pdu(SENDER, b"", encode_pdu(0xA6, 1, _varbinds())) + b"\x00" * 7,
]
RECEIVER = SnmpReceiver(CONFIG, started_at=0.0, salt=1)
fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feed(data: bytes) -> None:
    try:
        event, reply = RECEIVER.handle(data, PEER, 5.0)
    except FormatError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    orjson.dumps(dict(event.fields))
    assert all(isinstance(part, bytes | str | int) for part in event.identity)
    assert reply is None or isinstance(reply, bytes)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF, data[at] + 1 & 0xFF])
            )
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        else:
            del data[at]
    return bytes(data)


def test_seeds_are_valid_messages() -> None:
    for seed in SEEDS[:-2]:
        event, _ = SnmpReceiver(CONFIG, started_at=0.0).handle(seed, PEER, 5.0)
        assert event is not None
    for scoped in SCOPED_SEEDS:
        assert decode_scoped_pdu(scoped, 0, len(scoped), padded=True).pdu.varbinds


@fuzz
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_give_only_format_errors(data: bytes) -> None:
    _feed(data)


@fuzz
@given(data=st.binary(max_size=60).map(lambda tail: b"\x30" + bytes([len(tail)]) + tail))
def test_arbitrary_sequences_give_only_format_errors(data: bytes) -> None:
    _feed(data)


@fuzz
@given(data=mutated(SEEDS))
def test_mutated_messages_give_only_format_errors(data: bytes) -> None:
    _feed(data)


@fuzz
@given(data=mutated(SCOPED_SEEDS))
def test_mutated_decrypted_scoped_pdus_give_only_format_errors(data: bytes) -> None:
    # What a wrong privacy key or a corrupted ciphertext hands the decoder.
    with contextlib.suppress(FormatError):
        decode_scoped_pdu(data, 0, len(data), padded=True)


@fuzz
@given(
    user=st.sampled_from(USERS[2:]),
    salt=st.binary(min_size=6, max_size=9),
    ciphertext=st.binary(max_size=120),
)
def test_authentic_messages_with_garbage_ciphertext_give_only_format_errors(
    user: UsmUser, salt: bytes, ciphertext: bytes
) -> None:
    keys = RECEIVER.usm.keys_for(user, SENDER)
    whole, offset = encode_v3(
        5, 65507, 3, SENDER, 1, 100, user.name.encode(), keys.digest_length, salt, tlv(0x04, ciphertext)
    )
    _feed(Usm.sign(keys, whole, offset))
