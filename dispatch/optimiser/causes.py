"""Why a limit was broken, in words: which window, which bound, which target.

Each function looks at the problem and the schedule over the run of steps where a limit
was broken and names what made it so, most telling first:

- a power limit (contracted capacity, a tenant's limit, a demand-response cap): the base
  load alone above it, or the base load and the asset drawing most there (with its
  window when it is a deferrable load);
- the export limit: generation nobody dispatches (a negative base load, a genset held on);
- a tank below its minimum or short of its target: a tank that starts low, a demand that
  outruns the machine, or power limits that left the machine no room;
- a deferrable load's shortfall: a minimum run longer than its window, a window too short
  for its energy at full power, or the limits that bind in its window.

An empty string means no cause could be named; the message then says what and when only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dispatch.optimiser.explain import TOLERANCE, quantity, span_of
from dispatch.optimiser.problem import EstateProblem, FloatArray
from dispatch.optimiser.result import Schedule


def asset_draws(p: EstateProblem, s: Schedule) -> list[tuple[str, str, int, FloatArray]]:
    """(kind, name, facility index, kW drawn per step) of every asset that draws power."""
    fac = {name: i for i, name in enumerate(p.facilities)}
    out: list[tuple[str, str, int, FloatArray]] = []
    for i, b in enumerate(p.batteries):
        out.append(("battery", b.name, fac[b.facility],
                    s.battery_charge[i] - s.battery_discharge[i]))
    for i, d in enumerate(p.deferrables):
        out.append(("deferrable", d.name, fac[d.facility], s.deferrable_power[i]))
    for i, c in enumerate(p.thermal):
        out.append(("thermal", c.name, fac[c.facility], s.chiller_power[i]))
    for i, w in enumerate(p.pumps):
        out.append(("pump", w.name, fac[w.facility], s.pump_power[i]))
    return out


def _asset_words(p: EstateProblem, kind: str, name: str, kw: float) -> str:
    label, amount = p.label(name), quantity(kw, "kW")
    if kind == "deferrable":
        load = next(d for d in p.deferrables if d.name == name)
        window = span_of(p, load.window_start, load.window_end)
        return f"{label} draws {amount} to finish within its window ({window})"
    if kind == "battery":
        return f"{label} charges {amount} to reach its final charge"
    what = "chilled-water tank" if kind == "thermal" else "tank"
    return f"{label} draws {amount} to keep its {what} above its minimum"


def power_limit(p: EstateProblem, s: Schedule, first: int, last: int, base: FloatArray,
                limit: FloatArray, facility: int | None = None) -> str:
    """Why import (a tenant's, if ``facility``) went over ``limit`` in [first, last]."""
    steps = np.arange(first, last + 1)
    over_base = base[steps] - limit[steps]
    if over_base.max() > TOLERANCE:
        return f"the base load alone reaches {quantity(float(base[steps].max()), 'kW')}"
    draws = [(kind, name, float(kw[steps].max())) for kind, name, f, kw in asset_draws(p, s)
             if facility is None or f == facility]
    if not draws:
        return ""
    kind, name, kw = max(draws, key=lambda d: d[2])
    if kw <= TOLERANCE:
        return ""
    return (f"the base load reaches {quantity(float(base[steps].max()), 'kW')} and "
            f"{_asset_words(p, kind, name, kw)}")


def export_limit(p: EstateProblem, s: Schedule, first: int, last: int) -> str:
    """Why export went over its limit: generation that is not dispatched."""
    steps = np.arange(first, last + 1)
    base = np.asarray(p.base_load_kw, dtype=np.float64).sum(axis=0)[steps]
    parts: list[str] = []
    if base.min() < -TOLERANCE:
        parts.append(f"the base load gives up to {quantity(float(-base.min()), 'kW')}")
    for g in p.gensets:
        if g.initially_on and first < g.min_up_steps - g.initial_steps:
            parts.append(f"{p.label(g.name)} must run {quantity(g.min_kw, 'kW')} or more "
                         "until its minimum up time is served")
    return " and ".join(parts)


def tank_low(p: EstateProblem, first: int, initial: float, low: float, unit: str,
             demand: FloatArray, most_in: float, machine: str) -> str:
    """Why a tank went below its minimum from step ``first``."""
    if first == 0 and initial < low - TOLERANCE:
        return f"it starts at {quantity(initial, unit)}, below its minimum"
    peak = float(demand[: first + 1].max()) if demand.size else 0.0
    rate = f"{unit}/h" if unit == "m³" else "kW"
    if peak > most_in + TOLERANCE:
        return (f"the demand of up to {quantity(peak, rate)} outruns the {machine}'s "
                f"{quantity(most_in, rate)}")
    return f"the power limits left the {machine} no room to fill it"


def tank_short(p: EstateProblem, initial: float, target: float, unit: str,
               demand: FloatArray, most_in: float, keep: float, machine: str) -> str:
    """Why a tank ends below its target: what the machine can deliver at most, or limits."""
    dt = p.step_hours
    level = initial
    for d in demand:  # the fullest the tank could be: the machine at full output throughout
        level = keep * level + dt * (most_in - d)
    if level < target - TOLERANCE:
        return (f"even at full output the {machine} can bring it to "
                f"{quantity(level, unit)} at most")
    return f"the power limits left the {machine} no room to refill it"


def deferrable_short(p: EstateProblem, s: Schedule, index: int,
                     binding: Sequence[str]) -> str:
    """Why a deferrable load is short of its energy."""
    d = p.deferrables[index]
    length = d.window_end - d.window_start
    if d.needs_binaries and d.min_run_steps > length:
        return (f"its minimum run of {d.min_run_steps} steps does not fit in its window of "
                f"{length}")
    most = d.max_kw * p.step_hours * length
    if d.energy_kwh > most + TOLERANCE:
        return (f"its window holds at most {quantity(most, 'kWh')} at its "
                f"{quantity(d.max_kw, 'kW')}")
    if binding:
        return f"running more would break the {' and the '.join(binding)} in its window"
    return ""


def binding_limits(p: EstateProblem, s: Schedule, first: int, end: int,
                   facility: int) -> list[str]:
    """The power limits at or over their bound somewhere in ``[first, end)``."""
    steps = np.arange(first, end)
    found: list[str] = []
    if (s.grid_import[steps] >= p.capacity_kw - TOLERANCE).any():
        found.append(f"contracted capacity of {quantity(p.capacity_kw, 'kW')}")
    limits = p.facility_limits()[facility, steps]
    if (s.facility_import[facility, steps] >= limits - TOLERANCE).any():
        name = p.label(p.facilities[facility])
        found.append(f"import limit of tenant {name}")
    for w in p.dr_windows:
        inside = steps[(steps >= w.start) & (steps < w.end)]
        if inside.size and (s.grid_import[inside] >= w.cap_kw - TOLERANCE).any():
            found.append(f"demand-response cap ({w.name})")
    return found
