"""The master's spool: unacknowledged batches survive a restart, damage is counted and skipped."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest

from gateway.spool import Spool


def segments(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("spool.*"))


def test_unacknowledged_batches_are_recovered_in_order(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    first = s.append([b"a", b"b"])
    s.append([b"c"])
    s.ack(first)
    s.append([b"d"])
    s.close()  # the process dies here
    again = Spool(tmp_path / "spool")
    assert again.recover() == [b"c", b"d"]
    again.release_kept()
    assert again.recover() == []


def test_a_torn_last_record_is_counted_and_skipped(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    s.append([b"kept"])
    s.close()
    with open(segments(tmp_path)[-1], "ab") as f:
        f.write(b"\xa7\x5e\x00\x00\x00\x40")  # a record cut short in its header
    again = Spool(tmp_path / "spool")
    assert again.recover() == [b"kept"]
    assert again.damaged == 1 and again.stats()["damaged_records"] == 1


@pytest.mark.parametrize("where", ["payload", "length", "magic"])
def test_a_corrupt_record_in_the_middle_is_skipped_and_the_records_after_it_are_kept(
    tmp_path: Path, where: str
) -> None:
    s = Spool(tmp_path / "spool")
    s.append([b"first"])
    s.append([b"second"])
    s.append([b"third"])
    s.close()
    path = segments(tmp_path)[-1]
    data = bytearray(path.read_bytes())
    second = data.index(b"\xa7\x5e", 1)  # the second record's header
    spot = {"magic": second, "length": second + 3, "payload": data.index(b"second") + 2}[where]
    data[spot] ^= 0xFF
    path.write_bytes(bytes(data))
    again = Spool(tmp_path / "spool")
    assert again.recover() == [b"first", b"third"]
    assert again.damaged >= 1


def test_garbage_never_fails_a_start(tmp_path: Path) -> None:
    (tmp_path / "spool.1").write_bytes(os.urandom(4096))
    s = Spool(tmp_path / "spool")
    assert s.recover() == []
    assert s.damaged >= 1


def test_segments_rotate_and_acknowledged_ones_are_deleted(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", segment_bytes=1000)
    for _ in range(50):
        s.ack(s.append([b"x" * 100]))
    assert len(segments(tmp_path)) <= 2
    assert s.stats()["bytes"] <= 1000 + 300
    s.append([b"in flight"])
    for _ in range(30):
        s.ack(s.append([b"y" * 100]))
    assert s.stats()["batches"] == 1  # the segment holding it stays
    s.close()
    assert Spool(tmp_path / "spool").recover() == [b"in flight"]


def test_a_previous_runs_segments_are_kept_until_cleared(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool", segment_bytes=200)
    first.append([b"from the first run"])
    first.close()
    second = Spool(tmp_path / "spool", segment_bytes=200)  # the hand-over failed: nothing cleared
    for _ in range(20):
        second.ack(second.append([b"z" * 100]))  # its batch numbers differ from the first run's
    second.close()
    third = Spool(tmp_path / "spool")
    assert third.recover() == [b"from the first run"]
    third.release_kept()
    assert segments(tmp_path) == [tmp_path / f"spool.{third._segment}"]


def test_releasing_what_previous_runs_kept_keeps_this_runs_batches(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool")
    first.append([b"old"])
    first.close()
    s = Spool(tmp_path / "spool")
    assert s.recover() == [b"old"]
    s.append([b"new"])  # written while the old ones are handed on
    s.release_kept()
    s.close()
    assert Spool(tmp_path / "spool").recover() == [b"new"]


def test_the_file_of_a_previous_version_is_recovered_and_cleared(tmp_path: Path) -> None:
    pack = msgpack.Packer(use_bin_type=True).pack
    (tmp_path / "spool").write_bytes(pack([0, 0, [b"a"]]) + pack([0, 1, [b"b"]]) + pack([1, 0]))
    s = Spool(tmp_path / "spool")
    assert s.recover() == [b"b"]
    s.release_kept()
    assert not (tmp_path / "spool").exists()


def test_the_oldest_open_batch_has_an_age(tmp_path: Path) -> None:
    now = [10.0]
    s = Spool(tmp_path / "spool", monotonic=lambda: now[0])
    first = s.append([b"a"])
    now[0] = 12.5
    s.append([b"b"])
    assert s.stats()["oldest_seconds"] == 2.5
    s.ack(first)
    assert s.stats()["oldest_seconds"] == 0.0


def test_fsync_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    now = [0.0]
    batch = Spool(tmp_path / "b", fsync="batch")
    batch.ack(batch.append([b"a"]))
    assert len(synced) == 2  # the batch and its ack
    synced.clear()
    interval = Spool(tmp_path / "i", fsync="interval", fsync_interval=1.0, monotonic=lambda: now[0])
    interval.ack(interval.append([b"a"]))
    assert synced == []
    now[0] = 1.5
    interval.sync_if_due()  # idle: the node's tick syncs it
    assert len(synced) == 1
    interval.sync_if_due()
    assert len(synced) == 1  # nothing new written
    synced.clear()
    none = Spool(tmp_path / "n")
    none.ack(none.append([b"a"]))
    none.close()
    assert synced == []
    with pytest.raises(ValueError):
        Spool(tmp_path / "x", fsync="sometimes")
