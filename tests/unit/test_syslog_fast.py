"""The compiled syslog fast path (`formats._syslog_fast`) against its Python twin.

Every input gives the same Event on both, or the same FormatError reason: the fast
path builds the Events of well-formed RFC 5424 messages with a nil STRUCTURED-DATA
and hands everything else to the Python parser.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats import FormatError
from formats.syslog import SyslogParser, _fast_path

fast = _fast_path()
needs_fast = pytest.mark.skipif(fast is None, reason="formats/_syslog_fast is not built (or TRAPGATE_PURE)")
PEER = ("192.0.2.7", 514)


def test_the_compiled_path_is_loaded_where_a_compiler_was_there_at_install() -> None:
    parser = SyslogParser()
    if os.environ.get("TRAPGATE_PURE"):
        assert fast is None and parser.parse.__func__ is SyslogParser.parse  # type: ignore[attr-defined]
    else:
        assert fast is not None, "formats/_syslog_fast was not built (pip install . builds it)"
        assert parser.parse is fast.parse


def both(data: bytes) -> tuple[object, object]:
    """What the fast path and the Python twin make of `data`: an Event, or a FormatError reason."""
    parser = SyslogParser()
    out = []
    for parse in (parser.parse, SyslogParser.parse.__get__(parser)):
        try:
            out.append(parse(data, PEER, 1700000000.25))
        except FormatError as exc:
            out.append(("FormatError", exc.reason))
    return out[0], out[1]


_token = st.binary(min_size=1, max_size=12).filter(lambda b: b" " not in b)
_field = st.one_of(st.just(b"-"), _token, _token, st.text(min_size=1, max_size=8).map(
    lambda t: t.replace(" ", "_").encode()), st.binary(max_size=6))
_timestamp = st.one_of(
    st.just(b"-"), st.just(b"2024-03-01T12:00:00.123Z"), st.just(b"2024-03-01t00:00:00+02:00"),
    st.builds(lambda d, rest: d + rest, st.sampled_from([b"2024-03-01T", b"2024-03-01T", b"2024-3-01T",
                                                          b"2024-03-01 "]), _token),
    st.binary(max_size=10))
# Mostly well-formed (the fast path's own), with every part sometimes wrong (the twin's).
_message = st.builds(
    lambda pri, spaces, version, ts, host, app, proc, mid, sd, bom, msg, trailer:
        pri + spaces + version + b" " + ts + b" " + host + b" " + app + b" " + proc + b" " + mid
        + sd + bom + msg + trailer,
    st.sampled_from([b"<34>", b"<0>", b"<191>", b"<13>", b"<165>", b"<192>", b"<999>", b"<1234>", b"<>",
                     b"<x>", b"34>", b" <13>", b"\n<13>"]),
    st.sampled_from([b"", b"", b"", b" ", b"  "]),
    st.sampled_from([b"1", b"1", b"1", b"1", b"2", b"10", b""]),
    _timestamp, _field, _field, _field, _field,
    st.sampled_from([b" -", b" - ", b" - ", b" - ", b" -x", b" [a b=\"c\"]", b" [a] ", b"", b" "]),
    st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xef\xbb"]),
    st.one_of(st.binary(max_size=40), st.text(max_size=30).map(str.encode)),
    st.sampled_from([b"", b"", b"\n", b"\r\n", b"\x00", b"\n\n\r"]),
)


@needs_fast
@settings(max_examples=3000, deadline=None)
@given(_message)
def test_rfc5424_like_messages_give_the_same_event_or_reason_on_both(data: bytes) -> None:
    got, want = both(data)
    assert got == want, data


# Always the fast path's shape, with any bytes in its fields and MSG (UTF-8 or not).
_well_formed = st.builds(
    lambda pri, ts, fields, bom, msg, trailer: b"<%d>1 " % pri + ts + b" " + b" ".join(fields) + b" -"
        + (b" " + bom + msg if bom or msg else b"") + trailer,
    st.integers(0, 191), st.one_of(st.just(b"-"), st.builds(lambda r: b"2024-03-01T" + r, st.binary().filter(
        lambda b: b" " not in b))),
    st.lists(st.one_of(st.just(b"-"), _token), min_size=4, max_size=4),
    st.sampled_from([b"", b"\xef\xbb\xbf"]), st.binary(max_size=40),
    st.sampled_from([b"", b"\n", b"\r\n\x00"]),
)


@needs_fast
@settings(max_examples=2000, deadline=None)
@given(_well_formed)
def test_well_formed_rfc5424_with_any_bytes_gives_the_same_event_on_both(data: bytes) -> None:
    got, want = both(data)
    assert got == want, data


@needs_fast
@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_give_the_same_event_or_reason_on_both(data: bytes) -> None:
    got, want = both(data)
    assert got == want, data


@needs_fast
@pytest.mark.parametrize("data", [
    b"<34>1 2024-03-01T12:00:00.123Z router1 sshd 4321 ID47 - Failed password for root",
    b"<165>1 - - - - - -",
    b"<165>1 - - - - - - \xef\xbb\xbfcaf\xc3\xa9 \xff\xfe",
    b"<13>1 2024-03-01T12:00:00Z h\xe2\x82 a p m - x\r\n\x00",
    b"<13>1 2024-03-01T12:00:00Z h a p m [x@1 y=\"z\"] sd goes to the twin",
    b"<13>Mar  1 12:00:00 host1 su[123]: rfc 3164 goes to the twin",
    b"<192>1 - - - - - - above 191: the twin rejects it",
])
def test_known_messages_give_the_same_event_or_reason_on_both(data: bytes) -> None:
    got, want = both(data)
    assert got == want
