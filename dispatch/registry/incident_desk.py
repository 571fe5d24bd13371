"""The stored incidents, crews and assignments: what ``dispatch.incidents`` decides, applied
to the registry with history steps and outbox events in the caller's transaction.

As in ``dispatch.registry.alarm_board``, every function takes a ``Session`` in a
transaction the caller commits, and is idempotent:

- ``apply_triage``: opens the incidents triage asked for (one per origin while open, so
  the same group or alarm opens one incident however often triage runs) and attaches the
  alarms it names;
- ``open_incident_by_operator``: with the operator's idempotency ``key`` (a form sent
  twice opens one incident);
- ``apply_assignment_plan``: the planner's changes, skipping incidents that changed since
  the plan was made (closed, pinned by an operator, crew on site);
- ``assign_crew`` (an operator's override: pinned), ``unassign_crew``, ``mark_on_site``,
  ``close_incident`` (an operator's, with a reason) and ``close_resolved_incidents``
  (telemetry: every alarm of the incident has cleared);
- ``open_incidents``, ``get_incident``, ``incident_steps``.

The crews the planner assigns are ``dispatch.registry.crew_roster``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from dispatch.alarms.model import AlarmKey
from dispatch.incidents.assignment import AssignmentPlan
from dispatch.incidents.model import (
    PLANNER,
    SLA,
    TELEMETRY,
    Incident,
    IncidentStateError,
    IncidentStep,
    Sla,
    arrive,
    assign,
    attach_alarms,
    close,
    open_incident,
    unassign,
)
from dispatch.incidents.triage import AttachAlarms, OpenIncident
from dispatch.registry.control_room import (
    AlarmRow,
    AssignmentRow,
    CrewRow,
    IncidentAlarmRow,
    IncidentRow,
    IncidentStepRow,
)
from dispatch.registry.outbox import RecordNotFound, add_event, insert_ignoring, iso
from dispatch.registry.sla_breaches import record_breaches_of

_incidents = cast(Table, IncidentRow.__table__)
_links = cast(Table, IncidentAlarmRow.__table__)
_assignments = cast(Table, AssignmentRow.__table__)


# --- rows and domain values ---

def _alarm_keys(session: Session, incident_ids: Sequence[int]) -> dict[int, set[AlarmKey]]:
    out: dict[int, set[AlarmKey]] = {i: set() for i in incident_ids}
    if not incident_ids:
        return out
    for incident_id, source, rule_id in session.execute(
            select(IncidentAlarmRow.incident_id, AlarmRow.source, AlarmRow.rule_id)
            .join(AlarmRow, AlarmRow.id == IncidentAlarmRow.alarm_id)
            .where(IncidentAlarmRow.incident_id.in_(list(incident_ids)))):
        out[incident_id].add((source, rule_id))
    return out


def _pinned(session: Session, incident_id: int) -> bool:
    row = session.scalars(select(AssignmentRow).where(
        AssignmentRow.incident_id == incident_id, AssignmentRow.current_slot == 1)).first()
    return bool(row and row.pinned)


def _domain(row: IncidentRow, keys: Iterable[AlarmKey], pinned: bool) -> Incident:
    return Incident(
        str(row.id), row.estate_id, row.title, row.severity,  # type: ignore[arg-type]
        row.status, row.origin, row.skill,  # type: ignore[arg-type]
        (row.position_x, row.position_y), row.opened_at, row.opened_by, row.respond_by,
        row.resolve_by, row.facility_id, row.cause, frozenset(keys), row.crew_id,
        pinned=pinned, on_site_at=row.on_site_at, closed_at=row.closed_at,
        closed_by=row.closed_by, close_reason=row.close_reason)


def _load(session: Session, incident_id: int, estate_id: str | None = None,
          ) -> tuple[IncidentRow, Incident]:
    row = session.get(IncidentRow, incident_id, with_for_update=True)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise RecordNotFound(f"no incident {incident_id}")
    return row, _domain(row, _alarm_keys(session, [row.id])[row.id],
                        _pinned(session, row.id))


def _store(session: Session, row: IncidentRow, incident: Incident,
           new_steps: Sequence[IncidentStep]) -> Incident:
    row.status = incident.status
    row.crew_id = incident.crew
    row.on_site_at = incident.on_site_at
    row.closed_at = incident.closed_at
    row.closed_by = incident.closed_by
    row.close_reason = incident.close_reason
    row.open_slot = 1 if incident.is_open else None
    for step in new_steps:
        session.add(IncidentStepRow(incident_id=row.id, at=step.at, by=step.by,
                                    action=step.action, note=step.note))
    session.flush()
    return incident


def _payload(incident: Incident) -> dict[str, Any]:
    return {"incident_id": int(incident.id), "title": incident.title,
            "severity": incident.severity, "status": incident.status,
            "origin": incident.origin, "skill": incident.skill, "crew": incident.crew,
            "facility": incident.facility, "cause": incident.cause,
            "alarms": sorted(f"{s}#{r}" for s, r in incident.alarms),
            "opened_at": iso(incident.opened_at), "respond_by": iso(incident.respond_by),
            "resolve_by": iso(incident.resolve_by), "closed_at": iso(incident.closed_at),
            "closed_by": incident.closed_by, "close_reason": incident.close_reason}


def _event(session: Session, incident: Incident, kind: str, at: datetime, key: str,
           **extra: Any) -> None:
    add_event(session, incident.estate, f"incident.{kind}", "incident", incident.id,
              _payload(incident) | extra, at, f"incident:{incident.id}:{key}")


def _link(session: Session, incident_id: int, estate_id: str, keys: Iterable[AlarmKey],
          ) -> set[AlarmKey]:
    """Link the active alarms with these keys to the incident; the keys linked."""
    linked: set[AlarmKey] = set()
    for source, rule_id in keys:
        alarm = session.scalars(select(AlarmRow.id).where(
            AlarmRow.estate_id == estate_id, AlarmRow.source == source,
            AlarmRow.rule_id == rule_id, AlarmRow.active_slot == 1)).first()
        if alarm is None:
            continue
        insert_ignoring(session, _links, {"incident_id": incident_id, "alarm_id": alarm},
                        ["incident_id", "alarm_id"])
        linked.add((source, rule_id))
    return linked


# --- opening ---

def _open(session: Session, estate_id: str, draft: Incident) -> tuple[Incident, bool]:
    """Insert the incident unless one with its origin is open; (incident, opened)."""
    new_id = insert_ignoring(session, _incidents, {
        "estate_id": estate_id, "title": draft.title, "severity": draft.severity,
        "status": draft.status, "origin": draft.origin[:200], "open_slot": 1,
        "skill": draft.skill, "position_x": draft.position[0],
        "position_y": draft.position[1], "facility_id": draft.facility,
        "cause": draft.cause, "opened_at": draft.opened_at, "opened_by": draft.opened_by,
        "respond_by": draft.respond_by, "resolve_by": draft.resolve_by},
        ["estate_id", "origin", "open_slot"])
    if new_id is None:
        existing = session.scalars(select(IncidentRow.id).where(
            IncidentRow.estate_id == estate_id, IncidentRow.origin == draft.origin[:200],
            IncidentRow.open_slot == 1)).one()
        return _load(session, existing)[1], False
    linked = _link(session, new_id, estate_id, draft.alarms)
    incident = replace(draft, id=str(new_id), alarms=frozenset(linked))
    for step in draft.steps:
        session.add(IncidentStepRow(incident_id=new_id, at=step.at, by=step.by,
                                    action=step.action, note=step.note))
    session.flush()
    _event(session, incident, "opened", incident.opened_at, "opened")
    return incident, True


def apply_triage(session: Session, estate_id: str,
                 actions: Sequence[OpenIncident | AttachAlarms], at: datetime,
                 sla: Mapping[str, Sla] = SLA) -> list[Incident]:
    """Open and grow incidents as ``dispatch.incidents.triage`` asked; the incidents opened
    or given alarms."""
    out = []
    for action in actions:
        if isinstance(action, OpenIncident):
            draft = open_incident("0", estate_id, action.title, action.severity,
                                  action.origin, action.skill, action.position, at,
                                  TELEMETRY, facility=action.facility, cause=action.cause,
                                  alarms=action.alarms, sla=sla)
            incident, opened = _open(session, estate_id, draft)
            if not opened:
                incident = _attach(session, int(incident.id), estate_id, action.alarms, at)
            out.append(incident)
        else:
            out.append(_attach(session, int(action.incident), estate_id, action.alarms, at))
    return out


def _attach(session: Session, incident_id: int, estate_id: str, keys: Iterable[AlarmKey],
            at: datetime) -> Incident:
    row, incident = _load(session, incident_id, estate_id)
    if not incident.is_open:
        return incident
    linked = _link(session, row.id, estate_id, set(keys) - incident.alarms)
    grown = attach_alarms(incident, linked, at)
    return _store(session, row, grown, grown.steps[len(incident.steps):])


def open_incident_by_operator(session: Session, estate_id: str, key: str, title: str,
                              severity: str, skill: str, by: str, at: datetime, *,
                              facility: str | None = None,
                              position: tuple[float, float] = (0.0, 0.0),
                              alarms: Iterable[AlarmKey] = (), note: str = "",
                              sla: Mapping[str, Sla] = SLA) -> Incident:
    """An operator's incident; ``key`` (the request's idempotency key) makes a repeated
    request open it once."""
    draft = open_incident("0", estate_id, title, severity,  # type: ignore[arg-type]
                          f"operator:{key[:64]}", skill, position, at, by, facility=facility,
                          alarms=alarms, sla=sla, note=note)
    return _open(session, estate_id, draft)[0]


# --- crews and assignment ---

def _assign_row(session: Session, row: IncidentRow, incident: Incident, crew: str, by: str,
                at: datetime, pinned: bool, eta_s: float | None) -> Incident:
    assigned = assign(incident, crew, by, at, pinned=pinned)
    if assigned is incident:
        return incident
    session.execute(update(AssignmentRow).where(
        AssignmentRow.incident_id == row.id, AssignmentRow.current_slot == 1)
        .values(current_slot=None, released_at=at, released_by=assigned.assigned_by))
    assignment = insert_ignoring(session, _assignments, {
        "incident_id": row.id, "estate_id": row.estate_id, "crew_id": crew,
        "current_slot": 1, "pinned": pinned, "eta_s": eta_s, "assigned_at": at,
        "assigned_by": assigned.assigned_by}, ["incident_id", "current_slot"])
    stored = _store(session, row, assigned, assigned.steps[len(incident.steps):])
    _event(session, stored, "assigned", at, f"assigned:{assignment}", eta_s=eta_s,
           pinned=pinned, by=assigned.assigned_by)
    return stored


def assign_crew(session: Session, incident_id: int, crew_id: str, by: str, at: datetime, *,
                pinned: bool = True, estate_id: str | None = None) -> Incident:
    """An operator gives the incident to a crew; pinned, the planner keeps it there.
    Giving it to the crew it already has (pinned alike) does nothing."""
    row, incident = _load(session, incident_id, estate_id)
    if session.get(CrewRow, (row.estate_id, crew_id)) is None:
        raise RecordNotFound(f"no crew {crew_id}")
    return _assign_row(session, row, incident, crew_id, by, at, pinned, None)


def unassign_crew(session: Session, incident_id: int, by: str, at: datetime, *,
                  estate_id: str | None = None) -> Incident:
    row, incident = _load(session, incident_id, estate_id)
    if incident.status != "assigned":
        return incident
    released = unassign(incident, by, at)
    session.execute(update(AssignmentRow).where(
        AssignmentRow.incident_id == row.id, AssignmentRow.current_slot == 1)
        .values(current_slot=None, released_at=at, released_by=released.steps[-1].by))
    return _store(session, row, released, released.steps[len(incident.steps):])


def apply_assignment_plan(session: Session, estate_id: str, plan: AssignmentPlan,
                          at: datetime) -> list[Incident]:
    """The planner's changes; incidents that changed since the plan was made are left as
    they are now. The incidents changed."""
    out = []
    for change in plan.changes():
        row, incident = _load(session, int(change.incident), estate_id)
        if incident.status not in ("open", "assigned") or incident.pinned:
            continue
        out.append(_assign_row(session, row, incident, change.crew, PLANNER, at, False,
                               change.eta_s))
    placed = {a.incident for a in plan.assignments}
    for incident_id, crew in plan.released.items():
        if incident_id in placed:
            continue
        row, incident = _load(session, int(incident_id), estate_id)
        if incident.status == "assigned" and not incident.pinned and incident.crew == crew:
            out.append(unassign_crew(session, row.id, PLANNER, at))
    return out


def mark_on_site(session: Session, incident_id: int, by: str, at: datetime, *,
                 estate_id: str | None = None) -> Incident:
    row, incident = _load(session, incident_id, estate_id)
    if incident.status == "on_site":
        return incident
    arrived = arrive(incident, by, at)
    return _store(session, row, arrived, arrived.steps[len(incident.steps):])


def _active_keys(session: Session, estate_id: str) -> set[AlarmKey]:
    return {(s, r) for s, r in session.execute(select(AlarmRow.source, AlarmRow.rule_id).where(
        AlarmRow.estate_id == estate_id, AlarmRow.active_slot == 1))}


def _close(session: Session, row: IncidentRow, incident: Incident, by: str, at: datetime,
           reason: str, active: set[AlarmKey]) -> Incident:
    record_breaches_of(session, incident, at)  # a deadline missed since the last cycle
    closed = close(incident, by, at, reason, active_alarms=active)
    session.execute(update(AssignmentRow).where(
        AssignmentRow.incident_id == row.id, AssignmentRow.current_slot == 1)
        .values(current_slot=None, released_at=at, released_by=closed.closed_by))
    stored = _store(session, row, closed, closed.steps[len(incident.steps):])
    _event(session, stored, "closed", at, "closed")
    return stored


def close_incident(session: Session, incident_id: int, by: str, at: datetime, reason: str,
                   *, estate_id: str | None = None) -> Incident:
    """An operator closes an incident, with a reason; one already closed is left as it is."""
    row, incident = _load(session, incident_id, estate_id)
    if not incident.is_open:
        return incident
    if by.strip() == TELEMETRY:
        raise IncidentStateError("an operator closes incidents under their own name")
    return _close(session, row, incident, by, at, reason,
                  _active_keys(session, row.estate_id))


def close_resolved_incidents(session: Session, estate_id: str, at: datetime,
                             ) -> list[Incident]:
    """Close every open incident whose alarms have all cleared (telemetry confirms)."""
    active = _active_keys(session, estate_id)
    out = []
    for incident in open_incidents(session, estate_id):
        if incident.alarms and not (incident.alarms & active):
            row = session.get(IncidentRow, int(incident.id), with_for_update=True)
            assert row is not None
            out.append(_close(session, row, incident, TELEMETRY, at, "", active))
    return out


def open_incidents(session: Session, estate_id: str) -> list[Incident]:
    rows = session.scalars(select(IncidentRow).where(
        IncidentRow.estate_id == estate_id, IncidentRow.open_slot == 1)
        .order_by(IncidentRow.id)).all()
    keys = _alarm_keys(session, [r.id for r in rows])
    pinned = {a.incident_id for a in session.scalars(select(AssignmentRow).where(
        AssignmentRow.estate_id == estate_id, AssignmentRow.current_slot == 1,
        AssignmentRow.pinned.is_(True)))}
    return [_domain(r, keys[r.id], r.id in pinned) for r in rows]


def get_incident(session: Session, incident_id: int, *, estate_id: str | None = None,
                 ) -> Incident:
    row = session.get(IncidentRow, incident_id)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise RecordNotFound(f"no incident {incident_id}")
    return _domain(row, _alarm_keys(session, [row.id])[row.id], _pinned(session, row.id))


def incident_steps(session: Session, incident_id: int) -> list[IncidentStep]:
    return [IncidentStep(s.action, s.at, s.by, s.note) for s in session.scalars(
        select(IncidentStepRow).where(IncidentStepRow.incident_id == incident_id)
        .order_by(IncidentStepRow.id))]
