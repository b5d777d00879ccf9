"""The master's spool: unacknowledged batches survive a restart, nothing else does."""

from __future__ import annotations

from pathlib import Path

from gateway.spool import Spool


def test_unacknowledged_batches_are_recovered_in_order(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    first = s.append([b"a", b"b"])
    s.append([b"c"])
    s.ack(first)
    s.append([b"d"])
    s.close()  # the process dies here
    again = Spool(tmp_path / "spool")
    assert again.recover() == [b"c", b"d"]
    again.clear()
    assert again.recover() == []


def test_torn_last_record_is_ignored(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    s.append([b"kept"])
    s.close()
    with open(tmp_path / "spool", "ab") as f:
        f.write(b"\x93\x00\x05")  # a batch record cut short
    assert Spool(tmp_path / "spool").recover() == [b"kept"]


def test_file_is_truncated_when_everything_is_acknowledged_past_the_bound(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", max_bytes=1000)
    for _ in range(50):
        s.ack(s.append([b"x" * 100]))
    assert (tmp_path / "spool").stat().st_size <= 1000 + 200
    assert s.recover() == []


def test_recover_does_not_lose_batches_written_after_it(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    s.append([b"old"])
    assert s.recover() == [b"old"]
    s.clear()
    s.append([b"new"])
    s.close()
    assert Spool(tmp_path / "spool").recover() == [b"new"]
