"""Build -> solve -> extract, timed, with the baseline beside the plan and a fallback.

``optimise`` never raises for anything the solver does: a model HiGHS cannot solve in
time comes back as the best plan found before the bound (status ``time_limit``) or the
baseline (status ``fallback``), with the reason. It raises ``ProblemError`` only for
inputs that cannot mean anything (see ``consistency``).

The solve runs in a solving process (``isolation``) that is stopped at the time limit plus
a margin, whatever HiGHS does; ``SolveOptions(isolated=False)`` solves in the calling
thread instead.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

from dispatch.optimiser import build, isolation, storage, switched
from dispatch.optimiser.assess import assess
from dispatch.optimiser.baseline import baseline_schedule, mip_start
from dispatch.optimiser.consistency import ProblemError, check_options, validate
from dispatch.optimiser.extract import extract
from dispatch.optimiser.model import ModelArrays
from dispatch.optimiser.problem import EstateProblem
from dispatch.optimiser.result import ModelSize, Plan, Status, Timings
from dispatch.optimiser.rounding import roundings
from dispatch.optimiser.solve import solve
from dispatch.optimiser.solve_types import Hints, Report, SolveOptions, SolverOutcome

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


def hints(b: build.Build) -> Hints:
    return Hints(roundings(b), mip_start(b, baseline_schedule(b.problem)))


def solve_problem(problem: EstateProblem, options: SolveOptions,
                  report: Report | None = None) -> SolverOutcome:
    """Build and solve ``problem`` here (the solving process's side of ``optimise``); the
    time limit counts from this call."""
    began, cpu = time.perf_counter(), time.process_time()
    b = build_model(problem)
    outcome = solve(b.model.arrays(), options, hints(b), report, began)
    return dataclasses.replace(outcome, cpu_seconds=time.process_time() - cpu)


def _solve_bounded(problem: EstateProblem, options: SolveOptions
                   ) -> tuple[SolverOutcome, isolation.Answer]:
    """The outcome of a solve in a solving process, and how the call went."""
    answer = isolation.call(solve_problem, (problem, options),
                            isolation.deadline_s(options.time_limit_s))
    if isinstance(answer.value, SolverOutcome):
        return answer.value, answer
    why = answer.failure
    if answer.overran:
        why = f"time limit: {answer.failure}"
    elif not why.startswith("the solving process"):
        why = f"HiGHS failed: {why}"
    log.error("optimiser: %s", why)
    if answer.best is None:
        return SolverOutcome(None, None, None, "error", False, why, answer.seconds), answer
    x, objective, gap = answer.best
    return (SolverOutcome(x, objective, gap, "Time limit reached" if answer.overran
                          else "error", False, f"{why}; the best plan found before is kept",
                          answer.seconds), answer)


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
    refused = check_options(options.time_limit_s, options.mip_rel_gap)
    if refused:
        raise ProblemError(refused)
    if check:
        validate(problem)
    began = time.perf_counter()
    b = build_model(problem)
    arrays = b.model.arrays()
    base = baseline_schedule(problem)
    built = time.perf_counter()
    if options.isolated:
        outcome, answer = _solve_bounded(problem, options)
        seconds, started = answer.seconds, answer.start_seconds
        bound = isolation.deadline_s(options.time_limit_s)
    else:
        outcome, bound = solve(arrays, options, hints(b)), math.inf
        seconds, started = time.perf_counter() - built, 0.0
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
                timings=Timings(built - began, seconds, done - solved, bound_s=bound,
                                start_s=started, solve_cpu_s=outcome.cpu_seconds),
                size=model_size(arrays), solver_stages=outcome.stages)
