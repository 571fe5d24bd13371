"""Approval and commands: from a plan's setpoints to the commands that carry them out.

An operator approves a draft plan (or the plan needs no approval: every asset it commands
is in ``auto`` control mode); the current step's setpoints then go to the devices as
commands (contract v1 actions), one per asset and action, with ids derived from the plan,
so sending a step again names the same commands. The commands are written in the
transaction of the decision (``decide_step``), and the sender delivers them from there.
The plan's state lives in the registry (``dispatch.registry.plan_store``); docs/planning.md
tells the whole story.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from dispatch.control.sender import CommandSender
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.records import (
    CommandableAsset,
    DecideCommands,
    NewCommand,
    PlanSetpoints,
    StepCommands,
)
from estate.commands import CommandRequest, MalformedCommand, ParamValue, decode_request
from estate.fault_points import fault_point
from estate.topics import DeviceId

log = logging.getLogger(__name__)

COMMAND_NAMESPACE: Final = uuid.UUID("6f1d4f5e-7b52-4d0c-9a57-3f0d1c2b8e61")
"""Namespace of plan command ids: uuid5 of (plan, asset, step, action, params), so sending
a step's setpoints again (a second approval, a retry) names the same commands."""
# Setpoints go to devices in tenths of a kW: meters and inverters resolve no finer, and
# solver noise (1e-9 kW) must not make two plans' commands differ.
KW_DECIMALS: Final = 1
_MINUTE_MS: Final = 60_000


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class PlannedCommand:
    asset_id: str
    device: DeviceId
    action: str
    params: dict[str, ParamValue]
    command_id: str


def setpoint_actions(kind: str, value: float) -> list[tuple[str, dict[str, ParamValue]]]:
    """The commands (contract v1 actions) that put an asset of ``kind`` at ``value`` kW."""
    kw = round(float(value), KW_DECIMALS) + 0.0
    running = kw > 0
    if kind == "battery":
        return [("set_battery_kw", {"kw": kw})]
    if kind == "genset":
        # A stopped genset refuses a power setpoint (invalid-state): start it first.
        return [("start", {}), ("set_power_kw", {"kw": kw})] if running else [("stop", {})]
    if kind == "pump_tank":
        # The pumps of contract v1 devices take start and stop (and a level setpoint), not
        # a power setpoint: a planned draw means running.
        return [("start", {})] if running else [("stop", {})]
    if kind in ("deferrable_load", "thermal_storage"):
        return [("set_power_kw", {"kw": kw})]
    return []  # PV runs uncurtailed unless told otherwise; not commanded in v1


def command_id(plan_id: int, asset_id: str, step: int, action: str,
               params: dict[str, ParamValue]) -> str:
    key = f"{plan_id}/{asset_id}/{step}/{action}/{json.dumps(params, sort_keys=True)}"
    return str(uuid.uuid5(COMMAND_NAMESPACE, key))


def current_step(plan: PlanSetpoints, now_ms: int) -> int:
    """The step ``now_ms`` falls in (0 before the horizon starts)."""
    start_ms = int(plan.horizon_start.timestamp() * 1000)
    steps = len(next(iter(plan.setpoints.values()), []))
    return int(min(max(0, (now_ms - start_ms) // (plan.step_minutes * _MINUTE_MS)),
                   max(steps - 1, 0)))


def step_commands(plan: PlanSetpoints, assets: Mapping[str, CommandableAsset], step: int, *,
                  only_auto: bool = False) -> list[PlannedCommand]:
    """The commands that put every commandable asset at its setpoint of ``step``."""
    out: list[PlannedCommand] = []
    for asset_id, values in sorted(plan.setpoints.items()):
        asset = assets.get(asset_id)
        if asset is None or (only_auto and asset.control_mode != "auto"):
            continue
        for action, params in setpoint_actions(asset.kind, values[step]):
            out.append(PlannedCommand(asset_id, asset.device, action, params,
                                      command_id(plan.id, asset_id, step, action, params)))
    return out


def decide_step(*, now_ms: int, deadline_s: float, requested_by: str | None = None,
                only_auto: bool = False, clock: Callable[[], int] = _wall_clock_ms,
                ) -> DecideCommands:
    """The decision of the step ``now_ms`` falls in, for ``PlanStore``: its commands, in
    order, to be written in the transaction of the approval or of the plan's save.

    ``requested_by`` defaults to ``plan:<id>``. With ``only_auto`` only assets in auto
    control mode are commanded, unless the plan is approved (every asset is then). Each
    command must start within ``deadline_s`` of the decision (``clock``), not of ``now_ms``:
    a plan's solve may take most of a minute. Ids are derived from the plan, asset, step
    and setpoint, so deciding a step again names the same commands, which are not written
    twice. A command the contract cannot carry is left out and logged.
    """

    def decide(plan: PlanSetpoints, assets: Mapping[str, CommandableAsset],
               status: str) -> StepCommands:
        step = current_step(plan, now_ms)
        planned = step_commands(plan, assets, step,
                                only_auto=only_auto and status != "approved")
        deadline_ms = clock() + round(deadline_s * 1000)
        issued_by = requested_by or f"plan:{plan.id}"
        decided: list[NewCommand] = []
        for c in planned:
            request = CommandRequest(c.command_id, c.action, dict(c.params), deadline_ms,
                                     issued_by)
            try:
                decode_request(request.encode())  # what every device would refuse
            except MalformedCommand as exc:
                log.error("plan %s: command %s to %s for %s not sent: %s", plan.id, c.action,
                          c.device, c.asset_id, exc)
                continue
            decided.append(NewCommand(request, c.device, c.asset_id, plan.id, len(decided)))
        return StepCommands(step, tuple(decided))

    return decide


@dataclass(frozen=True, slots=True)
class Approval:
    plan_id: int
    already_approved: bool
    step: int
    commands: tuple[str, ...]


def approve(plans: PlanStore, sender: CommandSender, plan_id: int, operator: str, *,
            now_ms: int, deadline_s: float, estate_id: str | None = None,
            revision: int | None = None) -> Approval:
    """Approve a draft plan and send its current step's commands.

    The approval and its commands are one transaction (the commands ``pending``, claimed
    by ``sender``); the sender delivers them after the commit, or, if this process dies
    first, another sender does once the claim expires. Only the estate's newest plan,
    still a draft, whose first step has not passed, can be approved; with ``revision``
    only if the draft is still the revision the operator saw (a scheduled run rewrites a
    draft in place). Approving an approved plan again sends nothing and answers the
    commands its approval decided. Raises ``PlanNotFound`` or ``PlanConflict``.
    """
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    with sender.delivering():
        already, step, ids = plans.approve_draft(
            plan_id, operator, at=now, estate_id=estate_id, revision=revision,
            commands=decide_step(now_ms=now_ms, deadline_s=deadline_s,
                                 requested_by=f"operator:{operator}"),
            claim=sender.claim())
        if already:
            # Nothing is sent again: a retried or repeated approval must not replay a
            # step's setpoints over those that newer plans have sent since.
            return Approval(plan_id, True, step, ids)
        fault_point("approval-committed")
        sender.deliver()
    log.info("plan %s approved by %s: %d commands for step %d", plan_id, operator, len(ids),
             step)
    return Approval(plan_id, False, step, ids)


def reject(plans: PlanStore, plan_id: int, operator: str, *, now_ms: int, reason: str = "",
           estate_id: str | None = None) -> None:
    """Reject a draft plan (nothing is sent). Raises ``PlanNotFound`` or ``PlanConflict``."""
    plans.reject_draft(plan_id, operator, at=datetime.fromtimestamp(now_ms / 1000, UTC),
                       reason=reason, estate_id=estate_id)
