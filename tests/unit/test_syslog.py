"""Syslog parsing: RFC 5424, RFC 3164 and device variants, errors, identity."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formats import Event, FormatError, get_parser
from formats.syslog import SyslogParser

PEER = ("192.0.2.10", 51514)
P = SyslogParser()
REASONS = {"empty", "bad_pri", "bad_version", "truncated", "bad_header", "bad_structured_data"}
FIELD_NAMES = {
    "facility",
    "severity",
    "timestamp",
    "hostname",
    "app_name",
    "procid",
    "msgid",
    "structured_data",
    "msg",
    "protocol",
}
TS = "2003-10-11T22:14:15.003Z"


def bsd(**fields: Any) -> dict[str, Any]:
    """Expected fields of an RFC 3164 message: user.notice, all else empty."""
    base: dict[str, Any] = {
        "facility": 1,
        "severity": 5,
        "timestamp": None,
        "hostname": None,
        "app_name": None,
        "procid": None,
        "msgid": None,
        "structured_data": {},
        "msg": "",
        "protocol": "rfc3164",
    }
    return base | fields


def v1(**fields: Any) -> dict[str, Any]:
    """Expected fields of an RFC 5424 message."""
    return bsd(protocol="rfc5424") | fields


def parse(data: bytes, peer: tuple[str, int] = PEER) -> Event:
    return P.parse(data, peer, 1700000000.0)


VECTORS = [
    # RFC 5424, the RFC's own examples first.
    pytest.param(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
        v1(
            facility=4,
            severity=2,
            timestamp=TS,
            hostname="mymachine.example.com",
            app_name="su",
            msgid="ID47",
            msg="'su root' failed for lonvick on /dev/pts/8",
        ),
        id="5424_rfc_example_1_bom_is_stripped_and_nil_procid_is_none",
    ),
    pytest.param(
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        b"%% It's time to make the do-nuts.",
        v1(
            facility=20,
            severity=5,
            timestamp="2003-08-24T05:14:15.000003-07:00",
            hostname="192.0.2.1",
            app_name="myproc",
            procid="8710",
            msg="%% It's time to make the do-nuts.",
        ),
        id="5424_rfc_example_2_numeric_offset_timestamp_kept_as_sent",
    ),
    pytest.param(
        b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
        b'eventSource="Application" eventID="1011"] \xef\xbb\xbfAn application event log entry...',
        v1(
            facility=20,
            severity=5,
            timestamp=TS,
            hostname="mymachine.example.com",
            app_name="evntslog",
            msgid="ID47",
            msg="An application event log entry...",
            structured_data={
                "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}
            },
        ),
        id="5424_rfc_example_3_structured_data_and_msg",
    ),
    pytest.param(
        b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
        b'eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]',
        v1(
            facility=20,
            severity=5,
            timestamp=TS,
            hostname="mymachine.example.com",
            app_name="evntslog",
            msgid="ID47",
            structured_data={
                "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                "examplePriority@32473": {"class": "high"},
            },
        ),
        id="5424_rfc_example_4_two_sd_elements_and_no_msg",
    ),
    pytest.param(b"<13>1 - - - - - -", v1(), id="5424_all_nil_gives_none_everywhere"),
    pytest.param(b"<13>1 - - - - - - hello", v1(msg="hello"), id="5424_all_nil_header_with_msg"),
    pytest.param(b"<13>1 - - - - - - ", v1(), id="5424_space_then_nothing_is_an_empty_msg"),
    pytest.param(
        b"<0>1 - h a p m - x",
        v1(facility=0, severity=0, hostname="h", app_name="a", procid="p", msgid="m", msg="x"),
        id="5424_pri_0_is_kern_emerg",
    ),
    pytest.param(
        b"<191>1 - - - - - - x", v1(facility=23, severity=7, msg="x"), id="5424_pri_191_is_local7_debug"
    ),
    pytest.param(b"<13> 1 - - - - - - x", v1(msg="x"), id="5424_space_after_pri_is_tolerated"),
    pytest.param(
        b'<13>1 - - - - - [x@1 a="q\\"uote" b="back\\\\slash" c="br\\]acket"] m',
        v1(structured_data={"x@1": {"a": 'q"uote', "b": "back\\slash", "c": "br]acket"}}, msg="m"),
        id="5424_sd_escapes_are_decoded",
    ),
    pytest.param(
        b'<13>1 - - - - - [x@1 path="C:\\temp" end="a\\""]',
        v1(structured_data={"x@1": {"path": "C:\\temp", "end": 'a"'}}),
        id="5424_sd_backslash_before_other_char_is_kept",
    ),
    pytest.param(
        b'<13>1 - - - - - [x@1 ip="10.0.0.1" ip="10.0.0.2" ip="10.0.0.3" k="v"] m',
        v1(structured_data={"x@1": {"ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "k": "v"}}, msg="m"),
        id="5424_sd_repeated_param_gives_list",
    ),
    pytest.param(
        b'<13>1 - - - - - [x@1 a="1"][y@1 b="2"][x@1 a="3" c="4"] m',
        v1(structured_data={"x@1": {"a": ["1", "3"], "c": "4"}, "y@1": {"b": "2"}}, msg="m"),
        id="5424_sd_repeated_sd_id_is_merged",
    ),
    pytest.param(
        b"<13>1 - - - - - [x@1] m",
        v1(structured_data={"x@1": {}}, msg="m"),
        id="5424_sd_element_without_params",
    ),
    pytest.param(
        b'<13>1 - - - - - [x@1 a="1"] [y@1] m',
        v1(structured_data={"x@1": {"a": "1"}}, msg="[y@1] m"),
        id="5424_sd_ends_at_the_first_space_the_rest_is_msg",
    ),
    pytest.param(
        b'<13>1 - - - - - [x@1 v="a]b [c] d=\\"e\\""] m',
        v1(structured_data={"x@1": {"v": 'a]b [c] d="e"'}}, msg="m"),
        id="5424_sd_value_with_unescaped_bracket_and_spaces",
    ),
    pytest.param(
        '<13>1 - - - - - [x@1 n="Grüße \\] ok"] Grüße'.encode(),
        v1(structured_data={"x@1": {"n": "Grüße ] ok"}}, msg="Grüße"),
        id="5424_utf8_in_sd_value_and_msg",
    ),
    pytest.param(
        b"<13>1 - - - - - - caf\xe9 \xff",
        v1(msg="caf\\xe9 \\xff"),
        id="5424_invalid_utf8_msg_is_backslash_escaped",
    ),
    pytest.param(
        b"<13>1 - h\xe9 - - - - m",
        v1(hostname="h\\xe9", msg="m"),
        id="5424_invalid_utf8_header_field_is_backslash_escaped",
    ),
    pytest.param(b"<13>1 - - - - - - line\r\n\x00", v1(msg="line"), id="5424_trailing_crlf_and_nul_removed"),
    pytest.param(b"<13>1 - - - - - - \xef\xbb\xbf", v1(), id="5424_bom_only_msg_is_empty"),
    pytest.param(b"<13>1 - - - - - - two\nlines", v1(msg="two\nlines"), id="5424_inner_lf_is_kept"),
    # RFC 3164.
    pytest.param(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        bsd(
            facility=4,
            severity=2,
            timestamp="Oct 11 22:14:15",
            hostname="mymachine",
            app_name="su",
            msg="'su root' failed for lonvick on /dev/pts/8",
        ),
        id="3164_rfc_example",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 host sshd[1234]: Accepted key",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", app_name="sshd", procid="1234", msg="Accepted key"),
        id="3164_space_padded_day_and_pid",
    ),
    pytest.param(
        b"<13>Mar 01 00:00:00 host tag: m",
        bsd(timestamp="Mar 01 00:00:00", hostname="host", app_name="tag", msg="m"),
        id="3164_zero_padded_day",
    ),
    pytest.param(
        b"<13>Mar 1 00:00:00 host tag: m",
        bsd(timestamp="Mar 1 00:00:00", hostname="host", app_name="tag", msg="m"),
        id="3164_unpadded_day",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 host sshd[77] no colon",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", app_name="sshd", procid="77", msg="no colon"),
        id="3164_tag_with_pid_but_no_colon",
    ),
    pytest.param(
        b"<22>Mar  1 00:00:00 mx postfix/smtpd[99]: connect from x",
        bsd(
            facility=2,
            severity=6,
            timestamp="Mar  1 00:00:00",
            hostname="mx",
            app_name="postfix/smtpd",
            procid="99",
            msg="connect from x",
        ),
        id="3164_tag_with_slash",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 host just some text",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", msg="just some text"),
        id="3164_no_tag_leaves_text_as_msg",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 tag: msg",
        bsd(timestamp="Mar  1 00:00:00", app_name="tag", msg="msg"),
        id="3164_missing_hostname_tag_with_colon",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 cron[5]: job",
        bsd(timestamp="Mar  1 00:00:00", app_name="cron", procid="5", msg="job"),
        id="3164_missing_hostname_tag_with_pid",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 2001:db8::1 tag: m",
        bsd(timestamp="Mar  1 00:00:00", hostname="2001:db8::1", app_name="tag", msg="m"),
        id="3164_ipv6_hostname_is_not_a_tag",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 192.0.2.1 tag: m",
        bsd(timestamp="Mar  1 00:00:00", hostname="192.0.2.1", app_name="tag", msg="m"),
        id="3164_ipv4_hostname",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 host",
        bsd(timestamp="Mar  1 00:00:00", hostname="host"),
        id="3164_hostname_and_nothing_else",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 host tag:",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", app_name="tag"),
        id="3164_tag_with_empty_msg",
    ),
    pytest.param(
        b"<13>Mar  1 2024 00:00:00 host tag: m",
        bsd(timestamp="Mar  1 2024 00:00:00", hostname="host", app_name="tag", msg="m"),
        id="3164_timestamp_with_year",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00.123 host tag: m",
        bsd(timestamp="Mar  1 00:00:00.123", hostname="host", app_name="tag", msg="m"),
        id="3164_timestamp_with_milliseconds",
    ),
    pytest.param(
        b"<13>2024-03-01T00:00:00.123Z host tag: m",
        bsd(timestamp="2024-03-01T00:00:00.123Z", hostname="host", app_name="tag", msg="m"),
        id="3164_rfc3339_timestamp",
    ),
    pytest.param(
        b"<13>2024-03-01T09:00:00+09:00 tag: m",
        bsd(timestamp="2024-03-01T09:00:00+09:00", app_name="tag", msg="m"),
        id="3164_rfc3339_timestamp_with_offset_and_no_hostname",
    ),
    pytest.param(
        b"Mar  1 00:00:00 host tag: m",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", app_name="tag", msg="m"),
        id="3164_no_pri_defaults_to_user_notice",
    ),
    pytest.param(b"hello world", bsd(msg="hello world"), id="no_pri_plain_text_is_the_msg"),
    pytest.param(b"  \thello\n", bsd(msg="hello"), id="no_pri_leading_whitespace_dropped"),
    pytest.param(b"\n <13>1 - - - - - - m", v1(msg="m"), id="leading_whitespace_before_pri_dropped"),
    pytest.param(
        b"<13> Mar  1 00:00:00 host tag: m",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", app_name="tag", msg="m"),
        id="3164_space_after_pri_is_tolerated",
    ),
    pytest.param(b"<13>tag: m", bsd(app_name="tag", msg="m"), id="3164_no_timestamp_tag_only"),
    pytest.param(b"<13>some text", bsd(msg="some text"), id="3164_no_timestamp_no_tag"),
    pytest.param(b"<13>", bsd(), id="3164_pri_only_is_an_empty_msg"),
    pytest.param(
        b"<13>1 file(s) copied",
        bsd(msg="1 file(s) copied"),
        id="3164_text_starting_with_a_number_is_not_5424",
    ),
    pytest.param(b"<13>http://x/ is down", bsd(msg="http://x/ is down"), id="3164_url_is_not_a_tag"),
    pytest.param(
        b"<13>Mar  1 00:00:00 host tag: \xff\xfe bytes\x00",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", app_name="tag", msg="\\xff\\xfe bytes"),
        id="3164_invalid_utf8_and_trailing_nul",
    ),
    pytest.param(
        b"<13>Mar  1 00:00:00 host tag: a  b ",
        bsd(timestamp="Mar  1 00:00:00", hostname="host", app_name="tag", msg="a  b "),
        id="3164_inner_and_trailing_spaces_kept",
    ),
    # Cisco IOS, ASA.
    pytest.param(
        b"<189>123: *Mar  1 00:00:00.123: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)",
        bsd(
            facility=23,
            severity=5,
            timestamp="*Mar  1 00:00:00.123",
            app_name="%SYS-5-CONFIG_I",
            msg="Configured from console by vty0 (10.0.0.1)",
        ),
        id="cisco_sequence_unsynced_clock_milliseconds_mnemonic",
    ),
    pytest.param(
        b"<189>123: router1: Mar 1 00:00:00: %SYS-5-CONFIG_I: Configured",
        bsd(
            facility=23,
            severity=5,
            timestamp="Mar 1 00:00:00",
            hostname="router1",
            app_name="%SYS-5-CONFIG_I",
            msg="Configured",
        ),
        id="cisco_origin_id_before_timestamp",
    ),
    pytest.param(
        b"<187>45: .Mar  1 00:00:00.123: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down",
        bsd(
            facility=23,
            severity=3,
            timestamp=".Mar  1 00:00:00.123",
            app_name="%LINK-3-UPDOWN",
            msg="Interface Gi0/1, changed state to down",
        ),
        id="cisco_lost_sync_clock_marker",
    ),
    pytest.param(
        b"<189>46: *Mar  1 00:00:00.123 UTC: %SYS-5-CONFIG_I: x",
        bsd(
            facility=23, severity=5, timestamp="*Mar  1 00:00:00.123 UTC", app_name="%SYS-5-CONFIG_I", msg="x"
        ),
        id="cisco_time_zone_is_part_of_timestamp",
    ),
    pytest.param(
        b"<189>47: %SYS-5-CONFIG_I: x",
        bsd(facility=23, severity=5, app_name="%SYS-5-CONFIG_I", msg="x"),
        id="cisco_without_timestamps",
    ),
    pytest.param(
        b"<189>Mar  1 00:00:00 router1 %PM-SP-4-ERR_DISABLE: bpduguard",
        bsd(
            facility=23,
            severity=5,
            timestamp="Mar  1 00:00:00",
            hostname="router1",
            app_name="%PM-SP-4-ERR_DISABLE",
            msg="bpduguard",
        ),
        id="cisco_hostname_then_mnemonic",
    ),
    pytest.param(
        b"<166>Mar 01 2024 00:00:00: %ASA-6-302013: Built inbound TCP",
        bsd(
            facility=20,
            severity=6,
            timestamp="Mar 01 2024 00:00:00",
            app_name="%ASA-6-302013",
            msg="Built inbound TCP",
        ),
        id="cisco_asa_year_and_colon",
    ),
    pytest.param(
        b"<166>Mar 01 2024 00:00:00 asa1 : %ASA-6-302013: Built",
        bsd(
            facility=20,
            severity=6,
            timestamp="Mar 01 2024 00:00:00",
            hostname="asa1",
            app_name="%ASA-6-302013",
            msg="Built",
        ),
        id="cisco_asa_device_id_with_spaced_colon",
    ),
]


@pytest.mark.parametrize(("data", "fields"), VECTORS)
def test_message_gives_these_fields(data: bytes, fields: dict[str, Any]) -> None:
    event = parse(data)
    assert dict(event.fields) == fields
    assert (event.format, event.peer, event.received_at, event.raw) == ("syslog", PEER, 1700000000.0, data)


ERRORS = [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"   ", "empty", id="spaces_only"),
    pytest.param(b"\r\n", "empty", id="crlf_only"),
    pytest.param(b" \t\x00\n", "empty", id="whitespace_and_nul_only"),
    pytest.param(b"<192>1 - - - - - - x", "bad_pri", id="pri_192_in_5424"),
    pytest.param(b"<999>Mar  1 00:00:00 h t: m", "bad_pri", id="pri_999_in_3164"),
    pytest.param(b"<1000>x", "bad_pri", id="pri_of_four_digits"),
    pytest.param(b"<abc>x", "bad_pri", id="pri_not_numeric"),
    pytest.param(b"<>x", "bad_pri", id="pri_empty"),
    pytest.param(b"<-1>x", "bad_pri", id="pri_negative"),
    pytest.param(b"<13", "bad_pri", id="pri_not_closed"),
    pytest.param(b"<html>", "bad_pri", id="pri_angle_bracket_text"),
    pytest.param(b"<13>2 2024-03-01T00:00:00Z h a p m - x", "bad_version", id="version_2"),
    pytest.param(b"<13>10 - - - - - - x", "bad_version", id="version_10"),
    pytest.param(b"<13>1 2024-03-01T00:00:00Z host app", "truncated", id="5424_header_cut_after_app"),
    pytest.param(b"<13>1 - - - - -", "truncated", id="5424_no_structured_data"),
    pytest.param(b"<13>1 - - - - - \n", "truncated", id="5424_space_then_end_instead_of_sd"),
    pytest.param(b"<13>1 - host  app - - - x", "bad_header", id="5424_empty_header_field"),
    pytest.param(b"<13>1 - - - - - x msg", "bad_structured_data", id="sd_neither_nil_nor_bracket"),
    pytest.param(b"<13>1 - - - - - -x", "bad_structured_data", id="sd_nil_glued_to_msg"),
    pytest.param(b"<13>1 - - - - - [x@1 a=1] m", "bad_structured_data", id="sd_unquoted_value"),
    pytest.param(b'<13>1 - - - - - [x@1 a="1" m', "bad_structured_data", id="sd_element_not_closed"),
    pytest.param(b'<13>1 - - - - - [x@1 a="1] m', "bad_structured_data", id="sd_quote_not_closed"),
    pytest.param(b'<13>1 - - - - - [x@1 a="1"]m', "bad_structured_data", id="sd_glued_to_msg"),
    pytest.param(b"<13>1 - - - - - [] m", "bad_structured_data", id="sd_empty_brackets"),
    pytest.param(b'<13>1 - - - - - [x@1  a="1"] m', "bad_structured_data", id="sd_double_space"),
]


@pytest.mark.parametrize(("data", "reason"), ERRORS)
def test_malformed_message_raises_format_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(FormatError) as info:
        parse(data)
    assert info.value.reason == reason


def test_parser_is_registered_as_syslog() -> None:
    parser = get_parser("syslog")
    assert parser.name == "syslog"
    assert isinstance(parser, SyslogParser)


# Identity.

BASE_5424 = b'<165>1 2024-03-01T00:00:00.1Z host1 app 42 ID7 [x@1 a="1"] the message'


@pytest.mark.parametrize(
    "copy",
    [
        pytest.param(BASE_5424 + b"\n", id="trailing_lf"),
        pytest.param(BASE_5424 + b"\r\n", id="trailing_crlf"),
        pytest.param(BASE_5424 + b"\x00", id="trailing_nul"),
        pytest.param(BASE_5424 + b"\n\x00", id="trailing_lf_nul"),
    ],
)
def test_trailing_framing_bytes_do_not_change_identity(copy: bytes) -> None:
    assert parse(copy).identity == parse(BASE_5424).identity


@pytest.mark.parametrize(
    "message",
    [
        BASE_5424,
        b"<13>Mar  1 00:00:00 tag: no hostname",
        b"<189>5: *Mar  1 00:00:00.123: %SYS-5-CONFIG_I: cisco",
        b"no pri at all",
    ],
)
def test_peer_port_and_receive_time_do_not_change_identity(message: bytes) -> None:
    a = P.parse(message, ("192.0.2.10", 514), 1.0)
    b = P.parse(message + b"\n", ("192.0.2.10", 40000), 2.0)
    assert a.identity == b.identity


def test_bom_does_not_change_identity() -> None:
    plain = parse(b"<13>1 - h a - - - text")
    with_bom = parse(b"<13>1 - h a - - - \xef\xbb\xbftext")
    assert plain.identity == with_bom.identity


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(b'[meta sequenceId="1"]', b'[meta sequenceId="77"]', id="meta_sequence_id"),
        pytest.param(
            b'[x@1 a="1"][meta sequenceId="1" sysUpTime="5"]',
            b'[x@1 a="1"][meta sequenceId="2" sysUpTime="5"]',
            id="sequence_id_beside_other_meta",
        ),
        pytest.param(
            b'[x@1 a="1"]',
            b'[x@1 a="1"][ssign VER="0111" RSID="1" SG="0" SPRI="0" GBC="1" FMN="1" CNT="1" HB="x" SIGN="y"]',
            id="ssign_block",
        ),
        pytest.param(
            b'[ssign-cert VER="0111" RSID="1" SG="0" SPRI="0" TBPL="1" INDEX="1" FLEN="1" FRAG="z" '
            b'SIGN="y"][x@1 a="1"]',
            b'[x@1 a="1"]',
            id="ssign_cert_block",
        ),
    ],
)
def test_per_destination_sd_params_do_not_change_identity(first: bytes, second: bytes) -> None:
    head = b"<13>1 2024-03-01T00:00:00Z host app - - "
    a, b = parse(head + first + b" m"), parse(head + second + b" m")
    assert a.fields["structured_data"] != b.fields["structured_data"]
    assert a.identity == b.identity


def test_sd_identity_without_dropped_params_is_the_raw_sd() -> None:
    sd = b'[x@1 a="q\\"1"][meta sysUpTime="5"]'
    assert sd in parse(b"<13>1 - h a - - " + sd + b" m").identity


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(BASE_5424, BASE_5424.replace(b"the message", b"the massage"), id="msg"),
        pytest.param(BASE_5424, BASE_5424.replace(b'a="1"', b'a="2"'), id="sd_value"),
        pytest.param(
            b'<13>1 - h a - - [meta sequenceId="1" sysUpTime="5"] m',
            b'<13>1 - h a - - [meta sequenceId="1" sysUpTime="6"] m',
            id="other_meta_param",
        ),
        pytest.param(BASE_5424, BASE_5424.replace(b"<165>", b"<166>"), id="pri"),
        pytest.param(BASE_5424, BASE_5424.replace(b".1Z", b".2Z"), id="timestamp"),
        pytest.param(BASE_5424, BASE_5424.replace(b"host1", b"host2"), id="hostname"),
        pytest.param(BASE_5424, BASE_5424.replace(b" 42 ", b" 43 "), id="procid"),
        pytest.param(BASE_5424, BASE_5424.replace(b"ID7", b"ID8"), id="msgid"),
        pytest.param(
            b"<13>Mar  1 00:00:00 h tag: m", b"<13>Mar  1 00:00:00 h tag: m ", id="3164_trailing_space"
        ),
        pytest.param(b"<13>Mar  1 00:00:00 h a: m", b"<13>Mar  1 00:00:00 h b: m", id="3164_tag"),
        pytest.param(
            b"<189>5: *Mar  1 00:00:00: %SYS-5-X: m",
            b"<189>6: *Mar  1 00:00:00: %SYS-5-X: m",
            id="cisco_sequence_number",
        ),
        pytest.param(b"<13>hello", b"hello", id="explicit_pri_vs_no_pri"),
    ],
)
def test_different_content_gives_different_identity(first: bytes, second: bytes) -> None:
    assert parse(first).identity != parse(second).identity


def test_missing_hostname_identity_uses_the_peer_host() -> None:
    message = b"<13>Mar  1 00:00:00 tag: m"
    a = P.parse(message, ("192.0.2.1", 514), 0.0)
    b = P.parse(message, ("192.0.2.2", 514), 0.0)
    assert a.fields["hostname"] is None
    assert a.identity != b.identity
    assert "192.0.2.1" in a.identity


def test_nil_hostname_identity_uses_the_peer_host() -> None:
    assert "192.0.2.10" in parse(b"<13>1 - - - - - - m").identity


# Properties: any input is an Event or a FormatError, nothing else.


def check_any(data: bytes) -> Event | None:
    try:
        event = P.parse(data, PEER, 0.0)
    except FormatError as exc:
        assert exc.reason in REASONS
        return None
    assert set(event.fields) == FIELD_NAMES
    assert 0 <= event.fields["facility"] <= 23
    assert 0 <= event.fields["severity"] <= 7
    assert isinstance(event.fields["msg"], str)
    assert event.fields["protocol"] in ("rfc5424", "rfc3164")
    hash(event.identity)
    return event


@given(st.binary(max_size=300))
def test_any_bytes_give_an_event_or_a_format_error(data: bytes) -> None:
    check_any(data)


HEADERS = [
    b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 ",
    b"<34>1 - - - - - ",
    b'<34>1 - - - - - [x@1 a="',
    b"<34>1 - - - - - - ",
    b"<34>Oct 11 22:14:15 ",
    b"<34>Oct 11 22:14:15 mymachine ",
    b"<34>Oct 11 22:14:15 mymachine su[12]: ",
    b"<189>123: *Mar  1 00:00:00.123",
    b"<189>123: router1: Mar 1 00:00:00: ",
    b"<13>2024-03-01T00:00:00.123Z ",
    b"<13>",
    b"<13> ",
]
TAIL_BYTES = st.binary(max_size=120) | st.text(
    alphabet=st.sampled_from(list(' -[]"\\=:%*.0123456789abcXYZ@\n\r\x00\xef\xbb\xbf\u00e9')), max_size=60
).map(lambda s: s.encode("utf-8", "surrogatepass"))


@given(st.sampled_from(HEADERS), TAIL_BYTES)
def test_valid_header_then_random_bytes_give_an_event_or_a_format_error(header: bytes, tail: bytes) -> None:
    event = check_any(header + tail)
    if event is not None:
        # Framing bytes at the end never change what the event is.
        again = check_any(header + tail + b"\r\n\x00")
        assert again is not None and again.identity == event.identity and again.fields == event.fields


@given(TAIL_BYTES)
def test_3164_header_with_any_msg_is_an_event_whose_msg_ends_the_input(tail: bytes) -> None:
    event = check_any(b"<34>Oct 11 22:14:15 mymachine su[12]: " + tail)
    assert event is not None
    stripped = tail.rstrip(b"\r\n\x00")
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:]
    assert event.fields["msg"] == stripped.decode("utf-8", "backslashreplace")
