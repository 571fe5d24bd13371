"""Assemble a ``Schedule`` from per-asset arrays, deriving what follows from them.

Used by extraction (arrays from the solution) and by the baseline (arrays computed by
rule), so both derive the chillers' electric power, the tenants' import and the water in
each tank the same way. Water levels follow from the pumps by the tank's physics: what is
pumped into a full tank with an overflow runs away in that step (and a level the solver
kept lower by spilling early is never better than this one: it holds at least as much
water at every step for no more spilled in all).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dispatch.optimiser.problem import Asset, BoolArray, EstateProblem, FloatArray, IntArray
from dispatch.optimiser.result import Schedule


def _rows(items: Sequence[Asset], steps: int, given: FloatArray | None) -> FloatArray:
    if given is None:
        return np.zeros((len(items), steps))
    return np.asarray(given, dtype=np.float64).reshape(len(items), steps)


def cop_matrix(problem: EstateProblem) -> FloatArray:
    """``(chillers, steps)`` coefficients of performance."""
    n = problem.steps
    rows = [np.broadcast_to(np.asarray(u.cop, dtype=np.float64), (n,)) for u in problem.thermal]
    return np.stack(rows) if rows else np.zeros((0, n))


def water_levels(problem: EstateProblem, pump_power: FloatArray
                 ) -> tuple[FloatArray, FloatArray]:
    """Each tank's level (m³, end of step) and what ran over its top (m³ in the step)."""
    p, dt, n = problem, problem.step_hours, problem.steps
    level, spill = np.zeros((len(p.pumps), n)), np.zeros((len(p.pumps), n))
    if not p.pumps:
        return level, spill
    flow = np.array([w.flow_per_kw for w in p.pumps])
    demand = np.stack([np.broadcast_to(np.asarray(w.water_demand_m3h, dtype=np.float64), (n,))
                       for w in p.pumps])
    top = np.where([w.overflow for w in p.pumps], [w.tank_max_m3 for w in p.pumps], np.inf)
    content = np.array([w.tank_initial_m3 for w in p.pumps], dtype=np.float64)
    for t in range(n):  # one step at a time, every tank at once
        content = content + dt * (flow * pump_power[:, t] - demand[:, t])
        spill[:, t] = np.maximum(content - top, 0.0)
        content = content - spill[:, t]
        level[:, t] = content
    return level, spill


def facility_rows(problem: EstateProblem, items: Sequence[Asset]) -> IntArray:
    index = {name: i for i, name in enumerate(problem.facilities)}
    return np.array([index[x.facility] for x in items], dtype=np.int64)


def make_schedule(problem: EstateProblem, *,
                  battery_charge: FloatArray | None = None,
                  battery_discharge: FloatArray | None = None,
                  battery_soc: FloatArray | None = None,
                  deferrable_power: FloatArray | None = None,
                  deferrable_on: BoolArray | None = None,
                  genset_power: FloatArray | None = None,
                  genset_on: BoolArray | None = None,
                  chiller_cooling: FloatArray | None = None,
                  tank_level: FloatArray | None = None,
                  pump_power: FloatArray | None = None,
                  pv_power: FloatArray | None = None,
                  grid: tuple[FloatArray, FloatArray] | None = None) -> Schedule:
    """Missing arrays are zero; ``grid`` None means import/export follow the net draw."""
    p, n = problem, problem.steps
    ch = _rows(p.batteries, n, battery_charge)
    dis = _rows(p.batteries, n, battery_discharge)
    dpow = _rows(p.deferrables, n, deferrable_power)
    gpow = _rows(p.gensets, n, genset_power)
    cool = _rows(p.thermal, n, chiller_cooling)
    chill = cool / cop_matrix(p) if p.thermal else cool
    pump = _rows(p.pumps, n, pump_power)
    water, spill = water_levels(p, pump)
    pv = _rows(p.pv, n, pv_power)
    facility = np.array(p.base_load_kw, dtype=np.float64, copy=True)
    for items, draw in ((p.batteries, ch - dis), (p.deferrables, dpow), (p.gensets, -gpow),
                        (p.thermal, chill), (p.pumps, pump), (p.pv, -pv)):
        if items:
            np.add.at(facility, facility_rows(p, items), draw)
    if grid is None:
        net = facility.sum(axis=0)
        grid = (np.maximum(net, 0.0), np.maximum(-net, 0.0))
    return Schedule(
        grid_import=np.asarray(grid[0], dtype=np.float64),
        grid_export=np.asarray(grid[1], dtype=np.float64),
        facility_import=facility, battery_charge=ch, battery_discharge=dis,
        battery_soc=_rows(p.batteries, n, battery_soc), deferrable_power=dpow,
        deferrable_on=(np.zeros(dpow.shape, dtype=bool) if deferrable_on is None
                       else np.asarray(deferrable_on, dtype=bool)),
        genset_power=gpow,
        genset_on=(np.zeros(gpow.shape, dtype=bool) if genset_on is None
                   else np.asarray(genset_on, dtype=bool)),
        chiller_cooling=cool, chiller_power=chill, tank_level=_rows(p.thermal, n, tank_level),
        pump_power=pump, water_level=water, water_spill=spill, pv_power=pv)
