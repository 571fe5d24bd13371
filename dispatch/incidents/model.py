"""Incidents: the work an alarm (or an operator) asks of a field crew, and its life.

::

              assign                arrive                close
    open ───────────────► assigned ──────────► on_site ──────────► closed
      ▲  ◄─────────────── (unassign, reassign)                       ▲
      └──────────────────────── close ───────────────────────────────┘

- An incident opened for alarms (``alarms``: their keys) closes by itself when every one
  of them has cleared (``close_resolved``: the telemetry confirms the fix). An operator may
  close any incident, with a reason; that reason is required, and says why the alarms that
  may still be active are not the incident's business any more.
- ``respond_by`` and ``resolve_by`` are its SLA deadlines, set from its severity when it
  opens (``SLA``): a crew on site by the first, closed by the second.
- A pinned assignment is an operator's: the planner keeps it (``dispatch.incidents.
  assignment``).

Pure functions returning new ``Incident`` values; ``IncidentStateError`` says why a step
is refused. Names and texts are cut to a bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from dispatch.alarms.model import AlarmKey, cut
from estate.alarm_rules import Severity
from estate.errors import EstateError

IncidentStatus = Literal["open", "assigned", "on_site", "closed"]
OPEN_STATUSES: Final[frozenset[str]] = frozenset({"open", "assigned", "on_site"})
TELEMETRY: Final = "telemetry"
PLANNER: Final = "planner"
MAX_NAME: Final = 100
MAX_TEXT: Final = 1000
MAX_TITLE: Final = 300


class IncidentStateError(EstateError, ValueError):
    """A step that the incident's state does not allow."""


@dataclass(frozen=True, slots=True)
class Sla:
    """Seconds to have a crew on site, and to have the incident closed."""

    respond_s: float
    resolve_s: float


SLA: Final[Mapping[str, Sla]] = {
    # What estate operators commonly contract with their maintenance providers: a
    # critical fault (a tripped feeder, a burst main) is attended within a quarter-hour.
    "critical": Sla(15 * 60, 4 * 3600),
    "high": Sla(30 * 60, 8 * 3600),
    "medium": Sla(4 * 3600, 24 * 3600),
    "low": Sla(8 * 3600, 72 * 3600),
}


@dataclass(frozen=True, slots=True)
class IncidentStep:
    action: str
    at: datetime
    by: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    estate: str
    title: str
    severity: Severity
    status: IncidentStatus
    # What opened it, unique among open incidents: ``alarm:<alarm id>``,
    # ``group:<network>:<cause>`` or ``operator:<id>``.
    origin: str
    skill: str
    position: tuple[float, float]
    opened_at: datetime
    opened_by: str
    respond_by: datetime
    resolve_by: datetime
    facility: str | None = None
    cause: str | None = None
    alarms: frozenset[AlarmKey] = frozenset()
    crew: str | None = None
    assigned_at: datetime | None = None
    assigned_by: str | None = None
    pinned: bool = False
    on_site_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = None
    steps: tuple[IncidentStep, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def _who(by: str) -> str:
    name = by.strip()
    if not name:
        raise IncidentStateError("a step needs the name of who takes it")
    return cut(name, MAX_NAME)


def _require(incident: Incident, allowed: set[str], what: str) -> None:
    if incident.status not in allowed:
        raise IncidentStateError(f"incident {incident.id} is {incident.status}: it cannot "
                                 f"be {what}")


def open_incident(id: str, estate: str, title: str, severity: Severity, origin: str,
                  skill: str, position: tuple[float, float], at: datetime, by: str, *,
                  facility: str | None = None, cause: str | None = None,
                  alarms: Iterable[AlarmKey] = (), sla: Mapping[str, Sla] = SLA,
                  note: str = "") -> Incident:
    who = _who(by)
    terms = sla[severity]
    return Incident(id, estate, cut(title, MAX_TITLE), severity, "open", origin, skill,
                    position, at, who, at + timedelta(seconds=terms.respond_s),
                    at + timedelta(seconds=terms.resolve_s), facility, cause,
                    frozenset(alarms), steps=(IncidentStep("opened", at, who,
                                                           cut(note, MAX_TEXT)),))


def attach_alarms(incident: Incident, keys: Iterable[AlarmKey], at: datetime) -> Incident:
    """More alarms of the same cause join the incident (a group that grew)."""
    _require(incident, set(OPEN_STATUSES), "given alarms")
    new = frozenset(keys) - incident.alarms
    if not new:
        return incident
    note = ", ".join(f"{rule} of {source}" for source, rule in sorted(new))
    return replace(incident, alarms=incident.alarms | new,
                   steps=(*incident.steps, IncidentStep("alarms-attached", at, TELEMETRY,
                                                        cut(note, MAX_TEXT))))


def assign(incident: Incident, crew: str, by: str, at: datetime, *,
           pinned: bool = False) -> Incident:
    """Give the incident to ``crew`` (the planner, or an operator: ``pinned`` keeps it)."""
    _require(incident, {"open", "assigned"}, "assigned")
    who = _who(by)
    if incident.crew == crew and incident.pinned == pinned:
        return incident
    action = "reassigned" if incident.crew is not None else "assigned"
    return replace(incident, status="assigned", crew=crew, assigned_at=at, assigned_by=who,
                   pinned=pinned, steps=(*incident.steps, IncidentStep(
                       action, at, who, f"to {crew}" + (" (pinned)" if pinned else ""))))


def unassign(incident: Incident, by: str, at: datetime) -> Incident:
    _require(incident, {"assigned"}, "unassigned")
    who = _who(by)
    return replace(incident, status="open", crew=None, assigned_at=None, assigned_by=None,
                   pinned=False, steps=(*incident.steps, IncidentStep(
                       "unassigned", at, who, f"from {incident.crew}")))


def arrive(incident: Incident, by: str, at: datetime) -> Incident:
    """The crew is on site: the response is made (the SLA's first deadline)."""
    _require(incident, {"assigned"}, "marked on site")
    who = _who(by)
    return replace(incident, status="on_site", on_site_at=at,
                   steps=(*incident.steps, IncidentStep("on-site", at, who,
                                                        f"crew {incident.crew}")))


def close(incident: Incident, by: str, at: datetime, reason: str = "", *,
          active_alarms: Iterable[AlarmKey] = ()) -> Incident:
    """Close the incident. Telemetry closes it only when none of its alarms is active; an
    operator closes it with a reason."""
    _require(incident, set(OPEN_STATUSES), "closed")
    who = _who(by)
    still = incident.alarms & frozenset(active_alarms)
    if who == TELEMETRY:
        if still or not incident.alarms:
            raise IncidentStateError(f"incident {incident.id}: telemetry closes an incident "
                                     "only when all its alarms have cleared")
        reason = reason or "the alarms cleared"
    elif not reason.strip():
        raise IncidentStateError(
            f"incident {incident.id}: closing by hand needs a reason"
            + (f" ({len(still)} of its alarms are still active)" if still else ""))
    return replace(incident, status="closed", closed_at=at, closed_by=who,
                   close_reason=cut(reason, MAX_TEXT), pinned=False,
                   steps=(*incident.steps, IncidentStep("closed", at, who,
                                                        cut(reason, MAX_TEXT))))


def note(incident: Incident, by: str, at: datetime, text: str) -> Incident:
    who = _who(by)
    if not text.strip():
        raise IncidentStateError("a note needs text")
    return replace(incident, steps=(*incident.steps, IncidentStep("note", at, who,
                                                                  cut(text, MAX_TEXT))))


def close_resolved(incidents: Iterable[Incident], active_alarms: Iterable[AlarmKey],
                   at: datetime) -> list[Incident]:
    """The open incidents whose alarms have all cleared, closed by telemetry."""
    active = frozenset(active_alarms)
    return [close(i, TELEMETRY, at, active_alarms=active) for i in incidents
            if i.is_open and i.alarms and not (i.alarms & active)]


@dataclass(frozen=True, slots=True)
class SlaStatus:
    respond_by: datetime
    resolve_by: datetime
    respond_left_s: float  # negative: late; the time taken once a crew is on site
    resolve_left_s: float
    response_breached: bool
    resolution_breached: bool


def sla_status(incident: Incident, now: datetime) -> SlaStatus:
    """Where the incident stands against its deadlines at ``now`` (or when it ended)."""
    responded = incident.on_site_at
    ended = incident.closed_at
    respond_mark = responded or ended or now
    resolve_mark = ended or now
    respond_left = (incident.respond_by - respond_mark).total_seconds()
    resolve_left = (incident.resolve_by - resolve_mark).total_seconds()
    # Closed before anyone went (the alarm cleared on its own) is no breach of response.
    response_breached = respond_left < 0 and not (ended and not responded
                                                  and ended <= incident.respond_by)
    return SlaStatus(incident.respond_by, incident.resolve_by, respond_left, resolve_left,
                     response_breached, resolve_left < 0)
