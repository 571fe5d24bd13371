"""One step of the control room, in the caller's transaction: transitions recorded,
shelves run out, triage (incidents opened or grown by the flood groups), incidents whose
alarms all cleared closed, the crews planned again, and the SLA deadlines missed told
(``incident.sla_breached``, once per incident and deadline). Every change writes its event to
the outbox in the same transaction (the registry functions do), so a crash between two
steps leaves nothing half done, and a step replayed after a crash changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from dispatch.alarms.model import AlarmTransition
from dispatch.incidents.assignment import plan_assignments
from dispatch.incidents.triage import AlarmView, Site, triage
from dispatch.registry import alarm_board, crew_roster, incident_desk
from dispatch.registry.sla_breaches import record_sla_breaches
from estate.model import EstateSpec


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    raised: int
    cleared: int
    incidents_touched: int  # opened or given alarms
    incidents_closed: int
    assignments: int
    sla_breaches: int = 0


@dataclass(frozen=True)
class RoomContext:
    """What every step needs of the estate, made once at start."""

    estate: str
    site: Site
    timezone: ZoneInfo

    @staticmethod
    def of(spec: EstateSpec) -> RoomContext:
        return RoomContext(spec.id, Site.of(spec), ZoneInfo(spec.timezone))


def control_room_step(session: Session, room: RoomContext,
                      transitions: Sequence[AlarmTransition], now: datetime) -> CycleOutcome:
    """Record ``transitions`` and bring incidents and crews up to date (module docstring)."""
    changes = alarm_board.record_transitions(session, room.estate, transitions)
    alarm_board.expire_shelves(session, room.estate, now)
    active = [AlarmView(str(r.id), r.alarm.source, r.alarm.rule_id, r.alarm.rule_kind,
                        r.alarm.severity, r.alarm.message)
              for r in alarm_board.active_alarms(session, room.estate)]
    actions = triage(active, incident_desk.open_incidents(session, room.estate), room.site)
    opened = incident_desk.apply_triage(session, room.estate, actions, now)
    closed = incident_desk.close_resolved_incidents(session, room.estate, now)
    still_open = incident_desk.open_incidents(session, room.estate)
    plan = plan_assignments(still_open, crew_roster.crews(session, room.estate), now,
                            room.timezone)
    assigned = incident_desk.apply_assignment_plan(session, room.estate, plan, now)
    # The deadlines depend on the times opened, on site and closed, which planning leaves.
    breaches = record_sla_breaches(session, still_open, now)
    return CycleOutcome(sum(c.outcome == "raised" for c in changes),
                        sum(c.outcome == "cleared" for c in changes),
                        len(opened), len(closed), len(assigned), len(breaches))


