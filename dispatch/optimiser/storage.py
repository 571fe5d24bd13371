"""Storage groups: batteries (kWh), chilled-water tanks (kWh of cooling), water tanks (m³).

Each keeps a level column per step, tied to the step before by its dynamics; the level
after the last step is held to a terminal target. Battery levels are hard bounds (validated
reachable). A tank's maximum is hard too: it is the top of the tank, and nothing stands
above it; water pumped into a full tank with an overflow runs away (``water_spill``,
priced), a tank without one cannot be filled further. A tank's minimum and its terminal
target have slacks, because a demand forecast can outrun what a chiller or pump delivers
(a level below zero is demand that was not served).

A battery either charges or discharges in a step (``battery_charging``, a binary): the
command a device gets is one setpoint, so a plan that did both at once, burning energy in
the round trip's losses, could not happen. With negative prices, or an estate forced to
export over its limit, that burning is what an LP would do.
"""

from __future__ import annotations

import numpy as np

from dispatch.optimiser.build import Build, per_step, shifted, values
from dispatch.optimiser.model import term


def define_batteries(b: Build) -> None:
    """Charge and discharge (kW, AC side), state of charge (kWh) at the end of each step.

    soc[t] = soc[t-1] + dt * (eta_c * charge[t] - discharge[t] / eta_d); the last soc is at
    least the terminal target; throughput costs ``degradation_cost`` per kWh each way.
    """
    bats, m, dt, n = b.problem.batteries, b.model, b.dt, b.steps
    if not bats:
        return
    shape = (len(bats), n)
    deg = values(bats, "degradation_cost")[:, None] * dt
    top_in, top_out = values(bats, "charge_kw")[:, None], values(bats, "discharge_kw")[:, None]
    charge = m.add_variables("battery_charge", shape, upper=top_in, cost=deg)
    discharge = m.add_variables("battery_discharge", shape, upper=top_out, cost=deg)
    charging = m.add_variables("battery_charging", shape, upper=1.0, integer=True)
    m.add_constraints("battery_charge_mode", -np.inf, 0.0,
                      [term(charge), term(charging, -np.broadcast_to(top_in, shape))],
                      shape=shape)
    m.add_constraints("battery_discharge_mode", -np.inf, np.broadcast_to(top_out, shape),
                      [term(discharge), term(charging, np.broadcast_to(top_out, shape))])
    lower = np.repeat(values(bats, "soc_min_kwh")[:, None], n, axis=1)
    lower[:, -1] = np.maximum(lower[:, -1], values(bats, "terminal_kwh"))
    soc = m.add_variables("battery_soc", shape, lower=lower,
                          upper=values(bats, "soc_max_kwh")[:, None])
    rows = np.arange(soc.size).reshape(shape)
    rhs = np.zeros(shape)
    rhs[:, 0] = values(bats, "soc_initial_kwh")
    m.add_constraints("battery_soc", rhs, rhs, [
        term(soc), shifted(soc, rows),
        term(charge, -dt * values(bats, "charge_efficiency")[:, None]),
        term(discharge, dt / values(bats, "discharge_efficiency")[:, None]),
    ])
    facilities = [x.facility for x in bats]
    b.draw(facilities, charge, 1.0)
    b.draw(facilities, discharge, -1.0)


def _tank_bounds(b: Build, prefix: str, level: np.ndarray, low: np.ndarray,
                 terminal: np.ndarray) -> None:
    """level + slack_low >= low; last level + slack >= terminal (the top is the level's
    own upper bound)."""
    m, pen, dt = b.model, b.penalty, b.dt
    shape = level.shape
    under = m.add_variables(f"slack_{prefix}_low", shape, cost=pen * dt)
    short = m.add_variables(f"slack_{prefix}_terminal", (shape[0],), cost=pen)
    m.add_constraints(f"{prefix}_min", np.broadcast_to(low[:, None], shape), np.inf,
                      [term(level), term(under)])
    m.add_constraints(f"{prefix}_terminal", terminal, np.inf,
                      [term(level[:, -1]), term(short)])


def define_thermal(b: Build) -> None:
    """Chiller cooling (kW_th), tank content (kWh_th); the chiller draws cooling / COP.

    tank[t] = (1 - loss * dt) * tank[t-1] + dt * (cooling[t] - demand[t]).
    """
    units, m, dt, n = b.problem.thermal, b.model, b.dt, b.steps
    if not units:
        return
    shape = (len(units), n)
    cooling = m.add_variables("chiller_cooling", shape,
                              upper=values(units, "chiller_max_kw_th")[:, None])
    level = m.add_variables("tank_level", shape, lower=-np.inf,
                            upper=values(units, "tank_max_kwh")[:, None])
    rows = np.arange(level.size).reshape(shape)
    keep = 1.0 - values(units, "loss_per_hour") * dt
    rhs = -dt * per_step(units, "cooling_demand_kw_th", n)
    rhs[:, 0] += keep * values(units, "tank_initial_kwh")
    m.add_constraints("tank_dynamics", rhs, rhs, [
        term(level), shifted(level, rows, -keep[:, None]), term(cooling, -dt)])
    _tank_bounds(b, "tank", level, values(units, "tank_min_kwh"), values(units, "terminal_kwh"))
    b.draw([u.facility for u in units], cooling, 1.0 / per_step(units, "cop", n))


def define_pumps(b: Build) -> None:
    """Pump power (kW), water level (m³) at most the top, water spilled (m³ per step):
    level[t] = level[t-1] + dt * (k * pump - demand) - spill[t], spill only for tanks
    with an overflow, at their spill cost."""
    pumps, m, dt, n = b.problem.pumps, b.model, b.dt, b.steps
    if not pumps:
        return
    shape = (len(pumps), n)
    power = m.add_variables("pump_power", shape, upper=values(pumps, "pump_max_kw")[:, None])
    level = m.add_variables("water_level", shape, lower=-np.inf,
                            upper=values(pumps, "tank_max_m3")[:, None])
    rows = np.arange(level.size).reshape(shape)
    rhs = -dt * per_step(pumps, "water_demand_m3h", n)
    rhs[:, 0] += values(pumps, "tank_initial_m3")
    terms = [term(level), shifted(level, rows),
             term(power, -dt * values(pumps, "flow_per_kw")[:, None])]
    spilling = np.flatnonzero([w.overflow for w in pumps])
    if spilling.size:
        b.index["water_spill"] = spilling
        cost = values([pumps[i] for i in spilling], "spill_cost")[:, None]
        spill = m.add_variables("water_spill", (spilling.size, n), cost=cost)
        terms.append(term(spill, 1.0, rows[spilling]))
    m.add_constraints("water_dynamics", rhs, rhs, terms)
    _tank_bounds(b, "water", level, values(pumps, "tank_min_m3"), values(pumps, "terminal_m3"))
    b.draw([p.facility for p in pumps], power, 1.0)
