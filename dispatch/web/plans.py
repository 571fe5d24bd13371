"""The plans API: list and read plans, approve or reject one, follow its commands.

Without a registry the endpoints answer 503; without a command sender (no broker at
start) plans can be read and rejected, and approval answers 503 (``dispatch.web.app``
answers our errors).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from dispatch.control.approval import approve, reject
from dispatch.control.preview import approval_preview
from dispatch.registry.account_desk import Identity
from dispatch.registry.plan_views import get_plan, list_plans, plan_commands
from dispatch.web.auth import Operator, Viewer, whole_estate
from dispatch.web.deps import Planning, Plans, RegistryDep, Sender, Spec

MAX_LIST: Final = 200

PlanId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500, description="why (kept with a rejection)")
    revision: int | None = Field(None, ge=1, description=(
        "the plan's revision the operator reviewed: approval is refused if the plan was "
        "planned again since"))


PLANS: Final = "plans and their commands"


def _who(identity: Identity) -> str:
    """The decider as the audit log keeps it: the session's user, never the request's
    word."""
    return identity.user.username


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


router = APIRouter(prefix="/api/plans", tags=["plans"])


@router.get("")
def plans(spec: Spec, registry: RegistryDep, identity: Viewer,
          limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20) -> dict[str, Any]:
    """The newest plans, with their cost and peak against the do-nothing baseline."""
    whole_estate(identity, PLANS)
    return {"estate": spec.id, "plans": list_plans(registry, spec.id, limit)}


@router.get("/{plan_id}")
def plan(plan_id: PlanId, spec: Spec, registry: RegistryDep, identity: Viewer
         ) -> dict[str, Any]:
    """A plan: figures, explanation, setpoints per asset per step, audit rows."""
    whole_estate(identity, PLANS)
    return get_plan(registry, plan_id, spec.id)


@router.get("/{plan_id}/preview")
def preview(plan_id: PlanId, spec: Spec, plan_store: Plans, identity: Viewer
            ) -> dict[str, Any]:
    """What approving the plan now would send: its current step (and when that step
    starts and ends), each command with its asset, device and setpoint, and the plan's
    assets that get no command. The approval answers the step it really sent."""
    whole_estate(identity, PLANS)
    seen = approval_preview(plan_store, plan_id, spec.id, _now_ms())
    return {"plan": seen.plan_id, "step": seen.step,
            "step_start": seen.step_start.isoformat(), "step_end": seen.step_end.isoformat(),
            "commands": [{"asset": c.asset, "device": c.device, "action": c.action,
                          "params": c.params, "setpoint_kw": c.setpoint_kw}
                         for c in seen.commands],
            "not_commanded": list(seen.not_commanded)}


@router.post("/{plan_id}/approve")
def approve_plan(plan_id: PlanId, decision: Decision, spec: Spec, plan_store: Plans,
                 sender: Sender, settings: Planning, identity: Operator) -> dict[str, Any]:
    """Approve the newest draft plan and send its current step's setpoints. The audit log
    names the logged-in user."""
    whole_estate(identity, PLANS)
    done = approve(plan_store, sender, plan_id, _who(identity), now_ms=_now_ms(),
                   deadline_s=settings.command_deadline_s, estate_id=spec.id,
                   revision=decision.revision)
    return {"plan": done.plan_id, "status": "approved",
            "already_approved": done.already_approved, "step": done.step,
            "commands": list(done.commands)}


@router.post("/{plan_id}/reject")
def reject_plan(plan_id: PlanId, decision: Decision, spec: Spec, plan_store: Plans,
                identity: Operator) -> dict[str, Any]:
    """Reject a draft plan; nothing is sent. The audit log names the logged-in user."""
    whole_estate(identity, PLANS)
    reject(plan_store, plan_id, _who(identity), now_ms=_now_ms(), reason=decision.reason,
           estate_id=spec.id)
    return {"plan": plan_id, "status": "rejected"}


@router.get("/{plan_id}/commands")
def commands(plan_id: PlanId, spec: Spec, registry: RegistryDep, identity: Viewer
             ) -> dict[str, Any]:
    """The plan's commands, each with its state (pending ... done, timed_out)."""
    whole_estate(identity, PLANS)
    return {"plan": plan_id, "commands": plan_commands(registry, plan_id, spec.id)}
