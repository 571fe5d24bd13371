"""Statuses, the baseline beside every plan, and the fallback when HiGHS gives nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dispatch.optimiser import SolveOptions, Status, optimise
from dispatch.optimiser import solve as solve_module
from dispatch.optimiser.baseline import baseline_schedule
from tests.dispatch.optimiser.cases import mixed_estate, random_problem
from tests.dispatch.optimiser.checker import check


def test_plan_beats_or_equals_the_baseline() -> None:
    problem = random_problem(4, counts={"battery": 2, "deferrable": 3, "genset": 1, "pv": 1})
    plan = optimise(problem)

    baseline_objective = plan.baseline.cost + plan.baseline.penalty
    assert plan.objective <= baseline_objective + 1e-6
    assert plan.cost_saved == pytest.approx(plan.baseline.cost - plan.cost)
    assert plan.peak_reduced_kw == pytest.approx(plan.baseline.peak_kw - plan.peak_kw)
    assert min(plan.timings.build_s, plan.timings.solve_s, plan.timings.extract_s) > 0
    assert plan.size.integers > 0


def test_baseline_does_nothing_clever() -> None:
    problem = random_problem(6, counts=dict.fromkeys(
        ("battery", "deferrable", "genset", "thermal", "pump", "pv"), 2))
    s = baseline_schedule(problem)

    assert not s.battery_charge.any()
    assert not s.battery_discharge.any()
    for i, load in enumerate(problem.deferrables):
        drawn = np.flatnonzero(s.deferrable_power[i] > 0)
        assert drawn[0] == load.window_start
        assert (np.diff(drawn) == 1).all()
        assert s.deferrable_power[i].sum() * problem.step_hours == pytest.approx(
            max(load.energy_kwh, load.min_kw * load.min_run_steps * problem.step_hours))
    np.testing.assert_allclose(s.pv_power, [v.forecast_kw for v in problem.pv])
    demand = np.array([c.cooling_demand_kw_th for c in problem.thermal])
    top = np.array([[c.chiller_max_kw_th] for c in problem.thermal])
    loss = np.array([[c.loss_per_hour] for c in problem.thermal])
    assert (s.chiller_cooling >= np.minimum(demand, top) - 1e-9).all()
    assert (s.chiller_cooling <= np.minimum(demand + loss * 200, top) + 1e-9).all()


def test_solver_failure_falls_back_to_the_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("licence server on fire")

    monkeypatch.setattr(solve_module, "_new_highs", broken)
    problem = random_problem(2)
    plan = optimise(problem, SolveOptions(isolated=False))

    assert plan.status is Status.FALLBACK
    assert "HiGHS failed: licence server on fire" in plan.reason
    assert "the plan is the baseline" in plan.reason
    np.testing.assert_array_equal(plan.schedule.grid_import, plan.baseline_schedule.grid_import)
    assert plan.cost == plan.baseline.cost
    assert check(problem, plan) == []


def test_no_time_left_falls_back() -> None:
    problem = random_problem(2)
    plan = optimise(problem, SolveOptions(time_limit_s=0.0))

    assert plan.status is Status.FALLBACK
    assert "time limit struck before HiGHS found a plan" in plan.reason
    assert check(problem, plan) == []


def test_time_limit_returns_the_incumbent() -> None:
    """Asked for a zero gap on a 50-asset estate, HiGHS stops at the limit with a plan."""
    problem = mixed_estate(50, steps=48)
    plan = optimise(problem, SolveOptions(time_limit_s=3.0, mip_rel_gap=0.0))

    assert plan.status is Status.TIME_LIMIT
    assert plan.mip_gap is not None
    assert 0 < plan.mip_gap < 0.05
    assert plan.timings.solve_s < 3.0 + 2.0  # HiGHS may overrun a little between checks
    assert check(problem, plan) == []


def test_lp_without_binaries_is_solved_in_one_go() -> None:
    problem = random_problem(3, binaries=False, counts={"deferrable": 2, "thermal": 1,
                                                        "pump": 1, "pv": 1})
    plan = optimise(problem)

    assert plan.status is Status.OPTIMAL
    assert plan.mip_gap == 0.0
    assert plan.size.integers == 0


def test_genset_held_on_by_its_minimum_up_time() -> None:
    problem = random_problem(8, counts={"genset": 1})
    unit = dataclasses.replace(problem.gensets[0], initially_on=True, initial_steps=0,
                               min_up_steps=3, fuel_cost=5.0)
    problem = dataclasses.replace(problem, gensets=(unit,), dr_windows=(),
                                  facility_limit_kw=None)
    plan = optimise(problem)

    assert plan.schedule.genset_on[0, :3].all()
    assert not plan.schedule.genset_on[0, 3:].any()  # fuel at 5 per kWh: off when free to be
    assert check(problem, plan) == []
