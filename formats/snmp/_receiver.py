"""The sans-IO SNMP notification receiver: datagram in, (Event, reply) out.

Strategy: v1/v2c need only the community check. For v3, the reportable flag
says whether this engine is authoritative (an inform or a discovery probe)
or the sender is (a trap), as RFC 3412 and 3414 have it. Every refusal is an
`AccessError` whose `reason` matches usmStats and which carries the Report
to send when the sender asked for one. Discovery and time synchronisation
are refusals too (RFC 3414 counts them in usmStats), raised as the
`DiscoveryError` subclass so that a caller can count them without keeping
them as bad input. Engine boots come from the caller; engine time is
derived from the `received_at` values passed in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from formats._base import Event, Peer
from formats.snmp._ber import (
    COUNTER32,
    INFORM,
    OCTET_STRING,
    REPORT,
    RESPONSE,
    SEQUENCE,
    TRAP_V1,
    TRAP_V2,
    encode_oid,
    encode_unsigned,
    tlv,
)
from formats.snmp._decoded import (
    FLAG_AUTH,
    FLAG_PRIV,
    FLAG_REPORTABLE,
    CommunityMessage,
    ScopedPdu,
    V3Message,
)
from formats.snmp._errors import AccessError, BerError, DiscoveryError, SnmpError
from formats.snmp._event import SOURCE_RULES, build_event
from formats.snmp._message import (
    decode_message,
    decode_scoped_pdu,
    encode_community,
    encode_pdu,
    encode_scoped_pdu,
    encode_v3,
)
from formats.snmp._usm import LocalKeys, Usm, UsmUser

_USM_STATS = "1.3.6.1.6.3.15.1.1"
_REPORT_OIDS = {
    "unsupported_sec_level": f"{_USM_STATS}.1.0",
    "not_in_time_window": f"{_USM_STATS}.2.0",
    "unknown_user_name": f"{_USM_STATS}.3.0",
    "unknown_engine_id": f"{_USM_STATS}.4.0",
    "wrong_digest": f"{_USM_STATS}.5.0",
    "decryption_error": f"{_USM_STATS}.6.0",
}
_MAX_SIZE = 65507

DEFAULT_ENGINE_ID = b"\x80\x00\x00\x00\x04trapgate"
"""Format 4 (text) engine id; give each node of a pair its own in production."""


@dataclass(frozen=True)
class SnmpConfig:
    """What an SNMP receiver accepts and how it names sources.

    `communities`: v1/v2c communities accepted; empty accepts all.
    `users`: v3 users (`UsmUser`). `engine_id`: this receiver's own engine
    id, used for informs and Reports; keep it stable across restarts.
    `source_order`: the rules of `SOURCE_RULES` to try, in order.
    `engine_sources`: engine id (hex) -> source name for the `engine_id` rule.
    `trap_time_window`: refuse authenticated v3 traps older than the sender's
    last known time by more than 150 s (RFC 3414 3.2.7b).
    """

    communities: frozenset[str] = frozenset()
    users: tuple[UsmUser, ...] = ()
    engine_id: bytes = DEFAULT_ENGINE_ID
    source_order: tuple[str, ...] = SOURCE_RULES
    engine_sources: Mapping[str, str] = field(default_factory=dict)
    trap_time_window: bool = True

    def __post_init__(self) -> None:
        if not 5 <= len(self.engine_id) <= 32:
            raise ValueError("engine_id must have 5 to 32 octets")
        unknown = set(self.source_order) - set(SOURCE_RULES)
        if unknown:
            raise ValueError(f"unknown source rules {sorted(unknown)} (known: {SOURCE_RULES})")


class SnmpReceiver:
    """Receives SNMP notifications of every version for one local engine.

    `engine_boots` is this engine's snmpEngineBoots, kept by the caller
    across restarts. `started_at` is the clock value at which engine time was
    0, on the clock the caller passes as `received_at`; by default the first
    `received_at` seen. `salt` seeds privacy salts (random by default).
    """

    def __init__(
        self,
        config: SnmpConfig,
        engine_boots: int = 1,
        started_at: float | None = None,
        salt: int | None = None,
    ) -> None:
        self.config = config
        self._communities = frozenset(c.encode() for c in config.communities)
        self._started = started_at is not None
        if salt is None:
            salt = int.from_bytes(os.urandom(8), "big")
        self.usm = Usm(config.users, config.engine_id, engine_boots, started_at or 0.0, salt)
        self._report_counts: dict[str, int] = {}

    def handle(self, data: bytes, peer: Peer, received_at: float) -> tuple[Event, bytes | None]:
        """The Event in `data` and the reply to send (None when there is none).

        Raises `FormatError` (an `SnmpError`) for anything refused; its
        `reply`, when not None, is a Report the sender asked for. Engine
        discovery and time synchronisation raise a `DiscoveryError`.
        """
        if not self._started:
            self.usm.started_at = received_at
            self._started = True
        msg = decode_message(data)
        if isinstance(msg, CommunityMessage):
            return _community_event(self.config, self._communities, msg, data, peer, received_at)
        try:
            return self._handle_v3(msg, data, peer, received_at)
        except AccessError as exc:
            if exc.reply is None and msg.flags & FLAG_REPORTABLE and exc.reason in _REPORT_OIDS:
                exc.reply = self._report(msg, exc.reason, None, received_at)
            raise

    def _handle_v3(self, msg: V3Message, data: bytes, peer: Peer, now: float) -> tuple[Event, bytes | None]:
        usm = self.usm
        authoritative = bool(msg.flags & FLAG_REPORTABLE)
        if authoritative and msg.engine_id != usm.engine_id:
            raise DiscoveryError("engine id discovery: not addressed to this engine", "unknown_engine_id")
        user, keys = usm.authenticate(msg, peer[0])
        if keys is not None:
            if authoritative:
                if not usm.in_local_window(msg, now):
                    # RFC 3414 3.2.7a: this Report is authenticated, so the
                    # sender can trust the boots and time it learns from it.
                    report = self._report(msg, "not_in_time_window", keys, now)
                    raise DiscoveryError("outside this engine's time window", "not_in_time_window", report)
            elif self.config.trap_time_window and not usm.in_remote_window(msg, now):
                raise AccessError("trap outside the sender's time window", "not_in_time_window")
        scoped = self._scoped_pdu(msg, keys)
        pdu = scoped.pdu
        if pdu.tag not in (TRAP_V2, INFORM):
            raise BerError(f"PDU 0x{pdu.tag:02x} is not a notification", "unsupported_pdu")
        device = self._device_engine_id(msg, scoped)
        if pdu.tag == INFORM and msg.engine_id != usm.engine_id:
            raise AccessError("inform not addressed to this engine", "unknown_engine_id")
        if user.engine_ids and msg.engine_id == usm.engine_id and device not in user.engine_ids:
            raise AccessError("sender engine id not listed for the user", "unknown_engine_id")
        event = build_event(self.config, msg, pdu, device, data, peer, now)
        reply = None
        if pdu.tag == INFORM:
            response = encode_scoped_pdu(
                scoped.context_engine_id,
                scoped.context_name,
                encode_pdu(RESPONSE, pdu.request_id, pdu.varbind_list),
            )
            reply = self._encode_v3(msg, msg.flags & (FLAG_AUTH | FLAG_PRIV), keys, response, now)
        return event, reply

    def _scoped_pdu(self, msg: V3Message, keys: LocalKeys | None) -> ScopedPdu:
        if not msg.flags & FLAG_PRIV:
            return decode_scoped_pdu(msg.buf, msg.data_offset, msg.data_stop, padded=False)
        assert keys is not None
        plaintext = self.usm.decrypt(keys, msg)
        try:
            return decode_scoped_pdu(plaintext, 0, len(plaintext), padded=True)
        except BerError as exc:
            raise AccessError(f"decrypted scopedPDU unreadable: {exc}", "decryption_error") from None

    def _device_engine_id(self, msg: V3Message, scoped: ScopedPdu) -> bytes | None:
        # contextEngineID names the originating device, also when a proxy
        # relays its trap (the proxy is then the authoritative engine); an
        # inform's authoritative engine is this one, so only the context
        # can name its sender.
        own = self.usm.engine_id
        for engine_id in (scoped.context_engine_id, msg.engine_id):
            if engine_id and engine_id != own:
                return engine_id
        return None

    def _report(self, msg: V3Message, reason: str, keys: LocalKeys | None, now: float) -> bytes:
        count = self._report_counts[reason] = self._report_counts.get(reason, 0) + 1
        varbind = tlv(SEQUENCE, encode_oid(_REPORT_OIDS[reason]) + encode_unsigned(count, COUNTER32))
        request_id = 0
        if not msg.flags & FLAG_PRIV:
            with contextlib.suppress(SnmpError):
                request_id = decode_scoped_pdu(msg.buf, msg.data_offset, msg.data_stop, False).pdu.request_id
        scoped = encode_scoped_pdu(self.usm.engine_id, b"", encode_pdu(REPORT, request_id, varbind))
        return self._encode_v3(msg, FLAG_AUTH if keys else 0, keys, scoped, now)

    def _encode_v3(
        self, msg: V3Message, level: int, keys: LocalKeys | None, scoped: bytes, now: float
    ) -> bytes:
        usm = self.usm
        boots, time = usm.boots, usm.engine_time(now)
        priv_params = b""
        if level & FLAG_PRIV:
            assert keys is not None
            ciphertext, priv_params = usm.encrypt(keys, scoped, boots, time)
            scoped = tlv(OCTET_STRING, ciphertext)
        whole, offset = encode_v3(
            msg.msg_id,
            _MAX_SIZE,
            level,
            usm.engine_id,
            boots,
            time,
            msg.user,
            keys.digest_length if keys and level else 0,
            priv_params,
            scoped,
        )
        if keys is not None and level:
            whole = Usm.sign(keys, whole, offset)
        return whole


def _community_event(
    config: SnmpConfig,
    communities: frozenset[bytes],
    msg: CommunityMessage,
    data: bytes,
    peer: Peer,
    received_at: float,
) -> tuple[Event, bytes | None]:
    if communities and msg.community not in communities:
        raise AccessError("community not in the allowlist", "unknown_community")
    pdu = msg.pdu
    if pdu.tag != (TRAP_V1 if msg.version == 0 else TRAP_V2) and not (msg.version == 1 and pdu.tag == INFORM):
        raise BerError(f"PDU 0x{pdu.tag:02x} is not a notification", "unsupported_pdu")
    event = build_event(config, msg, pdu, None, data, peer, received_at)
    reply = None
    if pdu.tag == INFORM:
        reply = encode_community(1, msg.community, encode_pdu(RESPONSE, pdu.request_id, pdu.varbind_list))
    return event, reply


class SnmpParser:
    """The registered `snmp` parser: v1 traps and v2c traps and informs.

    Stateless and without replies; v3 needs an `SnmpReceiver`.
    """

    name = "snmp"

    def __init__(self, config: SnmpConfig | None = None) -> None:
        self.config = config or SnmpConfig()
        self._communities = frozenset(c.encode() for c in self.config.communities)

    def parse(self, data: bytes, peer: Peer, received_at: float) -> Event:
        """The Event in a v1/v2c datagram, or a `FormatError`."""
        msg = decode_message(data)
        if isinstance(msg, V3Message):
            raise SnmpError("SNMPv3 needs an SnmpReceiver", "unsupported_version")
        return _community_event(self.config, self._communities, msg, data, peer, received_at)[0]
