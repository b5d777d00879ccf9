"""Syslog: RFC 5424, RFC 3164 and the variants real devices send.

Strategy: a message costs one or two compiled-pattern matches and a few bytes
methods; no Python code runs per byte. `_RFC5424` takes a well-formed RFC 5424
header in one match, a nil STRUCTURED-DATA included (SD-ELEMENTs go to
`formats._syslog_sd`). Anything
else goes to `_RFC3164`, whose parts are all optional so that it always
matches: PRI, an RFC 5424 VERSION (the message is then malformed RFC 5424 and
`_reject_5424` names the reason), the Cisco IOS prefixes (sequence number,
origin host), a BSD or RFC 3339 TIMESTAMP, the HOSTNAME and the TAG. RFC 5424
is parsed strictly. RFC 3164 is parsed leniently, as its section 4.3 asks:
a receiver cannot refuse what a device already sent, so anything with a valid
PRI, or none, is an event. Trailing LF, CR and NUL are framing, not content;
they are cut first, so they never reach `Event.identity`.

Where the compiled module `formats._syslog_fast` was built (and TRAPGATE_PURE
is not set), a parser's `parse` is that module's: it builds the Event of a
well-formed RFC 5424 message with a nil STRUCTURED-DATA itself and hands
anything else to `SyslogParser.parse`, the Python twin it is tested against.
"""

from __future__ import annotations

import os
import re
from typing import Any, NoReturn

from formats._base import Event, FormatError, IdentityPart, Peer, register
from formats._syslog_sd import StructuredData, parse_structured_data

_BOM = b"\xef\xbb\xbf"
_TRAILER = b"\r\n\x00"
_LEADING_JUNK = b" \t\r\n\x00\x0b\x0c"
# RFC 3164 section 4.3.3: a message without PRI is user.notice.
_DEFAULT_PRI = 13
_MAX_PRI = 191

# An RFC 5424 TIMESTAMP is recognised by its date or its NILVALUE. Requiring
# it keeps a 3164 message whose text starts with a number ("<13>1 file(s)
# copied") a 3164 message.
_TS_5424 = rb"(?:-(?= )|\d{4}-\d\d-\d\d[Tt][^ ]*)"

# Header fields are split on single spaces exactly as `bytes.split(b" ")`
# would; a message this pattern refuses but whose VERSION was seen is malformed.
# A nil STRUCTURED-DATA is consumed with the space and BOM after it; SD-ELEMENTs
# (group 3 set) are left to `parse_structured_data`.
_RFC5424 = re.compile(
    rb"<(\d{1,3})> *1 (" + _TS_5424 + rb" [^ ]+ [^ ]+ [^ ]+ [^ ]+)"
    rb" (?:-(?: (?:\xef\xbb\xbf)?+|\Z)|(?=(\[)))"
)

_MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_BSD_TS = (
    rb"[*.]?"  # Cisco: '*' clock never set, '.' clock lost its sync
    + _MONTH
    + rb" {1,2}\d{1,2}(?: \d{4})?+ \d\d:\d\d:\d\d(?:\.\d{1,9})?+"
    + rb"(?: [A-Z]{2,5}(?=: %))?+"  # Cisco time zone, before a mnemonic only
)
_RFC3339_TS = rb"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d{1,9})?+(?:[Zz]|[+-]\d\d:?\d\d)?+"
# A TAG is a token ending in ':' or carrying '[pid]', followed by a space or
# the end. Requiring the space keeps IPv6 hosts ('fe80::1') and URLs out.
_TAG_SHAPE = rb"[^\s\[\]:]++(?:\[[^\]\s]*+\]:?|:)(?: |\Z)"
_TAG = rb"(?:(?P<tag>[^\s\[\]:]++)(?:\[(?P<pid>[^\]\s]*+)\]:?|:)(?: |\Z))?"
_RFC3164 = re.compile(
    b"".join(
        [
            rb"(?:<(?P<pri>\d{1,3})> *+",  # PRI, then tolerated spaces
            rb"(?:(?P<version>\d{1,3}) (?=" + _TS_5424 + rb"))?+)?+",  # a 5424 VERSION
            rb"(?:(?:(?P<seq>\d{1,10}): ++)?+",  # Cisco sequence number
            rb"(?:(?P<ohost>[A-Za-z0-9][\w.-]*+): ++)?+",  # Cisco origin-id hostname
            rb"(?P<ts>" + _BSD_TS + rb"|" + _RFC3339_TS + rb")",
            rb":?+(?: ++|\Z)",  # Cisco ends the time with ':'
            # Missing HOSTNAME rule: the token after the TIMESTAMP is the
            # HOSTNAME unless it is TAG-shaped or a Cisco '%FAC-SEV-MNEMONIC'.
            # Host names and addresses never end in ':' nor contain '[', so a
            # TAG there means the sender left the HOSTNAME out, as logger and
            # many embedded devices do. After an origin-id there is none.
            rb"(?(ohost)|(?:(?!%|" + _TAG_SHAPE + rb")(?P<host>\S++)(?: ++|\Z))?+",
            rb"(?:: (?=%))?+)",  # Cisco ASA: 'host : %ASA-6-302013: ...'
            rb"|(?P<seq_only>\d{1,10}): (?=%))?",  # Cisco without timestamps
            _TAG,
        ]
    )
)


def _reject_5424(body: bytes, version: bytes) -> NoReturn:
    """Raise the reason a message with an RFC 5424 VERSION failed `_RFC5424`."""
    if version != b"1":
        raise FormatError(f"syslog VERSION {version.decode()} is not 1", "bad_version")
    parts = body.split(b" ", 6)
    if len(parts) < 7 or not parts[6]:
        raise FormatError("RFC 5424 message ends before STRUCTURED-DATA", "truncated")
    if not all(parts[1:6]):
        raise FormatError("empty RFC 5424 header field", "bad_header")
    raise FormatError("STRUCTURED-DATA is neither '-' nor '['", "bad_structured_data")


class SyslogParser:
    """Parses one syslog message (RFC 5424 or RFC 3164 and its variants).

    `parse` returns an `Event` whose fields are facility, severity, timestamp
    (as sent), hostname, app_name, procid, msgid, structured_data, msg and
    protocol; NILVALUEs are None. A message without PRI gets user.notice and
    protocol ``rfc3164``. It raises `FormatError` with reason ``empty``,
    ``bad_pri``, ``bad_version``, ``truncated``, ``bad_header`` or
    ``bad_structured_data``, and nothing else.

    Identity: PRI (None when the message had none, so a PRI-less copy is
    never confused with an explicit ``<13>``), the raw TIMESTAMP text, the
    HOSTNAME or else the peer host, APP-NAME/TAG, PROCID, MSGID, the
    STRUCTURED-DATA minus per-destination params, the MSG bytes (without BOM
    and trailing LF/CR/NUL), and the Cisco sequence number when there is one.
    """

    name = "syslog"

    def __init__(self) -> None:
        fast = _fast_path()
        if fast is not None:
            fast.set_fallback(SyslogParser.parse.__get__(self))
            self.parse = fast.parse  # type: ignore[method-assign]

    def parse(self, data: bytes, peer: Peer, received_at: float) -> Event:
        """Return the event in one syslog message, or raise `FormatError`."""
        body = data.rstrip(_TRAILER)
        if not body or body[0] != 0x3C:  # '<'
            body = body.lstrip(_LEADING_JUNK)
            if not body:
                raise FormatError("empty message", "empty")
        m = _RFC5424.match(body)
        if m is not None:
            return self._event_5424(data, body, m, peer, received_at)
        m = _RFC3164.match(body)
        # Every part of the pattern is optional: it always matches.
        assert m is not None
        pri_text, version, seq, ohost, ts, host, seq_only, tag, pid = m.groups()
        if pri_text is None:
            if body.startswith(b"<"):
                raise FormatError("PRI is not '<' 1-3 digits '>'", "bad_pri")
            pri = None
            pri_num = _DEFAULT_PRI
        else:
            pri = pri_num = int(pri_text)
            if pri_num > _MAX_PRI:
                raise FormatError(f"PRI {pri_num} is above {_MAX_PRI}", "bad_pri")
            if version is not None:
                _reject_5424(body[body.index(b">") + 1 :].lstrip(b" "), version)
        msg_raw = body[m.end() :]
        if msg_raw.startswith(_BOM):
            msg_raw = msg_raw[3:]
        timestamp = None if ts is None else ts.decode("ascii")
        if host is None:
            host = ohost
        hostname = None if host is None else host.decode("utf-8", "backslashreplace")
        app_name = None if tag is None else tag.decode("utf-8", "backslashreplace")
        procid = None if pid is None else pid.decode("utf-8", "backslashreplace")
        seq = seq or seq_only
        identity: tuple[IdentityPart, ...] = (
            pri,
            timestamp,
            peer[0] if hostname is None else hostname,
            app_name,
            procid,
            None,
            None,
            msg_raw,
            None if seq is None else int(seq),
        )
        fields: dict[str, object] = {
            "facility": pri_num >> 3,
            "severity": pri_num & 7,
            "timestamp": timestamp,
            "hostname": hostname,
            "app_name": app_name,
            "procid": procid,
            "msgid": None,
            "structured_data": {},
            "msg": msg_raw.decode("utf-8", "backslashreplace"),
            "protocol": "rfc3164",
        }
        return Event("syslog", peer, received_at, fields, data, identity)

    def _event_5424(
        self, data: bytes, body: bytes, m: re.Match[bytes], peer: Peer, received_at: float
    ) -> Event:
        pri_text, header, sd_start = m.groups()
        pri = int(pri_text)
        if pri > _MAX_PRI:
            raise FormatError(f"PRI {pri} is above {_MAX_PRI}", "bad_pri")
        ts, host, app, proc, mid = header.decode("utf-8", "backslashreplace").split(" ")
        end = m.end()
        sd: StructuredData
        sd_key: bytes | None
        if sd_start is None:
            sd, sd_key, msg_raw = {}, None, body[end:]
        else:
            sd, sd_end, sd_key = parse_structured_data(body[end:])
            msg_raw = body[end + sd_end + 1 :]
            if msg_raw.startswith(_BOM):
                msg_raw = msg_raw[3:]
        timestamp = None if ts == "-" else ts
        hostname = None if host == "-" else host
        app_name = None if app == "-" else app
        procid = None if proc == "-" else proc
        msgid = None if mid == "-" else mid
        identity: tuple[IdentityPart, ...] = (
            pri,
            timestamp,
            peer[0] if hostname is None else hostname,
            app_name,
            procid,
            msgid,
            sd_key,
            msg_raw,
            None,
        )
        fields: dict[str, object] = {
            "facility": pri >> 3,
            "severity": pri & 7,
            "timestamp": timestamp,
            "hostname": hostname,
            "app_name": app_name,
            "procid": procid,
            "msgid": msgid,
            "structured_data": sd,
            "msg": msg_raw.decode("utf-8", "backslashreplace"),
            "protocol": "rfc5424",
        }
        return Event("syslog", peer, received_at, fields, data, identity)


def _fast_path() -> Any:
    """The compiled module, or None (not built, or TRAPGATE_PURE set)."""
    if os.environ.get("TRAPGATE_PURE"):
        return None
    try:
        from formats import _syslog_fast
    except ImportError:
        return None
    return _syslog_fast


register(SyslogParser())
