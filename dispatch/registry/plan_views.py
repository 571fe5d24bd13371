"""Plans as the web view shows them: the list, a plan in detail, its commands.

Read models built from the rows inside the registry's sessions, answered as plain
dictionaries (the API's JSON, docs/api.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.models import AuditRow, CommandRow, PlanRow
from dispatch.registry.plan_store import SUBJECT, plan_of


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def plan_overview(row: PlanRow) -> dict[str, Any]:
    """The figures of a plan the list shows."""
    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    return {"id": row.id, "estate": row.estate_id, "created_at": _iso(row.created_at),
            "planned_at": row.summary.get("planned_at"),
            "revision": row.summary.get("revision"),
            "horizon_start": _iso(row.horizon_start), "horizon_end": _iso(row.horizon_end),
            "step_minutes": row.step_minutes, "status": row.status, "trigger": row.trigger,
            "solver_status": row.solver_status, "mip_gap": row.mip_gap,
            "currency": row.summary.get("currency"), "cost": row.cost,
            "baseline_cost": row.baseline_cost, "cost_saved": diff(row.cost, row.baseline_cost),
            "peak_kw": row.peak_kw, "baseline_peak_kw": row.baseline_peak_kw,
            "peak_reduced_kw": diff(row.peak_kw, row.baseline_peak_kw),
            "approved_by": row.approved_by, "approved_at": _iso(row.approved_at)}


def plan_detail(row: PlanRow) -> dict[str, Any]:
    """Everything about a plan: the overview, the explanation, setpoints per asset."""
    start = row.horizon_start
    steps = len(next(iter(row.setpoints.values()), []))
    assets = row.summary.get("assets", {})
    return plan_overview(row) | {
        "explanation": [x for x in row.explanation.split("\n") if x],
        "times": [_iso(start + timedelta(minutes=row.step_minutes * k)) for k in range(steps)],
        "setpoints": {asset: {**assets.get(asset, {}), "unit": "kW", "values": values}
                      for asset, values in row.setpoints.items()},
        "summary": row.summary,
    }


def list_plans(registry: Registry, estate_id: str, limit: int) -> list[dict[str, Any]]:
    """The estate's newest plans, newest first."""
    with registry.reading() as session:
        rows = session.scalars(select(PlanRow).where(PlanRow.estate_id == estate_id)
                               .order_by(PlanRow.id.desc()).limit(limit))
        return [plan_overview(r) for r in rows]


def get_plan(registry: Registry, plan_id: int, estate_id: str | None = None) -> dict[str, Any]:
    """A plan in detail, with its audit rows. Raises ``PlanNotFound``."""
    with registry.reading() as session:
        row = plan_of(session, plan_id, estate_id)
        detail = plan_detail(row)
        audit = session.scalars(select(AuditRow).where(
            AuditRow.subject_type == SUBJECT, AuditRow.subject_id == str(plan_id))
            .order_by(AuditRow.id))
        detail["audit"] = [{"at": _iso(a.at), "actor": a.actor, "action": a.action,
                            "detail": a.detail} for a in audit]
        return detail


def plan_commands(registry: Registry, plan_id: int,
                  estate_id: str | None = None) -> list[dict[str, Any]]:
    """Every command sent for a plan, with its state and audit trail."""
    store = CommandStore(registry)
    with registry.reading() as session:
        plan_of(session, plan_id, estate_id)
        rows: Sequence[CommandRow] = list(session.scalars(
            select(CommandRow).where(CommandRow.plan_id == plan_id)
            .order_by(CommandRow.created_at, CommandRow.position, CommandRow.id)))
    return [{"id": c.id, "asset": c.asset_id, "device": f"{c.facility_id}/{c.device_id}",
             "action": c.action, "params": c.params, "status": c.status, "reason": c.reason,
             "detail": c.detail, "requested_by": c.requested_by,
             "created_at": _iso(c.created_at), "deadline_at": _iso(c.deadline_at),
             "sent_at": _iso(c.sent_at), "answered_at": _iso(c.answered_at),
             "audit": [{"at": _iso(a.at), "actor": a.actor, "action": a.action,
                        "detail": dict(a.detail)} for a in store.audit(c.id)]}
            for c in rows]
