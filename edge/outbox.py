"""The gateway's store-and-forward queue: telemetry messages on disk until the broker has them.

Every poll result is appended here before it is published, and a row is deleted only once
the broker acknowledged its QoS 1 publication (PUBACK). Rows are replayed oldest first, so
each meter's packs reach the broker in the order they were read. The queue survives a
restart of the process: whatever was not acknowledged is still in the file.

It is bounded by rows, bytes and age. Before anything is dropped, a warning names how
much and why, and ``gateway_outbox_dropped_total{reason}`` counts it:

- ``expired``: the first reading of the pack is older than the age limit;
- ``full``: the oldest packs make room for new ones (recent data matters most to a
  control room);
- ``oversize``: a single pack larger than the byte limit (it could never fit).

Why stdlib sqlite3 and no library: a single-table FIFO with acknowledgement by rowid is a
few lines of SQL, and the persist-queue libraries have neither byte nor age bounds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

DROP_REASONS: Final = ("expired", "full", "oversize")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    first_ms INTEGER NOT NULL,
    queued_ms INTEGER NOT NULL
)
"""
# AUTOINCREMENT: a rowid is never reused, even after the newest rows were deleted, so
# "everything after the last row sent" can never skip a new row that took an old id.


@dataclass(frozen=True, slots=True)
class Message:
    """A queued telemetry message: what to publish where, and when its first reading was."""

    id: int
    topic: str
    payload: bytes
    first_ms: int


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much the outbox may hold before it drops the oldest messages."""

    max_rows: int = 1_000_000
    max_bytes: int = 512 * 1024 * 1024
    max_age_s: float = 7 * 86_400.0


class OutboxMetrics:
    """The outbox's Prometheus metrics, on a registry its owner serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Gauge("gateway_outbox_rows", "Messages waiting in the outbox",
                          registry=registry)
        self.bytes = Gauge("gateway_outbox_bytes", "Payload bytes waiting in the outbox",
                           registry=registry)
        self.oldest_age = Gauge("gateway_outbox_oldest_age_seconds",
                                "Age of the oldest first reading waiting in the outbox",
                                registry=registry)
        self.appended = Counter("gateway_outbox_appended", "Messages appended to the outbox",
                                registry=registry)
        self.acked = Counter("gateway_outbox_acked",
                             "Messages the broker acknowledged and the outbox deleted",
                             registry=registry)
        self.dropped = Counter("gateway_outbox_dropped",
                               "Messages dropped unsent, by reason", ["reason"],
                               registry=registry)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)


class Outbox:
    """A durable FIFO of telemetry messages in one SQLite file (WAL mode)."""

    def __init__(self, path: Path, bounds: Bounds | None = None,
                 metrics: OutboxMetrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.bounds = bounds or Bounds()
        self._metrics = metrics or OutboxMetrics(CollectorRegistry())
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Shared by the polling and the sending thread, always under self._lock.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a gateway cabinet loses power, and a poll pass is one small transaction
        # every few seconds, so an fsync per commit costs nothing that matters.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        rows, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._rows: int = rows
        self._bytes: int = size
        if rows:
            log.info("outbox %s holds %d messages (%d bytes) from before; replaying them",
                     path, rows, size)
        self._metrics.rows.set_function(lambda: self._rows)
        self._metrics.bytes.set_function(lambda: self._bytes)
        self._metrics.oldest_age.set_function(self.oldest_age_s)

    def __len__(self) -> int:
        return self._rows

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def append(self, topic: str, payload: bytes, first_ms: int) -> None:
        self.append_many([(topic, payload, first_ms)])

    def append_many(self, messages: Iterable[tuple[str, bytes, int]]) -> None:
        """Append messages in one transaction, making room first if the bounds demand it."""
        batch = list(messages)
        max_bytes = self.bounds.max_bytes
        oversize = [m for m in batch if len(m[1]) > max_bytes]
        if oversize:
            log.warning("outbox dropping %d message(s) larger than its whole byte limit "
                        "(%d bytes): %s", len(oversize), max_bytes,
                        ", ".join(f"{m[0]} {len(m[1])} bytes" for m in oversize))
            self._metrics.dropped.labels("oversize").inc(len(oversize))
            batch = [m for m in batch if len(m[1]) <= max_bytes]
        # Only the newest messages of an oversized batch fit: the others would be dropped
        # at once anyway.
        batch = batch[-self.bounds.max_rows:]
        if not batch:
            return
        now_ms = round(self._clock() * 1000)
        with self._lock:
            self._expire(now_ms)
            self._make_room(len(batch), sum(len(m[1]) for m in batch))
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO outbox (topic, payload, first_ms, queued_ms) VALUES (?,?,?,?)",
                    [(topic, payload, first_ms, now_ms) for topic, payload, first_ms in batch])
            self._rows += len(batch)
            self._bytes += sum(len(m[1]) for m in batch)
        self._metrics.appended.inc(len(batch))

    def peek(self, limit: int, after_id: int = 0) -> list[Message]:
        """Up to ``limit`` messages after ``after_id``, oldest first (expired ones dropped)."""
        with self._lock:
            self._expire(round(self._clock() * 1000))
            rows = self._db.execute(
                "SELECT id, topic, payload, first_ms FROM outbox WHERE id > ? ORDER BY id "
                "LIMIT ?", (after_id, limit)).fetchall()
        return [Message(i, t, bytes(p), f) for i, t, p, f in rows]

    def ack(self, ids: Sequence[int]) -> int:
        """Delete acknowledged messages; ids that were dropped meanwhile are ignored."""
        if not ids:
            return 0
        with self._lock:
            deleted = self._delete(f"id IN ({','.join('?' * len(ids))})", list(ids))
        self._metrics.acked.inc(deleted)
        return deleted

    def oldest_age_s(self) -> float:
        """Seconds since the oldest waiting message's first reading; 0 when empty."""
        with self._lock:
            (oldest,) = self._db.execute("SELECT MIN(first_ms) FROM outbox").fetchone()
        if oldest is None:
            return 0.0
        return max(0.0, self._clock() - float(oldest) / 1000)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Callers hold self._lock.
    def _expire(self, now_ms: int) -> None:
        cutoff = now_ms - round(self.bounds.max_age_s * 1000)
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE first_ms < ?",
            (cutoff,)).fetchone()
        if count:
            log.warning("outbox dropping %d message(s) (%d bytes) older than %.0f s: the "
                        "broker has been unreachable too long", count, size,
                        self.bounds.max_age_s)
            self._metrics.dropped.labels("expired").inc(count)
            self._delete("first_ms < ?", [cutoff])

    def _make_room(self, rows: int, size: int) -> None:
        excess_rows = self._rows + rows - self.bounds.max_rows
        excess_bytes = self._bytes + size - self.bounds.max_bytes
        if excess_rows <= 0 and excess_bytes <= 0:
            return
        # The oldest rows whose removal brings both counts within the bounds.
        victims: list[int] = []
        freed = 0
        for row_id, length in self._db.execute(
                "SELECT id, LENGTH(payload) FROM outbox ORDER BY id"):
            if len(victims) >= excess_rows and freed >= excess_bytes:
                break
            victims.append(row_id)
            freed += length
        log.warning("outbox full (%d messages, %d bytes; limits %d and %d): dropping the "
                    "oldest %d message(s), %d bytes", self._rows, self._bytes,
                    self.bounds.max_rows, self.bounds.max_bytes, len(victims), freed)
        self._metrics.dropped.labels("full").inc(len(victims))
        if victims:
            self._delete(f"id <= {victims[-1]}", [])

    def _delete(self, where: str, params: list[int]) -> int:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            count, size = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE {where}",
                params).fetchone()
            self._db.execute(f"DELETE FROM outbox WHERE {where}", params)
        self._rows -= count
        self._bytes -= size
        return int(count)
