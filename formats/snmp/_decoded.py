"""What decoding a datagram gives: the message, its PDU and their fields.

`_message` holds the general decoders that make these, `_usual` the inline
readers of the usual shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from formats.snmp._varbinds import Binding

FLAG_AUTH = 0x01
FLAG_PRIV = 0x02
FLAG_REPORTABLE = 0x04


@dataclass(slots=True)
class Pdu:
    """One decoded PDU.

    `varbinds` holds every binding in order; `buf[vb_start:vb_stop]` is the
    content of the variable-bindings SEQUENCE (`buf` is the datagram, or the
    decrypted scopedPDU). The v1 trap fields are left at their defaults
    otherwise.
    """

    tag: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[Binding]
    buf: bytes
    vb_start: int
    vb_stop: int
    enterprise: str = ""
    agent_addr: str = ""
    generic_trap: int = 0
    specific_trap: int = 0
    timestamp: int = 0

    @property
    def varbind_list(self) -> bytes:
        """The content of the variable-bindings SEQUENCE, as received."""
        return self.buf[self.vb_start : self.vb_stop]


@dataclass(slots=True)
class CommunityMessage:
    """A v1 (version 0) or v2c (version 1) message."""

    version: int
    community: bytes
    pdu: Pdu


@dataclass(slots=True)
class V3Message:
    """A v3 message up to its msgData, which `data_tag` says is plain or not.

    `auth_offset` is where the authentication parameters start in `buf`, so
    the digest can be checked over the message with them zeroed. msgData's
    TLV starts at `data_offset`, its content spans `data_start:data_stop`.
    """

    buf: bytes
    msg_id: int
    max_size: int
    flags: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth_params: bytes
    auth_offset: int
    priv_params: bytes
    data_offset: int
    data_tag: int
    data_start: int
    data_stop: int


@dataclass(slots=True)
class ScopedPdu:
    """The plaintext scopedPDU of a v3 message."""

    context_engine_id: bytes
    context_name: bytes
    pdu: Pdu
