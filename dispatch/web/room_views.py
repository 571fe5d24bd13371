"""What the control room's routes share: who acts (the session's user, never a name in the
body), which facility an alarm or an incident belongs to (an account bound to a facility
sees and moves its own only), paging, and the JSON of an alarm, an incident and a crew.

Times are ISO 8601 in UTC; every answer names the estate's time zone, in which the pages
show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Query

from dispatch.alarms.lifecycle import AlarmStep
from dispatch.alarms.model import ESTATE_SOURCE
from dispatch.incidents.crews import Crew, Shift
from dispatch.incidents.model import Incident, IncidentStep, sla_status
from dispatch.registry.account_desk import Identity
from dispatch.registry.alarm_board import AlarmRecord
from dispatch.registry.outbox import iso
from dispatch.registry.sla_breaches import SlaBreach
from estate.assets import WEEKDAYS

MAX_PAGE: Final = 200
T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=100_000, description="items skipped")]


def current_time() -> datetime:
    return datetime.now(UTC)


def actor(identity: Identity) -> str:
    """The name kept on a step: the logged-in user's."""
    return identity.user.username


def page(items: Sequence[T], limit: int, offset: int) -> tuple[list[T], dict[str, Any]]:
    """One page of ``items`` and how to ask for the next."""
    chosen = list(items[offset:offset + limit])
    more = offset + len(chosen) < len(items)
    return chosen, {"total": len(items), "offset": offset, "limit": limit,
                    "next_offset": offset + len(chosen) if more else None}


def source_facility(source: str) -> str | None:
    """The facility an alarm's source belongs to: a meter ``facility/meter``, a facility's
    capacity ``facility:<id>``; the estate's own (``estate``) belongs to none."""
    if source == ESTATE_SOURCE:
        return None
    if source.startswith("facility:"):
        return source.split(":", 1)[1]
    return source.split("/", 1)[0] if "/" in source else None


def visible(identity: Identity, facility: str | None) -> bool:
    own = identity.user.facility
    return own is None or facility == own


def check_visible(identity: Identity, facility: str | None, what: str) -> None:
    """403 for an account of another facility (the estate's own items included)."""
    if not visible(identity, facility):
        raise HTTPException(403, f"{what} is not of facility {identity.user.facility!r}, "
                                 "the only one this account sees")


def _step(step: AlarmStep | IncidentStep) -> dict[str, Any]:
    return {"action": step.action, "at": iso(step.at), "by": step.by, "note": step.note}


def alarm_view(record: AlarmRecord, steps: Sequence[AlarmStep] | None = None,
               ) -> dict[str, Any]:
    a = record.alarm
    out = {"id": record.id, "source": a.source, "facility": source_facility(a.source),
           "rule_id": a.rule_id, "rule_kind": a.rule_kind, "severity": a.severity,
           "state": a.state, "value": a.value, "message": a.message,
           "raised_at": iso(a.raised_at), "acknowledged_at": iso(a.acknowledged_at),
           "acknowledged_by": a.acknowledged_by, "shelved_at": iso(a.shelved_at),
           "shelved_by": a.shelved_by, "shelved_until": iso(a.shelved_until),
           "cleared_at": iso(a.cleared_at)}
    if steps is not None:
        out["steps"] = [_step(s) for s in steps]
    return out


def incident_view(incident: Incident, at: datetime, breaches: Sequence[SlaBreach] = (),
                  steps: Sequence[IncidentStep] | None = None) -> dict[str, Any]:
    sla = sla_status(incident, at)
    out = {"id": int(incident.id), "title": incident.title, "severity": incident.severity,
           "status": incident.status, "origin": incident.origin, "skill": incident.skill,
           "facility": incident.facility, "cause": incident.cause,
           "position": list(incident.position), "crew": incident.crew,
           "pinned": incident.pinned, "opened_at": iso(incident.opened_at),
           "opened_by": incident.opened_by, "on_site_at": iso(incident.on_site_at),
           "closed_at": iso(incident.closed_at), "closed_by": incident.closed_by,
           "close_reason": incident.close_reason,
           "alarms": sorted(f"{s}#{r}" for s, r in incident.alarms),
           "sla": {"respond_by": iso(sla.respond_by), "resolve_by": iso(sla.resolve_by),
                   "respond_left_s": round(sla.respond_left_s),
                   "resolve_left_s": round(sla.resolve_left_s),
                   "response_breached": sla.response_breached,
                   "resolution_breached": sla.resolution_breached},
           "sla_breaches": [{"sla": b.deadline, "due": iso(b.due), "seen_at": iso(b.seen_at)}
                            for b in breaches]}
    if steps is not None:
        out["steps"] = [_step(s) for s in steps]
    return out


def _minutes(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def shift_text(shift: Shift) -> str:
    """``Mon Tue Wed 07:00–15:00`` (local time of the estate)."""
    days = " ".join(d.capitalize() for i, d in enumerate(WEEKDAYS) if shift.days_mask >> i & 1)
    return f"{days} {_minutes(shift.start_minute)}–{_minutes(shift.end_minute)}"


def crew_view(crew: Crew, at: datetime, zone: ZoneInfo, load: int) -> dict[str, Any]:
    return {"id": crew.id, "name": crew.name, "skills": sorted(crew.skills),
            "position": list(crew.position), "capacity": crew.capacity, "load": load,
            "available": crew.available, "on_shift": crew.on_shift(at, zone),
            "shifts": [shift_text(s) for s in crew.shifts]}
