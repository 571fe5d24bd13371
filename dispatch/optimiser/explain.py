"""Broken limits in an operator's words: which limit, when, by how much, and why.

A limit's per-step excess becomes one ``Violation`` per run of consecutive steps, e.g.
"Contracted capacity 2,500 kW exceeded by 120 kW from 18:00 to 19:15: the base load alone
reaches 2,620 kW" (the run's largest excess, "by up to" when it varies; the cause from
``causes``). Times are step boundaries in the problem's clock. They carry their date
("Tue 14 Jul 23:00") whenever a bare time could mislead: a run that crosses midnight (or
ends at it), a horizon over more than one calendar day, a run over the whole horizon
("throughout the horizon, from Tue 14 Jul 00:00 to Wed 15 Jul 00:00").
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
Cause = Callable[[int, int], str]
"""(first step, last step) -> why the limit was broken there, in words ("" if unknown)."""

_DATED = "%a %d %b %H:%M"
_TIME = "%H:%M"


def multi_day(problem: EstateProblem) -> bool:
    """Whether the horizon's steps start on more than one calendar day."""
    last = problem.time_of(max(problem.steps - 1, 0))
    return problem.start.date() != last.date()


def stamp(problem: EstateProblem, step: int, dated: bool) -> str:
    return problem.time_of(step).strftime(_DATED if dated else _TIME)


def clock(problem: EstateProblem, step: int) -> str:
    """A step boundary on its own (the horizon's end, say): dated unless it falls on the
    horizon's first day of a one-day horizon."""
    moment = problem.time_of(step)
    dated = multi_day(problem) or moment.date() != problem.start.date()
    return stamp(problem, step, dated)


def span_of(problem: EstateProblem, first: int, end: int) -> str:
    """``[first, end)`` as "20:00–21:00", dated when it crosses midnight or the horizon
    spans days ("Tue 14 Jul 22:00–Wed 15 Jul 02:00")."""
    a, b = problem.time_of(first), problem.time_of(end)
    if a.date() == b.date() and not multi_day(problem):
        return f"{a.strftime(_TIME)}–{b.strftime(_TIME)}"
    if a.date() == b.date():
        return f"{a.strftime(_DATED)}–{b.strftime(_TIME)}"
    return f"{a.strftime(_DATED)}–{b.strftime(_DATED)}"


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


def _with(message: str, cause: str) -> str:
    return f"{message}: {cause}" if cause else message


def per_step(problem: EstateProblem, limit: str, subject: str, excess: FloatArray, unit: str,
             describe: Describe, cause: Cause | None = None,
             offset: int = 0) -> list[Violation]:
    """Violations from a per-step excess whose first entry is step ``offset``."""
    found: list[Violation] = []
    for a, b in runs(excess):
        part = excess[a:b + 1]
        amount = float(part.max())
        words = ("by " if float(part.min()) >= amount - TOLERANCE else "by up to ")
        words += quantity(amount, unit)
        first, last = a + offset, b + offset
        why = cause(first, last) if cause else ""
        found.append(Violation(
            limit=limit, subject=subject, first_step=first, last_step=last,
            start=problem.time_of(first), end=problem.time_of(last + 1), amount=amount,
            unit=unit, message=_with(describe(words, first, last), why), cause=why))
    return found


def once(problem: EstateProblem, limit: str, subject: str, amount: float, unit: str,
         first: int, last: int, message: str, cause: str = "") -> list[Violation]:
    """A violation measured once (a shortfall of energy or of a final level)."""
    if amount <= TOLERANCE:
        return []
    return [Violation(limit=limit, subject=subject, first_step=first, last_step=last,
                      start=problem.time_of(first), end=problem.time_of(last + 1),
                      amount=amount, unit=unit, message=_with(message, cause), cause=cause)]


def when(problem: EstateProblem, first: int, last: int) -> str:
    """When ``[first, last]`` (steps) happened, dated where a bare time could mislead."""
    a, b = problem.time_of(first), problem.time_of(last + 1)
    dates = f"from {a.strftime(_DATED)} to {b.strftime(_DATED)}"
    if first == 0 and last == problem.steps - 1:
        return f"throughout the horizon, {dates}"
    if a.date() != b.date():
        return dates
    if multi_day(problem):
        return f"on {a.strftime('%a %d %b')} from {a.strftime(_TIME)} to {b.strftime(_TIME)}"
    return f"from {a.strftime(_TIME)} to {b.strftime(_TIME)}"
