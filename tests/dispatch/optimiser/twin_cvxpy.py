"""The same problem written independently with cvxpy, vectorised per asset kind.

Like ``twin_pulp`` it reads only the problem's dataclasses, and spells out the same
physics (a direction binary per battery and per step at the grid connection, hard tank
tops, spill only through an overflow). The tests solve it (cvxpy -> HiGHS); the benchmark
times its build (expressions plus cvxpy's compilation to the solver's matrices, which is
where cvxpy does its building).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cvxpy
import numpy as np

from dispatch.optimiser import EstateProblem
from tests.dispatch.optimiser.checker import penalty
from tests.dispatch.optimiser.twin_pulp import big_m

# cvxpy ships py.typed but does not export its atoms (multiply, sum, hstack) to type checkers
cp: Any = cvxpy


@dataclass
class Twin:
    problem: cvxpy.Problem
    construct_s: float


def _shift(x: Any, lag: int, first: float | Sequence[float] | np.ndarray = 0.0) -> Any:
    """x[:, t - lag] in column t; ``first`` (a number or one value per row) before t = 0."""
    rows, steps = x.shape
    if lag == 0:
        return x
    pad = np.broadcast_to(np.asarray(first, dtype=float).reshape(-1, 1), (rows, lag))
    return cp.hstack([pad, x[:, :steps - lag]])


def _window_sum(x: Any, lengths: np.ndarray) -> Any:
    """sum over k < lengths[row] of x[:, t - k]."""
    total = x
    for lag in range(1, int(lengths.max(initial=1))):
        mask = np.repeat((lengths > lag)[:, None].astype(float), x.shape[1], axis=1)
        total = total + cp.multiply(mask, _shift(x, lag))
    return total


def _incidence(p: EstateProblem, assets: Sequence[object]) -> np.ndarray:
    m = np.zeros((len(p.facilities), len(assets)))
    for j, a in enumerate(assets):
        m[p.facilities.index(a.facility), j] = 1.0  # type: ignore[attr-defined]
    return m


def build(p: EstateProblem) -> Twin:
    began = time.perf_counter()
    n, dt, pen = p.steps, p.step_hours, penalty(p)
    base = np.asarray(p.base_load_kw, dtype=float)
    imp = cp.Variable(n, nonneg=True)
    exp = cp.Variable(n, nonneg=True)
    cons: list[Any] = []
    cost = dt * (p.import_price @ imp - p.export_price @ exp)
    facility = cp.Constant(base)

    if p.batteries:
        bs = p.batteries
        k = len(bs)

        def col(name: str) -> np.ndarray:
            return np.array([getattr(b, name) for b in bs], dtype=float)[:, None]

        ch, dis, soc = (cp.Variable((k, n), nonneg=True) for _ in range(3))
        charging = cp.Variable((k, n), boolean=True)
        cons += [ch <= cp.multiply(np.repeat(col("charge_kw"), n, 1), charging),
                 dis <= cp.multiply(np.repeat(col("discharge_kw"), n, 1), 1 - charging)]
        step = dt * (cp.multiply(np.repeat(col("charge_efficiency"), n, 1), ch)
                     - cp.multiply(np.repeat(1 / col("discharge_efficiency"), n, 1), dis))
        cons += [ch <= np.repeat(col("charge_kw"), n, 1),
                 dis <= np.repeat(col("discharge_kw"), n, 1),
                 soc >= np.repeat(col("soc_min_kwh"), n, 1),
                 soc <= np.repeat(col("soc_max_kwh"), n, 1),
                 soc == _shift(soc, 1, col("soc_initial_kwh").ravel()) + step,
                 soc[:, n - 1] >= col("terminal_kwh").ravel()]
        cost += dt * cp.sum(cp.multiply(np.repeat(col("degradation_cost"), n, 1), ch + dis))
        facility = facility + _incidence(p, bs) @ (ch - dis)

    if p.deferrables:
        ds = p.deferrables
        t = np.arange(n)
        inside = np.array([(t >= d.window_start) & (t < d.window_end) for d in ds], dtype=float)
        top = np.array([d.max_kw for d in ds])[:, None]
        pw = cp.Variable((len(ds), n), nonneg=True)
        short = cp.Variable(len(ds), nonneg=True)
        cons += [pw <= inside * top,
                 dt * cp.sum(pw, axis=1) + short >= np.array([d.energy_kwh for d in ds])]
        cost += pen * cp.sum(short)
        facility = facility + _incidence(p, ds) @ pw
        sel = [i for i, d in enumerate(ds) if d.needs_binaries]
        if sel:
            bd = [ds[i] for i in sel]
            run = np.array([d.min_run_steps for d in bd])
            latest = np.array([d.window_end for d in bd]) - run
            may = np.array([(t >= d.window_start) & (t <= last) for d, last in zip(bd, latest,
                                                                                   strict=True)],
                           dtype=float)
            on = cp.Variable((len(bd), n), boolean=True)
            st = cp.Variable((len(bd), n), nonneg=True)
            sub = pw[sel, :]
            floor = np.array([[max(d.min_kw, 0.01 * d.max_kw)] for d in bd])  # 1% of max while on
            cons += [on <= inside[sel], st <= may, st >= on - _shift(on, 1),
                     _window_sum(st, run) <= on,
                     sub >= cp.multiply(np.repeat(floor, n, 1), on),
                     sub <= cp.multiply(np.repeat(top[sel], n, 1), on)]
            single = [j for j, d in enumerate(bd) if d.non_interruptible]
            if single:
                cons.append(cp.sum(st[single, :], axis=1) <= 1)

    if p.gensets:
        gs = p.gensets
        k = len(gs)
        t = np.arange(n)
        was_on = np.array([float(g.initially_on) for g in gs])
        up_n = np.array([g.min_up_steps for g in gs])
        down_n = np.array([g.min_down_steps for g in gs])
        served = np.array([g.initial_steps for g in gs])
        held_on = (was_on[:, None] > 0) & (t[None, :] < (up_n - served)[:, None])
        held_off = (was_on[:, None] == 0) & (t[None, :] < (down_n - served)[:, None])
        on = cp.Variable((k, n), boolean=True)
        pw = cp.Variable((k, n), nonneg=True)
        up = cp.Variable((k, n), nonneg=True)
        dn = cp.Variable((k, n), nonneg=True)
        low = np.repeat(np.array([[g.min_kw] for g in gs]), n, 1)
        high = np.repeat(np.array([[g.max_kw] for g in gs]), n, 1)
        cons += [up <= 1, dn <= 1, on >= held_on.astype(float), on <= 1 - held_off.astype(float),
                 on - _shift(on, 1, was_on) == up - dn,
                 _window_sum(up, up_n) <= on, _window_sum(dn, down_n) <= 1 - on,
                 pw >= cp.multiply(low, on), pw <= cp.multiply(high, on)]
        fuel = np.repeat(np.array([[g.fuel_cost] for g in gs]), n, 1)
        start = np.repeat(np.array([[g.start_cost] for g in gs]), n, 1)
        cost += dt * cp.sum(cp.multiply(fuel, pw)) + cp.sum(cp.multiply(start, up))
        facility = facility - _incidence(p, gs) @ pw

    def tank(level: Any, low: np.ndarray, high: np.ndarray, target: np.ndarray) -> None:
        nonlocal cost
        under = cp.Variable(level.shape, nonneg=True)
        end_short = cp.Variable(level.shape[0], nonneg=True)
        cons.extend([level + under >= np.repeat(low[:, None], n, 1),
                     level <= np.repeat(high[:, None], n, 1),
                     level[:, n - 1] + end_short >= target])
        cost += pen * dt * cp.sum(under) + pen * cp.sum(end_short)

    if p.thermal:
        th = p.thermal
        cop = np.stack([np.broadcast_to(np.asarray(c.cop, dtype=float), (n,)) for c in th])
        demand = np.stack([np.asarray(c.cooling_demand_kw_th, dtype=float) for c in th])
        keep = np.array([1 - c.loss_per_hour * dt for c in th])
        q = cp.Variable((len(th), n), nonneg=True)
        level = cp.Variable((len(th), n))
        cons += [q <= np.repeat(np.array([[c.chiller_max_kw_th] for c in th]), n, 1),
                 level == cp.multiply(np.repeat(keep[:, None], n, 1),
                                      _shift(level, 1, [c.tank_initial_kwh for c in th]))
                 + dt * (q - demand)]
        tank(level, np.array([c.tank_min_kwh for c in th]),
             np.array([c.tank_max_kwh for c in th]), np.array([c.terminal_kwh for c in th]))
        facility = facility + _incidence(p, th) @ cp.multiply(1 / cop, q)

    if p.pumps:
        ps = p.pumps
        demand = np.stack([np.asarray(w.water_demand_m3h, dtype=float) for w in ps])
        pw = cp.Variable((len(ps), n), nonneg=True)
        level = cp.Variable((len(ps), n))
        flow = np.repeat(np.array([[w.flow_per_kw] for w in ps]), n, 1)
        spill = cp.Variable((len(ps), n), nonneg=True)
        may_spill = np.repeat(np.array([[float(w.overflow)] for w in ps]), n, 1)
        cons += [pw <= np.repeat(np.array([[w.pump_max_kw] for w in ps]), n, 1),
                 cp.multiply(1 - may_spill, spill) == 0,
                 level == _shift(level, 1, [w.tank_initial_m3 for w in ps])
                 + dt * (cp.multiply(flow, pw) - demand) - spill]
        cost += cp.sum(cp.multiply(np.repeat(np.array([[w.spill_cost] for w in ps]), n, 1),
                                   spill))
        tank(level, np.array([w.tank_min_m3 for w in ps]), np.array([w.tank_max_m3 for w in ps]),
             np.array([w.terminal_m3 for w in ps]))
        facility = facility + _incidence(p, ps) @ pw

    if p.pv:
        used = cp.Variable((len(p.pv), n), nonneg=True)
        cons.append(used <= np.stack([np.asarray(v.forecast_kw, dtype=float) for v in p.pv]))
        facility = facility - _incidence(p, p.pv) @ used

    cons.append(imp - exp == cp.sum(facility, axis=0))
    importing = cp.Variable(n, boolean=True)
    big = big_m(p)
    cons += [imp <= big * importing, exp <= big * (1 - importing)]
    over = cp.Variable(n, nonneg=True)
    cons.append(imp <= p.capacity_kw + over)
    cost += pen * dt * cp.sum(over)
    limit = p.export_limit()
    steps = np.flatnonzero(np.isfinite(limit))
    if steps.size:
        over_exp = cp.Variable(steps.size, nonneg=True)
        cons.append(exp[steps] <= limit[steps] + over_exp)
        cost += pen * dt * cp.sum(over_exp)
    limits = p.facility_limits()
    finite = np.isfinite(limits)
    if finite.any():
        over_f = cp.Variable(limits.shape, nonneg=True)
        cons.append(cp.multiply(finite.astype(float), facility - over_f)
                    <= np.where(finite, limits, 0.0))
        cost += pen * dt * cp.sum(over_f)
    for w in p.dr_windows:
        over_dr = cp.Variable(w.end - w.start, nonneg=True)
        cons.append(imp[w.start:w.end] <= w.cap_kw + over_dr)
        cost += pen * dt * cp.sum(over_dr)
    if p.demand_charge:
        peak = cp.Variable()
        cons += [peak >= p.prior_peak_kw, peak >= imp]
        cost += p.demand_charge * (peak - p.prior_peak_kw)
    problem = cp.Problem(cp.Minimize(cost), cons)
    return Twin(problem, time.perf_counter() - began)


def compile_seconds(twin: Twin) -> float:
    """cvxpy's own build: canonicalise and stuff the matrices for HiGHS."""
    began = time.perf_counter()
    twin.problem.get_problem_data(cp.HIGHS)
    return time.perf_counter() - began


def solve_built(twin: Twin, **highs_options: float) -> tuple[str, float | None]:
    """(status, objective) from HiGHS through cvxpy; options go to HiGHS as they are."""
    cp.Problem.solve(twin.problem, solver=cp.HIGHS, **highs_options)
    value = twin.problem.value
    return str(twin.problem.status), None if value is None else float(value)


def solve(p: EstateProblem) -> tuple[str, float]:
    """Solved to optimality (HiGHS's default MIP gap through cvxpy is 1e-4)."""
    status, value = solve_built(build(p), mip_rel_gap=0.0)
    return status, float("nan") if value is None else value
