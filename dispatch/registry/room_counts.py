"""What the control room's metrics and health count in the registry: active alarms by
severity, open incidents, events waiting in the outbox. One query each, by index."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.registry.control_room import AlarmRow, IncidentRow, OutboxEventRow


@dataclass(frozen=True, slots=True)
class RoomCounts:
    alarms_active: dict[str, int]  # by severity
    incidents_open: int
    events_waiting: int
    # Open incidents past their SLA deadlines: no crew on site by ``respond_by``, not
    # closed by ``resolve_by``.
    response_late: int = 0
    resolution_late: int = 0


def room_counts(session: Session, estate_id: str, now: datetime) -> RoomCounts:
    by_severity = session.execute(
        select(AlarmRow.severity, func.count()).where(
            AlarmRow.estate_id == estate_id, AlarmRow.active_slot == 1,
        ).group_by(AlarmRow.severity)).all()
    open_ = (IncidentRow.estate_id == estate_id, IncidentRow.open_slot == 1)
    incidents = session.scalar(select(func.count()).select_from(IncidentRow).where(
        *open_)) or 0
    response_late = session.scalar(select(func.count()).select_from(IncidentRow).where(
        *open_, IncidentRow.on_site_at.is_(None), IncidentRow.respond_by < now)) or 0
    resolution_late = session.scalar(select(func.count()).select_from(IncidentRow).where(
        *open_, IncidentRow.resolve_by < now)) or 0
    waiting = session.scalar(select(func.count()).select_from(OutboxEventRow).where(
        OutboxEventRow.estate_id == estate_id, OutboxEventRow.delivered_at.is_(None))) or 0
    return RoomCounts({str(s): int(n) for s, n in by_severity}, int(incidents), int(waiting),
                      int(response_late), int(resolution_late))
