"""The wall-clock bound: a solve is stopped at its time limit plus the margin, whatever
HiGHS does, and the plan says so."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest

from dispatch.optimiser import Plan, ProblemError, SolveOptions, Status, optimise
from dispatch.optimiser.isolation import MARGIN_MIN_S, deadline_s, solving_pids
from tests.dispatch.optimiser.cases import mixed_estate, random_problem
from tests.dispatch.optimiser.checker import check, physical


def test_the_bound_is_the_limit_plus_a_margin() -> None:
    assert deadline_s(1.0) == 1.0 + MARGIN_MIN_S
    assert deadline_s(60.0) == pytest.approx(66.0)


def test_a_solve_that_ignores_its_time_limit_is_stopped_at_the_bound() -> None:
    """A NaN degradation cost (validation skipped) sends HiGHS's dual simplex into a loop
    that ignores its time limit: the solve is stopped and the plan is the baseline."""
    problem = random_problem(3, counts={"battery": 1, "genset": 2, "deferrable": 2})
    broken = dataclasses.replace(problem, batteries=(
        dataclasses.replace(problem.batteries[0], degradation_cost=float("nan")),))
    plan = optimise(broken, SolveOptions(time_limit_s=1.0), check=False)

    assert plan.status is Status.FALLBACK
    assert plan.reason.startswith("time limit: the solve passed its bound of 3.0 s")
    assert "the plan is the baseline" in plan.reason
    assert plan.timings.bound_s == 3.0
    assert plan.timings.solve_s <= plan.timings.bound_s


def test_the_next_solve_after_a_stop_gets_a_new_process() -> None:
    problem = random_problem(4)
    plan = optimise(problem, SolveOptions(time_limit_s=30.0))

    assert plan.status in (Status.OPTIMAL, Status.INFEASIBLE_WITH_SLACK)
    assert check(problem, plan) == []
    assert physical(problem, plan.schedule) == []


def test_a_solving_process_that_dies_leaves_a_plan_and_the_reason() -> None:
    problem = mixed_estate(50, steps=48)
    done: list[Plan] = []
    solver = threading.Thread(target=lambda: done.append(optimise(
        problem, SolveOptions(time_limit_s=20.0, mip_rel_gap=0.0))))
    solver.start()
    deadline = time.monotonic() + 30.0
    while not solving_pids() and time.monotonic() < deadline:
        time.sleep(0.01)  # a condition polled until the solve has started
    pids = solving_pids()
    assert pids, "the solve never started"
    os.kill(pids[0], signal.SIGKILL)
    solver.join(60.0)

    plan = done[0]
    assert "the solving process ended (exit code -9" in plan.reason
    assert plan.status in (Status.FALLBACK, Status.TIME_LIMIT)
    assert check(problem, plan) == []
    assert physical(problem, plan.schedule) == []


@pytest.mark.parametrize(("field", "value"), [("time_limit_s", float("nan")),
                                              ("time_limit_s", -1.0),
                                              ("mip_rel_gap", float("inf"))])
def test_nonsense_options_are_refused(field: str, value: float) -> None:
    with pytest.raises(ProblemError, match=f"options {field}: must"):
        optimise(random_problem(1), dataclasses.replace(SolveOptions(), **{field: value}))
