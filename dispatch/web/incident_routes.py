"""Incidents and crews in the web view: the open incidents by location (facility), each
with its crew, its SLA deadlines and the breaches told; the crews with their skills,
shifts, position and load. An operator opens an incident by hand, gives it to a crew
(pinned: the planner keeps it there; again to another crew: a reassignment), takes the
crew off, or closes it with a reason.

The same registry functions as ``estate incidents`` (``dispatch.registry.incident_desk``),
each step with its history and its outbox event in one transaction, under the logged-in
user's name. An account bound to a facility sees and moves its own facility's incidents
only, and opens incidents for it only. A step the incident's state refuses is 409.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from dispatch.incidents.model import MAX_TEXT, MAX_TITLE, Incident
from dispatch.registry import crew_roster, incident_desk
from dispatch.registry.account_desk import Identity
from dispatch.registry.sla_breaches import sla_breaches
from dispatch.web.auth import Operator, Viewer, whole_estate
from dispatch.web.deps import RegistryDep, Spec
from dispatch.web.room_views import (
    Limit,
    Offset,
    actor,
    check_visible,
    crew_view,
    current_time,
    incident_view,
    page,
    visible,
)
from estate.alarm_rules import SEVERITIES, Severity
from estate.model import EstateSpec
from estate.topics import IDENTIFIER_PATTERN

router = APIRouter(tags=["incidents"])

IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_STEPS: Final = 200
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


class NewIncident(BaseModel):
    """An incident opened by hand. ``key`` makes the request idempotent: sent twice (a
    double click, a retry), it opens one incident."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    title: str = Field(min_length=1, max_length=MAX_TITLE, pattern=r"\S")
    severity: Severity
    skill: str = Field(min_length=1, max_length=32, pattern=f"^{IDENTIFIER_PATTERN}$")
    facility: str | None = Field(None, pattern=f"^{IDENTIFIER_PATTERN}$")
    note: str = Field("", max_length=MAX_TEXT)


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crew: str = Field(min_length=1, max_length=64, pattern=f"^{IDENTIFIER_PATTERN}$")


class Availability(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: bool


class Closing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")


def _location_order(spec: EstateSpec) -> dict[str | None, int]:
    order: dict[str | None, int] = {f.id: i for i, f in enumerate(spec.facilities)}
    order[None] = len(order)  # the estate's shared networks last
    return order


@router.get("/api/incidents")
def incidents(registry: RegistryDep, spec: Spec, identity: Viewer, limit: Limit = 100,
              offset: Offset = 0) -> dict[str, Any]:
    """Open incidents by location (the facilities in the estate's order, the shared
    networks last), then the most severe, then the oldest."""
    at = current_time()
    order = _location_order(spec)
    with registry.reading() as session:
        shown = sorted((i for i in incident_desk.open_incidents(session, spec.id)
                        if visible(identity, i.facility)),
                       key=lambda i: (order.get(i.facility, len(order)), _RANK[i.severity],
                                      i.opened_at))
        chosen, paging = page(shown, limit, offset)
        told = sla_breaches(session, spec.id, [i.id for i in chosen])
    names = {f.id: f.name for f in spec.facilities}
    return {"estate": spec.id, "timezone": spec.timezone,
            "facility": identity.user.facility, "facility_names": names,
            "incidents": [incident_view(i, at, told[i.id]) for i in chosen], **paging}


def _get(session: Any, incident_id: int, estate: str, identity: Identity) -> Incident:
    incident = incident_desk.get_incident(session, incident_id, estate_id=estate)
    check_visible(identity, incident.facility, f"incident {incident_id}")
    return incident


@router.get("/api/incidents/{incident_id}")
def incident(incident_id: IncidentId, registry: RegistryDep, spec: Spec, identity: Viewer,
             ) -> dict[str, Any]:
    """An incident (open or closed) with its history and the SLA breaches told."""
    with registry.reading() as session:
        found = _get(session, incident_id, spec.id, identity)
        steps = incident_desk.incident_steps(session, incident_id)[-MAX_STEPS:]
        told = sla_breaches(session, spec.id, [found.id])[found.id]
    return {"timezone": spec.timezone, **incident_view(found, current_time(), told, steps)}


@router.post("/api/incidents", status_code=201)
def open_incident(body: NewIncident, registry: RegistryDep, spec: Spec, identity: Operator,
                  ) -> dict[str, Any]:
    """Open an incident by hand; an account bound to a facility opens it for that one."""
    own = identity.user.facility
    facility = body.facility if own is None else own
    if body.facility is not None and own is not None and body.facility != own:
        raise HTTPException(403, f"this account opens incidents of facility {own!r} only")
    where = {f.id: f.position for f in spec.facilities}
    if facility is not None and facility not in where:
        raise HTTPException(422, f"no facility {facility!r} in estate {spec.id}")
    skills = {s for c in spec.crews for s in c.skills}
    if body.skill not in skills:
        raise HTTPException(422, f"no crew has the skill {body.skill!r} (the crews have: "
                                 f"{', '.join(sorted(skills))})")
    with registry.writing() as session:
        made = incident_desk.open_incident_by_operator(
            session, spec.id, body.key, body.title, body.severity, body.skill,
            actor(identity), current_time(), facility=facility,
            position=where.get(facility, (0.0, 0.0)) if facility else (0.0, 0.0),
            note=body.note)
    return incident(int(made.id), registry, spec, identity)


@router.post("/api/incidents/{incident_id}/assign")
def assign(incident_id: IncidentId, body: Assignment, registry: RegistryDep, spec: Spec,
           identity: Operator) -> dict[str, Any]:
    """Give the incident to a crew, or to another one (a reassignment); pinned, the
    planner keeps it there (as ``estate incidents assign``)."""
    with registry.writing() as session:
        _get(session, incident_id, spec.id, identity)
        incident_desk.assign_crew(session, incident_id, body.crew, actor(identity), current_time(),
                                  estate_id=spec.id)
    return incident(incident_id, registry, spec, identity)


@router.post("/api/incidents/{incident_id}/unassign")
def unassign(incident_id: IncidentId, registry: RegistryDep, spec: Spec, identity: Operator,
             ) -> dict[str, Any]:
    """Take the crew off (the planner may give it to another at its next run)."""
    with registry.writing() as session:
        _get(session, incident_id, spec.id, identity)
        incident_desk.unassign_crew(session, incident_id, actor(identity), current_time(),
                                    estate_id=spec.id)
    return incident(incident_id, registry, spec, identity)


@router.post("/api/incidents/{incident_id}/on-site")
def on_site(incident_id: IncidentId, registry: RegistryDep, spec: Spec, identity: Operator,
            ) -> dict[str, Any]:
    """The crew has arrived (the SLA's response is made); on site already, nothing
    changes."""
    with registry.writing() as session:
        _get(session, incident_id, spec.id, identity)
        incident_desk.mark_on_site(session, incident_id, actor(identity), current_time(),
                                   estate_id=spec.id)
    return incident(incident_id, registry, spec, identity)


@router.post("/api/incidents/{incident_id}/close")
def close(incident_id: IncidentId, body: Closing, registry: RegistryDep, spec: Spec,
          identity: Operator) -> dict[str, Any]:
    """Close with a reason (as ``estate incidents close``)."""
    with registry.writing() as session:
        _get(session, incident_id, spec.id, identity)
        incident_desk.close_incident(session, incident_id, actor(identity), current_time(),
                                     body.reason, estate_id=spec.id)
    return incident(incident_id, registry, spec, identity)


@router.get("/api/crews")
def crews(registry: RegistryDep, spec: Spec, identity: Viewer) -> dict[str, Any]:
    """The crews: skills, weekly shifts (the estate's local time), whether on shift now,
    where they start from, and how many open incidents each holds (of those the account
    sees)."""
    at = current_time()
    with registry.reading() as session:
        roster = crew_roster.crews(session, spec.id)
        load = Counter(i.crew for i in incident_desk.open_incidents(session, spec.id)
                       if i.crew is not None and visible(identity, i.facility))
    zone = ZoneInfo(spec.timezone)
    return {"estate": spec.id, "timezone": spec.timezone,
            "crews": [crew_view(c, at, zone, load[c.id]) for c in roster]}


@router.post("/api/crews/{crew_id}/availability")
def availability(crew_id: Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$",
                                              max_length=64)],
                 body: Availability, registry: RegistryDep, spec: Spec, identity: Operator,
                 ) -> dict[str, Any]:
    """Stand a crew down (sick, vehicle broken down) or back up, whatever its calendar; the
    planner takes it into account at its next run. The crews are the estate's: not for an
    account bound to a facility."""
    whole_estate(identity, "the crews")
    with registry.writing() as session:
        crew_roster.set_crew_available(session, spec.id, crew_id, body.available)
    return crews(registry, spec, identity)
