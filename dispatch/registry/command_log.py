"""The command and audit log as the web view shows it: the estate's newest commands, each
with its state, the device's answer and its audit trail, and the newest decisions on plans
(who approved or rejected which plan, and why).

Read models answered as plain dictionaries (the API's JSON, docs/api.md); every list is
bounded by its caller's ``limit``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select

from dispatch.registry.command_store import SUBJECT as COMMAND
from dispatch.registry.db import Registry
from dispatch.registry.models import AuditRow, CommandRow, PlanRow
from dispatch.registry.plan_store import SUBJECT as PLAN

# The decisions an operator (or the automatic mode) takes on a plan.
DECISIONS: Final = ("plan.approved", "plan.rejected")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _audit(row: AuditRow) -> dict[str, Any]:
    return {"at": _iso(row.at), "actor": row.actor, "action": row.action,
            "detail": dict(row.detail)}


def _command(row: CommandRow, audit: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": row.id, "plan": row.plan_id, "asset": row.asset_id,
            "device": f"{row.facility_id}/{row.device_id}", "action": row.action,
            "params": row.params, "status": row.status, "reason": row.reason,
            "detail": row.detail, "requested_by": row.requested_by,
            "created_at": _iso(row.created_at), "deadline_at": _iso(row.deadline_at),
            "sent_at": _iso(row.sent_at), "answered_at": _iso(row.answered_at),
            "audit": audit}


def recent_commands(registry: Registry, estate_id: str, limit: int,
                    status: str | None = None) -> list[dict[str, Any]]:
    """The estate's newest ``limit`` commands (of ``status`` only, if given), newest
    first, each with its audit rows oldest first."""
    with registry.reading() as session:
        query = select(CommandRow).where(CommandRow.estate_id == estate_id)
        if status is not None:
            query = query.where(CommandRow.status == status)
        rows = list(session.scalars(query.order_by(
            CommandRow.created_at.desc(), CommandRow.position.desc(), CommandRow.id)
            .limit(limit)))
        trails: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if rows:
            for a in session.scalars(select(AuditRow).where(
                    AuditRow.subject_type == COMMAND,
                    AuditRow.subject_id.in_([r.id for r in rows])).order_by(AuditRow.id)):
                trails[a.subject_id].append(_audit(a))
        return [_command(r, trails[r.id]) for r in rows]


def recent_decisions(registry: Registry, estate_id: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` approvals and rejections of the estate's plans, newest first."""
    with registry.reading() as session:
        rows = session.execute(
            select(AuditRow, PlanRow.status).join(
                PlanRow, PlanRow.id == AuditRow.subject_id.cast(PlanRow.id.type))
            .where(AuditRow.subject_type == PLAN, AuditRow.action.in_(DECISIONS),
                   PlanRow.estate_id == estate_id)
            .order_by(AuditRow.id.desc()).limit(limit))
        return [_audit(a) | {"plan": int(a.subject_id), "plan_status": status}
                for a, status in rows]
