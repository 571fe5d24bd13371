"""Extract: the solution vector becomes a ``Schedule`` (index blocks, no lookups by name)."""

from __future__ import annotations

from dispatch.optimiser.build import Build
from dispatch.optimiser.problem import BoolArray, FloatArray
from dispatch.optimiser.result import Schedule
from dispatch.optimiser.schedule import make_schedule

ON_THRESHOLD = 0.5
"""A binary's value above this is "on": HiGHS returns binaries within 1e-6 of 0 or 1."""
RUNNING_KW = 1e-6
"""A deferrable load without binaries counts as running above this power (solver noise)."""


def extract(b: Build, x: FloatArray) -> Schedule:
    m, p = b.model, b.problem

    def block(name: str) -> FloatArray | None:
        index = m.variables.get(name)
        return None if index is None else x[index]

    deferrable = block("deferrable_power")
    deferrable_on: BoolArray | None = None
    if deferrable is not None:
        deferrable_on = deferrable > RUNNING_KW
        on = block("deferrable_on")
        if on is not None:
            deferrable_on[b.index["deferrable_binary"]] = on > ON_THRESHOLD
    genset_on = block("genset_on")
    return make_schedule(
        p,
        battery_charge=block("battery_charge"), battery_discharge=block("battery_discharge"),
        battery_soc=block("battery_soc"), deferrable_power=deferrable,
        deferrable_on=deferrable_on, genset_power=block("genset_power"),
        genset_on=None if genset_on is None else genset_on > ON_THRESHOLD,
        chiller_cooling=block("chiller_cooling"), tank_level=block("tank_level"),
        pump_power=block("pump_power"), water_level=block("water_level"),
        pv_power=block("pv_power"),
        grid=(x[m.variables["grid_import"]], x[m.variables["grid_export"]]))

