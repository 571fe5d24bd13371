"""Crew assignment: skills and shifts respected, capacity used, the urgent first, pinned
assignments kept, and the result optimal (checked against every permutation on small
cases)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.incidents.assignment import PRIORITY, AssignmentParams, plan_assignments
from dispatch.incidents.crews import Crew, Shift
from dispatch.incidents.model import Incident, arrive, assign, open_incident

TZ = ZoneInfo("UTC")
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday
ALWAYS = (Shift(0b1111111, 0, 1440),)
NIGHTS = (Shift(0b1111111, 20 * 60, 6 * 60),)
P = AssignmentParams(speed_m_s=10.0, mobilise_s=0.0, job_s=1000.0, reassign_penalty_s=100.0)


def crew(id: str, x: float, skills: str = "electrical", capacity: int = 1,
         shifts: tuple[Shift, ...] = ALWAYS) -> Crew:
    return Crew(id, id, frozenset(skills.split(",")), (x, 0.0), capacity, shifts)


def incident(id: str, x: float, severity: str = "high", skill: str = "electrical") -> Incident:
    return open_incident(id, "e", id, severity, f"operator:{id}", skill, (x, 0.0),  # type: ignore[arg-type]
                         NOW, "op")


def _plan(incidents: list[Incident], crews: list[Crew]) -> dict[str, str]:
    return {a.incident: a.crew for a in plan_assignments(incidents, crews, NOW, TZ,
                                                         P).assignments}


def test_the_nearest_able_crew_on_shift_goes() -> None:
    crews = [crew("near", 100), crew("far", 5000), crew("plumber", 0, "water"),
             crew("night", 0, shifts=NIGHTS)]
    plan = plan_assignments([incident("i", 0)], crews, NOW, TZ, P)
    assert [(a.incident, a.crew, a.eta_s, a.changed) for a in plan.assignments] == [
        ("i", "near", 10.0, True)]


def test_no_able_crew_is_said_in_words() -> None:
    plan = plan_assignments([incident("i", 0, skill="gas")], [crew("a", 0)], NOW, TZ, P)
    assert [(u.incident, u.reason) for u in plan.unassigned] == [
        ("i", "no crew on shift has gas skills")]
    plan = plan_assignments([incident("i", 0)], [crew("night", 0, shifts=NIGHTS)], NOW, TZ, P)
    assert plan.unassigned[0].reason == "no crew is on shift"


def test_capacity_queues_incidents_behind_each_other() -> None:
    crews = [crew("a", 0, capacity=3)]
    plan = plan_assignments([incident("i1", 100), incident("i2", 200, "critical"),
                             incident("i3", 300, "low")], crews, NOW, TZ, P)
    queue = {a.incident: a.queue for a in plan.assignments}
    assert queue == {"i2": 0, "i1": 1, "i3": 2}  # the most urgent first


def test_scarce_crews_serve_the_most_urgent() -> None:
    plan = plan_assignments([incident("low", 10, "low"), incident("crit", 9000, "critical")],
                            [crew("a", 0)], NOW, TZ, P)
    assert [a.incident for a in plan.assignments] == ["crit"]
    assert [(u.incident, u.reason) for u in plan.unassigned] == [
        ("low", "every crew on shift with electrical skills is busy with more urgent work")]


def test_pinned_and_on_site_are_kept_and_use_capacity() -> None:
    pinned = assign(incident("p", 5000), "far", "maria", NOW, pinned=True)
    working = arrive(assign(incident("w", 0), "near", "planner", NOW), "near", NOW)
    plan = plan_assignments([pinned, working, incident("new", 0)],
                            [crew("near", 0), crew("far", 5000, capacity=2)], NOW, TZ, P)
    got = {a.incident: (a.crew, a.pinned, a.queue, a.changed) for a in plan.assignments}
    assert got == {"p": ("far", True, 0, False), "w": ("near", False, 0, False),
                   "new": ("far", False, 1, True)}


def test_a_crew_on_its_way_is_kept_unless_the_gain_is_clear() -> None:
    on_way = assign(incident("i", 0), "b", "planner", NOW)
    # a is 50 m nearer (5 s): not worth turning b round.
    plan = plan_assignments([on_way], [crew("a", 50), crew("b", 100)], NOW, TZ, P)
    assert [(a.crew, a.changed) for a in plan.assignments] == [("b", False)]
    # a is 5 km nearer (500 s): it is.
    plan = plan_assignments([on_way], [crew("a", 50), crew("b", 5050)], NOW, TZ, P)
    assert [(a.crew, a.changed) for a in plan.assignments] == [("a", True)]
    # b went off shift: its incident is released and goes to a.
    plan = plan_assignments([on_way], [crew("a", 50), crew("b", 0, shifts=NIGHTS)], NOW, TZ, P)
    assert plan.crew_of("i") == "a"


def test_closed_incidents_are_not_planned() -> None:
    done = replace(incident("x", 0), status="closed")
    plan = plan_assignments([done], [crew("a", 0)], NOW, TZ, P)
    assert plan.assignments == ()
    assert plan.unassigned == ()


def _brute_force(incidents: list[Incident], crews: list[Crew]) -> tuple[float, float]:
    """The best weighted cost over every way of serving as many of the most urgent."""
    slots = [(c, q) for c in crews for q in range(c.capacity)]
    best: tuple[float, float] | None = None
    n = len(incidents)
    for chosen in itertools.permutations(range(len(slots) + n), n):
        total_reward = total_time = 0.0
        used = []
        ok = True
        for i, s in zip(range(n), chosen, strict=True):
            if s >= len(slots):
                continue
            c, q = slots[s]
            inc = incidents[i]
            if not c.can(inc.skill):
                ok = False
                break
            w = PRIORITY[inc.severity]
            t = abs(inc.position[0] - c.position[0]) / P.speed_m_s + q * P.job_s
            total_reward += w
            total_time += w * t
            used.append(s)
        if not ok:
            continue
        # Queue positions must be filled in order within a crew for the times to hold.
        for c in crews:
            qs = sorted(q for s in used for cc, q in [slots[s]] if cc is c)
            if qs != list(range(len(qs))):
                ok = False
        if not ok:
            continue
        key = (-total_reward, total_time)
        if best is None or key < best:
            best = key
    assert best is not None
    return -best[0], best[1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(sorted(PRIORITY)),
                          st.sampled_from(["electrical", "water"])), min_size=1, max_size=4),
       st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["electrical", "water",
                                                                 "electrical,water"]),
                          st.integers(1, 2)), min_size=1, max_size=3))
def test_the_plan_is_optimal_on_small_cases(
        spec_i: list[tuple[int, str, str]], spec_c: list[tuple[int, str, int]]) -> None:
    incidents = [incident(f"i{k}", x, sev, skill) for k, (x, sev, skill) in enumerate(spec_i)]
    crews = [crew(f"c{k}", x, skills, cap) for k, (x, skills, cap) in enumerate(spec_c)]
    plan = plan_assignments(incidents, crews, NOW, TZ, P)
    by_id = {i.id: i for i in incidents}
    reward = sum(PRIORITY[by_id[a.incident].severity] for a in plan.assignments)
    time = sum(PRIORITY[by_id[a.incident].severity] * a.eta_s for a in plan.assignments)
    best_reward, best_time = _brute_force(incidents, crews)
    assert len(plan.assignments) + len(plan.unassigned) == len(incidents)
    # No plan serves more priority, and none serves it sooner.
    assert reward == best_reward
    assert time == pytest.approx(best_time, abs=1e-6)
