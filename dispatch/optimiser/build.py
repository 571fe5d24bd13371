"""Build: an ``EstateProblem`` becomes a ``LinearModel``, one ``define_*`` per group.

The estate-level groups live here (grid exchange, balance, contracted capacity, export
limit, demand charge, tenant sub-limits, demand-response caps, PV); the assets' groups live
in ``storage`` (batteries, chilled-water and water tanks) and ``switched`` (deferrable loads
and gensets, the ones with binaries). Every asset adds its electric draw to ``Build.draws``;
``define_balance`` and ``define_facility_limits`` sum them, so an asset kind never needs
to know about the estate's rows.

Every limit that can be broken in practice has a slack column whose cost is the violation
penalty per unit (``dispatch.optimiser.penalty``: derived from the prices, so it outweighs
every one of them): the model is always feasible, and a slack above zero in the optimum is
a limit that nothing the optimiser controls could keep.

The estate either imports or exports in a step. Where export pays at most what import
costs that needs no binary: lowering both flows by the smaller one keeps the balance,
loosens every limit and costs ``(import - export price) x flow >= 0`` less, so an optimum
never holds both (``extract`` nets any tie). Where export pays more, a binary
(``grid_importing``) picks the direction, with big-M bounds from what the assets can draw
or give at most in that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dispatch.optimiser.model import LinearModel, Term, term
from dispatch.optimiser.penalty import violation_penalty
from dispatch.optimiser.problem import EstateProblem, FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class Draw:
    """Electric draw of a block of assets: ``coeff * x[cols]`` kW, one row per asset."""

    facility: IntArray  # (assets,) facility index of each asset
    cols: IntArray  # (assets, steps)
    coeff: FloatArray  # broadcastable to (assets, steps); negative for generation


@dataclass(slots=True)
class Build:
    problem: EstateProblem
    model: LinearModel = field(default_factory=LinearModel)
    draws: list[Draw] = field(default_factory=list)
    index: dict[str, IntArray] = field(default_factory=dict)
    """Where sparse slack blocks sit: steps, cells or windows of each slack column."""

    @property
    def steps(self) -> int:
        return self.problem.steps

    @property
    def dt(self) -> float:
        return self.problem.step_hours

    @property
    def penalty(self) -> float:
        return violation_penalty(self.problem)

    def facility_of(self, facilities: Sequence[str]) -> IntArray:
        index = {name: i for i, name in enumerate(self.problem.facilities)}
        return np.array([index[f] for f in facilities], dtype=np.int64)

    def draw(self, facilities: Sequence[str], cols: IntArray, coeff: float | FloatArray) -> None:
        self.draws.append(Draw(self.facility_of(facilities), cols,
                               np.asarray(coeff, dtype=np.float64)))


def values(items: Sequence[object], name: str) -> FloatArray:
    """One attribute of each asset, as a float array."""
    return np.array([getattr(item, name) for item in items], dtype=np.float64)


def per_step(items: Sequence[object], name: str, steps: int) -> FloatArray:
    """A scalar-or-array attribute of each asset, as an ``(assets, steps)`` array."""
    rows = [np.broadcast_to(np.asarray(getattr(i, name), dtype=np.float64), (steps,))
            for i in items]
    return np.stack(rows) if rows else np.zeros((0, steps))


def window_mask(starts: IntArray, ends: IntArray, steps: int) -> np.ndarray:
    """``(assets, steps)``: True inside each asset's ``[start, end)``."""
    t = np.arange(steps)
    return (t >= starts[:, None]) & (t < ends[:, None])


def shifted(cols: IntArray, rows: IntArray, coeff: float | FloatArray = -1.0) -> Term:
    """``coeff * x[..., t-1]`` into row ``t`` (t >= 1) of an ``(assets, steps)`` block."""
    c = np.broadcast_to(np.asarray(coeff, dtype=np.float64), cols.shape)
    return term(cols[:, :-1], c[:, 1:], rows[:, 1:])


def define_grid(b: Build) -> None:
    """Import and export (kW), each step, priced at the tariff."""
    p, m = b.problem, b.model
    m.add_variables("grid_import", (b.steps,), cost=b.dt * np.asarray(p.import_price))
    m.add_variables("grid_export", (b.steps,), cost=-b.dt * np.asarray(p.export_price))


def define_pv(b: Build) -> None:
    """PV output used (kW): anything from zero (curtailed) to the forecast."""
    pv = b.problem.pv
    if not pv:
        return
    forecast = per_step(pv, "forecast_kw", b.steps)
    cols = b.model.add_variables("pv_power", forecast.shape, upper=forecast)
    b.draw([v.facility for v in pv], cols, -1.0)


def define_balance(b: Build) -> None:
    """import - export = base load + every asset's draw, each step."""
    m = b.model
    terms = [term(m.variables["grid_import"]), term(m.variables["grid_export"], -1.0)]
    t = np.arange(b.steps)
    for d in b.draws:
        coeff = -np.broadcast_to(d.coeff, d.cols.shape)
        terms.append(term(d.cols, coeff, np.broadcast_to(t, d.cols.shape)))
    base = np.asarray(b.problem.base_load_kw, dtype=np.float64).sum(axis=0)
    m.add_constraints("balance", base, base, terms)


def draw_range(b: Build) -> tuple[FloatArray, FloatArray]:
    """The least and the most the estate's assets together can draw in each step (kW)."""
    lower, upper = b.model.column_bounds()
    low, high = np.zeros(b.steps), np.zeros(b.steps)
    for d in b.draws:
        coeff = np.broadcast_to(d.coeff, d.cols.shape)
        ends = np.stack([coeff * lower[d.cols], coeff * upper[d.cols]])
        low += ends.min(axis=0).sum(axis=0)
        high += ends.max(axis=0).sum(axis=0)
    return low, high


def define_grid_modes(b: Build) -> None:
    """Where export pays more than import: import <= M u, export <= M' (1 - u), u binary.

    M and M' are the most the estate can import and export in the step (its base load
    and what its assets can draw or give), so the rows cut nothing else.
    """
    p, m = b.problem, b.model
    steps = np.flatnonzero(np.asarray(p.export_price) > np.asarray(p.import_price))
    if steps.size == 0:
        return
    base = np.asarray(p.base_load_kw, dtype=np.float64).sum(axis=0)
    low, high = draw_range(b)
    most_in = np.maximum(base + high, 0.0)[steps]
    most_out = np.maximum(-(base + low), 0.0)[steps]
    importing = m.add_variables("grid_importing", (steps.size,), upper=1.0, integer=True)
    b.index["grid_importing"] = steps
    m.add_constraints("grid_import_mode", -np.inf, 0.0,
                      [term(m.variables["grid_import"][steps]), term(importing, -most_in)],
                      shape=(steps.size,))
    m.add_constraints("grid_export_mode", -np.inf, most_out,
                      [term(m.variables["grid_export"][steps]), term(importing, most_out)])


def define_capacity(b: Build) -> None:
    """Import <= contracted capacity + slack (kW)."""
    m = b.model
    slack = m.add_variables("slack_capacity", (b.steps,), cost=b.penalty * b.dt)
    m.add_constraints("capacity", -np.inf, b.problem.capacity_kw,
                      [term(m.variables["grid_import"]), term(slack, -1.0)],
                      shape=(b.steps,))


def define_export_limit(b: Build) -> None:
    """Export <= export limit + slack (kW), on steps where a limit exists."""
    m = b.model
    limit = b.problem.export_limit()
    steps = np.flatnonzero(np.isfinite(limit))
    if steps.size == 0:
        return
    slack = m.add_variables("slack_export", (steps.size,), cost=b.penalty * b.dt)
    b.index["slack_export"] = steps
    m.add_constraints("export_limit", -np.inf, limit[steps],
                      [term(m.variables["grid_export"][steps]), term(slack, -1.0)])


def define_peak(b: Build) -> None:
    """The billing period's peak (kW): at least the peak so far and every step's import.

    Its cost is the demand charge on the increase only: the charge on the peak already
    reached is sunk, so it is a constant taken out of the objective.
    """
    p, m = b.problem, b.model
    if p.demand_charge == 0:
        return
    peak = m.add_variables("peak", (1,), lower=p.prior_peak_kw, cost=p.demand_charge)
    m.add_cost(-p.demand_charge * p.prior_peak_kw)
    m.add_constraints("peak", 0.0, np.inf,
                      [term(np.repeat(peak, b.steps)), term(m.variables["grid_import"], -1.0)],
                      shape=(b.steps,))


def define_facility_limits(b: Build) -> None:
    """Each tenant's base load + its assets' draw <= its import limit + slack (kW)."""
    p, m = b.problem, b.model
    limit = p.facility_limits()
    finite = np.isfinite(limit)
    if not finite.any():
        return
    row_of = np.full(limit.shape, -1, dtype=np.int64)
    row_of[finite] = np.arange(int(finite.sum()))
    slack = m.add_variables("slack_facility", (int(finite.sum()),), cost=b.penalty * b.dt)
    b.index["slack_facility"] = np.argwhere(finite)
    terms = [term(slack, -1.0)]
    for d in b.draws:
        rows = row_of[d.facility]  # (assets, steps)
        keep = rows >= 0
        coeff = np.broadcast_to(d.coeff, d.cols.shape)
        terms.append((rows[keep], d.cols[keep], coeff[keep]))
    base = np.asarray(p.base_load_kw, dtype=np.float64)
    m.add_constraints("facility_limit", -np.inf, (limit - base)[finite], terms)


def define_dr_caps(b: Build) -> None:
    """Estate import <= the demand-response cap + slack (kW) on the window's steps."""
    p, m = b.problem, b.model
    if not p.dr_windows:
        return
    steps = np.concatenate([np.arange(w.start, w.end) for w in p.dr_windows])
    window = np.concatenate([np.full(w.end - w.start, i) for i, w in enumerate(p.dr_windows)])
    caps = np.array([w.cap_kw for w in p.dr_windows], dtype=np.float64)[window]
    slack = m.add_variables("slack_dr", (steps.size,), cost=b.penalty * b.dt)
    b.index["slack_dr"] = steps
    b.index["slack_dr_window"] = window
    m.add_constraints("dr_cap", -np.inf, caps,
                      [term(m.variables["grid_import"][steps]), term(slack, -1.0)])
