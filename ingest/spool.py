"""A durable local spool: batches of line protocol kept on disk while the store is away.

Each batch is one segment file, written to a temporary name, fsynced, then renamed, so a
segment is either whole or absent after a crash. Segments are replayed oldest first and
deleted only once the store accepted them; a crash between the two replays the segment
again, which rewrites the same points (idempotent). The name carries the sequence number
and the time range of the readings in it, which the replayer reports for re-rollup.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from estate.errors import EstateError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{16})-(-?\d+)-(-?\d+)\.lp$")


class SpoolFull(EstateError):
    """Appending would exceed the spool's size bound."""


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    sequence: int
    start_ms: int
    end_ms: int
    size: int

    def lines(self) -> list[str]:
        return self.path.read_text(encoding="utf-8").splitlines()


class Spool:
    """Segments on disk in ``directory``, at most ``max_bytes`` in all."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".*.tmp"):
            stale.unlink()  # a crash mid-write left it; its batch was never acknowledged
        self._lock = threading.Lock()
        self._segments = sorted(
            (s for s in (self._parse(p) for p in directory.iterdir()) if s is not None),
            key=lambda s: s.sequence)
        self._bytes = sum(s.size for s in self._segments)
        self._next = self._segments[-1].sequence + 1 if self._segments else 0
        if self._segments:
            log.warning("spool holds %d segments (%d bytes) from before; replaying them",
                        len(self._segments), self._bytes)

    @staticmethod
    def _parse(path: Path) -> Segment | None:
        match = _NAME.match(path.name)
        if match is None:
            return None
        return Segment(path, int(match[1]), int(match[2]), int(match[3]), path.stat().st_size)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def segments(self) -> int:
        return len(self._segments)

    def empty(self) -> bool:
        return not self._segments

    def append(self, lines: Sequence[str], start_ms: int, end_ms: int) -> Segment:
        """Durably store a batch; raise ``SpoolFull`` if it does not fit."""
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                raise SpoolFull(f"spool at {self._bytes} of {self.max_bytes} bytes")
            sequence = self._next
            self._next += 1
        name = f"{sequence:016d}-{start_ms}-{end_ms}.lp"
        tmp = self.directory / f".{name}.tmp"
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        path = self.directory / name
        tmp.rename(path)
        _fsync_dir(self.directory)
        segment = Segment(path, sequence, start_ms, end_ms, len(data))
        with self._lock:
            self._segments.append(segment)
            self._segments.sort(key=lambda s: s.sequence)
            self._bytes += segment.size
        return segment

    def oldest(self) -> Segment | None:
        with self._lock:
            return self._segments[0] if self._segments else None

    def remove(self, segment: Segment) -> None:
        segment.path.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        with self._lock:
            self._segments.remove(segment)
            self._bytes -= segment.size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
