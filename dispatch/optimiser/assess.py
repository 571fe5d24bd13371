"""Judge any schedule against the problem: costs, peak, penalty and broken limits.

The same arithmetic serves the optimised plan, the baseline and the fallback, so the three
are compared on equal terms. The penalty mirrors the model's slack costs exactly (per kW·h
for power limits and tank bounds, per kWh or m³ for shortfalls), so for a solved plan
``costs.total + penalty`` equals the solver's objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dispatch.optimiser import causes, explain
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
    base = np.asarray(p.base_load_kw, dtype=np.float64).sum(axis=0)
    over = s.grid_import - p.capacity_kw
    cap = explain.quantity(p.capacity_kw, "kW")
    out: list[Breach] = [(over, dt, explain.per_step(
        p, "capacity", "estate", over, "kW",
        lambda by, a, b: f"Contracted capacity {cap} exceeded {by} {explain.when(p, a, b)}",
        lambda a, b: causes.power_limit(p, s, a, b, base, np.full(p.steps, p.capacity_kw))))]
    limit = p.export_limit()
    excess = s.grid_export - limit  # -inf where there is no limit
    out.append((excess, dt, explain.per_step(
        p, "export_limit", "estate", excess, "kW",
        lambda by, a, b: (f"Export limit {explain.span(limit[a:b + 1], 'kW')} exceeded {by} "
                          f"{explain.when(p, a, b)}"),
        lambda a, b: causes.export_limit(p, s, a, b))))
    return out


def _facilities(p: EstateProblem, s: Schedule) -> list[Breach]:
    limit = p.facility_limits()
    base = np.asarray(p.base_load_kw, dtype=np.float64)
    excess = s.facility_import - limit  # -inf where there is no limit
    out: list[Breach] = []
    for f, name in enumerate(p.facilities):
        row = excess[f]

        def describe(by: str, a: int, b: int, f: int = f, name: str = name) -> str:
            lim = explain.span(limit[f, a:b + 1], "kW")
            return (f"Import limit of tenant {p.label(name)} ({lim}) exceeded {by} "
                    f"{explain.when(p, a, b)}")

        def cause(a: int, b: int, f: int = f) -> str:
            return causes.power_limit(p, s, a, b, base[f], limit[f], facility=f)

        out.append((row, p.step_hours,
                    explain.per_step(p, "facility_limit", name, row, "kW", describe, cause)))
    return out


def _demand_response(p: EstateProblem, s: Schedule) -> list[Breach]:
    out: list[Breach] = []
    base = np.asarray(p.base_load_kw, dtype=np.float64).sum(axis=0)
    for w in p.dr_windows:
        excess = s.grid_import[w.start:w.end] - w.cap_kw
        order = f"{w.name}, {explain.span_of(p, w.start, w.end)}"
        cap = explain.quantity(w.cap_kw, "kW")

        def describe(by: str, a: int, b: int, cap: str = cap, order: str = order) -> str:
            return f"Demand-response cap {cap} ({order}) exceeded {by} {explain.when(p, a, b)}"

        def cause(a: int, b: int, cap_kw: float = w.cap_kw) -> str:
            return causes.power_limit(p, s, a, b, base, np.full(p.steps, cap_kw))

        out.append((excess, p.step_hours, explain.per_step(
            p, "demand_response", w.name, excess, "kW", describe, cause, offset=w.start)))
    return out


@dataclass(frozen=True, slots=True)
class _Tank:
    """A tank as the explanations see it, whatever it holds."""

    kind: str  # "tank" (chilled water) or "water"
    what: str
    unit: str
    machine: str
    name: str
    low: float
    target: float
    initial: float
    demand: FloatArray  # per step, in the unit per hour
    most_in: float  # the machine's most, in the unit per hour
    keep: float  # share of the content kept over a step


def _tank_list(p: EstateProblem) -> list[_Tank]:
    n = p.steps
    out = [_Tank("tank", "Chilled-water tank", "kWh", "chiller", c.name, c.tank_min_kwh,
                 c.terminal_kwh, c.tank_initial_kwh,
                 np.broadcast_to(np.asarray(c.cooling_demand_kw_th, dtype=np.float64), (n,)),
                 c.chiller_max_kw_th, 1.0 - c.loss_per_hour * p.step_hours)
           for c in p.thermal]
    out += [_Tank("water", "Water tank", "m³", "pump", w.name, w.tank_min_m3, w.terminal_m3,
                  w.tank_initial_m3,
                  np.broadcast_to(np.asarray(w.water_demand_m3h, dtype=np.float64), (n,)),
                  w.pump_max_kw * w.flow_per_kw, 1.0)
            for w in p.pumps]
    return out


def _tanks(p: EstateProblem, s: Schedule) -> list[Breach]:
    out: list[Breach] = []
    last = p.steps - 1
    levels = [*s.tank_level, *s.water_level]
    for tank, level in zip(_tank_list(p), levels, strict=True):
        label, unit = p.label(tank.name), tank.unit
        under = tank.low - level
        lo = explain.quantity(tank.low, unit)

        def below(by: str, a: int, b: int, t: _Tank = tank, label: str = label,
                  lo: str = lo) -> str:
            return f"{t.what} {label} below its minimum of {lo} {by} {explain.when(p, a, b)}"

        def low_cause(a: int, b: int, t: _Tank = tank) -> str:
            return causes.tank_low(p, a, t.initial, t.low, t.unit, t.demand, t.most_in,
                                   t.machine)

        out.append((under, p.step_hours, explain.per_step(
            p, f"{tank.kind}_min", tank.name, under, unit, below, low_cause)))
        short = float(tank.target - level[-1]) if level.size else 0.0
        target = explain.quantity(tank.target, unit)
        out.append((np.array([short]), 1.0, explain.once(
            p, f"{tank.kind}_terminal", tank.name, short, unit, last, last,
            f"{tank.what} {label} ends the horizon ({explain.clock(p, p.steps)}) "
            f"{explain.quantity(short, unit)} below its target of {target}",
            causes.tank_short(p, tank.initial, tank.target, unit, tank.demand, tank.most_in,
                              tank.keep, tank.machine) if short > explain.TOLERANCE else "")))
    return out


def _deferrables(p: EstateProblem, s: Schedule) -> list[Breach]:
    out: list[Breach] = []
    facility = {name: i for i, name in enumerate(p.facilities)}
    for i, load in enumerate(p.deferrables):
        short = load.energy_kwh - p.step_hours * float(s.deferrable_power[i].sum())
        first, last = load.window_start, load.window_end - 1
        message = (f"Deferrable load {p.label(load.name)} short of its "
                   f"{explain.quantity(load.energy_kwh, 'kWh')} by "
                   f"{explain.quantity(short, 'kWh')} in its window "
                   f"{explain.when(p, first, last)}")
        why = ""
        if short > explain.TOLERANCE:
            binding = causes.binding_limits(p, s, load.window_start, load.window_end,
                                            facility[load.facility])
            why = causes.deferrable_short(p, s, i, binding)
        out.append((np.array([short]), 1.0, explain.once(
            p, "deferrable_energy", load.name, short, "kWh", first, last, message, why)))
    return out
