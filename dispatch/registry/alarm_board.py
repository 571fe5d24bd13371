"""The stored alarm board: evaluators' transitions and operators' steps applied to the
``alarms`` table, each with its history step and its outbox event, in the caller's
transaction.

Every function takes an open ``Session`` inside a transaction the caller commits
(``with sessions.begin() as session: ...``), so the change and its event commit together
or not at all. Each is idempotent: a transition or step applied twice (a worker killed
after committing and replaying its last readings) changes nothing the second time and
writes no second event.

- ``record_transitions(session, estate, transitions)``: raise inserts an active alarm
  unless one is active for the source and rule (then it is refreshed: newer value and
  message, no event); clear clears the active one (none: nothing to do).
- ``acknowledge_alarm``, ``shelve_alarm``, ``unshelve_alarm``, ``comment_alarm``: an
  operator's steps (``dispatch.alarms.lifecycle`` decides what is allowed).
- ``expire_shelves``: shelves run out bring their alarms back (call it every cycle).
- ``active_alarms``, ``get_alarm``, ``alarm_steps``: reading the board.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from dispatch.alarms.lifecycle import (
    Alarm,
    AlarmStateError,
    AlarmStep,
    acknowledge,
    clear,
    comment,
    expire_shelf,
    raise_alarm,
    refresh,
    shelve,
    unshelve,
)
from dispatch.alarms.model import SEVERITY_RANK, AlarmTransition
from dispatch.registry.control_room import AlarmRow, AlarmStepRow
from dispatch.registry.outbox import RecordNotFound, add_event, insert_ignoring, iso

_alarms = cast(Table, AlarmRow.__table__)


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """A stored alarm: its id in the registry and the alarm itself."""

    id: int
    estate: str
    alarm: Alarm


@dataclass(frozen=True, slots=True)
class AlarmChange:
    outcome: Literal["raised", "refreshed", "cleared", "ignored"]
    record: AlarmRecord | None


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _domain(row: AlarmRow) -> Alarm:
    return Alarm(row.source, row.rule_id, row.rule_kind, row.severity,  # type: ignore[arg-type]
                 row.state, row.value, row.message, row.raised_at,  # type: ignore[arg-type]
                 row.acknowledged_at, row.acknowledged_by, row.shelved_at, row.shelved_by,
                 row.shelved_until, row.shelved_from,  # type: ignore[arg-type]
                 row.cleared_at)


def _record(row: AlarmRow) -> AlarmRecord:
    return AlarmRecord(row.id, row.estate_id, _domain(row))


def _fields(alarm: Alarm) -> dict[str, Any]:
    return {"severity": alarm.severity, "state": alarm.state, "value": alarm.value,
            "message": alarm.message, "acknowledged_at": alarm.acknowledged_at,
            "acknowledged_by": alarm.acknowledged_by, "shelved_at": alarm.shelved_at,
            "shelved_by": alarm.shelved_by, "shelved_until": alarm.shelved_until,
            "shelved_from": alarm.shelved_from, "cleared_at": alarm.cleared_at,
            "active_slot": 1 if alarm.active else None}


def _store(session: Session, row: AlarmRow, alarm: Alarm, at: datetime,
           new_steps: Sequence[AlarmStep]) -> AlarmRecord:
    for name, value in _fields(alarm).items():
        setattr(row, name, value)
    row.updated_at = at
    for step in new_steps:
        session.add(AlarmStepRow(alarm_id=row.id, at=step.at, by=step.by, action=step.action,
                                 note=step.note))
    session.flush()
    return _record(row)


def _payload(record: AlarmRecord) -> dict[str, Any]:
    a = record.alarm
    return {"alarm_id": record.id, "source": a.source, "rule_id": a.rule_id,
            "rule_kind": a.rule_kind, "severity": a.severity, "state": a.state,
            "value": a.value, "message": a.message, "raised_at": iso(a.raised_at),
            "acknowledged_at": iso(a.acknowledged_at), "acknowledged_by": a.acknowledged_by,
            "shelved_until": iso(a.shelved_until), "cleared_at": iso(a.cleared_at)}


def _event(session: Session, record: AlarmRecord, kind: str, at: datetime, key: str,
           by: str | None = None) -> None:
    payload = _payload(record) | ({"by": by} if by else {})
    add_event(session, record.estate, f"alarm.{kind}", "alarm", str(record.id), payload, at,
              f"alarm:{record.id}:{key}")


def _active_row(session: Session, estate_id: str, source: str, rule_id: str,
                ) -> AlarmRow | None:
    return session.scalars(select(AlarmRow).where(
        AlarmRow.estate_id == estate_id, AlarmRow.source == source,
        AlarmRow.rule_id == rule_id, AlarmRow.active_slot == 1).with_for_update()).first()


def record_transitions(session: Session, estate_id: str,
                       transitions: Sequence[AlarmTransition]) -> list[AlarmChange]:
    """Apply evaluators' transitions (see the module's docstring); times are the
    transitions' own."""
    return [_raise(session, estate_id, t) if t.action == "raise" else _clear(session,
                                                                             estate_id, t)
            for t in transitions]


# Another transaction may clear the active alarm between our insert and our read: try
# again, a few times at most (each round means another writer made progress).
_RAISE_ATTEMPTS = 3


def _raise(session: Session, estate_id: str, t: AlarmTransition) -> AlarmChange:
    at = _at(t.at_ms)
    alarm = raise_alarm(t, at)
    for _ in range(_RAISE_ATTEMPTS):
        new_id = insert_ignoring(session, _alarms, {
            "estate_id": estate_id, "source": t.source, "rule_id": t.rule_id,
            "rule_kind": t.rule_kind, "raised_at": at, "updated_at": at, **_fields(alarm)},
            ["estate_id", "source", "rule_id", "active_slot"])
        if new_id is not None:
            row = session.get(AlarmRow, new_id)
            assert row is not None
            record = _store(session, row, alarm, at, alarm.steps)
            _event(session, record, "raised", at, "raised")
            return AlarmChange("raised", record)
        row = _active_row(session, estate_id, t.source, t.rule_id)
        if row is not None:
            return AlarmChange("refreshed",
                               _store(session, row, refresh(_domain(row), t), at, ()))
    raise RuntimeError(f"alarm {t.rule_id} of {t.source}: raised and cleared by others "
                       f"{_RAISE_ATTEMPTS} times while being recorded")


def _clear(session: Session, estate_id: str, t: AlarmTransition) -> AlarmChange:
    row = _active_row(session, estate_id, t.source, t.rule_id)
    if row is None:
        return AlarmChange("ignored", None)
    at = _at(t.at_ms)
    cleared = clear(_domain(row), at, t)
    record = _store(session, row, cleared, at, cleared.steps)
    _event(session, record, "cleared", at, "cleared")
    return AlarmChange("cleared", record)


def _row(session: Session, alarm_id: int, estate_id: str | None) -> AlarmRow:
    row = session.get(AlarmRow, alarm_id, with_for_update=True)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise RecordNotFound(f"no alarm {alarm_id}")
    return row


def _count(session: Session, alarm_id: int, action: str) -> int:
    return int(session.scalar(select(func.count()).select_from(AlarmStepRow).where(
        AlarmStepRow.alarm_id == alarm_id, AlarmStepRow.action == action)) or 0)


def acknowledge_alarm(session: Session, alarm_id: int, by: str, at: datetime, note: str = "",
                      *, estate_id: str | None = None) -> AlarmRecord:
    """Acknowledge an alarm; acknowledging one already acknowledged does nothing."""
    row = _row(session, alarm_id, estate_id)
    if row.state == "acknowledged" or (row.state == "shelved"
                                       and row.shelved_from == "acknowledged"):
        return _record(row)
    alarm = acknowledge(_domain(row), by, at, note)
    record = _store(session, row, alarm, at, alarm.steps)
    _event(session, record, "acknowledged", at,
           f"acknowledged:{_count(session, row.id, 'acknowledged')}", alarm.acknowledged_by)
    return record


def shelve_alarm(session: Session, alarm_id: int, by: str, at: datetime, until: datetime,
                 reason: str, *, estate_id: str | None = None) -> AlarmRecord:
    """Shelve an active alarm until ``until``; the same shelf asked again does nothing."""
    row = _row(session, alarm_id, estate_id)
    if row.state == "shelved" and row.shelved_until == until:
        return _record(row)
    alarm = shelve(_domain(row), by, at, until, reason)
    record = _store(session, row, alarm, at, alarm.steps)
    _event(session, record, "shelved", at, f"shelved:{_count(session, row.id, 'shelved')}",
           alarm.shelved_by)
    return record


def unshelve_alarm(session: Session, alarm_id: int, by: str, at: datetime, *,
                   estate_id: str | None = None) -> AlarmRecord:
    """Take an alarm off its shelf; one not shelved is left as it is."""
    row = _row(session, alarm_id, estate_id)
    if row.state != "shelved":
        return _record(row)
    alarm = unshelve(_domain(row), by, at)
    record = _store(session, row, alarm, at, alarm.steps)
    _event(session, record, "unshelved", at,
           f"unshelved:{_count(session, row.id, 'unshelved')}", by)
    return record


def comment_alarm(session: Session, alarm_id: int, by: str, at: datetime, text: str, *,
                  estate_id: str | None = None) -> AlarmRecord:
    row = _row(session, alarm_id, estate_id)
    alarm = comment(_domain(row), by, at, text)
    return _store(session, row, alarm, at, alarm.steps)


def expire_shelves(session: Session, estate_id: str, now: datetime) -> list[AlarmRecord]:
    """Alarms whose shelf ran out by ``now``, back on the board (raised, unacknowledged)."""
    rows = session.scalars(select(AlarmRow).where(
        AlarmRow.estate_id == estate_id, AlarmRow.state == "shelved",
        AlarmRow.shelved_until <= now).with_for_update()).all()
    out = []
    for row in rows:
        until = row.shelved_until
        alarm = expire_shelf(_domain(row), now)
        record = _store(session, row, alarm, now, alarm.steps)
        _event(session, record, "unshelved", now, f"shelf-expired:{iso(until)}")
        out.append(record)
    return out


def active_alarms(session: Session, estate_id: str) -> list[AlarmRecord]:
    """Active alarms, the most severe first, then the oldest."""
    rows = session.scalars(select(AlarmRow).where(AlarmRow.estate_id == estate_id,
                                                  AlarmRow.active_slot == 1)).all()
    return sorted((_record(r) for r in rows),
                  key=lambda r: (SEVERITY_RANK[r.alarm.severity], r.alarm.raised_at, r.id))


def get_alarm(session: Session, alarm_id: int, *, estate_id: str | None = None,
              ) -> AlarmRecord:
    row = session.get(AlarmRow, alarm_id)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise RecordNotFound(f"no alarm {alarm_id}")
    return _record(row)


def alarm_steps(session: Session, alarm_id: int) -> list[AlarmStep]:
    """An alarm's history, oldest first."""
    return [AlarmStep(s.action, s.at, s.by, s.note) for s in session.scalars(
        select(AlarmStepRow).where(AlarmStepRow.alarm_id == alarm_id)
        .order_by(AlarmStepRow.id))]


__all__ = ["AlarmChange", "AlarmRecord", "AlarmStateError", "acknowledge_alarm",
           "active_alarms", "alarm_steps", "comment_alarm", "expire_shelves", "get_alarm",
           "record_transitions", "shelve_alarm", "unshelve_alarm"]
