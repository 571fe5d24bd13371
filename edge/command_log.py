"""The edge's own audit trail of commands, in a small SQLite file: every command id and every
answer given, so a command seen before is answered again from the log and never executed
twice, across restarts too."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from estate.commands import (
    CommandResponse,
    ResponseStatus,
)
from estate.topics import DeviceId


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """A command as the edge log holds it, with the last answer given."""

    id: str
    device: str
    response_topic: str
    correlation_data: bytes | None
    answer: CommandResponse


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, action TEXT, request BLOB NOT NULL,
    received_ms INTEGER NOT NULL, response_topic TEXT NOT NULL, correlation_data BLOB,
    status TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, answered_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, at_ms INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, resent INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_id ON answers (id);
"""


class CommandLog:
    """Every command id the edge has answered and every answer it gave (SQLite)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def get(self, command_id: str) -> LoggedCommand | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, device, response_topic, correlation_data, status, reason, detail,"
                " answered_ms FROM commands WHERE id = ?", (command_id,)).fetchone()
        if row is None:
            return None
        return LoggedCommand(row[0], row[1], row[2], row[3],
                             CommandResponse(row[0], ResponseStatus(row[4]), row[5], row[6],
                                             row[7]))

    def record(self, device: DeviceId, request: bytes, action: str | None, received_ms: int,
               response_topic: str, correlation_data: bytes | None,
               answer: CommandResponse) -> None:
        """Record a command's first answer (the row) or a later one (an update)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET status = excluded.status, reason = excluded.reason,"
                " detail = excluded.detail, answered_ms = excluded.answered_ms",
                (answer.id, device_path(device), action, request, received_ms, response_topic,
                 correlation_data, answer.status.value, answer.reason, answer.detail,
                 answer.at_ms))
            self._insert_answer(answer, resent=False)

    def note_resent(self, answer: CommandResponse) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._insert_answer(answer, resent=True)

    def _insert_answer(self, answer: CommandResponse, resent: bool) -> None:
        self._db.execute("INSERT INTO answers (id, at_ms, status, reason, detail, resent)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         (answer.id, answer.at_ms, answer.status.value, answer.reason,
                          answer.detail, int(resent)))

    def answers(self, command_id: str) -> list[tuple[str, str, bool]]:
        """(status, reason, resent) of every answer given to ``command_id``, in order."""
        with self._lock:
            rows = self._db.execute("SELECT status, reason, resent FROM answers WHERE id = ?"
                                    " ORDER BY seq", (command_id,)).fetchall()
        return [(status, reason, bool(resent)) for status, reason, resent in rows]

    def unfinished(self) -> list[LoggedCommand]:
        """Commands accepted but never finished: the edge stopped while carrying them out."""
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM commands WHERE status = ?", (ResponseStatus.ACCEPTED.value,))]
        return [c for c in map(self.get, ids) if c is not None]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def device_path(device: DeviceId) -> str:
    """``estate/facility/device``, as the log names a device."""
    return f"{device.estate}/{device.facility}/{device.device}"
