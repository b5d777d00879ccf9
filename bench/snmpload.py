"""The SNMP load: numbered linkDown notifications, v2c from a template, v3 from a pool.

Strategy: the sender must do no BER work per datagram. A v2c trap is encoded
once with a placeholder of the sequence text's exact length; the bytes
around it become a `bytes % seq` template (with any `%` octet of the
encoding doubled), so rendering is one C-level call. A v3 authPriv trap
cannot be patched: each sequence number needs its own ciphertext and
digest. Those are built before the timed run into a list whose
`__getitem__` is the renderer. The encoders and USM of `formats.snmp` do the
work (only to make traffic; the receivers under test decode it their own
way). Every field that varies per message (msgID, salt, engine time) keeps
a fixed width, so all datagrams of a load have one length and leave in
sendmmsg batches.
"""

from __future__ import annotations

from dataclasses import dataclass

from formats.snmp._ber import (
    OCTET_STRING,
    SEQUENCE,
    TIMETICKS,
    TRAP_V2,
    encode_int,
    encode_oid,
    encode_unsigned,
    tlv,
)
from formats.snmp._message import (
    FLAG_AUTH,
    FLAG_PRIV,
    encode_community,
    encode_pdu,
    encode_scoped_pdu,
    encode_v3,
)
from formats.snmp._usm import Usm, UsmUser

SEQ_OID = "1.3.6.1.4.1.8072.9999.9999.1.0"
"""The varbind that carries `seq=NNNNNNNNNN kind=d|p` (NET-SNMP-MIB's playpen)."""

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
IF_INDEX = 3
UPTIME_TICKS = 123_456
SEQ_DIGITS = 10
_ID_BASE = 0x1000_0000  # ids from here keep 4 content octets up to 2**31 - 1
_TIME_BASE = 0x1000  # engine time keeps 2 content octets for about 8 hours
_MAX_SIZE = 65507


@dataclass(frozen=True)
class V3Identity:
    """The sender's engine and the authPriv user every receiver is given."""

    engine_id: bytes = b"\x80\x00\x1f\x88\x04trapgate-bench"
    user: str = "bench"
    auth: str = "SHA"
    auth_passphrase: str = "bench-auth-pass"
    priv: str = "AES"
    priv_passphrase: str = "bench-priv-pass"
    boots: int = 1


def seq_text(kind: bytes) -> bytes:
    """The sequence varbind's value as a `%` template: `seq=%010d kind=<kind>`."""
    return b"seq=%0" + str(SEQ_DIGITS).encode() + b"d kind=" + kind


def _placeholder(kind: bytes) -> bytes:
    return b"seq=" + b"#" * SEQ_DIGITS + b" kind=" + kind


def link_down_varbinds(value: bytes) -> bytes:
    """The varbind list of a linkDown trap whose last binding carries `value`.

    sysUpTime.0 and snmpTrapOID.0 first (RFC 3416), then ifIndex, ifDescr,
    ifType, ifAdminStatus, ifOperStatus and the sequence varbind.
    """
    entry = "1.3.6.1.2.1.2.2.1"

    def bind(oid: str, value_tlv: bytes) -> bytes:
        return tlv(SEQUENCE, encode_oid(oid) + value_tlv)

    return b"".join(
        [
            bind(SYS_UPTIME, encode_unsigned(UPTIME_TICKS, TIMETICKS)),
            bind(SNMP_TRAP_OID, encode_oid(LINK_DOWN)),
            bind(f"{entry}.1.{IF_INDEX}", encode_int(IF_INDEX)),
            bind(f"{entry}.2.{IF_INDEX}", tlv(OCTET_STRING, b"GigabitEthernet0/3")),
            bind(f"{entry}.3.{IF_INDEX}", encode_int(6)),
            bind(f"{entry}.7.{IF_INDEX}", encode_int(1)),
            bind(f"{entry}.8.{IF_INDEX}", encode_int(2)),
            bind(SEQ_OID, tlv(OCTET_STRING, value)),
        ]
    )


def _as_template(encoded: bytes, kind: bytes) -> bytes:
    before, found, after = encoded.partition(_placeholder(kind))
    if not found or _placeholder(kind) in after:
        raise ValueError("the placeholder must occur exactly once")
    return before.replace(b"%", b"%%") + seq_text(kind) + after.replace(b"%", b"%%")


def v2c_template(community: str, kind: bytes = b"d", request_id: int = _ID_BASE) -> bytes:
    """An SNMPv2-Trap message as a template: `template % seq` is datagram `seq`."""
    pdu = encode_pdu(TRAP_V2, request_id, link_down_varbinds(_placeholder(kind)))
    return _as_template(encode_community(1, community.encode(), pdu), kind)


def scoped_pdu_template(context_engine_id: bytes, kind: bytes, request_id: int) -> bytes:
    """A plaintext scopedPDU holding the linkDown trap, as a `% seq` template."""
    pdu = encode_pdu(TRAP_V2, request_id, link_down_varbinds(_placeholder(kind)))
    return _as_template(encode_scoped_pdu(context_engine_id, b"", pdu), kind)


class V3Encoder:
    """Builds authPriv SNMPv3 traps from `identity`'s engine, one per sequence number.

    Engine time advances one second per `rate` messages from a fixed base,
    msgID is a fixed base plus the sequence number and every message has a
    fresh salt, as a real sender's would; the request-id stays the same
    (no receiver of traps looks at it).
    """

    def __init__(self, identity: V3Identity, rate: float) -> None:
        self.identity = identity
        self.rate = rate
        self._user = UsmUser(
            name=identity.user,
            auth=identity.auth,
            auth_passphrase=identity.auth_passphrase,
            priv=identity.priv,
            priv_passphrase=identity.priv_passphrase,
        )
        self._usm = Usm([self._user], identity.engine_id, identity.boots, 0.0, salt=1)
        self._keys = self._usm.keys_for(self._user, identity.engine_id)
        self._templates = {
            kind: scoped_pdu_template(identity.engine_id, kind, _ID_BASE) for kind in (b"d", b"p")
        }

    def message(self, seq: int, probe: bool = False) -> bytes:
        """Datagram `seq`: encrypted, then signed."""
        identity = self.identity
        template = self._templates[b"p" if probe else b"d"]
        plaintext = template % seq
        time = _TIME_BASE + int(seq // self.rate)
        ciphertext, salt = self._usm.encrypt(self._keys, plaintext, identity.boots, time)
        whole, offset = encode_v3(
            _ID_BASE + seq,
            _MAX_SIZE,
            FLAG_AUTH | FLAG_PRIV,
            identity.engine_id,
            identity.boots,
            time,
            identity.user.encode(),
            self._keys.digest_length,
            salt,
            tlv(OCTET_STRING, ciphertext),
        )
        return Usm.sign(self._keys, whole, offset)

    def pool(self, total: int, probe_every: int) -> list[bytes]:
        """Datagrams 0..total-1; every `probe_every`-th (0: none) is a probe."""
        return [self.message(seq, probe_every > 0 and seq % probe_every == 0) for seq in range(total)]
