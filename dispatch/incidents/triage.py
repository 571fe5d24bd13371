"""From active alarms to incidents: which alarms open one, which join one already open.

``triage`` looks at the active alarms, groups them by the networks
(``dispatch.alarms.grouping``) and returns what to do:

- a **group** (a feeder, tank or station outage) opens one incident named by its cause,
  with origin ``group:<network>:<cause>``; while that incident is open, alarms that join the
  group are attached to it;
- an ungrouped alarm of a severity in ``IncidentPolicy.auto_severities`` opens an incident
  of its own (origin ``alarm:<alarm id>``), unless its kind is an operator's matter rather
  than a crew's (``desk_kinds``: capacity, power factor, a meter's clock);
- an alarm already in an open incident is left there.

The skill an incident needs follows the network's utility (a group, a balance alarm) or the
kind of meter (electrical, water, gas, HVAC); a meter that stopped reporting, froze or
jumped needs metering skills first. Operators open incidents of their own (any severity,
origin ``operator:<id>``) with ``dispatch.incidents.model.open_incident``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from dispatch.alarms.grouping import GroupedAlarm, group_alarms
from dispatch.alarms.model import SEVERITY_RANK, AlarmKey, is_meter_source
from dispatch.incidents.model import SLA, Incident, Sla
from estate.alarm_rules import Severity
from estate.model import EstateSpec
from estate.networks import NetworkTree

UTILITY_SKILL: Final[Mapping[str, str]] = {"electricity": "electrical", "water": "water",
                                           "gas": "gas"}
KIND_SKILL: Final[Mapping[str, str]] = {
    "electricity": "electrical", "pv": "electrical", "battery": "electrical",
    "genset": "electrical", "hvac": "hvac", "temperature": "hvac", "water": "water",
    "pump": "water", "tank": "water", "gas": "gas"}
METERING_KINDS: Final = frozenset({"no_data", "clock_skew", "stuck", "spike"})


@dataclass(frozen=True)
class IncidentPolicy:
    # High and critical alarms need someone on site; medium and low ones an operator's eye.
    auto_severities: frozenset[str] = frozenset({"critical", "high"})
    # Kinds an operator handles from the desk (shedding load, asking a tenant), not a crew.
    desk_kinds: frozenset[str] = frozenset({"capacity", "power_factor", "clock_skew"})
    sla: Mapping[str, Sla] = field(default_factory=lambda: dict(SLA))


@dataclass(frozen=True, slots=True)
class AlarmView:
    """What triage needs of an active alarm; ``id`` is unique over time (the registry's)."""

    id: str
    source: str
    rule_id: str
    rule_kind: str
    severity: Severity
    message: str

    @property
    def key(self) -> AlarmKey:
        return (self.source, self.rule_id)


@dataclass(frozen=True)
class Site:
    """What triage needs of the estate."""

    meter_kinds: Mapping[str, str]
    positions: Mapping[str, tuple[float, float]]  # facility -> site-plan position
    names: Mapping[str, str]  # meter -> name
    trees: Sequence[NetworkTree]

    @staticmethod
    def of(spec: EstateSpec) -> Site:
        return Site(spec.meter_kinds(), {f.id: f.position for f in spec.facilities},
                    {f"{f.id}/{m.id}": m.name for f in spec.facilities for m in f.meters
                     if m.name}, spec.network_trees())

    def facility_of(self, source: str) -> str | None:
        if is_meter_source(source):
            return source.split("/", 1)[0]
        if source.startswith("facility:"):
            return source.split(":", 1)[1]
        return None

    def position_of(self, source: str) -> tuple[float, float]:
        facility = self.facility_of(source)
        return self.positions.get(facility, (0.0, 0.0)) if facility else (0.0, 0.0)


@dataclass(frozen=True, slots=True)
class OpenIncident:
    origin: str
    title: str
    severity: Severity
    skill: str
    position: tuple[float, float]
    facility: str | None
    cause: str | None
    alarms: frozenset[AlarmKey]


@dataclass(frozen=True, slots=True)
class AttachAlarms:
    incident: str
    alarms: frozenset[AlarmKey]


def skill_for(alarm: AlarmView, site: Site) -> str:
    if alarm.rule_kind in METERING_KINDS:
        return "metering"
    kind = site.meter_kinds.get(alarm.source)
    if alarm.rule_kind == "balance":
        tree = next((t for t in site.trees if alarm.source in t.children), None)
        if tree is not None:
            return UTILITY_SKILL[tree.utility]
    return KIND_SKILL.get(kind or "", "electrical" if alarm.rule_kind == "capacity"
                          else "general")


def _most_urgent(severities: Sequence[Severity]) -> Severity:
    return min(severities, key=lambda s: SEVERITY_RANK[s])


def triage(alarms: Sequence[AlarmView], open_incidents: Sequence[Incident], site: Site,
           policy: IncidentPolicy | None = None) -> list[OpenIncident | AttachAlarms]:
    """What the active ``alarms`` ask of incidents (see the module's docstring)."""
    policy = policy or IncidentPolicy()
    views = {a.key: a for a in alarms}
    held = {key: i.id for i in open_incidents if i.is_open for key in i.alarms}
    by_origin = {i.origin: i for i in open_incidents if i.is_open}
    grouping = group_alarms(site.trees, [GroupedAlarm(a.source, a.rule_id, a.rule_kind)
                                         for a in alarms])
    out: list[OpenIncident | AttachAlarms] = []
    for group in grouping.groups:
        existing = by_origin.get(group.key)
        free = frozenset(m.key for m in group.members
                         if m.key not in held or (existing and held[m.key] == existing.id))
        if existing is not None:
            new = free - existing.alarms
            if new:
                out.append(AttachAlarms(existing.id, new))
            continue
        if not free:
            continue
        severity = _most_urgent([views[k].severity for k in free])
        if severity not in policy.auto_severities:
            continue
        out.append(OpenIncident(
            group.key, group.describe(dict(site.names)), severity,
            UTILITY_SKILL[group.utility], site.position_of(group.cause),
            site.facility_of(group.cause), group.cause, free))
    for member in grouping.ungrouped:
        alarm = views[member.key]
        if (alarm.key in held or alarm.rule_kind in policy.desk_kinds
                or alarm.severity not in policy.auto_severities):
            continue
        origin = f"alarm:{alarm.id}"
        if origin in by_origin:
            continue
        out.append(OpenIncident(
            origin, alarm.message, alarm.severity, skill_for(alarm, site),
            site.position_of(alarm.source), site.facility_of(alarm.source),
            alarm.source if is_meter_source(alarm.source) else None,
            frozenset({alarm.key})))
    return out
