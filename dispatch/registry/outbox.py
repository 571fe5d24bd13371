"""The outbox: events other systems need to hear about, written in the transaction of the
change they report, handed later to the webhook subscriptions in ``id`` order
(``delivered_at`` is when: see ``webhook_queue.fan_out``).

Event types (``EVENT_TYPES``): ``alarm.raised``, ``alarm.acknowledged``, ``alarm.shelved``,
``alarm.unshelved``, ``alarm.cleared``, ``incident.opened``, ``incident.assigned``,
``incident.closed``, ``incident.sla_breached`` (once per incident and deadline: see
``sla_breaches``), ``handover.prepared``, ``handover.accepted``; demand response's
``dr.order.received``, ``dr.order.cancelled`` (by the VTN), ``dr.notice`` (a tenant's share
of an order, one per tenant) and ``dr.settled`` (a tenant's settlement); ``plan.ready`` (a
draft waits for approval), ``plan.approved``, ``command.refused`` (rejected or failed by the
device), ``command.timed_out``; ``webhook.dead`` (a webhook delivery failed for good).
Each has a ``dedupe_key`` naming the change (``alarm:17:raised``); the key is unique, so
applying a change twice writes its event once.

``insert_ignoring`` is the registry's one "insert unless it is there" (``ON CONFLICT DO
NOTHING`` on SQLite and PostgreSQL), used against the control room's unique constraints;
``insert_all_ignoring`` does it for many rows in one statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatch.registry.control_room import OutboxEventRow
from estate.errors import EstateError

EVENT_TYPES: Final = ("alarm.raised", "alarm.acknowledged", "alarm.shelved",
                      "alarm.unshelved", "alarm.cleared", "incident.opened",
                      "incident.assigned", "incident.closed", "incident.sla_breached",
                      "handover.prepared",
                      "handover.accepted", "dr.order.received", "dr.order.cancelled",
                      "dr.notice", "dr.settled", "plan.ready", "plan.approved",
                      "command.refused", "command.timed_out", "webhook.dead")
MAX_ERROR: Final = 1000
# Rows per multi-row insert: a statement's parameters stay far below SQLite's limit
# (32,766) for tables of up to 60 columns.
_ROWS_PER_INSERT: Final = 500

_outbox = cast(Table, OutboxEventRow.__table__)


class RecordNotFound(EstateError, LookupError):
    """No alarm, incident, crew, entry or handover with that id (in that estate)."""


def insert_ignoring(session: Session, table: Table, values: Mapping[str, Any],
                    conflict: Sequence[str]) -> Any | None:
    """Insert a row unless one conflicts on the unique ``conflict`` columns; the new row's
    ``id`` (its first primary-key column), or None if nothing was inserted."""
    key = next(iter(table.primary_key.columns))
    statement = (_insert(session, table).values(**values)
                 .on_conflict_do_nothing(index_elements=list(conflict)).returning(key))
    return session.execute(statement).scalar_one_or_none()


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the registry runs on SQLite or PostgreSQL, not {dialect}")


def insert_all_ignoring(session: Session, table: Table, rows: Sequence[Mapping[str, Any]],
                        conflict: Sequence[str]) -> int:
    """Insert many rows in one statement, skipping those that conflict on the unique
    ``conflict`` columns; how many were inserted."""
    inserted = 0
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        statement = _insert(session, table).values(
            list(rows[start:start + _ROWS_PER_INSERT])).on_conflict_do_nothing(
            index_elements=list(conflict))
        inserted += int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
    return inserted


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def add_event(session: Session, estate_id: str, event_type: str, subject_type: str,
              subject_id: str, payload: Mapping[str, Any], at: datetime,
              dedupe_key: str) -> bool:
    """Write an event in ``session``'s transaction; False if its key was written before."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    inserted = insert_ignoring(session, _outbox, {
        "estate_id": estate_id, "event_type": event_type, "subject_type": subject_type,
        "subject_id": subject_id, "dedupe_key": dedupe_key,
        "payload": {"type": event_type, "estate": estate_id, "at": iso(at), **payload},
        "created_at": at, "attempts": 0}, ["dedupe_key"])
    return inserted is not None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    estate: str
    type: str
    subject_type: str
    subject_id: str
    dedupe_key: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int


def event_record(row: OutboxEventRow) -> OutboxEvent:
    return OutboxEvent(row.id, row.estate_id, row.event_type, row.subject_type,
                       row.subject_id, row.dedupe_key, dict(row.payload), row.created_at,
                       row.attempts)


def pending_events(session: Session, limit: int = 100, estate_id: str | None = None,
                   ) -> list[OutboxEvent]:
    """Undelivered events, oldest first."""
    query = select(OutboxEventRow).where(OutboxEventRow.delivered_at.is_(None))
    if estate_id is not None:
        query = query.where(OutboxEventRow.estate_id == estate_id)
    return [event_record(r)
            for r in session.scalars(query.order_by(OutboxEventRow.id).limit(limit))]


def events(session: Session, estate_id: str, limit: int = 1000) -> list[OutboxEvent]:
    """Every event of an estate, oldest first (delivered or not)."""
    return [event_record(r) for r in session.scalars(
        select(OutboxEventRow).where(OutboxEventRow.estate_id == estate_id)
        .order_by(OutboxEventRow.id).limit(limit))]


def mark_delivered(session: Session, ids: Sequence[int], at: datetime) -> int:
    """Mark events delivered; how many were still waiting."""
    if not ids:
        return 0
    done = session.execute(update(OutboxEventRow).where(
        OutboxEventRow.id.in_(list(ids)), OutboxEventRow.delivered_at.is_(None))
        .values(delivered_at=at))
    return int(done.rowcount)  # type: ignore[attr-defined]


def record_failure(session: Session, event_id: int, error: str) -> None:
    """A delivery attempt failed: count it and keep the reason (cut to a bound)."""
    row = session.get(OutboxEventRow, event_id)
    if row is None:
        raise RecordNotFound(f"no event {event_id}")
    row.attempts += 1
    row.last_error = error[:MAX_ERROR]
