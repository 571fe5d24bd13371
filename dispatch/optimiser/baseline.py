"""The do-nothing baseline, which is also the fallback plan.

What the estate does with nobody dispatching it: batteries idle, each deferrable load
starts at the opening of its window and runs at an even power until done (at least its
minimum run time, within its power bounds and its window), gensets off (except while a
unit must still serve its minimum up time), PV uncurtailed, chillers and pumps following
their demand (the tank holding its level while the machine can keep up). Plans are
compared with it (cost saved, peak reduced), and it is what the operator gets when HiGHS
returns nothing, so it keeps the same physical rules as a plan: a load's run fits its
window and its minimum run, one direction at the grid connection, no tank above its top.
The limits it breaks (capacity, tenants, shortfalls) are reported beside it.
"""

from __future__ import annotations

import numpy as np

from dispatch.optimiser.build import Build, per_step, values
from dispatch.optimiser.problem import EstateProblem, FloatArray, IntArray
from dispatch.optimiser.result import Schedule
from dispatch.optimiser.schedule import make_schedule

_ROUNDING = 1e-9
"""Slack when counting whole steps of running, so 8.0000000001 steps is 8, not 9."""


def deferrables_at_start(problem: EstateProblem) -> tuple[FloatArray, np.ndarray]:
    """Power and on/off of each deferrable load run from the start of its window.

    One block at an even power, as many steps as its energy needs at full power (at
    least its minimum run), cut to the window; a load whose minimum run does not fit in
    its window does not run (the shortfall is reported, as the plan would).
    """
    loads, n, dt = problem.deferrables, problem.steps, problem.step_hours
    if not loads:
        return np.zeros((0, n)), np.zeros((0, n), dtype=bool)
    energy, top = values(loads, "energy_kwh"), values(loads, "max_kw")
    first = values(loads, "window_start").astype(np.int64)
    end = values(loads, "window_end").astype(np.int64)
    count = np.ceil(energy / (top * dt) - _ROUNDING).astype(np.int64)
    needs = np.array([x.needs_binaries for x in loads])
    run = np.where(needs, values(loads, "min_run_steps").astype(np.int64), 1)
    count = np.minimum(np.where(count > 0, np.maximum(count, run), 0), end - first)
    count = np.where(count >= run, count, 0)
    floor = np.where(needs, values(loads, "floor_kw"), 0.0)
    level = np.where(count > 0, np.clip(energy / (np.maximum(count, 1) * dt), floor, top), 0.0)
    t = np.arange(n)
    on = (t >= first[:, None]) & (t < (first + count)[:, None])
    return np.where(on, level[:, None], 0.0), on


def gensets_held_on(problem: EstateProblem) -> np.ndarray:
    """``(gensets, steps)``: steps a unit must stay on to serve its minimum up time."""
    units, n = problem.gensets, problem.steps
    if not units:
        return np.zeros((0, n), dtype=bool)
    left = values(units, "min_up_steps") - values(units, "initial_steps")
    was_on = np.array([u.initially_on for u in units], dtype=bool)
    return was_on[:, None] & (np.arange(n) < left[:, None])


def chillers_following(problem: EstateProblem) -> tuple[FloatArray, FloatArray]:
    """Cooling output and tank level when each chiller covers the demand (and losses)."""
    units, n, dt = problem.thermal, problem.steps, problem.step_hours
    demand = per_step(units, "cooling_demand_kw_th", n)
    cooling, level = np.zeros_like(demand), np.zeros_like(demand)
    top, loss = values(units, "chiller_max_kw_th"), values(units, "loss_per_hour")
    content = values(units, "tank_initial_kwh")
    for t in range(n):  # one step at a time, all chillers at once
        cooling[:, t] = np.clip(demand[:, t] + loss * content, 0.0, top)
        content = (1.0 - loss * dt) * content + dt * (cooling[:, t] - demand[:, t])
        level[:, t] = content
    return cooling, level


def pumps_following(problem: EstateProblem) -> FloatArray:
    """Pump power when each pump delivers the demand as it comes (the tank's level holds
    while it keeps up, and falls when it cannot; it never rises)."""
    pumps, n = problem.pumps, problem.steps
    demand = per_step(pumps, "water_demand_m3h", n)
    flow = values(pumps, "flow_per_kw")[:, None]
    return np.clip(demand / flow, 0.0, values(pumps, "pump_max_kw")[:, None])


def baseline_schedule(problem: EstateProblem) -> Schedule:
    p, n = problem, problem.steps
    deferrable_power, deferrable_on = deferrables_at_start(p)
    held = gensets_held_on(p)
    cooling, tank = chillers_following(p)
    pump = pumps_following(p)
    return make_schedule(
        p,
        battery_soc=np.repeat(values(p.batteries, "soc_initial_kwh")[:, None], n, axis=1),
        deferrable_power=deferrable_power, deferrable_on=deferrable_on,
        genset_power=np.where(held, values(p.gensets, "min_kw")[:, None], 0.0),
        genset_on=held, chiller_cooling=cooling, tank_level=tank, pump_power=pump,
        pv_power=per_step(p.pv, "forecast_kw", n))


def mip_start(b: Build, s: Schedule) -> tuple[IntArray, FloatArray]:
    """The baseline's on/off pattern as a partial solution: HiGHS completes the rest."""
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    m = b.model
    if "deferrable_on" in m.variables:
        chosen = b.index["deferrable_binary"]
        cols.append(m.variables["deferrable_on"].ravel())
        vals.append(s.deferrable_on[chosen].astype(np.float64).ravel())
    if "genset_on" in m.variables:
        cols.append(m.variables["genset_on"].ravel())
        vals.append(s.genset_on.astype(np.float64).ravel())
    if "battery_charging" in m.variables:  # idle: either direction
        cols.append(m.variables["battery_charging"].ravel())
        vals.append(np.ones(m.variables["battery_charging"].size))
    if "grid_importing" in m.variables:
        steps = b.index["grid_importing"]
        cols.append(m.variables["grid_importing"])
        vals.append((s.grid_import[steps] >= s.grid_export[steps]).astype(np.float64))
    if not cols:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(cols), np.concatenate(vals)
