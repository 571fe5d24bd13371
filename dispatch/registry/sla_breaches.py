"""SLA breaches: an ``incident.sla_breached`` event, once per incident and deadline
(``response``: a crew on site by ``respond_by``; ``resolution``: closed by ``resolve_by``),
written in the caller's transaction.

- ``record_sla_breaches``: the control-room step calls it with the open incidents at every
  cycle, so a breach is told within a cycle of its deadline;
- ``record_breaches_of``: one incident (the incident desk calls it before a close, so an
  incident closed late between two cycles still tells its breach);
- ``sla_breaches``: the breach events of some incidents, for the operators' view.

The event's key (``incident:<id>:sla_breached:<deadline>``) is unique, so a step replayed,
or two workers' steps, write it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.incidents.model import Incident, sla_status
from dispatch.registry.control_room import OutboxEventRow
from dispatch.registry.outbox import add_event, iso

EVENT: Final = "incident.sla_breached"
Deadline = Literal["response", "resolution"]
DEADLINES: Final[tuple[Deadline, ...]] = ("response", "resolution")


@dataclass(frozen=True, slots=True)
class SlaBreach:
    """A breach as told: the incident, which deadline, the deadline itself, and when the
    breach was seen."""

    incident: str
    deadline: Deadline
    due: datetime
    seen_at: datetime


def _key(incident_id: str, deadline: Deadline) -> str:
    return f"incident:{incident_id}:sla_breached:{deadline}"


def record_breaches_of(session: Session, incident: Incident, now: datetime,
                       ) -> list[SlaBreach]:
    """The incident's deadlines missed by ``now`` (or by its close), each told once: the
    breaches told by this call."""
    status = sla_status(incident, now)
    out = []
    for deadline, breached, due in (
            ("response", status.response_breached, incident.respond_by),
            ("resolution", status.resolution_breached, incident.resolve_by)):
        if not breached:
            continue
        payload = {"incident_id": int(incident.id), "title": incident.title,
                   "severity": incident.severity, "status": incident.status,
                   "facility": incident.facility, "crew": incident.crew, "sla": deadline,
                   "due": iso(due), "opened_at": iso(incident.opened_at)}
        if add_event(session, incident.estate, EVENT, "incident", incident.id, payload, now,
                     _key(incident.id, deadline)):  # type: ignore[arg-type]
            out.append(SlaBreach(incident.id, deadline, due, now))  # type: ignore[arg-type]
    return out


def record_sla_breaches(session: Session, incidents: Iterable[Incident], now: datetime,
                        ) -> list[SlaBreach]:
    """Tell the breaches of ``incidents`` not told yet (see the module's docstring)."""
    return [b for i in incidents for b in record_breaches_of(session, i, now)]


def sla_breaches(session: Session, estate_id: str, incident_ids: Sequence[str],
                 ) -> dict[str, list[SlaBreach]]:
    """The breaches told of each incident, by the events' unique keys (an index lookup
    however long the outbox grows)."""
    keys = [_key(i, d) for i in incident_ids for d in DEADLINES]
    out: dict[str, list[SlaBreach]] = {i: [] for i in incident_ids}
    if not keys:
        return out
    rows = session.scalars(select(OutboxEventRow).where(
        OutboxEventRow.dedupe_key.in_(keys), OutboxEventRow.estate_id == estate_id)
        .order_by(OutboxEventRow.id))
    for row in rows:
        due = row.payload.get("due")
        out[row.subject_id].append(SlaBreach(
            row.subject_id, row.payload.get("sla", "response"),
            datetime.fromisoformat(due) if isinstance(due, str) else row.created_at,
            row.created_at))
    return out
