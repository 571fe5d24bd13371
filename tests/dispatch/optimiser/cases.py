"""Problems for the tests and the benchmark: seeded, small by default, any asset mix."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np

from dispatch.optimiser import (
    PV,
    Battery,
    DeferrableLoad,
    DemandResponseWindow,
    EstateProblem,
    Genset,
    PumpTank,
    ThermalStorage,
)

ALL_KINDS = ("battery", "deferrable", "genset", "thermal", "pump", "pv")
START = datetime(2026, 7, 14, 6, 0)


def tou_prices(steps: int, step_hours: float, start_hour: float = 6.0) -> np.ndarray:
    """Off-peak 0.08 before 07:00 and after 23:00, peak 0.32 from 17:00 to 21:00, mid 0.15."""
    hour = (start_hour + np.arange(steps) * step_hours) % 24
    price = np.full(steps, 0.15)
    price[(hour < 7) | (hour >= 23)] = 0.08
    price[(hour >= 17) & (hour < 21)] = 0.32
    return price


def random_problem(seed: int, steps: int = 16, counts: dict[str, int] | None = None,
                   facilities: int = 2, tight: bool = False, step_hours: float = 1.0,
                   binaries: bool = True) -> EstateProblem:
    """A random estate; ``tight`` makes the limits too tight for every plan to keep them."""
    rng = np.random.default_rng(seed)
    counts = counts if counts is not None else dict.fromkeys(ALL_KINDS, 1)
    names = tuple(f"f{i}" for i in range(facilities))

    def fac() -> str:
        return names[int(rng.integers(facilities))]

    base = rng.uniform(20, 80, (facilities, steps))
    total = base.sum(axis=0)
    batteries = tuple(
        Battery(f"bat{i}", fac(), soc_min_kwh=5.0, soc_max_kwh=float(rng.uniform(60, 120)),
                soc_initial_kwh=float(rng.uniform(10, 50)), charge_kw=float(rng.uniform(10, 40)),
                discharge_kw=float(rng.uniform(10, 40)),
                charge_efficiency=float(rng.uniform(0.9, 0.98)),
                discharge_efficiency=float(rng.uniform(0.9, 0.98)),
                degradation_cost=float(rng.uniform(0, 0.03)))
        for i in range(counts.get("battery", 0)))
    deferrables = []
    for i in range(counts.get("deferrable", 0)):
        first = int(rng.integers(0, steps // 2))
        last = int(rng.integers(first + 4, steps + 1))
        top = float(rng.uniform(10, 30))
        binary = binaries and i % 2 == 0
        deferrables.append(DeferrableLoad(
            f"load{i}", fac(), energy_kwh=float(rng.uniform(0.2, 0.6) * top * step_hours
                                                * (last - first)),
            max_kw=top, window_start=first, window_end=last,
            min_kw=float(rng.uniform(0.2, 0.5) * top) if binary else 0.0,
            min_run_steps=int(rng.integers(2, 4)) if binary else 1,
            non_interruptible=binary and i % 4 == 0))
    gensets = tuple(
        Genset(f"gen{i}", fac(), min_kw=float(rng.uniform(10, 20)),
               max_kw=float(rng.uniform(30, 60)), fuel_cost=float(rng.uniform(0.12, 0.3)),
               start_cost=float(rng.uniform(0, 5)),
               min_up_steps=int(rng.integers(1, 4)), min_down_steps=int(rng.integers(1, 4)),
               initially_on=bool(i % 2), initial_steps=int(rng.integers(0, 3)))
        for i in range(counts.get("genset", 0) if binaries else 0))
    thermal = tuple(
        ThermalStorage(f"chill{i}", fac(), chiller_max_kw_th=float(rng.uniform(30, 60)),
                       cop=rng.uniform(2.5, 4.5, steps) if i % 2 else 3.5,
                       cooling_demand_kw_th=rng.uniform(5, 35, steps),
                       tank_min_kwh=10.0, tank_max_kwh=float(rng.uniform(80, 150)),
                       tank_initial_kwh=40.0, loss_per_hour=0.01 * (i % 2))
        for i in range(counts.get("thermal", 0)))
    pumps = tuple(
        PumpTank(f"pump{i}", fac(), pump_max_kw=float(rng.uniform(8, 15)), flow_per_kw=4.0,
                 water_demand_m3h=rng.uniform(5, 40, steps), tank_min_m3=5.0,
                 tank_max_m3=float(rng.uniform(60, 100)), tank_initial_m3=30.0)
        for i in range(counts.get("pump", 0)))
    pv = tuple(
        PV(f"pv{i}", fac(),
           forecast_kw=np.maximum(0.0, rng.uniform(30, 90) * np.sin(np.linspace(0, np.pi, steps))))
        for i in range(counts.get("pv", 0)))
    peak_guess = float(total.max())
    capacity = peak_guess * (0.6 if tight else 1.6)
    limit = np.full((facilities, steps), np.inf)
    limit[0] = base[0].max() * (0.7 if tight else 1.5)
    dr_start = steps // 2
    windows = (DemandResponseWindow(dr_start, min(dr_start + 3, steps),
                                    float(total[dr_start:dr_start + 3].max()
                                          * (0.6 if tight else 0.95)), "grid order"),)
    return EstateProblem(
        start=START, step_hours=step_hours, facilities=names, base_load_kw=base,
        import_price=tou_prices(steps, step_hours), export_price=np.full(steps, 0.04),
        capacity_kw=capacity, export_limit_kw=40.0, demand_charge=float(rng.uniform(2, 8)),
        prior_peak_kw=float(peak_guess * rng.uniform(0.7, 1.0)), facility_limit_kw=limit,
        dr_windows=windows, batteries=batteries, deferrables=tuple(deferrables),
        gensets=gensets, thermal=thermal, pumps=pumps, pv=pv)


def mixed_estate(assets: int, steps: int = 96, seed: int = 7,
                 shares: Iterable[tuple[str, float]] = (("battery", 0.4), ("deferrable", 0.4),
                                                         ("genset", 0.2))) -> EstateProblem:
    """The benchmark's estate: ``assets`` batteries, deferrable loads and gensets over
    ``steps`` 15-minute steps, ten assets per tenant, with tenant limits and a DR window."""
    rng = np.random.default_rng(seed)
    dt = 0.25
    share = dict(shares)
    n_bat = round(assets * share.get("battery", 0))
    n_gen = round(assets * share.get("genset", 0))
    n_def = assets - n_bat - n_gen
    facilities = max(assets // 10, 1)
    names = tuple(f"tenant{i:03d}" for i in range(facilities))
    hour = (6 + np.arange(steps) * dt) % 24
    shape = 1.0 + 0.5 * np.sin((hour - 8) / 24 * 2 * np.pi)
    base = rng.uniform(30, 90, (facilities, 1)) * shape[None, :]

    def fac(i: int) -> str:
        return names[i % facilities]

    batteries = tuple(
        Battery(f"bat{i}", fac(i), 10.0, float(rng.uniform(100, 300)), 50.0,
                float(rng.uniform(25, 100)), float(rng.uniform(25, 100)),
                degradation_cost=0.02)
        for i in range(n_bat))
    deferrables = []
    for i in range(n_def):
        first = int(rng.integers(0, steps // 2))
        last = int(rng.integers(first + 16, steps + 1))
        top = float(rng.uniform(10, 40))
        deferrables.append(DeferrableLoad(
            f"load{i}", fac(i + 3), float(rng.uniform(0.2, 0.5) * top * dt * (last - first)),
            top, first, last, min_kw=0.3 * top, min_run_steps=int(rng.integers(2, 9)),
            non_interruptible=i % 3 == 0))
    gensets = tuple(
        Genset(f"gen{i}", fac(i + 7), float(rng.uniform(20, 40)), float(rng.uniform(60, 150)),
               fuel_cost=float(rng.uniform(0.14, 0.3)), start_cost=float(rng.uniform(2, 10)),
               min_up_steps=int(rng.integers(4, 9)), min_down_steps=int(rng.integers(4, 9)))
        for i in range(n_gen))
    total = base.sum(axis=0)
    limits = np.full((facilities, steps), np.inf)
    limits[::3] = base[::3].max(axis=1, keepdims=True) * 1.5
    first = min(int(11 / dt), steps // 2)  # 17:00 from a 06:00 start
    window = DemandResponseWindow(first, min(first + int(3 / dt), steps),
                                  float(total.max() * 1.1), "evening curtailment")
    return EstateProblem(
        start=START, step_hours=dt, facilities=names, base_load_kw=base,
        import_price=tou_prices(steps, dt), export_price=np.full(steps, 0.05),
        capacity_kw=float(total.max() * 1.8), export_limit_kw=float(total.max() * 0.5),
        demand_charge=12.0, prior_peak_kw=float(total.max() * 0.9), facility_limit_kw=limits,
        dr_windows=(window,), batteries=batteries, deferrables=tuple(deferrables),
        gensets=gensets)


def small_mixed_cases() -> dict[str, EstateProblem]:
    """Small estates of the kinds an operator's own checks use: a battery on a TOU tariff
    with a demand charge, gensets under a tight capacity, deferrable loads with PV and a
    tenant limit, every kind together over 96 and 192 quarter-hours, and the benchmark's
    own mix at 20 and 50 assets."""
    every = dict.fromkeys(ALL_KINDS, 2)
    cases = {
        "battery, TOU, demand charge": random_problem(5, 96, {"battery": 1}, step_hours=0.25),
        "gensets, tight capacity": random_problem(6, 96, {"genset": 3}, tight=True,
                                                  step_hours=0.25),
        "deferrables, PV, tenant limit": random_problem(7, 96, {"deferrable": 6, "pv": 1},
                                                        step_hours=0.25),
        "mixed, 192 steps": random_problem(8, 192, {"deferrable": 6, "genset": 3,
                                                    "battery": 2, "pv": 1}, step_hours=0.25),
    }
    for seed in range(3):
        cases[f"every kind, seed {seed}"] = random_problem(20 + seed, 96, every, step_hours=0.25)
    cases["benchmark mix, 20 assets"] = mixed_estate(20)
    cases["benchmark mix, 50 assets"] = mixed_estate(50)
    return cases
