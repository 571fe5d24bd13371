"""The estate's dispatch optimiser: a MILP built with numpy/scipy.sparse, solved by HiGHS.

    problem = EstateProblem(...)          # inputs: frozen dataclasses with numpy arrays
    plan = optimise(problem, SolveOptions(time_limit_s=30, mip_rel_gap=0.01))
    plan.status, plan.violations, plan.cost_saved, plan.timings

Modules: ``problem`` (inputs), ``tariffs`` (tariff versions -> per-step prices),
``consistency`` (validation), ``model`` (the array container), ``build``, ``storage`` and
``switched`` (the ``define_*`` groups), ``solve`` (highspy), ``extract``, ``schedule``,
``assess`` and ``explain`` (costs and broken limits in words), ``baseline`` (the do-nothing
plan and fallback), ``optimise`` (build -> solve -> extract). docs/optimiser.md has the
model's equations.
"""

from dispatch.optimiser.consistency import ProblemError, check_problem, validate
from dispatch.optimiser.field_checks import Issue
from dispatch.optimiser.optimise import build_model, optimise
from dispatch.optimiser.problem import (
    PV,
    Battery,
    DeferrableLoad,
    DemandResponseWindow,
    EstateProblem,
    Genset,
    PumpTank,
    ThermalStorage,
)
from dispatch.optimiser.result import (
    Assessment,
    Costs,
    ModelSize,
    Plan,
    Schedule,
    Status,
    Timings,
    Violation,
)
from dispatch.optimiser.solve_types import SolveOptions
from dispatch.optimiser.tariffs import (
    TariffError,
    TariffPeriod,
    TariffVersion,
    period_names,
    step_prices,
)

__all__ = [
    "PV",
    "Assessment",
    "Battery",
    "Costs",
    "DeferrableLoad",
    "DemandResponseWindow",
    "EstateProblem",
    "Genset",
    "Issue",
    "ModelSize",
    "Plan",
    "ProblemError",
    "PumpTank",
    "Schedule",
    "SolveOptions",
    "Status",
    "TariffError",
    "TariffPeriod",
    "TariffVersion",
    "ThermalStorage",
    "Timings",
    "Violation",
    "build_model",
    "check_problem",
    "optimise",
    "period_names",
    "step_prices",
    "validate",
]
