"""What a plan run stores: the plan series (the newest plan per step, for charts) and the
registry draft (status, figures against the baseline, the explanation, the setpoints of
every asset per step). docs/planning.md tells the whole story."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from dispatch.jobs.rollup_levels import POLICY_LONG
from dispatch.optimiser import EstateProblem, Schedule
from dispatch.optimiser import Plan as OptimisedPlan
from dispatch.planning.assembly import Assembly
from dispatch.registry.records import PlanDraft
from estate.lineprotocol import line
from estate.schema import PLANS

PLAN_POLICY: Final = POLICY_LONG
"""Plans are kept as long as the quarter-hour rollups and forecasts they are drawn with."""
ESTATE_SERIES: Final = "_estate"
"""The ``asset`` tag of the estate-wide series (grid import, the baseline's import)."""
_NS_PER_MS: Final = 1_000_000
_MINUTE_MS: Final = 60_000


def asset_series(problem: EstateProblem, schedule: Schedule
                 ) -> dict[str, tuple[np.ndarray, str, np.ndarray | None]]:
    """Per asset: its setpoint per step (kW drawn; a battery's charge minus discharge, a
    genset's output), and the name and values of its level (SoC, tank) if it has one."""
    s = schedule
    out: dict[str, tuple[np.ndarray, str, np.ndarray | None]] = {}
    for i, b in enumerate(problem.batteries):
        out[b.name] = (s.battery_charge[i] - s.battery_discharge[i], "soc_kwh",
                       s.battery_soc[i])
    for i, d in enumerate(problem.deferrables):
        out[d.name] = (s.deferrable_power[i], "", None)
    for i, g in enumerate(problem.gensets):
        out[g.name] = (s.genset_power[i], "", None)
    for i, c in enumerate(problem.thermal):
        out[c.name] = (s.chiller_power[i], "tank_kwh", s.tank_level[i])
    for i, p in enumerate(problem.pumps):
        out[p.name] = (s.pump_power[i], "level_m3", s.water_level[i])
    for i, v in enumerate(problem.pv):
        out[v.name] = (s.pv_power[i], "", None)
    return out


def _round(values: np.ndarray, decimals: int = 3) -> list[float]:
    return [float(v) + 0.0 for v in np.round(values, decimals)]  # + 0.0: no "-0.0"


def plan_lines(assembly: Assembly, result: OptimisedPlan, plan_id: int) -> list[str]:
    """The plan's points: per asset its setpoint and level, and the estate's import under
    the plan and the baseline. A point's identity is (estate, asset, quantity, step), so a
    newer plan overwrites the steps it covers; ``plan_id`` says which plan a point is from."""
    problem = assembly.problem
    step_ns = assembly.step_minutes * _MINUTE_MS * _NS_PER_MS
    start_ns = assembly.start_ms * _NS_PER_MS
    lines: list[str] = []

    def add(asset: str, quantity: str, values: np.ndarray) -> None:
        tags = {"estate": assembly.estate_id, "asset": asset, "quantity": quantity}
        lines.extend(line(PLANS, tags, {"value": v, "plan_id": plan_id}, start_ns + k * step_ns)
                     for k, v in enumerate(_round(values)))

    for name, (setpoint, level_name, level) in asset_series(problem, result.schedule).items():
        add(name, "setpoint", setpoint)
        if level is not None:
            add(name, level_name, level)
    add(ESTATE_SERIES, "import", result.schedule.grid_import)
    add(ESTATE_SERIES, "baseline_import", result.baseline_schedule.grid_import)
    return lines


def explanation(assembly: Assembly, result: OptimisedPlan) -> list[str]:
    """The plan's caveats in an operator's words: status, broken limits, assumptions."""
    lines: list[str] = []
    if result.status.value != "optimal":
        lines.append(f"Status {result.status.value}: {result.reason}")
    lines += [v.message for v in result.violations]
    lines += list(assembly.notes)
    return lines


def _summary(assembly: Assembly, result: OptimisedPlan, at: datetime) -> dict[str, Any]:
    problem = assembly.problem
    levels = {name: {"quantity": level_name, "values": _round(level)}
              for name, (_, level_name, level) in asset_series(problem,
                                                               result.schedule).items()
              if level is not None}
    costs = result.assessment.costs
    base_costs = result.baseline.costs
    return {
        "planned_at": at.isoformat(), "currency": assembly.currency,
        "status_reason": result.reason, "solver_stages": list(result.solver_stages),
        "timings_s": {"build": result.timings.build_s, "solve": result.timings.solve_s,
                      "extract": result.timings.extract_s, "total": result.timings.total_s},
        "assets": {a.id: {"kind": a.kind, "name": a.name, "control_mode": a.control_mode,
                          "commandable": a.commandable} for a in assembly.assets},
        "levels": levels,
        "grid_import_kw": _round(result.schedule.grid_import),
        "baseline_import_kw": _round(result.baseline_schedule.grid_import),
        "costs": {"energy": costs.energy, "export_revenue": costs.export_revenue,
                  "demand_charge": costs.demand_charge, "fuel": costs.fuel,
                  "starts": costs.starts, "degradation": costs.degradation,
                  "spill": costs.spill},
        "baseline_costs": {"energy": base_costs.energy,
                           "export_revenue": base_costs.export_revenue,
                           "demand_charge": base_costs.demand_charge, "fuel": base_costs.fuel,
                           "starts": base_costs.starts,
                           "degradation": base_costs.degradation, "spill": base_costs.spill},
        "penalty": result.assessment.penalty, "baseline_penalty": result.baseline.penalty,
        "violations": [v.message for v in result.violations],
        "baseline_violations": [v.message for v in result.baseline.violations],
        "notes": list(assembly.notes),
        "prior_peak_kw": problem.prior_peak_kw, "capacity_kw": problem.capacity_kw,
        "demand_charge_per_kw": problem.demand_charge,
    }


def plan_draft(assembly: Assembly, result: OptimisedPlan, at: datetime) -> PlanDraft:
    """The registry's draft of a run: approved at once (``auto``) when every asset it
    commands is in ``auto`` control mode."""
    problem = assembly.problem
    start = problem.start.astimezone(UTC)
    commanded = [a for a in assembly.assets if a.commandable]
    auto = bool(commanded) and all(a.control_mode == "auto" for a in commanded)
    series = asset_series(problem, result.schedule)
    return PlanDraft(
        estate_id=assembly.estate_id, horizon_start=start,
        horizon_end=start + timedelta(minutes=assembly.step_minutes * problem.steps),
        step_minutes=assembly.step_minutes, auto=auto, solver_status=result.status.value,
        mip_gap=result.mip_gap, objective=result.objective, cost=result.cost,
        baseline_cost=result.baseline.cost, peak_kw=result.peak_kw,
        baseline_peak_kw=result.baseline.peak_kw,
        explanation="\n".join(explanation(assembly, result)),
        setpoints={name: _round(values) for name, (values, _, _) in series.items()},
        summary=_summary(assembly, result, at))
