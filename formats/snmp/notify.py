"""Outgoing notifications: an SNMP Event's fields as a v2c or v3 Trap or Inform.

Strategy: sans-IO, like the receiver. `notification_varbinds` turns the
fields the parser filled (uptime, trap_oid, the varbind rows) back into BER
with `_ber`'s encoders; the rows are lossless (an OCTET STRING is text or
Hex-STRING, both give back the octets), so the varbinds arrive as they came.
As a proxy (RFC 3584 section 3.1 and 4.1), it appends what tells the manager
where the notification came from, unless already there: snmpTrapAddress.0
(the v1 agent-addr, else the sender's address) and snmpTrapCommunity.0 (v1
and v2c origins), then snmpTrapEnterprise.0 for a v1 trap, whose
snmpTrapOID.0 the parser already mapped from enterprise, generic and
specific. `Notifier` makes the datagrams and reads the replies: for v3
traps this engine is authoritative (its own engine id, boots and time); an
inform's authority is the manager, whose engine id, boots and time are
learnt from the Reports to a discovery probe or to a stale inform (RFC 3414
section 4). The caller owns the socket, the clock (`now`), request ids and
retransmission.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from formats.snmp._ber import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    INFORM,
    IP_ADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OCTET_STRING,
    OPAQUE,
    REPORT,
    RESPONSE,
    SEQUENCE,
    TIMETICKS,
    TRAP_V2,
    encode_int,
    encode_oid,
    encode_unsigned,
    tlv,
)
from formats.snmp._decoded import FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE, Pdu, V3Message
from formats.snmp._errors import AccessError, SnmpError
from formats.snmp._event import (
    SNMP_TRAP_ADDRESS,
    SNMP_TRAP_COMMUNITY,
    SNMP_TRAP_ENTERPRISE,
    SNMP_TRAP_OID,
    SYS_UPTIME,
)
from formats.snmp._message import (
    CommunityMessage,
    decode_message,
    decode_scoped_pdu,
    encode_community,
    encode_pdu,
    encode_scoped_pdu,
    encode_v3,
)
from formats.snmp._receiver import _REPORT_OIDS
from formats.snmp._usm import LocalKeys, Usm, UsmUser, _verify

GET_REQUEST = 0xA0
MAX_DATAGRAM = 65507
_REPORT_REASONS = {oid: reason for reason, oid in _REPORT_OIDS.items()}
_MAX_REQUESTS = 65536
_DISCOVERY = ("unknown_engine_id", "not_in_time_window")
_MAX_UNSIGNED = {COUNTER32: 0xFFFFFFFF, GAUGE32: 0xFFFFFFFF, TIMETICKS: 0xFFFFFFFF, COUNTER64: 2**64 - 1}


class EncodeError(SnmpError):
    """Event fields that make no SNMP notification (a field missing, a value out of its type's range)."""

    reason = "bad_fields"


def _unsigned(tag: int) -> Callable[[Any], bytes]:
    def encode(value: Any) -> bytes:
        if not isinstance(value, int) or not 0 <= value <= _MAX_UNSIGNED[tag]:
            raise EncodeError(f"{value!r} is out of range", "bad_fields")
        return encode_unsigned(value, tag)

    return encode


def _integer(value: Any) -> bytes:
    if not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise EncodeError(f"INTEGER {value!r} is out of range", "bad_fields")
    return encode_int(value)


def _ip(value: Any) -> bytes:
    return tlv(IP_ADDRESS, ipaddress.IPv4Address(value).packed)


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "INTEGER": _integer,
    "OCTET STRING": lambda value: tlv(OCTET_STRING, value.encode("utf-8")),
    "Hex-STRING": lambda value: tlv(OCTET_STRING, bytes.fromhex(value)),
    "NULL": lambda value: tlv(NULL, b""),
    "OID": encode_oid,
    "IpAddress": _ip,
    "Counter32": _unsigned(COUNTER32),
    "Gauge32": _unsigned(GAUGE32),
    "TimeTicks": _unsigned(TIMETICKS),
    "Opaque": lambda value: tlv(OPAQUE, bytes.fromhex(value)),
    "Counter64": _unsigned(COUNTER64),
    "noSuchObject": lambda value: tlv(NO_SUCH_OBJECT, b""),
    "noSuchInstance": lambda value: tlv(NO_SUCH_INSTANCE, b""),
    "endOfMibView": lambda value: tlv(END_OF_MIB_VIEW, b""),
}


def encode_varbind(name: str, type_name: str, value: Any) -> bytes:
    """The TLV of one binding from an event's row (name, type name, printable value)."""
    encoder = _ENCODERS.get(type_name)
    if encoder is None:
        raise EncodeError(f"varbind {name}: unknown type {type_name!r}", "bad_fields")
    try:
        return tlv(SEQUENCE, encode_oid(name) + encoder(value))
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise EncodeError(f"varbind {name}: {type_name} {value!r}: {exc}", "bad_fields") from None


def origin_varbinds(fields: Mapping[str, Any], peer_host: str) -> list[tuple[str, str, Any]]:
    """The rows a proxy appends (RFC 3584) so the manager sees where a notification came from."""
    present = {row[0] for row in fields["varbinds"]}
    rows: list[tuple[str, str, Any]] = []
    agent = fields.get("agent_addr")
    address = agent if agent and agent != "0.0.0.0" else peer_host
    if SNMP_TRAP_ADDRESS not in present and _is_ipv4(address):
        rows.append((SNMP_TRAP_ADDRESS, "IpAddress", address))
    community = fields.get("community")
    if SNMP_TRAP_COMMUNITY not in present and community is not None:
        rows.append((SNMP_TRAP_COMMUNITY, "OCTET STRING", community))
    if fields.get("enterprise") and SNMP_TRAP_ENTERPRISE not in present:
        rows.append((SNMP_TRAP_ENTERPRISE, "OID", fields["enterprise"]))
    return rows


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def notification_varbinds(fields: Mapping[str, Any], peer_host: str) -> bytes:
    """The content of a v2 notification's variable-bindings for an SNMP event's `fields`.

    sysUpTime.0 and snmpTrapOID.0 first, then the event's bindings, then
    `origin_varbinds`. Raises `EncodeError` for fields that do not fit.
    """
    try:
        uptime, trap_oid, rows = fields["uptime"], fields["trap_oid"], fields["varbinds"]
        head = [(SYS_UPTIME, "TimeTicks", uptime), (SNMP_TRAP_OID, "OID", trap_oid)]
        return b"".join(encode_varbind(*row) for row in [*head, *rows, *origin_varbinds(fields, peer_host)])
    except (KeyError, TypeError, ValueError) as exc:
        raise EncodeError(f"not the fields of an SNMP notification: {exc!r}", "bad_fields") from None


class Reply(NamedTuple):
    """What a datagram from the manager says about request `request_id`.

    `outcome` is ``answered`` (a Response), or the reason of a Report:
    ``unknown_engine_id`` and ``not_in_time_window`` mean the manager's
    engine is now known and the inform can be sent again; any other reason
    (``wrong_digest``, ``unknown_user_name`` ...) is a refusal.
    """

    request_id: int
    outcome: str

    @property
    def resend(self) -> bool:
        """Whether the Report only taught this engine the manager's id or time."""
        return self.outcome in _DISCOVERY


class Notifier:
    """Makes the datagrams of one sink and reads its manager's replies.

    `version` is ``2c`` or ``3``. v2c uses `community`; v3 uses `user`
    (a `UsmUser` whose security level every message has) and this engine's
    `engine_id`, `boots` and `started_at` (the `now` at which its engine
    time was 0). `salt` seeds the privacy salts.
    """

    def __init__(self, version: str, community: bytes = b"public", user: UsmUser | None = None,
                 engine_id: bytes = b"", boots: int = 1, started_at: float = 0.0, salt: int = 0) -> None:
        if version == "3" and user is None:
            raise ValueError("SNMPv3 needs a user")
        self.version = version
        self.community = community
        self.user = user
        self.usm = Usm([user] if user else [], engine_id, boots, started_at, salt)
        self.manager_engine_id = b""
        self._manager_time = (0, 0, 0.0)  # boots, time, and the `now` it was learnt at
        self._msg_id = 0
        self._requests: dict[int, int] = {}  # msgID -> request-id of the informs and probes sent

    @property
    def needs_discovery(self) -> bool:
        """Whether a v3 inform must wait for `probe`'s Report (the manager's engine id is unknown)."""
        return self.version == "3" and not self.manager_engine_id

    def notification(self, varbinds: bytes, request_id: int, inform: bool, now: float,
                     context_engine_id: bytes = b"") -> bytes:
        """One Trap or Inform datagram around the variable-bindings content `varbinds`.

        A v3 inform needs the manager's engine (see `needs_discovery`).
        `context_engine_id` names the engine the notification is about
        (default: this one).
        """
        pdu = encode_pdu(INFORM if inform else TRAP_V2, request_id, varbinds)
        if self.version == "2c":
            return encode_community(1, self.community, pdu)
        usm = self.usm
        if inform:
            engine_id = self.manager_engine_id
            boots, time, learnt_at = self._manager_time
            time += int(now - learnt_at)
        else:
            engine_id, boots, time = usm.engine_id, usm.boots, usm.engine_time(now)
        scoped = encode_scoped_pdu(context_engine_id or usm.engine_id, b"", pdu)
        data = self._v3(engine_id, boots, time, scoped, FLAG_REPORTABLE if inform else 0)
        if inform:
            self._note_request(request_id)
        return data

    def probe(self, request_id: int) -> bytes:
        """An unauthenticated, reportable request whose Report names the manager's engine."""
        scoped = encode_scoped_pdu(b"", b"", encode_pdu(GET_REQUEST, request_id, b""))
        self._msg_id = (self._msg_id + 1) & 0x7FFFFFFF
        whole, _ = encode_v3(self._msg_id, MAX_DATAGRAM, FLAG_REPORTABLE, b"", 0, 0, b"", 0, b"", scoped)
        self._note_request(request_id)
        return whole

    def _note_request(self, request_id: int) -> None:
        # A Report to an encrypted message cannot know its request-id (it
        # says 0): only the msgID, which it repeats, names the request.
        if len(self._requests) >= _MAX_REQUESTS:
            self._requests.clear()
        self._requests[self._msg_id] = request_id

    def _v3(self, engine_id: bytes, boots: int, time: int, scoped: bytes, flags: int) -> bytes:
        user = self.user
        assert user is not None
        usm = self.usm
        keys = usm.keys_for(user, engine_id) if user.auth else None
        priv_params = b""
        if user.priv and keys is not None:
            ciphertext, priv_params = usm.encrypt(keys, scoped, boots, time)
            scoped = tlv(OCTET_STRING, ciphertext)
        self._msg_id = (self._msg_id + 1) & 0x7FFFFFFF
        whole, offset = encode_v3(
            self._msg_id, MAX_DATAGRAM, user.level | flags, engine_id, boots, time, user.name.encode(),
            keys.digest_length if keys else 0, priv_params, scoped,
        )  # fmt: skip
        return Usm.sign(keys, whole, offset) if keys else whole

    def reply(self, data: bytes, now: float) -> Reply | None:
        """What a datagram from the manager answers; None for one that is no reply of ours.

        Raises `SnmpError` for bytes that are no SNMP message, or whose
        digest does not verify.
        """
        msg = decode_message(data)
        if isinstance(msg, CommunityMessage):
            if msg.version != 1 or msg.community != self.community:
                return None
            return _outcome(msg.pdu)
        if self.user is None or msg.user not in (self.user.name.encode(), b""):
            return None
        keys = self._verified_keys(msg)
        pdu = self._pdu(msg, keys)
        reply = _outcome(pdu)
        if reply is not None and pdu.tag == REPORT:
            reply = reply._replace(request_id=self._requests.get(msg.msg_id, pdu.request_id))
        if reply is not None and reply.resend and (keys is not None or reply.outcome == "unknown_engine_id"):
            # Only an authenticated Report may move a known engine's clock back; an
            # unauthenticated one may say the engine changed (a new manager).
            self.manager_engine_id = msg.engine_id
            self._manager_time = (msg.boots, msg.time, now)
        return reply

    def _verified_keys(self, msg: V3Message) -> LocalKeys | None:
        user = self.user
        if not msg.flags & FLAG_AUTH or user is None or not user.auth:
            return None
        keys = self.usm.keys_for(user, msg.engine_id)
        if not _verify(keys, msg):
            raise AccessError("reply's digest does not verify", "wrong_digest")
        return keys

    def _pdu(self, msg: V3Message, keys: LocalKeys | None) -> Pdu:
        if not msg.flags & FLAG_PRIV:
            return decode_scoped_pdu(msg.buf, msg.data_offset, msg.data_stop, padded=False).pdu
        if keys is None:
            raise AccessError("encrypted reply without authentication", "decryption_error")
        plaintext = self.usm.decrypt(keys, msg)
        return decode_scoped_pdu(plaintext, 0, len(plaintext), padded=True).pdu


def _outcome(pdu: Pdu) -> Reply | None:
    if pdu.tag == RESPONSE:
        return Reply(pdu.request_id, "answered")
    if pdu.tag == REPORT:
        names: Sequence[str] = [binding.name for binding in pdu.varbinds]
        reason = next((_REPORT_REASONS[n] for n in names if n in _REPORT_REASONS), "report")
        return Reply(pdu.request_id, reason)
    return None
