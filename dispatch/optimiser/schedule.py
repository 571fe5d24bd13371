"""Assemble a ``Schedule`` from per-asset arrays, deriving what follows from them.

Used by extraction (arrays from the solution) and by the baseline (arrays computed by
rule), so both derive the chillers' electric power and the tenants' import the same way.
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
                  water_level: FloatArray | None = None,
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
        pump_power=pump, water_level=_rows(p.pumps, n, water_level), pv_power=pv)
