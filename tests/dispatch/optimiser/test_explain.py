"""Limits no plan can keep: which, when, by how much and why, in an operator's words."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np

from dispatch.optimiser import (
    DeferrableLoad,
    DemandResponseWindow,
    EstateProblem,
    PumpTank,
    Status,
    ThermalStorage,
    optimise,
)
from tests.dispatch.optimiser.checker import check

NOON = datetime(2026, 7, 14, 12, 0)  # a Tuesday
STEPS = 48  # 12 hours of quarter-hours


def estate(base: np.ndarray, **fields: object) -> EstateProblem:
    return EstateProblem(
        start=NOON, step_hours=0.25, facilities=("acme", "bolt"),
        base_load_kw=base, import_price=np.full(base.shape[1], 0.15),
        export_price=np.zeros(base.shape[1]), capacity_kw=2500.0, **fields)  # type: ignore[arg-type]


def flat(first: float, second: float = 0.0, steps: int = STEPS) -> np.ndarray:
    return np.array([np.full(steps, first), np.full(steps, second)])


def test_contracted_capacity_from_to() -> None:
    base = flat(2000.0)
    base[0, 24:29] = 2620.0  # 18:00 to 19:15
    plan = optimise(estate(base))

    assert plan.status is Status.INFEASIBLE_WITH_SLACK
    assert [v.message for v in plan.violations] == [
        "Contracted capacity 2,500 kW exceeded by 120 kW from 18:00 to 19:15: the base load "
        "alone reaches 2,620 kW"]
    v = plan.violations[0]
    assert v.cause == "the base load alone reaches 2,620 kW"
    assert (v.limit, v.first_step, v.last_step, v.amount, v.unit) == (
        "capacity", 24, 28, 120.0, "kW")
    assert (v.start, v.end) == (datetime(2026, 7, 14, 18, 0), datetime(2026, 7, 14, 19, 15))
    assert "1 limit cannot be met" in plan.reason


def test_varying_excess_says_up_to() -> None:
    base = flat(2000.0)
    base[0, 24:26] = [2550.0, 2600.0]
    plan = optimise(estate(base))

    assert plan.violations[0].message == (
        "Contracted capacity 2,500 kW exceeded by up to 100 kW from 18:00 to 18:30: the base "
        "load alone reaches 2,600 kW")


def test_demand_response_and_tenant_limit() -> None:
    limits = np.full((2, STEPS), np.inf)
    limits[1] = 300.0
    order = DemandResponseWindow(32, 36, 1800.0, "grid order")  # 20:00-21:00
    plan = optimise(estate(flat(1700.0, 320.0), dr_windows=(order,), facility_limit_kw=limits))

    assert [v.message for v in plan.violations] == [
        "Import limit of tenant bolt (300 kW) exceeded by 20 kW throughout the horizon, from "
        "Tue 14 Jul 12:00 to Wed 15 Jul 00:00: the base load alone reaches 320 kW",
        "Demand-response cap 1,800 kW (grid order, 20:00–21:00) exceeded by 220 kW "
        "from 20:00 to 21:00: the base load alone reaches 2,020 kW",
    ]


def test_tanks_and_deferrable_energy() -> None:
    demand = np.full(STEPS, 50.0)
    demand[8:16] = 200.0  # 14:00-16:00, beyond the chiller's 100 kW
    chiller = ThermalStorage("cold store", "acme", chiller_max_kw_th=100.0, cop=4.0,
                             cooling_demand_kw_th=demand, tank_min_kwh=50.0,
                             tank_max_kwh=300.0, tank_initial_kwh=100.0)
    well = PumpTank("well", "bolt", pump_max_kw=5.0, flow_per_kw=2.0,
                    water_demand_m3h=np.full(STEPS, 12.0), tank_min_m3=10.0, tank_max_m3=50.0,
                    tank_initial_m3=20.0)
    kiln = DeferrableLoad("kiln", "acme", energy_kwh=100.0, max_kw=40.0, window_start=4,
                          window_end=12)  # 13:00-15:00: at most 80 kWh
    problem = estate(flat(100.0, 50.0), thermal=(chiller,), pumps=(well,), deferrables=(kiln,),
                     labels={"cold store": "'Cold store A'"})
    plan = optimise(problem)

    messages = [v.message for v in plan.violations]
    assert messages == [
        "Deferrable load kiln short of its 100 kWh by 20 kWh in its window from 13:00 to "
        "15:00: its window holds at most 80 kWh at its 40 kW",
        "Chilled-water tank 'Cold store A' below its minimum of 50 kWh by up to 50 kWh from "
        "15:30 to 16:45: the demand of up to 200 kW outruns the chiller's 100 kW",
        "Water tank well below its minimum of 10 m³ by up to 14 m³ from Tue 14 Jul 17:00 to "
        "Wed 15 Jul 00:00: the demand of up to 12 m³/h outruns the pump's 10 m³/h",
        "Water tank well ends the horizon (Wed 15 Jul 00:00) 24 m³ below its target of "
        "20 m³: even at full output the pump can bring it to -4.0 m³ at most",
    ]
    assert check(problem, plan) == []


def test_the_date_is_shown_when_the_horizon_spans_days() -> None:
    base = flat(2000.0, steps=192)
    base[0, 120:122] = 2600.0  # Wednesday 18:00-18:30
    plan = optimise(estate(base))

    assert plan.violations[0].message == (
        "Contracted capacity 2,500 kW exceeded by 100 kW on Wed 15 Jul from 18:00 to 18:30: "
        "the base load alone reaches 2,600 kW")


def test_a_run_across_midnight_names_both_dates() -> None:
    base = flat(2000.0)
    base[0, 20:28] = 2600.0  # 23:00 to 01:00 from an 18:00 start
    evening = dataclasses.replace(estate(base), start=datetime(2026, 7, 14, 18, 0))
    plan = optimise(evening)

    assert plan.violations[0].message == (
        "Contracted capacity 2,500 kW exceeded by 100 kW from Tue 14 Jul 23:00 to "
        "Wed 15 Jul 01:00: the base load alone reaches 2,600 kW")


def test_a_breach_over_the_whole_horizon_is_dated() -> None:
    midnight = datetime(2026, 7, 14, 0, 0)
    problem = EstateProblem(start=midnight, step_hours=0.25, facilities=("acme",),
                            base_load_kw=np.full((1, 96), 2600.0),
                            import_price=np.full(96, 0.15), export_price=np.zeros(96),
                            capacity_kw=2500.0)
    plan = optimise(problem)

    assert plan.violations[0].message == (
        "Contracted capacity 2,500 kW exceeded by 100 kW throughout the horizon, from "
        "Tue 14 Jul 00:00 to Wed 15 Jul 00:00: the base load alone reaches 2,600 kW")


def test_causes_name_the_window_the_bound_and_the_target() -> None:
    press = DeferrableLoad("press", "acme", energy_kwh=30.0, max_kw=20.0, window_start=40,
                           window_end=44, min_kw=5.0, min_run_steps=6)  # 22:00-23:00
    kiln = DeferrableLoad("kiln", "bolt", energy_kwh=50.0, max_kw=40.0, window_start=4,
                          window_end=12)  # fits at full power, but its tenant's limit binds
    limits = np.full((2, STEPS), np.inf)
    limits[1] = 60.0
    well = PumpTank("well", "bolt", pump_max_kw=5.0, flow_per_kw=2.0,
                    water_demand_m3h=np.full(STEPS, 1.0), tank_min_m3=10.0, tank_max_m3=50.0,
                    tank_initial_m3=5.0, tank_terminal_m3=10.0)
    problem = estate(flat(100.0, 50.0), deferrables=(press, kiln), pumps=(well,),
                     facility_limit_kw=limits)
    plan = optimise(problem)
    causes = {(v.limit, v.subject): v.cause for v in plan.violations}

    assert causes[("deferrable_energy", "press")] == (
        "its minimum run of 6 steps does not fit in its window of 4")
    assert causes[("deferrable_energy", "kiln")] == (
        "running more would break the import limit of tenant bolt in its window")
    assert causes[("water_min", "well")] == "it starts at 5.0 m³, below its minimum"
    assert check(problem, plan) == []
