"""Broken limits in an operator's words: which limit, when, and by how much.

A limit's per-step excess becomes one ``Violation`` per run of consecutive steps, e.g.
"Contracted capacity 2,500 kW exceeded by 120 kW from 18:00 to 19:15" (the run's largest
excess; "by up to" when it varies). Times are step boundaries in the problem's clock,
with the weekday when the horizon spans more than one day.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dispatch.optimiser.problem import EstateProblem, FloatArray
from dispatch.optimiser.result import Violation

TOLERANCE = 1e-3
"""Excess (kW, kWh or m³) below which nothing is reported. Why: HiGHS keeps constraints to
about 1e-7 relative, so smaller values are solver noise, and a watt is below any meter."""

Describe = Callable[[str, int, int], str]
"""(amount in words, first step, last step) -> the message."""


def clock(problem: EstateProblem, step: int) -> str:
    """The wall-clock time of a step boundary, with the weekday on multi-day horizons."""
    moment = problem.time_of(step)
    last = problem.time_of(max(problem.steps - 1, 0))
    if problem.start.date() != last.date():
        return moment.strftime("%a %H:%M")
    return moment.strftime("%H:%M")


def quantity(value: float, unit: str) -> str:
    """1,250 kW; 35 kWh; 2.5 m³; 0.25 kW: precision that suits the size."""
    size = abs(value)
    if size >= 10 or size == 0:
        return f"{value:,.0f} {unit}"
    if size >= 1:
        return f"{value:,.1f} {unit}"
    return f"{value:,.3g} {unit}"


def span(values: FloatArray, unit: str) -> str:
    """One value, or the range of a limit that varies over a run."""
    low, high = float(np.min(values)), float(np.max(values))
    if high - low <= TOLERANCE:
        return quantity(high, unit)
    return f"{quantity(low, unit).split()[0]}–{quantity(high, unit)}"


def runs(excess: FloatArray) -> list[tuple[int, int]]:
    """First and last step of each run of consecutive steps with an excess to report."""
    flags = np.concatenate([[0], (excess > TOLERANCE).astype(np.int8), [0]])
    change = np.diff(flags)
    return list(zip(np.flatnonzero(change == 1).tolist(),
                    (np.flatnonzero(change == -1) - 1).tolist(), strict=True))


def per_step(problem: EstateProblem, limit: str, subject: str, excess: FloatArray, unit: str,
             describe: Describe, offset: int = 0) -> list[Violation]:
    """Violations from a per-step excess whose first entry is step ``offset``."""
    found: list[Violation] = []
    for a, b in runs(excess):
        part = excess[a:b + 1]
        amount = float(part.max())
        words = ("by " if float(part.min()) >= amount - TOLERANCE else "by up to ")
        words += quantity(amount, unit)
        first, last = a + offset, b + offset
        found.append(Violation(
            limit=limit, subject=subject, first_step=first, last_step=last,
            start=problem.time_of(first), end=problem.time_of(last + 1), amount=amount,
            unit=unit, message=describe(words, first, last)))
    return found


def once(problem: EstateProblem, limit: str, subject: str, amount: float, unit: str,
         first: int, last: int, message: str) -> list[Violation]:
    """A violation measured once (a shortfall of energy or of a final level)."""
    if amount <= TOLERANCE:
        return []
    return [Violation(limit=limit, subject=subject, first_step=first, last_step=last,
                      start=problem.time_of(first), end=problem.time_of(last + 1),
                      amount=amount, unit=unit, message=message)]


def when(problem: EstateProblem, first: int, last: int) -> str:
    return f"from {clock(problem, first)} to {clock(problem, last + 1)}"
