"""The inline readers (`_usual`) and the general decoders read messages alike.

Each message is decoded twice: as encoded (the inline readers take it) and
with every header in the four-octet long form (they decline it, so the
general path reads it). Both must give the same Event, and the same reply
but for the length forms of the varbinds it echoes.
"""

from __future__ import annotations

import pytest
from netsnmp_vectors import NETSNMP
from pysnmp.proto.api import v2c
from snmp_reference import encode_v2c, notification_varbinds

from formats.snmp import SnmpConfig, SnmpReceiver, UsmUser
from formats.snmp._message import decode_message
from formats.snmp._usual import read_message

PEER = ("192.0.2.7", 40000)
CONSTRUCTED = {0x30, 0xA2, 0xA4, 0xA6, 0xA7}
REST = [
    ("1.3.6.1.2.1.2.2.1.1.3", v2c.Integer32(3)),
    ("1.3.6.1.2.1.2.2.1.2.3", v2c.OctetString(b"GigabitEthernet0/3")),
    ("1.3.6.1.6.3.18.1.3.0", v2c.IpAddress("198.51.100.9")),
]


def long_forms(data: bytes) -> bytes:
    """`data` (a TLV list) with every header's length in the 84 form."""
    out, pos = bytearray(), 0
    while pos < len(data):
        tag, n = data[pos], data[pos + 1]
        start, length = pos + 2, n
        if n >= 0x80:
            start = pos + 2 + (n & 0x7F)
            length = int.from_bytes(data[pos + 2 : start], "big")
        content = data[start : start + length]
        if tag in CONSTRUCTED:
            content = long_forms(content)
        out += bytes((tag, 0x84)) + len(content).to_bytes(4, "big") + content
        pos = start + length
    return bytes(out)


MESSAGES = {
    "v2c-trap": encode_v2c(b"public", False, 7, notification_varbinds(99, "1.3.6.1.6.3.1.1.5.3", REST)),
    "v2c-inform": encode_v2c(b"public", True, -7, notification_varbinds(99, "1.3.6.1.6.3.1.1.5.3", REST)),
    "v3-noauth": bytes.fromhex(NETSNMP["v3_noauth"]),
}


@pytest.mark.parametrize("name", MESSAGES)
def test_the_general_path_reads_what_the_inline_readers_read(name: str) -> None:
    usual = MESSAGES[name]
    general = long_forms(usual)
    assert read_message(usual) is not None
    assert read_message(general) is None
    assert type(decode_message(general)) is type(decode_message(usual))
    config = SnmpConfig(users=(UsmUser("nobody"),))
    event, reply = SnmpReceiver(config, started_at=0.0).handle(usual, PEER, 5.0)
    other, other_reply = SnmpReceiver(config, started_at=0.0).handle(general, PEER, 5.0)
    assert event is not None and other is not None
    assert (other.fields, other.identity) == (event.fields, event.identity)
    assert (other_reply and long_forms(other_reply)) == (reply and long_forms(reply))
