"""The rolling plan under demand-response orders.

``apply_orders`` turns each order opted into and split (``dispatch.dr.planned``) into the
optimiser's ``DemandResponseWindow`` caps over the steps it covers, and takes each
tenant's share off its forecast load there: the tenant was told to shed it (its notice),
and the plan counts on it. The flexible assets (the tenants' and the shared ones) are then
planned under the cap like under any limit, and their setpoints go out as the plan's.

``explain_orders`` compares the optimised import with each cap and explains what is still
above it by tenant and step (``dispatch.dr.planned.shortfall``): a note on the plan, and the
steps stored on the order. The plan is produced either way, penalised where it breaks the
cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from dispatch.dr.metered import QUARTER_MS
from dispatch.dr.planned import PlannedOrder, StepShortfall, describe, shortfall
from dispatch.dr.records import order_of, order_payload
from dispatch.optimiser import DemandResponseWindow
from dispatch.optimiser import Plan as OptimisedPlan
from dispatch.optimiser.problem import Asset as OptimiserAsset
from dispatch.planning.assembly import SHARED, Assembly
from dispatch.planning.plan_series import asset_series
from dispatch.registry import dr_book
from dispatch.registry.db import Registry
from dispatch.registry.outbox import add_event


def _steps(assembly: Assembly, order: PlannedOrder) -> tuple[np.ndarray, np.ndarray]:
    """Horizon steps inside the order's window, and each one's index in the window."""
    step_ms = assembly.step_minutes * 60_000
    times = assembly.start_ms + np.arange(assembly.problem.steps, dtype=np.int64) * step_ms
    inside = np.flatnonzero((times >= order.order.start_ms) & (times < order.order.end_ms))
    return inside, (times[inside] - order.order.start_ms) // QUARTER_MS


def apply_orders(assembly: Assembly, orders: Sequence[PlannedOrder]) -> Assembly:
    """The assembly with each order's cap and the tenants' shares in its problem."""
    problem = assembly.problem
    base = np.array(problem.base_load_kw, dtype=np.float64)
    windows = list(problem.dr_windows)
    notes = list(assembly.notes)
    for planned in orders:
        steps, index = _steps(assembly, planned)
        if not steps.size:
            continue
        cap = planned.cap_kw(base.sum(axis=0)[steps] if planned.order.kind == "cut"
                             else np.zeros(steps.size))
        for row, facility in enumerate(problem.facilities):
            share = planned.shares.get(facility)
            if share is not None:
                base[row, steps] = np.maximum(base[row, steps] - share[index], 0.0)
        windows += [DemandResponseWindow(int(s), int(s) + 1, float(c),
                                         f"demand-response order {planned.order.id}")
                    for s, c in zip(steps, cap if planned.order.kind == "cut"
                                    else np.full(steps.size, planned.order.kw), strict=True)]
        most = max((float(s.max(initial=0)) for s in planned.shares.values()), default=0.0)
        notes.append(f"demand-response order {planned.order.id}: import capped in "
                     f"{steps.size} steps; the tenants' shares (up to {most:,.0f} kW each) "
                     "are taken off their forecast load")
    return replace(assembly, problem=replace(problem, base_load_kw=base,
                                             dr_windows=tuple(windows)), notes=tuple(notes))


def explain_orders(original: Assembly, assembly: Assembly, result: OptimisedPlan,
                   orders: Sequence[PlannedOrder]) -> tuple[Assembly,
                                                            dict[int, list[StepShortfall]]]:
    """The assembly with a note per order on its shortfall, and the shortfall's steps."""
    schedule = result.schedule
    tz = assembly.problem.start.tzinfo
    notes = list(assembly.notes)
    found: dict[int, list[StepShortfall]] = {}
    for planned in orders:
        steps, index = _steps(assembly, planned)
        if not steps.size:
            continue
        caps = [w.cap_kw for w in assembly.problem.dr_windows
                if w.name == f"demand-response order {planned.order.id}"]
        facilities = assembly.problem.facilities
        shed = {f: np.zeros(planned.times_ms.size) for f in facilities}
        for row, f in enumerate(facilities):
            # Its share taken off its load, and what its assets draw less than doing nothing.
            shed[f][index] = (original.problem.base_load_kw[row, steps]
                              - assembly.problem.base_load_kw[row, steps]
                              + result.baseline_schedule.facility_import[row, steps]
                              - schedule.facility_import[row, steps])
        sub = PlannedOrder(planned.order, planned.times_ms[index], planned.requested_kw[index],
                           {f: v[index] for f, v in planned.shares.items()},
                           {f: v[index] for f, v in planned.fair.items()})
        steps_short = shortfall(sub, schedule.grid_import[steps], np.asarray(caps),
                                {f: v[index] for f, v in shed.items()})
        found[planned.order.id] = steps_short
        notes.append(describe(planned.order, steps_short, dict(assembly.problem.labels), tz))
    return replace(assembly, notes=tuple(notes)), found


Setpoints = dict[int, dict[str, dict[str, list[float]]]]  # order -> tenant -> asset -> kW


def tenant_setpoints(assembly: Assembly, result: OptimisedPlan,
                     orders: Sequence[PlannedOrder]) -> Setpoints:
    """Per order, per tenant, its flexible assets' planned setpoints (kW) in the window."""
    problem = assembly.problem
    assets: tuple[OptimiserAsset, ...] = (*problem.batteries, *problem.deferrables,
                                          *problem.gensets, *problem.thermal, *problem.pumps,
                                          *problem.pv)
    owner = {a.name: a.facility for a in assets if a.facility != SHARED}
    series = asset_series(problem, result.schedule)
    out: Setpoints = {}
    for planned in orders:
        steps, _ = _steps(assembly, planned)
        tenants: dict[str, dict[str, list[float]]] = {}
        for name, facility in owner.items():
            if steps.size and name in series:
                tenants.setdefault(facility, {})[name] = [
                    round(float(v), 1) for v in series[name][0][steps]]
        out[planned.order.id] = tenants
    return out


def record_shortfall(registry: Registry, estate_id: str, plan_id: int,
                     found: dict[int, list[StepShortfall]],
                     setpoints: Setpoints | None = None,
                     ) -> None:
    """Store each order's latest plan, its shortfall and the tenants' assets' setpoints on
    the order; each tenant with flexible assets in the window gets a ``dr.notice`` with
    its assets' setpoints under this plan."""
    setpoints = setpoints or {}
    at = datetime.now(UTC)
    with registry.writing() as session:
        for order_id, steps in found.items():
            record = dr_book.order(session, estate_id, order_id)
            by_tenant = setpoints.get(order_id, {})
            dr_book.set_status(session, estate_id, order_id, record.status, {"plan": {
                "plan_id": plan_id, "setpoints": by_tenant,
                "short_steps": [{"time_ms": s.time_ms, "short_kw": round(s.short_kw, 1),
                                 "by_tenant": s.by_tenant} for s in steps]}})
            for facility, assets in by_tenant.items():
                add_event(session, estate_id, "dr.notice", "facility", facility,
                          {**order_payload(order_of(record)), "facility": facility,
                           "plan": plan_id, "asset_setpoints_kw": assets},
                          at, f"dr:{order_id}:plan:{plan_id}:{facility}")
