"""Incidents, field crews and the shift log: the work alarms ask for and who does it.

Pure (an import-linter contract keeps it so); the registry stores what these functions
decide (``dispatch.registry.control_room``). docs/incidents.md tells the story.

- ``model``: an incident's life (open, assigned, on site, closed), its SLA deadlines, the
  rule that telemetry closes it only when its alarms cleared and an operator with a reason.
- ``triage``: which active alarms open incidents (one per flood group) or join one.
- ``crews``: skills, weekly shifts, positions, capacity.
- ``assignment``: the least priority-weighted response time (``linear_sum_assignment``).
- ``shiftlog``: entries, open items, the handover and its acceptance.
"""

from dispatch.incidents.assignment import (
    Assignment,
    AssignmentParams,
    AssignmentPlan,
    plan_assignments,
)
from dispatch.incidents.crews import Crew, Shift, crew_from_spec
from dispatch.incidents.model import Incident, IncidentStateError, Sla, sla_status
from dispatch.incidents.shiftlog import Handover, LogEntry, ShiftLogError
from dispatch.incidents.triage import AlarmView, IncidentPolicy, Site, triage

__all__ = [
    "AlarmView",
    "Assignment",
    "AssignmentParams",
    "AssignmentPlan",
    "Crew",
    "Handover",
    "Incident",
    "IncidentPolicy",
    "IncidentStateError",
    "LogEntry",
    "Shift",
    "ShiftLogError",
    "Site",
    "Sla",
    "crew_from_spec",
    "plan_assignments",
    "sla_status",
    "triage",
]
