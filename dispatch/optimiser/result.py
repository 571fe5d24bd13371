"""The optimiser's output: a schedule, what it costs, which limits it breaks, how it was got.

``Plan.status`` says how far to trust it:

- ``optimal``: HiGHS proved it within the MIP gap asked for, and it keeps every limit;
- ``time_limit``: the best plan found when the time limit struck (gap in ``mip_gap``);
- ``infeasible_with_slack``: no plan can keep every limit; this one breaks them as little
  as possible (``violations`` says which, when and by how much, in an operator's words);
- ``fallback``: HiGHS gave no plan at all (``reason`` says why); the plan is the
  do-nothing baseline (see ``dispatch.optimiser.baseline``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dispatch.optimiser.problem import BoolArray, FloatArray


class Status(StrEnum):
    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"
    INFEASIBLE_WITH_SLACK = "infeasible_with_slack"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True, eq=False)
class Schedule:
    """Per step (kW unless stated), one row per asset in the problem's order."""

    grid_import: FloatArray
    grid_export: FloatArray
    facility_import: FloatArray  # (facilities, steps): base load + assets' draw
    battery_charge: FloatArray
    battery_discharge: FloatArray
    battery_soc: FloatArray  # kWh at the end of each step
    deferrable_power: FloatArray
    deferrable_on: BoolArray
    genset_power: FloatArray
    genset_on: BoolArray
    chiller_cooling: FloatArray  # kW of cooling
    chiller_power: FloatArray
    tank_level: FloatArray  # kWh of cooling at the end of each step
    pump_power: FloatArray
    water_level: FloatArray  # m³ at the end of each step, at most the tank's top
    water_spill: FloatArray  # m³ run over the top in each step (tanks with an overflow)
    pv_power: FloatArray  # used; the forecast minus this is curtailed


@dataclass(frozen=True, slots=True)
class Costs:
    """Currency over the horizon; ``demand_charge`` is on the increase of the period's peak."""

    energy: float
    export_revenue: float
    demand_charge: float
    fuel: float
    starts: float
    degradation: float
    spill: float = 0.0

    @property
    def total(self) -> float:
        return (self.energy - self.export_revenue + self.demand_charge + self.fuel
                + self.starts + self.degradation + self.spill)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken limit over one run of consecutive steps, ``[start, end)`` in time."""

    limit: str
    subject: str
    first_step: int
    last_step: int
    start: datetime
    end: datetime
    amount: float  # the largest excess (or shortfall) over the run
    unit: str
    message: str  # what, when, by how much, and (after a colon) why
    cause: str = ""  # the why on its own: which window, bound or target made it so


@dataclass(frozen=True, slots=True, eq=False)
class Assessment:
    """A schedule judged against the problem: its costs, peak and broken limits."""

    costs: Costs
    peak_kw: float
    penalty: float  # the violation penalty times the slack the limits need
    violations: tuple[Violation, ...]

    @property
    def cost(self) -> float:
        return self.costs.total


@dataclass(frozen=True, slots=True)
class Timings:
    build_s: float
    solve_s: float
    """Wall-clock, from handing the model to HiGHS to its answer; never more than the
    bound ``bound_s`` (a solve that reaches it is stopped)."""
    extract_s: float
    bound_s: float = float("inf")
    """The solve's wall-clock bound: the time limit plus the documented margin."""
    start_s: float = 0.0
    """Starting a solving process (the first solve of a process, or after a kill)."""
    solve_cpu_s: float | None = None
    """CPU time the solving process spent on the solve (None if not measured: a solve in
    the calling thread, or one stopped at its bound); on a busy machine it stays near the
    quiet machine's wall clock while ``solve_s`` grows."""

    @property
    def total_s(self) -> float:
        return self.start_s + self.build_s + self.solve_s + self.extract_s


@dataclass(frozen=True, slots=True)
class ModelSize:
    columns: int
    integers: int
    rows: int
    nonzeros: int


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    status: Status
    reason: str
    schedule: Schedule
    assessment: Assessment
    baseline: Assessment
    baseline_schedule: Schedule
    objective: float  # costs + penalties, as the solver saw it (assessed for a fallback)
    mip_gap: float | None
    solver_status: str
    timings: Timings
    size: ModelSize
    solver_stages: tuple[str, ...] = ()  # the HiGHS runs made, in order

    @property
    def cost(self) -> float:
        return self.assessment.cost

    @property
    def peak_kw(self) -> float:
        return self.assessment.peak_kw

    @property
    def violations(self) -> tuple[Violation, ...]:
        return self.assessment.violations

    @property
    def cost_saved(self) -> float:
        """Against the do-nothing baseline."""
        return self.baseline.cost - self.assessment.cost

    @property
    def peak_reduced_kw(self) -> float:
        return self.baseline.peak_kw - self.assessment.peak_kw
