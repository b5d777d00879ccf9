"""Replies: Responses to informs and Reports, as pysnmp reads them.

The v3 tests run a whole inform exchange with pysnmp's own message
processing as the sender: discovery probe, Report, inform, Response.
"""

from __future__ import annotations

from typing import Any

import pytest
from netsnmp_vectors import NETSNMP
from pyasn1.codec.ber import decoder
from pysnmp.proto import error
from pysnmp.proto.api import v2c
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from snmp_reference import (
    ADDRESS,
    DOMAIN,
    RECEIVER_ENGINE,
    SENDER_ENGINE,
    V3Pair,
    encode_v2c,
    level_of,
    notification_varbinds,
    plain_value,
    pysnmp_decode_community,
)

from formats.snmp import AccessError, DiscoveryError, SnmpConfig, SnmpReceiver, UsmUser

PEER = ("192.0.2.7", 40000)
REST = [("1.3.6.1.2.1.1.5.0", v2c.OctetString(b"edge-1")), ("1.3.6.1.9.9", v2c.Counter64(2**40))]
VARBINDS = notification_varbinds(777, "1.3.6.1.4.1.9.0.5", REST)
USM_STATS = "1.3.6.1.6.3.15.1.1"


def test_v2c_inform_response_echoes_request_id_and_varbinds() -> None:
    receiver = SnmpReceiver(SnmpConfig())
    event, reply = receiver.handle(encode_v2c(b"ops", True, 31337, VARBINDS), PEER, 1.0)
    assert event is not None and reply is not None
    response = pysnmp_decode_community(reply)
    request = pysnmp_decode_community(encode_v2c(b"ops", True, 31337, VARBINDS))
    assert (response.version, response.principal, response.pdu_tag) == (1, b"ops", 0xA2)
    assert response.request_id == 31337
    assert response.varbinds == request.varbinds


def test_v2c_trap_gets_no_reply() -> None:
    assert SnmpReceiver(SnmpConfig()).handle(encode_v2c(b"ops", False, 1, VARBINDS), PEER, 1.0)[1] is None


class Sender:
    """pysnmp as a v3 inform originator talking to our receiver."""

    def __init__(self, user: UsmUser, receiver: SnmpReceiver) -> None:
        self.user = user
        self.engine = V3Pair([user]).sender
        self.mp = self.engine.message_processing_subsystems[3]
        self.receiver = receiver

    def inform(self, request_id: int, context: bytes | None = None) -> bytes:
        pdu = v2c.InformRequestPDU()
        v2c.apiPDU.set_defaults(pdu)
        v2c.apiPDU.set_request_id(pdu, request_id)
        v2c.apiPDU.set_varbinds(pdu, VARBINDS)
        level = level_of(self.user.auth, self.user.priv)
        name = self.user.name.encode()
        out = self.mp.prepare_outgoing_message(
            self.engine, DOMAIN, ADDRESS, 3, 3, name, level, context, b"", 1, pdu, True, request_id
        )
        return bytes(out[2])

    def accept(self, reply: bytes) -> Any:
        """pysnmp's processing of our reply: the PDU, or the Report's varbind."""
        try:
            out = self.mp.prepare_data_elements(self.engine, DOMAIN, ADDRESS, reply)
        except error.StatusInformation as status:
            return ("report", str(status["oid"]), plain_value(status["val"]))
        return out[7]


def discovery_report(receiver: SnmpReceiver, data: bytes, now: float, reason: str) -> bytes:
    """The Report that `data` gets instead of an Event: a DiscoveryError for `reason`."""
    with pytest.raises(DiscoveryError) as info:
        receiver.handle(data, PEER, now)
    assert info.value.reason == reason
    assert info.value.reply is not None
    return info.value.reply


def _report_header(reply: bytes) -> tuple[int, bytes]:
    msg, _ = decoder.decode(reply, asn1Spec=SNMPv3Message())
    return msg[1][2].asNumbers()[0], bytes(msg[2].asOctets())


USERS = [
    UsmUser("plain"),
    UsmUser("md5", "MD5", "auth-pass-md5"),
    UsmUser("des", "SHA", "auth-pass-sha", "DES", "priv-pass-des"),
    UsmUser("aes", "SHA-256", "auth-pass-256", "AES", "priv-pass-aes"),
    UsmUser("aes256c", "MD5", "auth-pass-md5", "AES-256-C", "priv-pass-aes"),
]


@pytest.mark.parametrize("user", USERS, ids=[u.name for u in USERS])
def test_v3_inform_discovery_and_response_work_for_pysnmp(user: UsmUser) -> None:
    receiver = SnmpReceiver(
        SnmpConfig(users=(user,), engine_id=RECEIVER_ENGINE), engine_boots=3, started_at=0.0
    )
    sender = Sender(user, receiver)

    report = discovery_report(receiver, sender.inform(1), 500.0, "unknown_engine_id")
    assert _report_header(report)[0] == 0  # noAuthNoPriv, not reportable
    assert sender.accept(report) == ("report", f"{USM_STATS}.4.0", (0x41, 1))

    event, response = receiver.handle(sender.inform(2), PEER, 501.0)
    assert response is not None
    assert event.fields["pdu"] == "inform"
    assert event.fields["varbinds"][0] == ["1.3.6.1.2.1.1.5.0", "OCTET STRING", "edge-1"]
    pdu = sender.accept(response)
    assert int(v2c.apiPDU.get_request_id(pdu)) == 2
    got = [(str(oid), plain_value(value)) for oid, value in v2c.apiPDU.get_varbinds(pdu)]
    assert got == [(oid, plain_value(value)) for oid, value in VARBINDS]


def test_v3_inform_out_of_time_gets_an_authenticated_time_report() -> None:
    user = USERS[2]
    receiver = SnmpReceiver(
        SnmpConfig(users=(user,), engine_id=RECEIVER_ENGINE), engine_boots=3, started_at=0.0
    )
    sender = Sender(user, receiver)
    sender.accept(discovery_report(receiver, sender.inform(1), 500.0, "unknown_engine_id"))
    # Ten minutes pass on our side only: the sender's notion of our time is stale.
    report = discovery_report(receiver, sender.inform(2), 1100.0, "not_in_time_window")
    flags, _ = _report_header(report)
    assert flags == 1  # authNoPriv, as RFC 3414 3.2.7a asks
    assert sender.accept(report)[:2] == ("report", f"{USM_STATS}.2.0")
    _, response = receiver.handle(sender.inform(3), PEER, 1100.0)
    assert response is not None
    assert int(v2c.apiPDU.get_request_id(sender.accept(response))) == 3


def test_netsnmp_discovery_probe_gets_unknown_engine_id_report() -> None:
    receiver = SnmpReceiver(SnmpConfig(engine_id=RECEIVER_ENGINE), engine_boots=5, started_at=0.0)
    report = discovery_report(receiver, bytes.fromhex(NETSNMP["v3_probe"]), 42.0, "unknown_engine_id")
    msg, _ = decoder.decode(report, asn1Spec=SNMPv3Message())
    usm_params = bytes(msg[2].asOctets())
    assert RECEIVER_ENGINE in usm_params
    assert b"\x02\x01\x05\x02\x01\x2a" in usm_params  # boots 5, time 42


def test_refused_reportable_message_carries_a_report() -> None:
    user = UsmUser("md5", "MD5", "auth-pass-md5")
    wrong = UsmUser("md5", "MD5", "not-the-pass")
    receiver = SnmpReceiver(SnmpConfig(users=(wrong,), engine_id=RECEIVER_ENGINE), started_at=0.0)
    sender = Sender(user, receiver)
    sender.accept(discovery_report(receiver, sender.inform(1), 10.0, "unknown_engine_id"))
    with pytest.raises(AccessError) as info:
        receiver.handle(sender.inform(2), PEER, 10.0)
    assert info.value.reason == "wrong_digest"
    assert info.value.reply is not None
    assert sender.accept(info.value.reply)[:2] == ("report", f"{USM_STATS}.5.0")


def test_restricted_user_informs_are_checked_against_the_context_engine_id() -> None:
    user = UsmUser(
        "des", "SHA", "auth-pass-sha", "DES", "priv-pass-des", engine_ids=frozenset({SENDER_ENGINE})
    )
    receiver = SnmpReceiver(SnmpConfig(users=(user,), engine_id=RECEIVER_ENGINE), started_at=0.0)
    sender = Sender(user, receiver)
    sender.accept(discovery_report(receiver, sender.inform(1), 10.0, "unknown_engine_id"))
    event, response = receiver.handle(sender.inform(2, context=SENDER_ENGINE), PEER, 10.0)
    assert response is not None
    assert event.fields["engine_id"] == SENDER_ENGINE.hex()
    with pytest.raises(AccessError) as info:
        receiver.handle(sender.inform(3, context=b"\x80\x00\x00\x00\x05other"), PEER, 10.0)
    assert info.value.reason == "unknown_engine_id"
