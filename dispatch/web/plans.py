"""The plans API: list and read plans, approve or reject one, follow its commands.

``plans_router`` is handed the registry's sessions and the command sender by the
composition root (``dispatch.__main__.build_web``); without a sender (no broker at start)
plans can be read and rejected, and approval answers 503.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dispatch.control.approval import (
    PlanConflict,
    PlanNotFound,
    approve,
    get_plan,
    list_plans,
    plan_commands,
    reject,
)
from dispatch.control.sender import CommandSender
from dispatch.settings import PlanningSettings

# An operator's name as the audit log keeps it ("operator:<name>"): the audit column holds
# 100 characters.
OPERATOR = r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$"
MAX_LIST = 200

PlanId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator: str = Field(pattern=OPERATOR, description="who decides (kept in the audit log)")
    reason: str = Field("", max_length=500, description="why (kept with a rejection)")
    revision: int | None = Field(None, ge=1, description=(
        "the plan's revision the operator reviewed: approval is refused if the plan was "
        "planned again since"))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def plans_router(sessions: sessionmaker[Session], estate_id: str, settings: PlanningSettings,
                 sender: CommandSender | None) -> APIRouter:
    """The ``/api/plans`` endpoints of one estate."""
    router = APIRouter(prefix="/api/plans", tags=["plans"])

    def _registry_down(exc: SQLAlchemyError) -> HTTPException:
        return HTTPException(503, f"the registry is unavailable: {exc.__class__.__name__}")

    @router.get("")
    def plans(limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20) -> dict[str, Any]:
        """The newest plans, with their cost and peak against the do-nothing baseline."""
        try:
            return {"estate": estate_id, "plans": list_plans(sessions, estate_id, limit)}
        except SQLAlchemyError as exc:
            raise _registry_down(exc) from exc

    @router.get("/{plan_id}")
    def plan(plan_id: PlanId) -> dict[str, Any]:
        """A plan: figures, explanation, setpoints per asset per step, audit rows."""
        try:
            return get_plan(sessions, plan_id, estate_id)
        except PlanNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except SQLAlchemyError as exc:
            raise _registry_down(exc) from exc

    @router.post("/{plan_id}/approve")
    def approve_plan(plan_id: PlanId, decision: Decision) -> dict[str, Any]:
        """Approve the newest draft plan and send its current step's setpoints."""
        if sender is None:
            raise HTTPException(503, "commands are unavailable: no connection to the broker")
        try:
            done = approve(sessions, sender, plan_id, decision.operator, now_ms=_now_ms(),
                           deadline_s=settings.command_deadline_s, estate_id=estate_id,
                           revision=decision.revision)
        except PlanNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except PlanConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        except SQLAlchemyError as exc:
            raise _registry_down(exc) from exc
        return {"plan": done.plan_id, "status": "approved",
                "already_approved": done.already_approved, "step": done.step,
                "commands": list(done.commands)}

    @router.post("/{plan_id}/reject")
    def reject_plan(plan_id: PlanId, decision: Decision) -> dict[str, Any]:
        """Reject a draft plan; nothing is sent."""
        try:
            reject(sessions, plan_id, decision.operator, now_ms=_now_ms(),
                   reason=decision.reason, estate_id=estate_id)
        except PlanNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except PlanConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        except SQLAlchemyError as exc:
            raise _registry_down(exc) from exc
        return {"plan": plan_id, "status": "rejected"}

    @router.get("/{plan_id}/commands")
    def commands(plan_id: PlanId) -> dict[str, Any]:
        """The plan's commands, each with its state (pending ... done, timed_out)."""
        try:
            return {"plan": plan_id, "commands": plan_commands(sessions, plan_id, estate_id)}
        except PlanNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except SQLAlchemyError as exc:
            raise _registry_down(exc) from exc

    return router
