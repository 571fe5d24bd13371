"""Every constraint rechecked on returned plans, and the objective against PuLP and cvxpy."""

from __future__ import annotations

import math

import pytest

from dispatch.optimiser import SolveOptions, Status, optimise
from tests.dispatch.optimiser import twin_cvxpy, twin_pulp
from tests.dispatch.optimiser.cases import ALL_KINDS, random_problem
from tests.dispatch.optimiser.checker import check

EXACT = SolveOptions(mip_rel_gap=0.0, time_limit_s=60)
SEEDS = range(8)


@pytest.mark.parametrize("tight", [False, True], ids=["roomy", "tight"])
@pytest.mark.parametrize("seed", SEEDS)
def test_plan_keeps_every_constraint_and_matches_cbc(seed: int, tight: bool) -> None:
    problem = random_problem(seed, tight=tight)
    plan = optimise(problem, EXACT)

    assert check(problem, plan) == []
    status, objective = twin_pulp.solve(problem)
    assert status == "Optimal"
    assert math.isclose(plan.objective, objective, rel_tol=1e-6)
    assert plan.status in (Status.OPTIMAL, Status.INFEASIBLE_WITH_SLACK)
    assert (plan.status is Status.INFEASIBLE_WITH_SLACK) == bool(plan.violations)


@pytest.mark.parametrize("tight", [False, True], ids=["roomy", "tight"])
@pytest.mark.parametrize("seed", range(4))
def test_lp_objective_matches_cvxpy(seed: int, tight: bool) -> None:
    problem = random_problem(seed, tight=tight, binaries=False)
    plan = optimise(problem, EXACT)

    assert check(problem, plan) == []
    status, objective = twin_cvxpy.solve(problem)
    assert status == "optimal"
    assert math.isclose(plan.objective, objective, rel_tol=1e-6)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_asset_kind_alone(kind: str) -> None:
    problem = random_problem(21, steps=24, counts={kind: 3}, facilities=3)
    plan = optimise(problem, EXACT)

    assert check(problem, plan) == []
    _, objective = twin_pulp.solve(problem)
    assert math.isclose(plan.objective, objective, rel_tol=1e-6)


def test_quarter_hour_steps_over_two_days() -> None:
    problem = random_problem(5, steps=192, step_hours=0.25,
                             counts={"battery": 2, "deferrable": 2, "genset": 1, "pv": 1})
    plan = optimise(problem, EXACT)

    assert check(problem, plan) == []
    _, objective = twin_pulp.solve(problem)
    assert math.isclose(plan.objective, objective, rel_tol=1e-6)


def test_default_gap_plans_are_within_it() -> None:
    problem = random_problem(3, steps=48, counts={"battery": 3, "deferrable": 6, "genset": 3})
    plan = optimise(problem)
    _, best = twin_pulp.solve(problem)

    assert check(problem, plan) == []
    assert plan.mip_gap is not None
    assert plan.mip_gap <= 0.01
    assert best * (1 - 1e-6) <= plan.objective <= best * 1.01 + 1e-9  # CBC's own tolerance
