"""Solve: the model's arrays go to HiGHS through highspy, and come back as an outcome.

highspy rather than ``scipy.optimize.milp``: the same solver without scipy's wrapper
(15-25% faster on LPs of this kind on this class of machine), one HiGHS instance
re-solved warm after bound changes (the relax -> round -> fix stages below), the MIP gap
and dual bound from ``getInfo``, the incumbent when the time limit strikes, and a MIP
start via ``setSolution``. This module is the one boundary where highspy's errors are caught:
whatever goes wrong comes back as an outcome without a solution, never raised.

A MIP is solved in stages, all inside one time limit:

1. the quick relaxation (every ``Hints.roundings`` group's rows freed, integrality
   dropped): a lower bound;
2. its solution rounded one group of binaries after another, each from the LP solved with
   the groups before it fixed, until all are fixed: an LP whose optimum is an incumbent;
3. while the incumbent is not within the gap of the bound and a pass helps (at most
   ``LOCAL_PASSES``): each group in turn is freed again, re-rounded from the LP with the
   others fixed, and fixed (a cheap neighbourhood search, two warm LPs per group);
4. if still not within the gap: HiGHS's branch and bound from the best incumbent, first
   with the groups whose rounding cost nothing (the directions, where prices do not pay
   for burning energy) kept as rounded, for at most half the time left; then, if that
   did not reach the gap, over every binary (or, if the stages failed, from
   ``Hints.start``) for the rest. Both stop as soon as a plan is within the gap of the
   best bound known, not only of their own (a MIP interrupt callback: HiGHS's
   ``objective_target`` also cuts its LPs short, and gave an infeasible "plan").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from dispatch.optimiser.model import ModelArrays
from dispatch.optimiser.problem import FloatArray, IntArray
from dispatch.optimiser.solve_types import (
    Hints,
    Report,
    Rounding,
    SolveOptions,
    SolverOutcome,
    Start,
)

log = logging.getLogger(__name__)

LOCAL_PASSES = 3
"""Re-rounding passes at most. Why 3: on the benchmark estates passes rarely gain after the
first two, and each costs two warm LPs per group."""
_SIMPLEX_STRATEGY = 1
"""HiGHS's serial dual simplex. Why: with highspy 1.16 on the 2-core machine the parallel
variants lost everywhere: the 200-asset relaxation took 1.2 s serial against 5.8 s with
SIP on two threads (2.9 s with PAMI), the same iterations; and a parallel solve beside
other busy processes waits for its slowest thread (a whole 200-asset solve: 15 s of CPU
with SIP against 1.6 s serial)."""
_THREADS = 1
"""HiGHS's worker threads. Why one: a solve then slows on a busy machine by the share of
one core it loses and no more (two threads each wait for the other whenever either is
descheduled); see BENCHMARKS.md for the 200-asset estate beside two busy processes."""
_IMPROVEMENT = 1e-6
"""A pass must gain this share of the objective to count: smaller is solver noise."""
_RESTRICTED_SHARE = 0.5
"""The share of the time left that the restricted branch and bound may take. Why a half:
on the 50-asset benchmark estate it reached the gap in a third of the time the full one
took (6.7 s against 21 s); when it cannot, the full search still has the other half."""
_RESTRICTED_GAP_SHARE = 0.1
"""The restricted branch and bound stops at a tenth of the asked gap by its own bound (or
at the asked gap by the problem's). Why: its own bound, with some binaries fixed, is
higher than the problem's, so at the asked gap it stopped at once with nothing gained;
at a tenth, a restricted optimum that is not good enough is known quickly."""
_MIN_STAGE_S = 0.5
"""A stage is not started with less time than this left. Why half a second: HiGHS checks
its limit between phases, and a large MIP's presolve alone can outlast a shorter rest."""

# highspy's Python subclass has no annotations on __init__; its C++ base is typed.
_new_highs: Callable[[], highspy.Highs] = highspy.Highs
_FEASIBLE = int(highspy.kSolutionStatusFeasible)


@dataclass(frozen=True, slots=True)
class _Run:
    status: highspy.HighsModelStatus
    words: str
    x: FloatArray | None
    objective: float
    bound: float


def solve(arrays: ModelArrays, options: SolveOptions, hints: Hints | None = None,
          report: Report | None = None, began: float | None = None) -> SolverOutcome:
    """Run HiGHS on ``arrays`` within ``options``; never raises. ``began`` (a
    ``perf_counter`` reading) is when the time limit started, if before this call."""
    began = time.perf_counter() if began is None else began
    session: _Session | None = None
    try:
        session = _Session(arrays, options, began, report)
        return session.solve(hints)
    except _OutOfTime:
        assert session is not None
        return session.best_so_far("the time limit struck")
    except Exception as exc:  # the one place a solver failure is turned into an outcome
        log.exception("HiGHS failed")
        return SolverOutcome(None, None, None, "error", False, f"HiGHS failed: {exc}",
                             time.perf_counter() - began)


class _OutOfTime(Exception):
    """Less than ``_MIN_STAGE_S`` is left for the next stage."""


class _Session:
    """One HiGHS instance, solved in stages; keeps the best incumbent and bound so far."""

    def __init__(self, arrays: ModelArrays, options: SolveOptions, began: float,
                 report: Report | None = None) -> None:
        self.a, self.options, self.began, self.report = arrays, options, began, report
        self.best: tuple[FloatArray, float] | None = None
        self.bound = -math.inf
        self.costless: list[Rounding] = []
        self.stages: list[str] = []
        self.all_cols = np.arange(arrays.num_cols, dtype=np.int32)
        self.all_rows = np.arange(arrays.num_rows, dtype=np.int32)
        self.h = _new_highs()
        self.h.setOptionValue("output_flag", options.log_to_console)
        self.h.setOptionValue("mip_rel_gap", float(options.mip_rel_gap))
        self.h.setOptionValue("simplex_strategy", _SIMPLEX_STRATEGY)
        self.h.setOptionValue("threads", _THREADS)
        mat = arrays.matrix
        status = self.h.passModel(
            arrays.num_cols, arrays.num_rows, int(mat.nnz), int(highspy.MatrixFormat.kColwise),
            int(highspy.ObjSense.kMinimize), arrays.offset, arrays.cost, arrays.col_lower,
            arrays.col_upper, arrays.row_lower, arrays.row_upper, mat.indptr.astype(np.int32),
            mat.indices.astype(np.int32), mat.data, np.zeros(arrays.num_cols, dtype=np.int32))
        if status == highspy.HighsStatus.kError:
            raise ValueError("HiGHS refused the model")

    def left(self) -> float:
        return self.options.time_limit_s - (time.perf_counter() - self.began)

    def run(self, stage: str, seconds: float | None = None) -> _Run:
        if self.left() < _MIN_STAGE_S:
            raise _OutOfTime(stage)
        self.stages.append(stage)
        seconds = self.left() if seconds is None else min(seconds, self.left())
        # HiGHS measures its time limit on the instance's clock, which runs on across runs
        self.h.setOptionValue("time_limit", self.h.getRunTime() + seconds)
        self.h.run()
        status = self.h.getModelStatus()
        info = self.h.getInfo()
        x = None
        reported = float(info.objective_function_value)
        objective = reported
        if info.primal_solution_status == _FEASIBLE:
            x = np.asarray(self.h.getSolution().col_value, dtype=np.float64)
            objective = float(self.a.cost @ x) + self.a.offset
        # After an interrupt HiGHS's own figures can still be the presolved model's
        # (without the constant its fixed columns took away): its bound is then not ours.
        same = abs(reported - objective) <= _IMPROVEMENT * max(1.0, abs(objective))
        if not stage.startswith("mip"):
            bound = objective
        else:
            bound = float(info.mip_dual_bound) if same else -math.inf
        words = self.h.modelStatusToString(status)
        log.debug("HiGHS %s: %s, objective %.6g, bound %.6g, %.3f s in", stage, words,
                  objective, bound, time.perf_counter() - self.began)
        return _Run(status, words, x, objective, bound)

    def outcome(self, x: FloatArray | None, objective: float | None, gap: float | None,
                words: str, within: bool, message: str) -> SolverOutcome:
        return SolverOutcome(x, objective, gap, words, within, message,
                             time.perf_counter() - self.began, tuple(self.stages))

    def offer(self, run: _Run) -> tuple[FloatArray, float] | None:
        """Keep ``run``'s solution if it is an optimal fixed LP better than the best."""
        found = _incumbent(run)
        if found is not None and (self.best is None or found[1] < self.best[1]):
            self.keep(found)
        return found

    def keep(self, best: tuple[FloatArray, float]) -> None:
        self.best = best
        if self.report is not None:
            self.report(best[0], best[1], _finite(_gap(best[1], self.bound)))

    def best_so_far(self, why: str) -> SolverOutcome:
        if self.best is None:
            return self.outcome(None, None, None, "Time limit reached", False,
                                f"{why} before HiGHS found a plan")
        return self.outcome(self.best[0], self.best[1], _finite(_gap(self.best[1], self.bound)),
                            "Time limit reached", False, f"{why} before the gap was proved")

    def solve(self, hints: Hints | None) -> SolverOutcome:
        if not self.a.integer.any():
            run = self.run("lp")
            if _solved(run):
                return self.outcome(run.x, run.objective, 0.0, run.words, True, "")
            return self.outcome(None, None, None, run.words, False,
                                f"HiGHS returned no solution ({run.words})")
        start = hints.start if hints else None
        if hints is not None and hints.roundings and self.options.warm_start:
            self._relax_round_fix(hints)
            if self.best is not None:
                gap = _gap(self.best[1], self.bound)
                if gap <= self.options.mip_rel_gap:
                    return self.outcome(self.best[0], self.best[1], gap, "Optimal", True,
                                        "within the gap of the quick relaxation's bound")
                start = (self.all_cols.astype(np.int64), self.best[0])
                if self.costless:
                    done = self._branch_and_bound(start, self.costless)
                    if done.within_gap or self.best is None:
                        return done
                    start = (self.all_cols.astype(np.int64), self.best[0])
        return self._branch_and_bound(start)

    def _relax_round_fix(self, hints: Hints) -> None:
        a, groups = self.a, hints.roundings
        lower, upper = a.col_lower.copy(), a.col_upper.copy()
        try:
            self._free_rows([g.rows for g in groups])
            run = self.run("relaxation")
            if not _solved(run):
                return
            self.bound = run.bound
            for i, group in enumerate(groups):
                before = run.objective
                run = self._fix(group, run, lower, upper, groups[i + 1:], f"rounding {i + 1}")
                if not _solved(run):
                    return
                if run.objective <= before + _IMPROVEMENT * max(abs(before), 1.0):
                    self.costless.append(group)
            self.offer(run)
            for n in range(LOCAL_PASSES):
                if self.best is None or _gap(self.best[1], self.bound) <= self.options.mip_rel_gap:
                    return
                before = self.best[1]
                for i, group in enumerate(groups):
                    lower[group.cols] = a.col_lower[group.cols]
                    upper[group.cols] = a.col_upper[group.cols]
                    self.h.changeColsBounds(a.num_cols, self.all_cols, lower, upper)
                    self._free_rows([group.rows])
                    freed = self.run(f"pass {n + 1} free {i + 1}")
                    if not _solved(freed) or self.offer(self._fix(
                            group, freed, lower, upper, [], f"pass {n + 1} fix {i + 1}")) is None:
                        return
                if self.best[1] > before - _IMPROVEMENT * max(abs(before), 1.0):
                    return  # the pass found nothing better
        finally:
            self.h.changeColsBounds(a.num_cols, self.all_cols, a.col_lower, a.col_upper)
            self._free_rows([])

    def _fix(self, group: Rounding, run: _Run, lower: FloatArray, upper: FloatArray,
             relaxed: Sequence[Rounding], stage: str) -> _Run:
        """Round ``group`` from ``run``, fix it, keep ``relaxed`` groups free, solve."""
        assert run.x is not None
        vals = group.round(run.x)
        lower[group.cols], upper[group.cols] = vals, vals
        self.h.changeColsBounds(self.a.num_cols, self.all_cols, lower, upper)
        self._free_rows([g.rows for g in relaxed])
        return self.run(stage)

    def _free_rows(self, parts: Sequence[IntArray]) -> None:
        """Free these rows (bounds -inf, inf) and give every other row its own bounds."""
        a = self.a
        lower, upper = a.row_lower.copy(), a.row_upper.copy()
        for rows in parts:
            lower[rows], upper[rows] = -np.inf, np.inf
        # changeRowsBounds exists in highspy 1.16 but is missing from its stubs
        self.h.changeRowsBounds(a.num_rows, self.all_rows, lower,  # type: ignore[attr-defined]
                                upper)

    def _branch_and_bound(self, start: Start | None,
                          kept: Sequence[Rounding] = ()) -> SolverOutcome:
        """HiGHS's branch and bound from ``start``; the groups ``kept`` fixed as ``start``
        has them (then its bound is not the problem's, and only half the time is given)."""
        a, h = self.a, self.h
        integer = np.flatnonzero(a.integer).astype(np.int32)
        h.changeColsIntegrality(integer.size, integer,
                                np.full(integer.size, int(highspy.HighsVarType.kInteger),
                                        dtype=np.uint8))
        lower, upper = a.col_lower.copy(), a.col_upper.copy()
        for group in kept:
            assert start is not None
            lower[group.cols] = upper[group.cols] = np.round(start[1][group.cols])
        h.changeColsBounds(a.num_cols, self.all_cols, lower, upper)
        if start is not None:  # after the bounds: changing the model drops a given solution
            cols, vals = start
            h.setSolution(int(cols.size), cols.astype(np.int32), vals.astype(np.float64))
        target = (_target(self.bound, self.options.mip_rel_gap) if math.isfinite(self.bound)
                  else -math.inf)
        found = [math.inf]

        # The objective of an improving plan is computed from the plan itself: HiGHS's own
        # figures can be in the presolved model's terms (without the constant its fixed
        # columns took away), which made a MIP start look better than the bound.
        def note(event: highspy.HighsCallbackEvent) -> None:
            x = np.asarray(event.data_out.mip_solution, dtype=np.float64)
            if x.size == a.num_cols:
                found[0] = min(found[0], float(a.cost @ x) + a.offset)

        def stop_at_target(event: highspy.HighsCallbackEvent) -> None:
            if found[0] <= target:
                event.interrupt()

        h.cbMipImprovingSolution.subscribe(note)
        h.cbMipInterrupt.subscribe(stop_at_target)
        try:
            if kept:
                # its own bound is not the problem's: it must search well past the gap
                h.setOptionValue("mip_rel_gap", _RESTRICTED_GAP_SHARE * self.options.mip_rel_gap)
                run = self.run("mip, costless roundings kept", _RESTRICTED_SHARE * self.left())
            else:
                run = self.run("mip")
        finally:
            h.cbMipInterrupt.unsubscribe(stop_at_target)
            h.cbMipImprovingSolution.unsubscribe(note)
            h.changeColsBounds(a.num_cols, self.all_cols, a.col_lower, a.col_upper)
            h.setOptionValue("mip_rel_gap", float(self.options.mip_rel_gap))
        if math.isfinite(run.bound) and not kept:
            self.bound = max(self.bound, run.bound)
        if run.x is not None and (self.best is None or run.objective < self.best[1]):
            self.keep((run.x, run.objective))
        if self.best is None:
            return self.outcome(None, None, None, run.words, False,
                                f"HiGHS returned no solution ({run.words})")
        x, objective = self.best
        gap = _gap(objective, self.bound)
        proved = run.status == highspy.HighsModelStatus.kOptimal and not kept
        if proved or gap <= self.options.mip_rel_gap + _IMPROVEMENT:
            return self.outcome(x, objective, _finite(gap), run.words, True, "")
        return self.outcome(x, objective, _finite(gap), run.words, False,
                            f"HiGHS stopped ({run.words}) before proving the gap")


def _solved(run: _Run) -> bool:
    return run.status == highspy.HighsModelStatus.kOptimal and run.x is not None


def _incumbent(run: _Run) -> tuple[FloatArray, float] | None:
    return (run.x, run.objective) if _solved(run) and run.x is not None else None


def _target(bound: float, gap: float) -> float:
    """The objective at or below which a plan is within ``gap`` of ``bound`` (the gap
    relative to the plan's own objective, as ``_gap`` measures it)."""
    return bound + gap * max(abs(bound) * (1.0 - gap), 1.0)


def _gap(objective: float, bound: float) -> float:
    """HiGHS's relative gap: (primal - dual) / |primal|."""
    if not math.isfinite(bound):
        return math.inf
    return max(objective - bound, 0.0) / max(abs(objective), 1.0)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
