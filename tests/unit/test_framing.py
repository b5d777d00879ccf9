"""RFC 6587 TCP framing: both modes, oversize, EOF, chunking independence."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formats import FormatError
from formats.framing import FramingError, SyslogStreamDecoder

Out = list[bytes | str]


def norm(items: list[bytes | FramingError]) -> Out:
    """Frames as bytes, errors as their reason, so outputs compare with ==."""
    return [item.reason if isinstance(item, FramingError) else item for item in items]


def decode(chunks: list[bytes], max_frame: int = 64 * 1024) -> tuple[Out, bool]:
    """Feed `chunks` then close; return everything produced and `broken`."""
    decoder = SyslogStreamDecoder(max_frame)
    out: list[bytes | FramingError] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    out += decoder.close()
    return norm(out), decoder.broken


def whole_and_bytewise(stream: bytes, max_frame: int = 64 * 1024) -> tuple[Out, bool]:
    whole = decode([stream], max_frame)
    assert decode([stream[i : i + 1] for i in range(len(stream))], max_frame) == whole
    return whole


LF_CASES = [
    pytest.param(b"<13>a\n<13>b\n", [b"<13>a", b"<13>b"], id="lf_terminated"),
    pytest.param(b"<13>a\r\n<13>b\r\n", [b"<13>a", b"<13>b"], id="crlf_loses_its_cr"),
    pytest.param(b"<13>a\x00<13>b\x00", [b"<13>a", b"<13>b"], id="nul_terminated"),
    pytest.param(b"<13>a\n<13>b\x00<13>c\r\n", [b"<13>a", b"<13>b", b"<13>c"], id="mixed_terminators"),
    pytest.param(b"\n\n<13>a\n\r\n\x00\n<13>b\n", [b"<13>a", b"<13>b"], id="empty_frames_are_skipped"),
    pytest.param(b"<13>a\rb\n", [b"<13>a\rb"], id="inner_cr_is_kept"),
    pytest.param(b"<13>a\r\r\n", [b"<13>a\r"], id="only_one_cr_before_lf_is_dropped"),
    pytest.param(b"<13>a\n<13>tail", [b"<13>a", b"<13>tail"], id="close_flushes_unterminated_frame"),
    pytest.param(b"<13>tail\r", [b"<13>tail"], id="close_drops_cr_of_final_frame"),
    pytest.param(b"hello 12 world\n", [b"hello 12 world"], id="first_byte_not_digit_means_lf_mode"),
    pytest.param(b"<13>x\n12 <13>y\n", [b"<13>x", b"12 <13>y"], id="digits_later_do_not_switch_mode"),
    pytest.param(b"", [], id="no_bytes_no_frames"),
]


@pytest.mark.parametrize(("stream", "frames"), LF_CASES)
def test_lf_framing_gives_these_frames_fed_whole_or_byte_by_byte(stream: bytes, frames: Out) -> None:
    assert whole_and_bytewise(stream) == (frames, False)


OCTET_CASES = [
    pytest.param(b"3 abc5 hello", [b"abc", b"hello"], False, id="two_frames"),
    pytest.param(b"8 <13>a\nb\n", [b"<13>a\nb\n"], False, id="frame_content_is_kept_exactly"),
    pytest.param(b"3 a b", [b"a b"], False, id="spaces_inside_frame"),
    pytest.param(
        b"3 abc\n3 def\r\n3 ghi\x00", [b"abc", b"def", b"ghi"], False, id="lf_cr_nul_between_frames_tolerated"
    ),
    pytest.param(
        b"3 abc x 3 def", [b"abc", "bad_octet_count"], True, id="non_numeric_count_breaks_the_stream"
    ),
    pytest.param(b"03 abc", ["bad_octet_count"], True, id="leading_zero_count"),
    pytest.param(b"0 3 abc", ["bad_octet_count"], True, id="zero_count"),
    pytest.param(b"3  abc", [b" ab", "bad_octet_count"], True, id="double_space_shifts_and_then_breaks"),
    pytest.param(b"3 abc 3 def", [b"abc", "bad_octet_count"], True, id="space_before_count"),
    pytest.param(b"10 abc", ["truncated"], False, id="close_inside_a_frame_is_truncated"),
    pytest.param(b"12", ["truncated"], False, id="close_inside_the_count_is_truncated"),
    pytest.param(b"3 abc\n", [b"abc"], False, id="close_after_separator_is_clean"),
    pytest.param(b"1234567", ["frame_too_large"], True, id="count_with_too_many_digits"),
    pytest.param(b"65537 x", ["frame_too_large"], True, id="count_above_max_frame"),
    pytest.param(b"65536 " + b"x" * 65536, [b"x" * 65536], False, id="count_equal_to_max_frame"),
]


@pytest.mark.parametrize(("stream", "frames", "broken"), OCTET_CASES)
def test_octet_counting_gives_these_frames_fed_whole_or_byte_by_byte(
    stream: bytes, frames: Out, broken: bool
) -> None:
    assert whole_and_bytewise(stream) == (frames, broken)


def test_broken_stream_discards_everything_after_the_error() -> None:
    decoder = SyslogStreamDecoder()
    assert norm(decoder.feed(b"3 abcX")) == [b"abc", "bad_octet_count"]
    assert decoder.broken
    assert decoder.feed(b"3 def") == []
    assert decoder.close() == []


def test_errors_are_format_errors_with_a_message() -> None:
    decoder = SyslogStreamDecoder(max_frame=4)
    [error] = decoder.feed(b"99 x")
    assert isinstance(error, FramingError) and isinstance(error, FormatError)
    assert error.reason == "frame_too_large" and str(error)


@pytest.mark.parametrize(
    ("stream", "frames"),
    [
        pytest.param(b"abcde\n", [b"abcde"], id="frame_of_max_size_passes"),
        pytest.param(b"abcdef\nok\n", ["frame_too_large", b"ok"], id="oversized_frame_skipped_to_terminator"),
        pytest.param(b"abcde\r\n", ["frame_too_large"], id="cr_counts_toward_the_limit"),
        pytest.param(
            b"ok\n" + b"x" * 50 + b"\x00ok2\n",
            [b"ok", "frame_too_large", b"ok2"],
            id="long_oversized_frame_reported_once",
        ),
        pytest.param(
            b"ok\n" + b"x" * 50, [b"ok", "frame_too_large"], id="oversized_frame_at_eof_reported_once"
        ),
    ],
)
def test_lf_oversized_frame_is_reported_once_and_skipped(stream: bytes, frames: Out) -> None:
    assert whole_and_bytewise(stream, max_frame=5) == (frames, False)


def test_oversized_lf_frame_in_many_chunks_is_reported_once() -> None:
    decoder = SyslogStreamDecoder(max_frame=10)
    out = decoder.feed(b"<13>")
    for _ in range(100):
        out += decoder.feed(b"x" * 7)
    out += decoder.feed(b"\n<13>next\n")
    assert norm(out) == ["frame_too_large", b"<13>next"]
    assert not decoder.broken


def test_big_chunk_of_many_frames_is_split_in_one_feed() -> None:
    frames = [b"<13>1 - - - - - - message %d" % i for i in range(10000)]
    assert norm(SyslogStreamDecoder().feed(b"\n".join(frames) + b"\n")) == frames
    octets = b"".join(b"%d %s" % (len(f), f) for f in frames)
    assert norm(SyslogStreamDecoder().feed(octets)) == frames


def test_close_twice_gives_nothing_the_second_time() -> None:
    decoder = SyslogStreamDecoder()
    decoder.feed(b"<13>tail")
    assert decoder.close() == [b"<13>tail"]
    assert decoder.close() == []


def test_max_frame_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SyslogStreamDecoder(0)


# Properties: chunking never changes the result.


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in pairwise(edges)]


LINE = (
    st.binary(min_size=1, max_size=40)
    .filter(lambda b: b"\n" not in b and b"\x00" not in b)
    .map(lambda b: b"<" + b.rstrip(b"\r"))
)
TERMINATOR = st.sampled_from([b"\n", b"\r\n", b"\x00"])


@given(st.lists(st.tuples(LINE, TERMINATOR), max_size=20), st.lists(st.integers(0, 10_000), max_size=30))
def test_lf_frames_survive_any_chunking(lines: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    stream = b"".join(line + end for line, end in lines)
    expected: Out = [line for line, _ in lines]
    assert decode(split(stream, cuts)) == (expected, False)


@given(
    st.lists(st.binary(min_size=1, max_size=60), max_size=20), st.lists(st.integers(0, 10_000), max_size=30)
)
def test_octet_counted_frames_survive_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(b"%d %s" % (len(f), f) for f in frames)
    expected: Out = list(frames)
    assert decode(split(stream, cuts)) == (expected, False)


@given(
    st.binary(max_size=200)
    | st.lists(st.sampled_from([b"1", b"2", b"0", b" ", b"\n", b"\r", b"\x00", b"ab"]), max_size=80).map(
        b"".join
    ),
    st.lists(st.integers(0, 10_000), max_size=30),
    st.integers(1, 12),
)
def test_any_stream_gives_the_same_output_however_it_is_chunked(
    stream: bytes, cuts: list[int], max_frame: int
) -> None:
    whole = decode([stream], max_frame)
    assert decode(split(stream, cuts), max_frame) == whole
    assert decode([stream[i : i + 1] for i in range(len(stream))], max_frame) == whole
    for item in whole[0]:
        assert isinstance(item, str) or 0 < len(item) <= max_frame
