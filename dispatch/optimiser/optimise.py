"""Build -> solve -> extract, timed, with the baseline beside the plan and a fallback.

``optimise`` never raises for anything the solver does: a model HiGHS cannot solve in
time comes back as the baseline with status ``fallback`` and the reason. It raises
``ProblemError`` only for inputs that cannot mean anything (see ``consistency``).
"""

from __future__ import annotations

import logging
import time

from dispatch.optimiser import build, storage, switched
from dispatch.optimiser.assess import assess
from dispatch.optimiser.baseline import baseline_schedule, mip_start
from dispatch.optimiser.consistency import validate
from dispatch.optimiser.extract import extract
from dispatch.optimiser.model import ModelArrays
from dispatch.optimiser.problem import EstateProblem
from dispatch.optimiser.result import ModelSize, Plan, Status, Timings
from dispatch.optimiser.rounding import roundings
from dispatch.optimiser.solve import Hints, SolveOptions, solve

log = logging.getLogger(__name__)

_SAME = 1e-7
"""Relative difference below which the assessed and the solver's objectives are the same
number (HiGHS's optimality tolerance is about 1e-7 relative)."""


def build_model(problem: EstateProblem) -> build.Build:
    """Every group in turn: the assets first (they register their draws), then the estate."""
    b = build.Build(problem)
    build.define_grid(b)
    build.define_pv(b)
    storage.define_batteries(b)
    storage.define_thermal(b)
    storage.define_pumps(b)
    switched.define_deferrables(b)
    switched.define_gensets(b)
    build.define_balance(b)
    build.define_grid_modes(b)
    build.define_capacity(b)
    build.define_export_limit(b)
    build.define_peak(b)
    build.define_facility_limits(b)
    build.define_dr_caps(b)
    return b


def model_size(arrays: ModelArrays) -> ModelSize:
    return ModelSize(columns=arrays.num_cols, integers=int(arrays.integer.sum()),
                     rows=arrays.num_rows, nonzeros=int(arrays.matrix.nnz))


def _objective(solver: float | None, assessed: float) -> float:
    """The solver's objective, or the assessed one where extraction improved on it (netted
    flows or later spills in a plan the solver had not proved optimal)."""
    if solver is None or assessed < solver - _SAME * max(1.0, abs(solver)):
        return assessed
    return solver


def optimise(problem: EstateProblem, options: SolveOptions | None = None,
             check: bool = True) -> Plan:
    """The cheapest plan within the limits (or breaking them least), and the baseline."""
    options = options or SolveOptions()
    if check:
        validate(problem)
    began = time.perf_counter()
    b = build_model(problem)
    arrays = b.model.arrays()
    base = baseline_schedule(problem)
    hints = Hints(roundings(b), mip_start(b, base))
    built = time.perf_counter()
    outcome = solve(arrays, options, hints)
    solved = time.perf_counter()
    if outcome.x is None:
        schedule = base
        assessment = assess(problem, base)
        status, reason = Status.FALLBACK, f"{outcome.message}; the plan is the baseline"
        objective = assessment.cost + assessment.penalty
        log.warning("optimiser fallback: %s", outcome.message)
    else:
        schedule = extract(b, outcome.x)
        assessment = assess(problem, schedule)
        objective = _objective(outcome.objective, assessment.cost + assessment.penalty)
        status = Status.OPTIMAL if outcome.within_gap else Status.TIME_LIMIT
        reason = outcome.message
        if assessment.violations:
            status = Status.INFEASIBLE_WITH_SLACK
            count = len(assessment.violations)
            reason = "; ".join(filter(None, [
                f"{count} limit{'s' if count > 1 else ''} cannot be met", outcome.message]))
    baseline = assess(problem, base)
    done = time.perf_counter()
    return Plan(status=status, reason=reason, schedule=schedule, assessment=assessment,
                baseline=baseline, baseline_schedule=base, objective=objective,
                mip_gap=outcome.mip_gap, solver_status=outcome.model_status,
                timings=Timings(built - began, solved - built, done - solved),
                size=model_size(arrays), solver_stages=outcome.stages)
