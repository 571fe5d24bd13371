"""Judge any schedule against the problem: costs, peak, penalty and broken limits.

The same arithmetic serves the optimised plan, the baseline and the fallback, so the three
are compared on equal terms. The penalty mirrors the model's slack costs exactly (per kW·h
for power limits and tank bounds, per kWh or m³ for shortfalls), so for a solved plan
``costs.total + penalty`` equals the solver's objective.
"""

from __future__ import annotations

import numpy as np

from dispatch.optimiser import explain
from dispatch.optimiser.penalty import violation_penalty
from dispatch.optimiser.problem import BoolArray, EstateProblem, FloatArray
from dispatch.optimiser.result import Assessment, Costs, Schedule, Violation


def starts(on: BoolArray, initially_on: BoolArray) -> BoolArray:
    """``(units, steps)`` True where a unit switches on (from its initial state at step 0)."""
    if not on.size:
        return on
    before = np.concatenate([initially_on[:, None], on[:, :-1]], axis=1)
    return np.asarray(on & ~before, dtype=np.bool_)


def costs(problem: EstateProblem, s: Schedule) -> Costs:
    p, dt = problem, problem.step_hours
    peak = float(s.grid_import.max(initial=0.0))
    gens = p.gensets
    fuel = np.array([g.fuel_cost for g in gens])[:, None] if gens else 0.0
    start_cost = np.array([g.start_cost for g in gens])[:, None] if gens else 0.0
    was_on = np.array([g.initially_on for g in gens], dtype=bool)
    deg = np.array([x.degradation_cost for x in p.batteries])[:, None] if p.batteries else 0.0
    spill = np.array([w.spill_cost for w in p.pumps])[:, None] if p.pumps else 0.0
    return Costs(
        energy=float(dt * np.dot(p.import_price, s.grid_import)),
        export_revenue=float(dt * np.dot(p.export_price, s.grid_export)),
        demand_charge=float(p.demand_charge * max(peak - p.prior_peak_kw, 0.0)),
        fuel=float(dt * np.sum(fuel * s.genset_power)),
        starts=float(np.sum(start_cost * starts(s.genset_on, was_on))),
        degradation=float(dt * np.sum(deg * (s.battery_charge + s.battery_discharge))),
        spill=float(np.sum(spill * s.water_spill)))


def assess(problem: EstateProblem, s: Schedule) -> Assessment:
    """Costs and peak of ``s``, the penalty its broken limits earn, and those limits in words."""
    found: list[Violation] = []
    penalty = 0.0
    for excess, weight, violations in _breaches(problem, s):
        penalty += weight * float(np.sum(np.maximum(excess, 0.0)))
        found.extend(violations)
    found.sort(key=lambda v: (v.first_step, v.limit, v.subject))
    return Assessment(costs=costs(problem, s), peak_kw=float(s.grid_import.max(initial=0.0)),
                      penalty=violation_penalty(problem) * penalty, violations=tuple(found))


Breach = tuple[FloatArray, float, list[Violation]]
"""(excess per step or per asset, penalty weight per unit, the violations it makes)."""


def _breaches(problem: EstateProblem, s: Schedule) -> list[Breach]:
    return [*_grid(problem, s), *_facilities(problem, s), *_demand_response(problem, s),
            *_tanks(problem, s), *_deferrables(problem, s)]


def _grid(p: EstateProblem, s: Schedule) -> list[Breach]:
    dt = p.step_hours
    over = s.grid_import - p.capacity_kw
    cap = explain.quantity(p.capacity_kw, "kW")
    out: list[Breach] = [(over, dt, explain.per_step(
        p, "capacity", "estate", over, "kW",
        lambda by, a, b: f"Contracted capacity {cap} exceeded {by} {explain.when(p, a, b)}"))]
    limit = p.export_limit()
    excess = s.grid_export - limit  # -inf where there is no limit
    out.append((excess, dt, explain.per_step(
        p, "export_limit", "estate", excess, "kW",
        lambda by, a, b: (f"Export limit {explain.span(limit[a:b + 1], 'kW')} exceeded {by} "
                          f"{explain.when(p, a, b)}"))))
    return out


def _facilities(p: EstateProblem, s: Schedule) -> list[Breach]:
    limit = p.facility_limits()
    excess = s.facility_import - limit  # -inf where there is no limit
    out: list[Breach] = []
    for f, name in enumerate(p.facilities):
        row = excess[f]

        def describe(by: str, a: int, b: int, f: int = f, name: str = name) -> str:
            lim = explain.span(limit[f, a:b + 1], "kW")
            return (f"Import limit of tenant {p.label(name)} ({lim}) exceeded {by} "
                    f"{explain.when(p, a, b)}")

        out.append((row, p.step_hours,
                    explain.per_step(p, "facility_limit", name, row, "kW", describe)))
    return out


def _demand_response(p: EstateProblem, s: Schedule) -> list[Breach]:
    out: list[Breach] = []
    for w in p.dr_windows:
        excess = s.grid_import[w.start:w.end] - w.cap_kw
        order = (f"{w.name}, {explain.clock(p, w.start)}–{explain.clock(p, w.end)}")
        cap = explain.quantity(w.cap_kw, "kW")

        def describe(by: str, a: int, b: int, cap: str = cap, order: str = order) -> str:
            return f"Demand-response cap {cap} ({order}) exceeded {by} {explain.when(p, a, b)}"

        out.append((excess, p.step_hours, explain.per_step(
            p, "demand_response", w.name, excess, "kW", describe, offset=w.start)))
    return out


def _tank_breaches(p: EstateProblem, kind: str, what: str, unit: str, names: list[str],
                   level: FloatArray, low: FloatArray, terminal: FloatArray) -> list[Breach]:
    out: list[Breach] = []
    last = p.steps - 1
    for i, name in enumerate(names):
        label = p.label(name)
        under = low[i] - level[i]
        lo = explain.quantity(low[i], unit)

        def below(by: str, a: int, b: int, label: str = label, lo: str = lo) -> str:
            return f"{what} {label} below its minimum of {lo} {by} {explain.when(p, a, b)}"

        out.append((under, p.step_hours,
                    explain.per_step(p, f"{kind}_min", name, under, unit, below)))
        short = float(terminal[i] - level[i, -1]) if level.shape[1] else 0.0
        target = explain.quantity(terminal[i], unit)
        out.append((np.array([short]), 1.0, explain.once(
            p, f"{kind}_terminal", name, short, unit, last, last,
            f"{what} {label} ends the horizon ({explain.clock(p, p.steps)}) "
            f"{explain.quantity(short, unit)} below its target of {target}")))
    return out


def _tanks(p: EstateProblem, s: Schedule) -> list[Breach]:
    th, pu = p.thermal, p.pumps
    return [
        *_tank_breaches(p, "tank", "Chilled-water tank", "kWh", [x.name for x in th],
                        s.tank_level, np.array([x.tank_min_kwh for x in th]),
                        np.array([x.terminal_kwh for x in th])),
        *_tank_breaches(p, "water", "Water tank", "m³", [x.name for x in pu], s.water_level,
                        np.array([x.tank_min_m3 for x in pu]),
                        np.array([x.terminal_m3 for x in pu])),
    ]


def _deferrables(p: EstateProblem, s: Schedule) -> list[Breach]:
    out: list[Breach] = []
    for i, load in enumerate(p.deferrables):
        short = load.energy_kwh - p.step_hours * float(s.deferrable_power[i].sum())
        first, last = load.window_start, load.window_end - 1
        message = (f"Deferrable load {p.label(load.name)} short of its "
                   f"{explain.quantity(load.energy_kwh, 'kWh')} by "
                   f"{explain.quantity(short, 'kWh')} in its window "
                   f"{explain.when(p, first, last)}")
        out.append((np.array([short]), 1.0, explain.once(
            p, "deferrable_energy", load.name, short, "kWh", first, last, message)))
    return out
