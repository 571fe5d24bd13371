"""Which crew goes to which incident: the least priority-weighted response time.

Every open incident a crew is not yet working on (status ``open`` or ``assigned`` and not
pinned) is matched to a crew slot by scipy's ``linear_sum_assignment`` (the Hungarian
method, in C). A crew that may hold ``capacity`` incidents has that many slots, less the
incidents it already holds that the plan may not move (on site, or pinned by an operator);
its k-th free slot starts ``k`` jobs later. So:

- the response time of incident i by slot j is the crew's mobilisation, the drive from
  the crew's position to the incident's at ``speed_m_s``, and ``job_s`` per job ahead of
  it in the crew's queue;
- the cost is that time times the incident's priority (from its severity), less a reward
  of the priority times a constant larger than all the weighted response times together:
  when there are fewer slots than incidents, as much priority as possible is served
  first (exactly so for whole-number priorities, as ``PRIORITY``'s), and only then the
  quickest;
- a crew without the skill the incident needs, off shift, or stood down cannot take it
  (those pairs are left out; an incident no crew can take is reported with the reason);
- an incident already assigned to a crew (not pinned) costs ``reassign_penalty_s`` more
  with any other crew: a crew on its way is turned round only for a clear gain;
- pinned assignments (an operator's override) and crews on site are kept as they are.

The plan is recomputed whenever incidents or crews change (``plan_assignments`` is pure
and takes a few milliseconds for hundreds of incidents); ``AssignmentPlan.changes`` is
what to apply (``dispatch.registry.control_room.apply_assignment_plan``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
from scipy.optimize import linear_sum_assignment

from dispatch.incidents.crews import Crew
from dispatch.incidents.model import Incident

PRIORITY: Final[Mapping[str, float]] = {"critical": 8.0, "high": 4.0, "medium": 2.0,
                                        "low": 1.0}
"""Weight of a second of response per severity: a critical incident's minute counts as
eight minutes of a low one (each level doubles, as severities are usually graded)."""

@dataclass(frozen=True, slots=True)
class AssignmentParams:
    # Vans on the estate's roads with gates and stops: about 15 km/h door to door.
    speed_m_s: float = 4.0
    # Leaving what they are doing and loading the van.
    mobilise_s: float = 300.0
    # An incident queued behind another waits about this long per incident ahead: an
    # hour, the typical time on site for an estate's faults.
    job_s: float = 3600.0
    # A crew already on its way is kept unless another is better by this much: drivers
    # turned round each time the plan is redone lose more than they gain.
    reassign_penalty_s: float = 900.0
    priority: Mapping[str, float] = field(default_factory=lambda: dict(PRIORITY))


@dataclass(frozen=True, slots=True)
class Assignment:
    incident: str
    crew: str
    eta_s: float  # estimated seconds from now until the crew is on site
    queue: int  # jobs ahead of it in the crew's queue
    pinned: bool = False
    changed: bool = False  # a new crew for this incident


@dataclass(frozen=True, slots=True)
class Unassigned:
    incident: str
    reason: str


@dataclass(frozen=True, slots=True)
class AssignmentPlan:
    assignments: tuple[Assignment, ...]
    unassigned: tuple[Unassigned, ...]
    # Incidents taken from their crew by this plan (their crew is needed elsewhere or
    # cannot take them any more): incident -> the crew it had.
    released: Mapping[str, str] = field(default_factory=dict)

    def changes(self) -> list[Assignment]:
        return [a for a in self.assignments if a.changed]

    def crew_of(self, incident: str) -> str | None:
        return next((a.crew for a in self.assignments if a.incident == incident), None)


def plan_assignments(incidents: Sequence[Incident], crews: Sequence[Crew], now: datetime,
                     timezone: ZoneInfo, params: AssignmentParams | None = None,
                     ) -> AssignmentPlan:
    """The assignment of ``incidents`` to ``crews`` at ``now`` (see the module's docstring)."""
    params = params or AssignmentParams()
    live = [i for i in incidents if i.is_open]
    fixed = [i for i in live if i.status == "on_site" or (i.status == "assigned" and i.pinned)]
    movable = [i for i in live if i not in fixed]
    load: dict[str, int] = {}
    for incident in fixed:
        if incident.crew is not None:
            load[incident.crew] = load.get(incident.crew, 0) + 1
    kept = tuple(Assignment(i.id, i.crew, 0.0, 0, pinned=i.pinned)
                 for i in fixed if i.crew is not None)
    ready = [c for c in crews if c.on_shift(now, timezone)]
    slot_crew: list[int] = []
    slot_queue: list[int] = []
    for k, crew in enumerate(ready):
        held = load.get(crew.id, 0)
        for q in range(held, max(held, crew.capacity)):
            slot_crew.append(k)
            slot_queue.append(q)
    if not movable:
        return AssignmentPlan(kept, ())
    if not slot_crew:
        return AssignmentPlan(kept, tuple(Unassigned(i.id, _why(i, ready)) for i in movable),
                              _released(movable, {}))
    where = np.array([i.position for i in movable], dtype=float)
    bases = np.array([c.position for c in ready], dtype=float)
    drive = np.hypot(where[:, None, 0] - bases[None, :, 0], where[:, None, 1] - bases[None, :, 1])
    crew_time = params.mobilise_s + drive / params.speed_m_s  # (incidents, crews)
    skills = {skill: k for k, skill in enumerate(sorted({i.skill for i in movable}))}
    has = np.zeros((len(skills), len(ready)), dtype=bool)
    for j, c in enumerate(ready):
        for skill in c.skills:
            if skill in skills:
                has[skills[skill], j] = True
    able = has[[skills[i.skill] for i in movable]]
    cols = np.array(slot_crew, dtype=np.intp)
    queue = np.array(slot_queue, dtype=float)
    time = crew_time[:, cols] + queue[None, :] * params.job_s
    current = {c.id: k for k, c in enumerate(ready)}
    holder = np.array([current.get(i.crew, -1) if i.crew is not None else -1
                       for i in movable], dtype=np.intp)
    penalty = np.where((holder[:, None] >= 0) & (cols[None, :] != holder[:, None]),
                       params.reassign_penalty_s, 0.0)
    weight = np.array([params.priority.get(i.severity, 1.0) for i in movable])
    feasible = able[:, cols]
    finite = (time + penalty)[feasible]
    longest = float(finite.max()) if finite.size else 0.0
    reward = longest * float(weight.sum()) + 1.0
    # One "not served" column per incident at no cost keeps every incident placeable;
    # pairs a crew cannot take are infinite, which the solver never picks.
    cost = np.zeros((len(movable), len(slot_crew) + len(movable)))
    cost[:, :len(slot_crew)] = np.where(feasible, weight[:, None] * (time + penalty - reward),
                                        np.inf)
    rows, chosen = linear_sum_assignment(cost)
    out = list(kept)
    taken: dict[str, str] = {}
    for i, j in zip(rows.tolist(), chosen.tolist(), strict=True):
        if j >= len(slot_crew):
            continue
        incident, crew = movable[i], ready[slot_crew[j]]
        taken[incident.id] = crew.id
        out.append(Assignment(incident.id, crew.id, float(time[i, j]), int(queue[j]),
                              changed=incident.crew != crew.id))
    unassigned = tuple(
        Unassigned(i.id, _why(i, ready) if not able[k].any() else
                   f"every crew on shift with {i.skill} skills is busy with more urgent work")
        for k, i in enumerate(movable) if i.id not in taken)
    return AssignmentPlan(tuple(out), unassigned, _released(movable, taken))


def _why(incident: Incident, ready: Sequence[Crew]) -> str:
    if not ready:
        return "no crew is on shift"
    return f"no crew on shift has {incident.skill} skills"


def _released(movable: Sequence[Incident], taken: Mapping[str, str]) -> dict[str, str]:
    return {i.id: i.crew for i in movable if i.crew is not None and i.id not in taken}
