"""Plans that can happen: the cases where an LP would count on the impossible.

Negative prices (a battery burning energy by charging and discharging at once), export
paying more than import (importing and exporting at once), a pump too small for its
demand (water stored above the top of the tank), a price above any fixed penalty
(breaking a limit for profit), a non-interruptible load without a minimum power (two
blocks), a baseline that broke a minimum run. Each plan is the physical optimum: the
same objective as the twins, which spell the physics out with a binary everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from dispatch.optimiser import (
    PV,
    Battery,
    DeferrableLoad,
    EstateProblem,
    Plan,
    PumpTank,
    SolveOptions,
    Status,
    build_model,
    optimise,
)
from tests.dispatch.optimiser import twin_cvxpy, twin_pulp
from tests.dispatch.optimiser.checker import check, physical

EXACT = SolveOptions(mip_rel_gap=0.0, time_limit_s=60)
START = datetime(2026, 7, 14, 0, 0)
STEPS = 24


def estate(price: np.ndarray, export: np.ndarray | float = 0.0, base: float = 200.0,
           **fields: object) -> EstateProblem:
    fields.setdefault("capacity_kw", 1000.0)
    return EstateProblem(
        start=START, step_hours=1.0, facilities=("acme",), base_load_kw=np.full((1, STEPS), base),
        import_price=price, export_price=np.broadcast_to(export, (STEPS,)).astype(float),
        **fields)  # type: ignore[arg-type]


def physical_optimum(problem: EstateProblem) -> Plan:
    """The plan, checked by both checkers and against both twins."""
    plan = optimise(problem, EXACT)
    assert check(problem, plan) == []
    assert physical(problem, plan.schedule) == []
    status, cbc = twin_pulp.solve(problem)
    assert status == "Optimal"
    assert math.isclose(plan.objective, cbc, rel_tol=1e-6), (plan.objective, cbc)
    status, highs = twin_cvxpy.solve(problem)
    assert status == "optimal"
    assert math.isclose(plan.objective, highs, rel_tol=1e-6), (plan.objective, highs)
    return plan


def lp_objective(problem: EstateProblem) -> float:
    """The same model without its direction rows (an LP): what the plan used to claim."""
    b = build_model(problem)
    a = b.model.arrays()
    lower, upper = a.row_lower.copy(), a.row_upper.copy()
    for name in ("battery_charge_mode", "battery_discharge_mode", "grid_import_mode",
                 "grid_export_mode"):
        rows = b.model.constraints.get(name, np.zeros(0, dtype=np.int64))
        lower[rows], upper[rows] = -np.inf, np.inf
    found = milp(a.cost, constraints=LinearConstraint(a.matrix, lower, upper),
                 bounds=Bounds(a.col_lower, a.col_upper))
    assert found.status == 0
    return float(found.fun) + a.offset


def battery(**fields: object) -> Battery:
    return Battery(**{"name": "bess", "facility": "acme", "soc_min_kwh": 10.0,  # type: ignore[arg-type]
                      "soc_max_kwh": 200.0, "soc_initial_kwh": 100.0, "charge_kw": 100.0,
                      "discharge_kw": 100.0, "charge_efficiency": 0.9,
                      "discharge_efficiency": 0.9} | fields)


def test_negative_prices_do_not_make_a_battery_charge_and_discharge_at_once() -> None:
    price = np.full(STEPS, 0.15)
    price[10:16] = -0.10  # paid to import for six hours: more than the battery can store
    problem = estate(price, batteries=(battery(),))
    plan = physical_optimum(problem)

    s = plan.schedule
    assert (np.minimum(s.battery_charge, s.battery_discharge) <= 1e-6).all()
    assert s.battery_charge[0, 10:16].sum() > 0  # it does fill up while paid to
    # Without the direction binary the LP burns energy in the round trip's losses and
    # claims a cheaper plan that no setpoint could carry out.
    assert lp_objective(problem) < plan.objective - 1.0


def test_export_above_import_price_does_not_import_and_export_at_once() -> None:
    price = np.full(STEPS, 0.10)
    export = np.full(STEPS, 0.05)
    export[12:18] = 0.20  # export pays twice the import price
    problem = estate(price, export, base=200.0, export_limit_kw=300.0,
                     batteries=(battery(),),
                     pv=(PV("roof", "acme", np.full(STEPS, 150.0)),))
    plan = physical_optimum(problem)

    s = plan.schedule
    assert (np.minimum(s.grid_import, s.grid_export) <= 1e-6).all()
    assert (s.grid_export[12:18] <= 300.0 + 1e-6).all()
    assert lp_objective(problem) < plan.objective - 1.0  # import to export at a profit
    assert plan.size.integers == 6 + STEPS  # a direction per step there, one per battery step
    # the battery and PV export what they can: at most 250 kW against 200 kW of load


def test_an_undersized_pump_cannot_store_water_above_the_top() -> None:
    steps = 48
    well = PumpTank("well", "acme", pump_max_kw=5.0, flow_per_kw=2.0,  # 10 m³/h at most
                    water_demand_m3h=np.r_[np.full(24, 6.0), np.full(24, 14.0)],
                    tank_min_m3=10.0, tank_max_m3=50.0, tank_initial_m3=20.0)
    problem = EstateProblem(
        start=START, step_hours=1.0, facilities=("acme",), base_load_kw=np.full((1, steps), 50.0),
        import_price=np.full(steps, 0.15), export_price=np.zeros(steps), capacity_kw=500.0,
        pumps=(well,))
    plan = physical_optimum(problem)

    s = plan.schedule
    assert s.water_level.max() <= 50.0 + 1e-6
    # The tank fills to its top in the first day; the second day's demand outruns the pump
    # by 4 m³/h: the level ends 24*4 - (50 - 20) = 66 m³ lower, 56 m³ below its start.
    assert s.water_level[0, 23] == pytest.approx(50.0)
    assert s.water_level[0, -1] == pytest.approx(50.0 - 96.0)
    short = [v for v in plan.violations if v.limit == "water_terminal"]
    assert short[0].amount == pytest.approx(20.0 - (50.0 - 96.0))


def test_a_tank_with_an_overflow_spills_only_when_full() -> None:
    steps = 24
    price = np.full(steps, 0.15)
    price[6:12] = -0.50  # paid to draw: the pump runs, and what the tank cannot hold spills
    well = PumpTank("well", "acme", pump_max_kw=20.0, flow_per_kw=2.0,
                    water_demand_m3h=np.full(steps, 5.0), tank_min_m3=5.0, tank_max_m3=60.0,
                    tank_initial_m3=30.0, overflow=True, spill_cost=0.02)
    problem = EstateProblem(
        start=START, step_hours=1.0, facilities=("acme",), base_load_kw=np.full((1, steps), 50.0),
        import_price=price, export_price=np.zeros(steps), capacity_kw=500.0, pumps=(well,))
    plan = physical_optimum(problem)

    s = plan.schedule
    assert s.water_spill.sum() > 0
    assert plan.assessment.costs.spill == pytest.approx(0.02 * s.water_spill.sum())
    full = s.water_level[0] >= 60.0 - 1e-6
    assert (s.water_spill[0][~full] <= 1e-6).all()


def test_a_price_above_any_fixed_penalty_does_not_buy_a_broken_limit() -> None:
    export = np.full(STEPS, 0.05)
    export[18] = 20_000.0  # a spike: exporting past the limit would pay 20,000 a kWh
    store = battery(charge_kw=2000.0, discharge_kw=2000.0, soc_max_kwh=5000.0,
                    soc_initial_kwh=4000.0)
    problem = estate(np.full(STEPS, 0.15), export, base=-1000.0, capacity_kw=2000.0,
                     export_limit_kw=2500.0, batteries=(store,))
    plan = physical_optimum(problem)

    assert plan.status is Status.OPTIMAL
    assert plan.schedule.grid_export[18] == pytest.approx(2500.0)
    assert not plan.violations


def test_a_non_interruptible_load_without_a_minimum_power_runs_in_one_block() -> None:
    price = np.full(STEPS, 0.30)
    price[[4, 5, 8, 9]] = 0.05  # two cheap pairs of hours with a dear gap between
    press = DeferrableLoad("press", "acme", energy_kwh=40.0, max_kw=10.0, window_start=2,
                           window_end=14, non_interruptible=True)
    plan = physical_optimum(estate(price, deferrables=(press,)))

    drawing = np.flatnonzero(plan.schedule.deferrable_power[0] > 1e-6)
    assert (np.diff(drawing) == 1).all()
    assert plan.schedule.deferrable_on[0].sum() == drawing.size


def test_the_baseline_keeps_a_minimum_run_its_window_cuts_short() -> None:
    """A press with a minimum run of 6 steps whose window leaves it 4: it cannot run at
    all, in the plan as in the baseline, and both report the shortfall."""
    press = DeferrableLoad("press", "acme", energy_kwh=30.0, max_kw=20.0, window_start=20,
                           window_end=24, min_kw=5.0, min_run_steps=6)
    problem = estate(np.full(STEPS, 0.15), deferrables=(press,))
    plan = physical_optimum(problem)
    as_plan = dataclasses.replace(plan, schedule=plan.baseline_schedule,
                                  assessment=plan.baseline,
                                  objective=plan.baseline.cost + plan.baseline.penalty)

    assert check(problem, as_plan) == []
    assert physical(problem, plan.baseline_schedule) == []
    assert not plan.baseline_schedule.deferrable_power.any()
    assert [v.limit for v in plan.baseline.violations] == ["deferrable_energy"]
