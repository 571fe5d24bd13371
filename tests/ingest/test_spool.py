"""The durable spool on a real file system."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolFull


def test_segments_come_back_oldest_first_and_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert spool.empty()
    first = spool.append(["a v=1 1", "a v=2 2"], 1, 2)
    spool.append(["b v=3 3"], 3, 3)
    assert spool.oldest() == first
    assert first.lines() == ["a v=1 1", "a v=2 2"]

    again = Spool(tmp_path, max_bytes=1 << 20)  # a restarted worker
    assert again.segments == 2
    assert again.bytes == spool.bytes
    oldest = again.oldest()
    assert oldest is not None
    assert (oldest.start_ms, oldest.end_ms) == (1, 2)
    again.remove(oldest)
    nxt = again.oldest()
    assert nxt is not None
    assert nxt.lines() == ["b v=3 3"]
    assert again.append(["c v=4 4"], 4, 4).sequence > nxt.sequence


def test_a_half_written_segment_from_a_crash_is_discarded(tmp_path: Path) -> None:
    (tmp_path / ".0000000000000007-1-2.lp.tmp").write_text("partial")
    (tmp_path / "notes.txt").write_text("not ours")
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert spool.empty()
    assert not list(tmp_path.glob(".*.tmp"))
    assert (tmp_path / "notes.txt").exists()


def test_it_refuses_what_would_exceed_its_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(["x" * 60], 0, 0)
    with pytest.raises(SpoolFull):
        spool.append(["y" * 60], 0, 0)
    assert spool.segments == 1
    oldest = spool.oldest()
    assert oldest is not None
    spool.remove(oldest)
    spool.append(["y" * 60], 0, 0)
    assert spool.bytes == 61
