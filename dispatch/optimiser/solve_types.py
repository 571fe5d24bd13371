"""What a solve is given and gives back: the options (time limit, gap), the hints a model
offers a MIP (its groups of binaries and how to round them, a start), the outcome, and
the callback told of each better plan. ``dispatch.optimiser.solve`` does the solving."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dispatch.optimiser.problem import FloatArray, IntArray

DEFAULT_TIME_LIMIT_S = 60.0
"""Why 60 s: the budget set for a 1,000-asset estate; a plan is due every 15
minutes, so a minute leaves the rolling horizon plenty of slack."""
DEFAULT_MIP_REL_GAP = 0.01
"""Why 1%: prices and forecasts are uncertain by far more than 1%, and closing the last
percent of a unit-commitment gap can cost orders of magnitude more time."""
Start = tuple[IntArray, FloatArray]


@dataclass(frozen=True, slots=True)
class SolveOptions:
    """How long HiGHS may take and how close to optimal a MIP must be."""

    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    mip_rel_gap: float = DEFAULT_MIP_REL_GAP
    warm_start: bool = True
    """Relax, round and fix for a first incumbent (MIPs only); False: branch and bound
    straight away from ``Hints.start``."""
    log_to_console: bool = False
    isolated: bool = True
    """Solve in a process of its own, killed at ``isolation.deadline_s(time_limit_s)``
    (the wall-clock bound); False: in the calling thread, bounded by HiGHS's own checks
    only (tests that reach into the solver, tools)."""


@dataclass(frozen=True, slots=True)
class Rounding:
    """A group of binaries (``cols``), the switching rows that bind them (``rows``, freed
    while the group is relaxed), and how to round them from a solution."""

    cols: IntArray
    rows: IntArray
    round: Callable[[FloatArray], FloatArray]


@dataclass(frozen=True, slots=True)
class Hints:
    """What the model knows that helps a MIP: see ``dispatch.optimiser.solve``'s docstring."""

    roundings: Sequence[Rounding]
    start: Start | None = None


@dataclass(frozen=True, slots=True)
class SolverOutcome:
    """What HiGHS returned. ``x`` None: no usable solution (``message`` says why)."""

    x: FloatArray | None
    objective: float | None
    mip_gap: float | None
    model_status: str
    within_gap: bool
    message: str
    seconds: float
    stages: tuple[str, ...] = ()
    cpu_seconds: float | None = None
    """CPU time of the solving process over the solve (None: not measured); beside
    ``seconds`` it says how much of the wall clock the machine's other work took."""


Report = Callable[[FloatArray, float, "float | None"], None]
"""Called with each better plan found (solution, objective, gap if known)."""
