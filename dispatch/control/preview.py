"""What an approval would send: the commands of a plan's current step, named before the
operator confirms (the plans page's confirmation lists them).

The same functions as the approval itself (``dispatch.control.approval``) choose the step
and turn setpoints into commands, so the preview and the approval cannot disagree, except
across a step's boundary: the preview names its step and the step's start, and the
approval answers the step it sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatch.control.approval import PlannedCommand, current_step, step_commands
from dispatch.registry.plan_store import PlanStore
from estate.commands import ParamValue
from estate.errors import PlanNotFound


@dataclass(frozen=True, slots=True)
class PreviewCommand:
    asset: str
    device: str
    action: str
    params: dict[str, ParamValue]
    setpoint_kw: float


@dataclass(frozen=True, slots=True)
class ApprovalPreview:
    plan_id: int
    step: int
    step_start: datetime
    step_end: datetime
    commands: tuple[PreviewCommand, ...]
    not_commanded: tuple[str, ...]
    """Assets of the plan that get no command: no device, retired, or a kind the
    contract does not command (PV)."""


def _preview(c: PlannedCommand, setpoint_kw: float) -> PreviewCommand:
    return PreviewCommand(c.asset_id, f"{c.device.facility}/{c.device.device}", c.action,
                          dict(c.params), setpoint_kw)


def approval_preview(store: PlanStore, plan_id: int, estate_id: str,
                     now_ms: int) -> ApprovalPreview:
    """The commands approving ``plan_id`` at ``now_ms`` would send. Raises
    ``PlanNotFound`` (also for another estate's plan)."""
    plan = store.setpoints(plan_id)
    if plan.estate_id != estate_id:
        raise PlanNotFound(f"no plan {plan_id} in estate {estate_id!r}")
    assets = store.commandable_assets(estate_id, plan.setpoints)
    step = current_step(plan, now_ms)
    planned = step_commands(plan, assets, step)
    start = plan.horizon_start + timedelta(minutes=plan.step_minutes * step)
    commanded = {c.asset_id for c in planned}
    return ApprovalPreview(
        plan_id, step, start, start + timedelta(minutes=plan.step_minutes),
        tuple(_preview(c, float(plan.setpoints[c.asset_id][step])) for c in planned),
        tuple(sorted(a for a in plan.setpoints if a not in commanded)))
