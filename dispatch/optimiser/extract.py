"""Extract: the solution vector becomes a ``Schedule`` (index blocks, no lookups by name).

Two things are settled here rather than in the model, both never worse than the solver's
own values (``build`` and ``schedule`` say why): in steps without a direction binary,
import and export are netted (a tie between them costs nothing either way), and water
levels follow the pumps by the tank's physics.
"""

from __future__ import annotations

import numpy as np

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
    grid_import = x[m.variables["grid_import"]].copy()
    grid_export = x[m.variables["grid_export"]].copy()
    free = np.ones(b.steps, dtype=bool)
    free[b.index.get("grid_importing", np.zeros(0, dtype=np.int64))] = False
    both = np.where(free, np.minimum(grid_import, grid_export), 0.0)
    return make_schedule(
        p,
        battery_charge=block("battery_charge"), battery_discharge=block("battery_discharge"),
        battery_soc=block("battery_soc"), deferrable_power=deferrable,
        deferrable_on=deferrable_on, genset_power=block("genset_power"),
        genset_on=None if genset_on is None else genset_on > ON_THRESHOLD,
        chiller_cooling=block("chiller_cooling"), tank_level=block("tank_level"),
        pump_power=block("pump_power"), pv_power=block("pv_power"),
        grid=(grid_import - both, grid_export - both))

