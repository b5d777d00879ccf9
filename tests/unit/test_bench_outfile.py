"""bench.outfile: counting sequence numbers and following a growing file."""

from __future__ import annotations

import re
import time
from pathlib import Path

from bench.outfile import PROBE_PATTERN, SEQ_PATTERN, OutputTailer, count_sequences


def _line(seq: int, kind: str = "d") -> bytes:
    text = f"seq={seq:010d} kind={kind}"
    return f'{{"msg": "{text} ..", "raw": "{text}"}}\n'.encode()


def test_count_finds_distinct_duplicates_and_foreign_lines(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(_line(0, "p") + _line(1) + _line(1) + _line(3) + b"garbage\n" + _line(99) + _line(2)[:-1])
    count = count_sequences(out, 5, SEQ_PATTERN)
    assert (count.lines, count.distinct, count.duplicates) == (7, 4, 1)
    assert (count.out_of_range, count.unmatched_lines) == (1, 1)


def test_count_of_a_missing_file_is_zero(tmp_path: Path) -> None:
    count = count_sequences(tmp_path / "absent", 10, SEQ_PATTERN)
    assert (count.lines, count.distinct) == (0, 0)


def test_count_spans_read_chunks(tmp_path: Path) -> None:
    out = tmp_path / "big.log"
    total = 200_000
    out.write_bytes(
        b"".join(b"<134>1 - h a - - - seq=%010d kind=d " % i + b"x" * 40 + b"\n" for i in range(total))
    )
    count = count_sequences(out, total, SEQ_PATTERN)
    assert (count.lines, count.distinct, count.duplicates) == (total, total, 0)


def test_tailer_sees_probes_once_and_tracks_growth(tmp_path: Path) -> None:
    out = tmp_path / "tail.log"
    tailer = OutputTailer(out, PROBE_PATTERN, poll=0.001)
    tailer.start()
    try:
        with out.open("ab") as handle:
            handle.write(_line(0, "p") + _line(1))
            handle.flush()
            time.sleep(0.05)
            handle.write(_line(0, "p") + b"partial seq=0000001000 ki")
            handle.flush()
            time.sleep(0.05)
            handle.write(b"nd=p\n")
            handle.flush()
        deadline = time.monotonic() + 2
        while tailer.lines < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        tailer.stop()
    assert tailer.lines == 4
    assert sorted(tailer.probe_seen) == [0, 1000]
    assert tailer.last_growth is not None
    assert tailer.probe_seen[0] < tailer.probe_seen[1000]


def test_probe_pattern_ignores_normal_messages() -> None:
    assert PROBE_PATTERN.findall(_line(5)) == []
    assert re.findall(PROBE_PATTERN, _line(5, "p")) == [b"0000000005", b"0000000005"]
