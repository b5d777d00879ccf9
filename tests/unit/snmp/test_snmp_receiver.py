"""SnmpReceiver: events, identity, source rules and refusals."""

from __future__ import annotations

from typing import Any

import pytest
from netsnmp_vectors import NETSNMP
from pysnmp.proto.api import v2c
from snmp_reference import encode_v1_trap, encode_v2c, notification_varbinds

from formats import get_parser
from formats.snmp import AccessError, BerError, SnmpConfig, SnmpError, SnmpParser, SnmpReceiver, UsmUser
from formats.snmp._ber import encode_int, encode_oid, tlv
from formats.snmp._message import encode_v3
from formats.snmp._usm import Usm

PEER = ("192.0.2.7", 40000)
ALICE = UsmUser("alice", "SHA", "authpass1", "AES", "privpass1")
VECTOR_ENGINE = bytes.fromhex("8000000001020304")
TRAP_OID = "1.3.6.1.4.1.8072.2.3.0.1"
SYS_NAME = "1.3.6.1.2.1.1.5.0"


def vector(name: str) -> bytes:
    return bytes.fromhex(NETSNMP[name])


def netsnmp_users(priv: str | None = None, auth: str = "SHA") -> tuple[UsmUser, ...]:
    return (
        UsmUser("alice", auth, "authpass1", priv, "privpass1" if priv else ""),
        UsmUser("nobody"),
    )


def receive(data: bytes, config: SnmpConfig | None = None, now: float = 100.0) -> Any:
    event, reply = SnmpReceiver(config or SnmpConfig(), started_at=0.0, salt=1).handle(data, PEER, now)
    assert reply is None
    return event


def reason_of(data: bytes, config: SnmpConfig, receiver: SnmpReceiver | None = None) -> str:
    receiver = receiver or SnmpReceiver(config, started_at=0.0)
    with pytest.raises(SnmpError) as info:
        receiver.handle(data, PEER, 100.0)
    return info.value.reason


def test_netsnmp_v2c_trap_gives_normalized_fields() -> None:
    event = receive(vector("v2c_trap"))
    assert event.format == "snmp"
    fields = dict(event.fields)
    assert fields.pop("uptime") > 0
    assert fields == {
        "version": "2c",
        "pdu": "trap",
        "community": "public",
        "engine_id": None,
        "trap_oid": TRAP_OID,
        "agent_addr": None,
        "source": "192.0.2.7",
        "source_rule": "peer",
        "varbinds": [["1.3.6.1.4.1.8072.2.3.2.1", "INTEGER", 42], [SYS_NAME, "OCTET STRING", "host-a"]],
    }


def test_netsnmp_v1_trap_is_mapped_per_rfc3584() -> None:
    fields = receive(vector("v1")).fields
    assert fields["version"] == "1"
    assert fields["trap_oid"] == "1.3.6.1.4.1.8072.3.0.17"
    assert fields["uptime"] == 1234
    assert fields["agent_addr"] == "10.1.2.3"
    assert (fields["source"], fields["source_rule"]) == ("10.1.2.3", "agent_addr")
    assert fields["enterprise"] == "1.3.6.1.4.1.8072.3"
    assert fields["varbinds"] == [[SYS_NAME, "OCTET STRING", "host-a"]]


@pytest.mark.parametrize(("generic", "trap_oid"), [(0, "1.3.6.1.6.3.1.1.5.1"), (5, "1.3.6.1.6.3.1.1.5.6")])
def test_v1_generic_traps_map_to_snmp_traps(generic: int, trap_oid: str) -> None:
    data = encode_v1_trap(b"public", "1.3.6.1.4.1.9", "10.0.0.1", generic, 0, 1, [])
    assert receive(data).fields["trap_oid"] == trap_oid


@pytest.mark.parametrize(
    "name",
    [
        "v3_noauth",
        "v3_MD5",
        "v3_SHA",
        "v3_SHA-224",
        "v3_SHA-256",
        "v3_SHA-384",
        "v3_SHA-512",
        "v3_SHA_DES",
        "v3_SHA_AES",
        "v3_SHA_AES-192",
        "v3_SHA_AES-256",
        "v3_SHA_AES-192-C",
        "v3_SHA_AES-256-C",
        "v3_MD5_AES-256",
    ],
)
def test_netsnmp_v3_traps_are_authenticated_and_decrypted(name: str) -> None:
    parts = name.split("_")
    auth = parts[1] if len(parts) > 1 and parts[1] != "noauth" else "SHA"
    priv = parts[2] if len(parts) > 2 else None
    event = receive(vector(name), SnmpConfig(users=netsnmp_users(priv, auth)))
    fields = event.fields
    assert fields["version"] == "3"
    assert fields["user"] == ("nobody" if name == "v3_noauth" else "alice")
    assert fields["trap_oid"] == TRAP_OID
    assert fields["varbinds"][-1] == [SYS_NAME, "OCTET STRING", "host-a"]
    assert fields["source_rule"] == "engine_id"
    assert fields["source"] == fields["engine_id"]


def test_engine_id_source_goes_through_the_mapping_table() -> None:
    plain = receive(vector("v3_noauth"), SnmpConfig(users=netsnmp_users()))
    engine_hex = plain.fields["engine_id"]
    config = SnmpConfig(users=netsnmp_users(), engine_sources={engine_hex: "core-router-1"})
    event = receive(vector("v3_noauth"), config)
    assert event.fields["source"] == "core-router-1"
    assert event.identity[0] == "core-router-1"


def test_source_order_is_configurable() -> None:
    data = encode_v1_trap(b"public", "1.3.6.1.4.1.9", "10.0.0.1", 6, 1, 1, [])
    event = receive(data, SnmpConfig(source_order=("peer", "agent_addr")))
    assert (event.fields["source"], event.fields["source_rule"]) == (PEER[0], "peer")


def test_v1_agent_addr_zero_falls_through_to_peer() -> None:
    data = encode_v1_trap(b"public", "1.3.6.1.4.1.9", "0.0.0.0", 6, 1, 1, [])
    assert receive(data).fields["source_rule"] == "peer"


def _v2c(
    rest: list[tuple[str, Any]], inform: bool = False, community: bytes = b"public", rid: int = 1
) -> bytes:
    return encode_v2c(community, inform, rid, notification_varbinds(500, "1.3.6.1.4.1.9.0.1", rest))


REST = [("1.3.6.1.2.1.2.2.1.1.3", v2c.Integer32(3)), (SYS_NAME, v2c.OctetString(b"edge-1"))]


def test_trap_and_inform_of_the_same_content_share_identity() -> None:
    trap = receive(_v2c(REST, community=b"a", rid=1))
    inform = SnmpReceiver(SnmpConfig()).handle(_v2c(REST, inform=True, community=b"b", rid=2), PEER, 5.0)[0]
    assert inform is not None
    assert trap.identity == inform.identity
    assert trap.fields["varbinds"] == inform.fields["varbinds"]


def test_identity_depends_on_varbinds_uptime_and_trap_oid() -> None:
    base = receive(_v2c(REST)).identity
    assert receive(_v2c(REST[:1])).identity != base
    other_uptime = encode_v2c(b"public", False, 1, notification_varbinds(501, "1.3.6.1.4.1.9.0.1", REST))
    assert receive(other_uptime).identity != base
    other_oid = encode_v2c(b"public", False, 1, notification_varbinds(500, "1.3.6.1.4.1.9.0.2", REST))
    assert receive(other_oid).identity != base


def test_v1_trap_and_its_rfc3584_translation_share_identity_and_source() -> None:
    v1_rest = [("1.3.6.1.2.1.2.2.1.1.3", v2c.Integer32(3)), (SYS_NAME, v2c.OctetString(b"edge-1"))]
    v1 = receive(encode_v1_trap(b"public", "1.3.6.1.4.1.9", "10.9.8.7", 6, 1, 500, v1_rest))
    translated = _v2c(
        [
            *v1_rest,
            ("1.3.6.1.6.3.18.1.3.0", v2c.IpAddress("10.9.8.7")),
            ("1.3.6.1.6.3.18.1.4.0", v2c.OctetString(b"public")),
            ("1.3.6.1.6.3.1.1.4.3.0", v2c.ObjectIdentifier("1.3.6.1.4.1.9")),
        ]
    )
    relayed = SnmpReceiver(SnmpConfig()).handle(translated, ("203.0.113.1", 162), 1.0)[0]
    assert relayed is not None
    assert relayed.fields["source_rule"] == "trap_address"
    assert v1.identity == relayed.identity


def test_non_minimal_length_forms_give_the_same_identity() -> None:
    def varbind(oid: str, value: bytes, long_form: bool) -> bytes:
        body = encode_oid(oid) + value
        return (b"\x30\x81" + bytes([len(body)]) + body) if long_form else tlv(0x30, body)

    def message(long_form: bool) -> bytes:
        varbinds = (
            varbind("1.3.6.1.2.1.1.3.0", b"\x43\x01\x05", False)
            + varbind("1.3.6.1.6.3.1.1.4.1.0", encode_oid("1.3.6.1.4.1.9.0.1"), False)
            + varbind(SYS_NAME, tlv(0x04, b"edge"), long_form)
        )
        pdu = tlv(0xA7, encode_int(1) + encode_int(0) + encode_int(0) + tlv(0x30, varbinds))
        return tlv(0x30, encode_int(1) + tlv(0x04, b"public") + pdu)

    assert message(True) != message(False)
    assert receive(message(True)).identity == receive(message(False)).identity


def test_octet_strings_that_are_not_printable_are_hex() -> None:
    rest = [
        ("1.3.6.1.9.1", v2c.OctetString(b"\x00\x01\xff")),
        ("1.3.6.1.9.2", v2c.OctetString("déjà".encode())),
    ]
    assert receive(_v2c(rest)).fields["varbinds"] == [
        ["1.3.6.1.9.1", "Hex-STRING", "0001ff"],
        ["1.3.6.1.9.2", "OCTET STRING", "déjà"],
    ]


def test_community_allowlist_accepts_listed_and_refuses_others() -> None:
    config = SnmpConfig(communities=frozenset({"public", "ops"}))
    assert receive(vector("v2c_trap"), config).fields["community"] == "public"
    assert reason_of(_v2c(REST, community=b"guess"), config) == "unknown_community"


def test_users_sharing_a_name_are_each_tried() -> None:
    users = (
        UsmUser("alice", "SHA", "other-pass", "AES", "other-priv"),
        UsmUser("alice", "SHA", "authpass1", "AES", "privpass1"),
    )
    event = receive(vector("v3_SHA_AES"), SnmpConfig(users=users))
    assert event.fields["user"] == "alice"


def test_restricted_user_accepts_listed_engine_and_network() -> None:
    user = UsmUser(
        "alice", "SHA", "authpass1", "AES", "privpass1", frozenset({VECTOR_ENGINE}), ("192.0.2.0/24",)
    )
    assert receive(vector("v3_SHA_AES"), SnmpConfig(users=(user,))).fields["user"] == "alice"


REFUSALS = [
    ("unknown_user_name", "v3_SHA_AES", (UsmUser("bob", "SHA", "authpass1", "AES", "privpass1"),)),
    ("wrong_digest", "v3_SHA_AES", (UsmUser("alice", "SHA", "wrong-pass", "AES", "privpass1"),)),
    ("wrong_digest", "v3_SHA_AES", (UsmUser("alice", "MD5", "authpass1", "AES", "privpass1"),)),
    ("decryption_error", "v3_SHA_AES", (UsmUser("alice", "SHA", "authpass1", "AES", "wrong-priv"),)),
    ("decryption_error", "v3_SHA_DES", (UsmUser("alice", "SHA", "authpass1", "DES", "wrong-priv"),)),
    ("unsupported_sec_level", "v3_SHA", (ALICE,)),
    ("unsupported_sec_level", "v3_SHA_AES", (UsmUser("alice", "SHA", "authpass1"),)),
    ("unsupported_sec_level", "v3_noauth", (UsmUser("nobody", "SHA", "authpass1"),)),
    (
        "unknown_engine_id",
        "v3_SHA_AES",
        (
            UsmUser(
                "alice", "SHA", "authpass1", "AES", "privpass1", frozenset({b"\x80\x00\x00\x00\x05other"})
            ),
        ),
    ),
    (
        "unknown_user_name",
        "v3_SHA_AES",
        (UsmUser("alice", "SHA", "authpass1", "AES", "privpass1", networks=("10.0.0.0/8",)),),
    ),
]


@pytest.mark.parametrize(("reason", "name", "users"), REFUSALS)
def test_refusals_carry_usm_stats_reasons(reason: str, name: str, users: tuple[UsmUser, ...]) -> None:
    assert reason_of(vector(name), SnmpConfig(users=users)) == reason


MALFORMED = [
    ("truncated", vector("v2c_trap")[:-1]),
    ("trailing_data", vector("v2c_trap") + b"\x00"),
    ("bad_version", tlv(0x30, encode_int(2) + tlv(4, b"") + tlv(0xA7, b""))),
    ("bad_tag", bytes.fromhex("3003040100")),
    (
        "unsupported_pdu",
        tlv(
            0x30, encode_int(1) + tlv(4, b"p") + tlv(0xA0, bytes.fromhex("020101020100020100") + b"\x30\x00")
        ),
    ),
    ("bad_notification", encode_v2c(b"p", False, 1, [(SYS_NAME, v2c.OctetString(b"x"))])),
]


@pytest.mark.parametrize(("reason", "data"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_messages_are_ber_errors(reason: str, data: bytes) -> None:
    with pytest.raises(BerError) as info:
        SnmpReceiver(SnmpConfig()).handle(data, PEER, 1.0)
    assert info.value.reason == reason


def test_replayed_v3_trap_older_than_the_window_is_refused() -> None:
    receiver = SnmpReceiver(SnmpConfig(users=netsnmp_users("AES")), started_at=0.0)
    newest = vector("v3_SHA_AES")
    event, _ = receiver.handle(newest, PEER, 1000.0)
    assert event is not None
    # The same message 200 s later: the sender's clock has moved on since.
    with pytest.raises(AccessError) as info:
        receiver.handle(newest, PEER, 1200.0)
    assert info.value.reason == "not_in_time_window"
    assert receiver.handle(newest, PEER, 1100.0)[0] is not None


def test_registered_parser_reads_v1_and_v2c_and_refuses_v3() -> None:
    parser = get_parser("snmp")
    assert isinstance(parser, SnmpParser)
    assert parser.parse(vector("v2c_inform"), PEER, 1.0).fields["pdu"] == "inform"
    assert parser.parse(vector("v1"), PEER, 1.0).fields["version"] == "1"
    with pytest.raises(SnmpError) as info:
        parser.parse(vector("v3_noauth"), PEER, 1.0)
    assert info.value.reason == "unsupported_version"


@pytest.mark.parametrize(
    ("priv", "salt", "ciphertext", "boots"),
    [
        ("DES", bytes(8), b"", 1),
        ("DES", bytes(8), bytes(12), 1),
        ("AES", bytes(7), bytes(32), 1),
        ("AES", bytes(8), bytes(32), 2**32),
    ],
    ids=["des-empty", "des-partial-block", "aes-short-salt", "aes-boots-beyond-the-iv"],
)
def test_authentic_but_undecryptable_messages_are_decryption_errors(
    priv: str, salt: bytes, ciphertext: bytes, boots: int
) -> None:
    user = UsmUser("u", "SHA", "authpass1", priv, "privpass1")
    receiver = SnmpReceiver(SnmpConfig(users=(user,)), started_at=0.0)
    keys = receiver.usm.keys_for(user, VECTOR_ENGINE)
    whole, offset = encode_v3(
        1, 65507, 3, VECTOR_ENGINE, boots, 100, b"u", keys.digest_length, salt, tlv(4, ciphertext)
    )
    assert reason_of(Usm.sign(keys, whole, offset), receiver.config, receiver) == "decryption_error"
