"""Write the golden cases: ``.venv/bin/python -m tests.dispatch.optimiser.make_golden``.

Each file holds a problem and the optimal objective found by CBC on the independent PuLP
formulation (checked here against the optimiser before it is written), with the plan's
status and the broken limits in words. Regenerate only when the model is meant to change.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from dispatch.optimiser import EstateProblem, SolveOptions, optimise
from tests.dispatch.optimiser import twin_pulp
from tests.dispatch.optimiser.cases import random_problem
from tests.dispatch.optimiser.serial import to_json

GOLDEN = Path(__file__).parent / "golden"


def cases() -> dict[str, tuple[str, EstateProblem]]:
    return {
        "lp_storage": ("LP: batteries, chilled-water and water tanks, PV, demand charge",
                       random_problem(11, binaries=False)),
        "mip_units": ("MIP: deferrable loads with minimum runs and a single run, gensets with "
                      "minimum up/down and start costs",
                      random_problem(12, counts={"battery": 1, "deferrable": 3, "genset": 2})),
        "infeasible_limits": ("Limits no plan can keep: capacity, tenant limit, demand response",
                              random_problem(13, tight=True)),
        "quarter_hours": ("96 quarter-hour steps, every asset kind",
                          random_problem(14, steps=96, step_hours=0.25,
                                         counts={"battery": 2, "deferrable": 2, "genset": 1,
                                                 "thermal": 1, "pump": 1, "pv": 1})),
    }


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, (description, problem) in cases().items():
        status, objective = twin_pulp.solve(problem, time_limit_s=300)
        plan = optimise(problem, SolveOptions(mip_rel_gap=0.0, time_limit_s=300))
        if status != "Optimal" or not math.isclose(objective, plan.objective, rel_tol=1e-6):
            raise SystemExit(f"{name}: CBC {status} {objective} vs {plan.objective}")
        record = {"description": description, "objective": objective,
                  "objective_source": "CBC (PuLP formulation), gap 0",
                  "status": str(plan.status),
                  "violations": [v.message for v in plan.violations],
                  "problem": to_json(problem)}
        (GOLDEN / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {objective:.6f} {plan.status} ({len(plan.violations)} violations)")


if __name__ == "__main__":
    main()
