"""Switched groups, the ones with binaries: deferrable loads and gensets.

On/off is a binary per step; starts (and, for gensets, stops) are continuous columns in
[0, 1] tied to the change of the binary, which makes them integral at any integral on/off.
Minimum run / up / down times are the usual window sums over starts or stops (a start in
the last L steps forces "on" now), written for all units at once per lag.
"""

from __future__ import annotations

import numpy as np

from dispatch.optimiser.build import Build, shifted, values, window_mask
from dispatch.optimiser.model import Term, term
from dispatch.optimiser.problem import IntArray


def lagged_sum(cols: IntArray, lengths: IntArray, rows: IntArray) -> list[Term]:
    """Terms for ``sum(x[u, t-k] for k < lengths[u], t-k >= 0)`` in row ``rows[u, t]``."""
    terms: list[Term] = []
    steps = cols.shape[1]
    for lag in range(int(lengths.max(initial=0))):
        if lag >= steps:
            break
        unit = lengths > lag
        if not unit.any():
            continue
        terms.append(term(cols[unit, : steps - lag], 1.0, rows[unit, lag:]))
    return terms


def define_deferrables(b: Build) -> None:
    """Power (kW) inside the window, zero outside; energy delivered + shortfall >= needed."""
    loads, m, dt, n = b.problem.deferrables, b.model, b.dt, b.steps
    if not loads:
        return
    shape = (len(loads), n)
    inside = window_mask(values(loads, "window_start").astype(np.int64),
                         values(loads, "window_end").astype(np.int64), n)
    power = m.add_variables("deferrable_power", shape,
                            upper=np.where(inside, values(loads, "max_kw")[:, None], 0.0))
    short = m.add_variables("slack_deferrable", (len(loads),), cost=b.penalty)
    m.add_constraints("deferrable_energy", values(loads, "energy_kwh"), np.inf, [
        term(power, dt, np.repeat(np.arange(len(loads))[:, None], n, axis=1)), term(short)])
    b.draw([x.facility for x in loads], power, 1.0)
    define_deferrable_runs(b, power, inside)


def define_deferrable_runs(b: Build, power: IntArray, inside: np.ndarray) -> None:
    """Binaries for the loads that need them: min power, min run time, a single run.

    A run may start only where it can finish inside the window. While on, a load draws at
    least its ``floor_kw`` (its ``min_kw``, or a sliver of ``max_kw`` when that is zero),
    so a run is a run of drawing steps: a non-interruptible load is one block of power.
    """
    m, n = b.model, b.steps
    chosen = np.array([x.needs_binaries for x in b.problem.deferrables])
    if not chosen.any():
        return
    loads = [x for x in b.problem.deferrables if x.needs_binaries]
    b.index["deferrable_binary"] = np.flatnonzero(chosen)
    shape = (len(loads), n)
    rows = np.arange(shape[0] * n).reshape(shape)
    t = np.arange(n)
    run = values(loads, "min_run_steps").astype(np.int64)
    first = values(loads, "window_start").astype(np.int64)
    last = values(loads, "window_end").astype(np.int64) - run
    on = m.add_variables("deferrable_on", shape, upper=inside[chosen].astype(np.float64),
                         integer=True)
    may_start = (t >= first[:, None]) & (t <= last[:, None])
    start = m.add_variables("deferrable_start", shape, upper=may_start.astype(np.float64))
    m.add_constraints("deferrable_start", 0.0, np.inf,
                      [term(start), term(on, -1.0), shifted(on, rows, 1.0)], shape=shape)
    m.add_constraints("deferrable_min_run", -np.inf, 0.0,
                      [term(on, -1.0), *lagged_sum(start, run, rows)], shape=shape)
    own = power[chosen]
    m.add_constraints("deferrable_min_power", 0.0, np.inf,
                      [term(own), term(on, -values(loads, "floor_kw")[:, None])], shape=shape)
    m.add_constraints("deferrable_max_power", -np.inf, 0.0,
                      [term(own), term(on, -values(loads, "max_kw")[:, None])], shape=shape)
    single = np.flatnonzero([x.non_interruptible for x in loads])
    if single.size:
        m.add_constraints("deferrable_single_run", -np.inf, 1.0, [
            term(start[single], 1.0, np.repeat(np.arange(single.size)[:, None], n, axis=1))],
            shape=(single.size,))


def define_gensets(b: Build) -> None:
    """On/off (binary), output (kW) in [min, max] when on, starts and stops, min up/down.

    on[t] - on[t-1] = start[t] - stop[t], with on[-1] the initial state; a unit that has
    not yet served its minimum up (down) time before the horizon is held on (off).
    """
    units, m, dt, n = b.problem.gensets, b.model, b.dt, b.steps
    if not units:
        return
    shape = (len(units), n)
    rows = np.arange(shape[0] * n).reshape(shape)
    t = np.arange(n)
    up = values(units, "min_up_steps").astype(np.int64)
    down = values(units, "min_down_steps").astype(np.int64)
    was_on = values(units, "initially_on")
    served = values(units, "initial_steps").astype(np.int64)
    held_on = (was_on[:, None] > 0) & (t < (up - served)[:, None])
    held_off = (was_on[:, None] == 0) & (t < (down - served)[:, None])
    on = m.add_variables("genset_on", shape, lower=held_on.astype(np.float64),
                         upper=(~held_off).astype(np.float64), integer=True)
    power = m.add_variables("genset_power", shape, upper=values(units, "max_kw")[:, None],
                            cost=dt * values(units, "fuel_cost")[:, None])
    start = m.add_variables("genset_start", shape, upper=1.0,
                            cost=values(units, "start_cost")[:, None])
    stop = m.add_variables("genset_stop", shape, upper=1.0)
    rhs = np.zeros(shape)
    rhs[:, 0] = was_on
    m.add_constraints("genset_switch", rhs, rhs,
                      [term(on), shifted(on, rows), term(start, -1.0), term(stop)])
    m.add_constraints("genset_min_up", -np.inf, 0.0,
                      [term(on, -1.0), *lagged_sum(start, up, rows)], shape=shape)
    m.add_constraints("genset_min_down", -np.inf, 1.0,
                      [term(on), *lagged_sum(stop, down, rows)], shape=shape)
    m.add_constraints("genset_min_power", 0.0, np.inf,
                      [term(power), term(on, -values(units, "min_kw")[:, None])], shape=shape)
    m.add_constraints("genset_max_power", -np.inf, 0.0,
                      [term(power), term(on, -values(units, "max_kw")[:, None])], shape=shape)
    b.draw([u.facility for u in units], power, -1.0)
