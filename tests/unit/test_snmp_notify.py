"""The `snmp` sink's encoding (`formats.snmp.notify`) against the project's own receiver, its config
checks, and keep_source's fallback without CAP_NET_RAW."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Any

import pytest

from formats import Event
from formats.snmp import DiscoveryError, SnmpConfig, SnmpParser, SnmpReceiver, UsmUser
from formats.snmp._ber import (
    COUNTER64,
    IP_ADDRESS,
    OCTET_STRING,
    OPAQUE,
    SEQUENCE,
    TIMETICKS,
    TRAP_V2,
    encode_int,
    encode_oid,
    encode_unsigned,
    tlv,
)
from formats.snmp._message import encode_community, encode_pdu
from formats.snmp.notify import EncodeError, Notifier, notification_varbinds
from gateway.config import SinkConfig, config_from_dict
from gateway.errors import ConfigError
from gateway.sinks import Outgoing
from gateway.sinks.snmp import SnmpSink, SnmpSinkOptions, udp_packet

E = "1.3.6.1.4.1.99999"
TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
USER = UsmUser("fwd", "SHA", "fwd-auth-pass", "AES", "fwd-priv-pass")
SINK_ENGINE = b"\x80\x00\x00\x00\x04sink"
MANAGER_ENGINE = b"\x80\x00\x00\x00\x04manager"


def vb(oid: str, value: bytes) -> bytes:
    return tlv(SEQUENCE, encode_oid(oid) + value)


VALUES = [  # (TLV, the row the parser makes of it)
    (tlv(OCTET_STRING, b"text"), ("OCTET STRING", "text")),
    (tlv(OCTET_STRING, "ünï".encode()), ("OCTET STRING", "ünï")),
    (tlv(OCTET_STRING, b"\x00\xff"), ("Hex-STRING", "00ff")),
    (tlv(OCTET_STRING, b""), ("OCTET STRING", "")),
    (encode_int(-2**31), ("INTEGER", -2**31)),
    (encode_unsigned(2**64 - 1, COUNTER64), ("Counter64", 2**64 - 1)),
    (tlv(IP_ADDRESS, bytes([10, 0, 0, 1])), ("IpAddress", "10.0.0.1")),
    (encode_oid("1.3.6.1.2.1.2.2.1.1.4294967295"), ("OID", "1.3.6.1.2.1.2.2.1.1.4294967295")),
    (tlv(OPAQUE, b"\x9f\x78"), ("Opaque", "9f78")),
    (b"\x05\x00", ("NULL", None)),
    (b"\x81\x00", ("noSuchInstance", None)),
]


def v2c_event(*values: bytes, community: bytes = b"site", peer: tuple[str, int] = ("192.0.2.7", 1)) -> Event:
    varbinds = vb("1.3.6.1.2.1.1.3.0", encode_unsigned(5, TIMETICKS)) + vb("1.3.6.1.6.3.1.1.4.1.0",
                                                                            encode_oid(f"{E}.0.1"))
    varbinds += b"".join(vb(f"{E}.1.{i}", v) for i, v in enumerate(values))
    return SnmpParser().parse(encode_community(1, community, encode_pdu(TRAP_V2, 1, varbinds)), peer, 0.0)


def reemitted(event: Event, **notifier: Any) -> Event:
    """The event the project's parser makes of what a v2c notifier sends for `event`."""
    data = Notifier("2c", **notifier).notification(notification_varbinds(event.fields, event.peer[0]), 9,
                                                   False, 0.0)
    return SnmpParser().parse(data, ("127.0.0.1", 2), 0.0)


@pytest.mark.parametrize(("value", "row"), VALUES)
def test_every_value_type_comes_back_as_it_arrived(value: bytes, row: tuple[str, Any]) -> None:
    event = v2c_event(value)
    assert event.fields["varbinds"] == [[f"{E}.1.0", *row]]
    again = reemitted(event)
    assert again.fields["varbinds"][0] == [f"{E}.1.0", *row]
    assert (again.fields["uptime"], again.fields["trap_oid"]) == (5, f"{E}.0.1")


def test_the_origin_is_appended_once_and_the_identity_is_unchanged() -> None:
    event = v2c_event(tlv(OCTET_STRING, b"x"))
    again = reemitted(event, community=b"mgr")
    assert again.fields["varbinds"][1:] == [[TRAP_ADDRESS, "IpAddress", "192.0.2.7"],
                                            [TRAP_COMMUNITY, "OCTET STRING", "site"]]
    # The receiver takes the appended bindings as a proxy's: same identity, source from snmpTrapAddress.0.
    assert again.identity == event.identity
    assert again.fields["source"] == "192.0.2.7"
    # A second hop appends nothing: the origin is already there.
    assert reemitted(again).fields["varbinds"] == again.fields["varbinds"]


def test_an_ipv6_origin_has_no_snmp_trap_address() -> None:
    event = v2c_event(peer=("2001:db8::1", 1))
    assert [row[0] for row in reemitted(event).fields["varbinds"]] == [TRAP_COMMUNITY]


@pytest.mark.parametrize("fields", [
    {},
    {"uptime": 1, "trap_oid": "1.3", "varbinds": [["1.3.6", "Counter32", -1]]},
    {"uptime": 1, "trap_oid": "1.3", "varbinds": [["1.3.6", "Hex-STRING", "zz"]]},
    {"uptime": 1, "trap_oid": "1.3", "varbinds": [["1.3.6", "Float", 1.0]]},
    {"uptime": 1, "trap_oid": "x.y", "varbinds": []},
    {"uptime": 2**32, "trap_oid": "1.3", "varbinds": []},
    {"uptime": 1, "trap_oid": "1.3", "varbinds": [["1.3.6", "IpAddress", "::1"]]},
])
def test_fields_that_make_no_notification_are_an_encode_error(fields: dict[str, Any]) -> None:
    with pytest.raises(EncodeError) as info:
        notification_varbinds(fields, "192.0.2.1")
    assert info.value.reason == "bad_fields"


def test_a_v3_trap_decodes_with_the_receivers_usm_and_names_the_sinks_engine() -> None:
    notifier = Notifier("3", user=USER, engine_id=SINK_ENGINE, boots=3, started_at=100.0, salt=7)
    event = v2c_event(tlv(OCTET_STRING, b"secret"))
    data = notifier.notification(notification_varbinds(event.fields, "192.0.2.7"), 5, False, 160.0)
    assert b"secret" not in data
    got, reply = SnmpReceiver(SnmpConfig(users=(USER,), engine_id=MANAGER_ENGINE)).handle(data, ("h", 1), 1.0)
    assert reply is None
    assert got.fields["user"] == "fwd" and got.fields["engine_id"] == SINK_ENGINE.hex()
    assert got.fields["varbinds"][0] == [f"{E}.1.0", "OCTET STRING", "secret"]


def test_a_v3_inform_discovers_the_manager_then_is_answered() -> None:
    manager = SnmpReceiver(SnmpConfig(users=(USER,), engine_id=MANAGER_ENGINE), engine_boots=4,
                           started_at=0.0)
    notifier = Notifier("3", user=USER, engine_id=SINK_ENGINE, salt=1)
    assert notifier.needs_discovery
    with pytest.raises(DiscoveryError) as report:
        manager.handle(notifier.probe(11), ("h", 1), 50.0)
    assert report.value.reply is not None
    reply = notifier.reply(report.value.reply, 0.0)
    assert reply is not None and reply.resend
    assert (reply.request_id, reply.outcome) == (11, "unknown_engine_id")
    assert not notifier.needs_discovery and notifier.manager_engine_id == MANAGER_ENGINE
    varbinds = notification_varbinds(v2c_event().fields, "192.0.2.7")
    # The manager's clock moved on (its boots and time came with the Report): not in its window.
    with pytest.raises(DiscoveryError) as stale:
        manager.handle(notifier.notification(varbinds, 12, True, 0.0), ("h", 1), 1000.0)
    assert stale.value.reply is not None
    reply = notifier.reply(stale.value.reply, 0.0)
    assert reply is not None and (reply.request_id, reply.outcome) == (12, "not_in_time_window")
    event, response = manager.handle(notifier.notification(varbinds, 12, True, 0.0), ("h", 1), 1000.0)
    assert event.fields["pdu"] == "inform" and response is not None
    assert notifier.reply(response, 0.0) == (12, "answered")


def test_a_v2c_inform_is_answered_by_request_id_and_another_community_is_ignored() -> None:
    notifier = Notifier("2c", community=b"mgr")
    data = notifier.notification(notification_varbinds(v2c_event().fields, "192.0.2.7"), 21, True, 0.0)
    _, response = SnmpReceiver(SnmpConfig()).handle(data, ("h", 1), 0.0)
    assert response is not None
    assert notifier.reply(response, 0.0) == (21, "answered")
    assert Notifier("2c", community=b"other").reply(response, 0.0) is None


def sink_config(**sink: Any) -> Any:
    config = config_from_dict({"sinks": {"m": {"type": "snmp", **sink}}}, ["custom", "snmp", "syslog"])
    return config.sinks["m"].options


def test_the_sinks_keys_are_checked() -> None:
    options = sink_config(address="127.0.0.1:162", formats=["snmp"], version="3", user="u", auth="sha",
                          auth_passphrase="12345678", priv="AES", priv_passphrase="12345678")
    assert options.usm_user().auth == "SHA"
    v3 = {"address": "h:1", "version": "3", "user": "u"}
    bad = [
        ({}, "sinks.m.address"),
        ({"address": "nowhere"}, "sinks.m.address"),
        ({"address": "h:1", "version": "1"}, "sinks.m.version"),
        ({"address": "h:1", "version": "3"}, "sinks.m.user"),
        ({**v3, "auth": "XX", "auth_passphrase": "12345678"}, "sinks.m"),
        ({**v3, "auth": "SHA", "auth_passphrase": "short"}, "sinks.m"),
        ({"address": "h:1", "inform": True, "keep_source": True}, "sinks.m.keep_source"),
        ({"address": "h:1", "engine_id": "zz"}, "sinks.m.engine_id"),
        ({"address": "h:1", "engine_id": "0102"}, "sinks.m.engine_id"),
        ({"address": "h:1", "inform_timeout": 0}, "sinks.m"),
    ]
    for table, key in bad:
        with pytest.raises(ConfigError) as info:
            sink_config(**table)
        assert info.value.key == key, table


def test_udp_packet_has_a_valid_checksum_and_the_given_addresses() -> None:
    packet = udp_packet(("192.0.2.7", 4000), ("127.0.0.1", 162), b"abc")
    assert packet[12:16] == bytes([192, 0, 2, 7]) and packet[16:20] == bytes([127, 0, 0, 1])
    udp = packet[20:]
    assert struct.unpack("!HHH", udp[:6]) == (4000, 162, 11)
    pseudo = packet[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(udp))
    data = pseudo + udp + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


def test_keep_source_without_cap_net_raw_logs_one_line_and_sends_normally(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    manager = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    manager.bind(("127.0.0.1", 0))
    manager.settimeout(5)
    real_socket = socket.socket

    def no_raw(family: int = -1, kind: int = -1, *args: Any) -> socket.socket:
        if kind == socket.SOCK_RAW:
            raise PermissionError(1, "Operation not permitted")
        return real_socket(family, kind, *args)

    monkeypatch.setattr(socket, "socket", no_raw)
    options = SnmpSinkOptions(address=f"127.0.0.1:{manager.getsockname()[1]}", keep_source=True)
    sink = SnmpSink("m", SinkConfig("snmp"), options)
    syslog = Event("syslog", ("127.0.0.1", 9), time.time(), {}, b"", ())
    events = [v2c_event(tlv(OCTET_STRING, f"t{i}".encode())) for i in range(3)]

    async def main() -> None:
        await sink.start()
        await sink.send([Outgoing(e, "f", f"f-{i}-1", b"") for i, e in enumerate([*events, syslog])])
        await sink.send([Outgoing(events[0], "f", "f-9-1", b"")])
        await sink.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["sink m: keep_source needs CAP_NET_RAW, which this process lacks; traps go out from "
                     "this host's own address"]
    got = [SnmpParser().parse(manager.recvfrom(65535)[0], ("h", 1), 0.0) for _ in range(4)]
    manager.close()
    assert [e.fields["varbinds"][0][2] for e in got] == ["t0", "t1", "t2", "t0"]
    assert sink.counters.dropped == {"not_snmp": 1}
