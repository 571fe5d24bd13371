"""Stored plans: the registry row, the plan series, approval, and the setpoint commands.

A plan is a row of ``plans`` (status, figures against the baseline, the explanation, the
setpoints of every asset per step) and points of the ``plan`` series (the newest plan per
step, for charts). Its life::

    draft ──approve──► approved ──► commands for the current step (one per asset and action)
      │  └──reject───► rejected
      └──(a newer plan of the estate)──► superseded

Errors (approval and rejection)::

    PlanError
    ├── PlanNotFound   no plan with that id
    └── PlanConflict   the plan cannot move that way now; the message says why

docs/planning.md tells the whole story.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dispatch.commands import CommandSender, CommandStore
from dispatch.registry.models import Asset, AuditEntry, Command, Plan
from dispatch.rollups import POLICY_LONG
from estate.commands import MalformedCommand, ParamValue
from estate.errors import BrokerError
from estate.lineprotocol import line
from estate.schema import PLANS
from estate.topics import DeviceId

if TYPE_CHECKING:
    from dispatch.optimiser import EstateProblem, Schedule
    from dispatch.optimiser import Plan as OptimisedPlan
    from dispatch.planning import Assembly

log = logging.getLogger(__name__)

PLAN_POLICY: Final = POLICY_LONG
"""Plans are kept as long as the quarter-hour rollups and forecasts they are drawn with."""
SUBJECT: Final = "plan"
ESTATE_SERIES: Final = "_estate"
"""The ``asset`` tag of the estate-wide series (grid import, the baseline's import)."""
COMMAND_NAMESPACE: Final = uuid.UUID("6f1d4f5e-7b52-4d0c-9a57-3f0d1c2b8e61")
"""Namespace of plan command ids: uuid5 of (plan, asset, step, action, params), so sending
a step's setpoints again (a second approval, a retry) names the same commands."""
# Setpoints go to devices in tenths of a kW: meters and inverters resolve no finer, and
# solver noise (1e-9 kW) must not make two plans' commands differ.
KW_DECIMALS: Final = 1
_NS_PER_MS: Final = 1_000_000
_MINUTE_MS: Final = 60_000
FAILURE_CHARS: Final = 2_000
"""A plan failure's reason as the audit log keeps it, at most. Why: it repeats names from
the estate file (assets, facilities), which an operator controls; 2,000 characters hold
about twenty refused fields."""


class PlanError(Exception):
    """A plan cannot be found or moved as asked."""


class PlanNotFound(PlanError):
    pass


class PlanConflict(PlanError):
    pass


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """A plan row after a run: ``written`` False when the run left a decided plan alone."""

    id: int
    status: str
    written: bool
    revision: int


# --- from the optimiser's schedule to series ---

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


def _summary(assembly: Assembly, result: OptimisedPlan, at: datetime,
             revision: int) -> dict[str, Any]:
    problem = assembly.problem
    levels = {name: {"quantity": level_name, "values": _round(level)}
              for name, (_, level_name, level) in asset_series(problem,
                                                               result.schedule).items()
              if level is not None}
    costs = result.assessment.costs
    base_costs = result.baseline.costs
    return {
        "revision": revision, "planned_at": at.isoformat(), "currency": assembly.currency,
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


# --- storing a run ---

def save_plan(sessions: sessionmaker[Session], assembly: Assembly, result: OptimisedPlan,
              trigger: str, at: datetime) -> SavedPlan:
    """Store a run as the plan of its estate and horizon start.

    One row per (estate, horizon start): a run for a horizon whose plan is still a draft
    (or superseded) rewrites that row; one whose plan an operator already decided on is
    left alone, unless an event asked for it (then a new draft is added). Every other
    draft of the estate becomes ``superseded``. The plan is ``approved`` at once when
    every asset it commands is in ``auto`` control mode.
    """
    problem = assembly.problem
    start = problem.start.astimezone(UTC)
    commanded = [a for a in assembly.assets if a.commandable]
    auto = bool(commanded) and all(a.control_mode == "auto" for a in commanded)
    with sessions.begin() as session:
        row = session.scalars(
            select(Plan).where(Plan.estate_id == assembly.estate_id,
                               Plan.horizon_start == start)
            .order_by(Plan.id.desc())).first()
        if row is not None and row.status not in ("draft", "superseded"):
            if not trigger.startswith("event:"):
                return SavedPlan(row.id, row.status, False, row.summary.get("revision", 1))
            row = None
        revision = 1 if row is None else int(row.summary.get("revision", 0)) + 1
        if row is None:
            row = Plan(estate_id=assembly.estate_id, created_at=at)
            session.add(row)
        series = asset_series(problem, result.schedule)
        row.horizon_start = start
        row.horizon_end = start + timedelta(minutes=assembly.step_minutes * problem.steps)
        row.step_minutes = assembly.step_minutes
        row.status = "approved" if auto else "draft"
        row.trigger = trigger
        row.solver_status = result.status.value
        row.mip_gap = result.mip_gap
        row.objective = result.objective
        row.cost = result.cost
        row.baseline_cost = result.baseline.cost
        row.peak_kw = result.peak_kw
        row.baseline_peak_kw = result.baseline.peak_kw
        row.explanation = "\n".join(explanation(assembly, result))
        row.approved_by = "auto" if auto else None
        row.approved_at = at if auto else None
        row.setpoints = {name: _round(values) for name, (values, _, _) in series.items()}
        row.summary = _summary(assembly, result, at, revision)
        session.flush()
        session.execute(update(Plan).where(Plan.estate_id == assembly.estate_id,
                                           Plan.status == "draft", Plan.id != row.id)
                        .values(status="superseded"))
        session.add(AuditEntry(at=at, actor="dispatch", action=f"plan.{row.status}",
                               subject_type=SUBJECT, subject_id=str(row.id),
                               detail={"trigger": trigger, "revision": revision,
                                       "solver_status": row.solver_status,
                                       "cost": row.cost, "baseline_cost": row.baseline_cost}))
        return SavedPlan(row.id, row.status, True, revision)


def record_plan_failure(sessions: sessionmaker[Session], estate_id: str, trigger: str,
                        reason: str, at: datetime) -> None:
    """A run that made no plan: an audit row ``plan.failed`` on the estate with the reason
    (for inputs the optimiser refuses, each asset and field). The registry being down is
    logged, not raised: the run has failed already."""
    try:
        with sessions.begin() as session:
            session.add(AuditEntry(at=at, actor="dispatch", action="plan.failed",
                                   subject_type="estate", subject_id=estate_id,
                                   detail={"trigger": trigger,
                                           "reason": reason[:FAILURE_CHARS]}))
    except SQLAlchemyError as exc:
        log.error("plan failure of %s not recorded: %s", estate_id, exc)


# --- setpoints to commands ---

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


def current_step(row: Plan, now_ms: int) -> int:
    """The step ``now_ms`` falls in (0 before the horizon starts)."""
    start_ms = int(row.horizon_start.timestamp() * 1000)
    steps = len(next(iter(row.setpoints.values()), []))
    return int(min(max(0, (now_ms - start_ms) // (row.step_minutes * _MINUTE_MS)),
                   max(steps - 1, 0)))


def step_commands(session: Session, row: Plan, step: int, *, only_auto: bool = False
                  ) -> list[PlannedCommand]:
    """The commands that put every commandable asset at its setpoint of ``step``."""
    assets = {a.id: a for a in session.scalars(
        select(Asset).where(Asset.estate_id == row.estate_id, Asset.id.in_(row.setpoints)))}
    out: list[PlannedCommand] = []
    for asset_id, values in sorted(row.setpoints.items()):
        asset = assets.get(asset_id)
        if (asset is None or asset.retired_at is not None or not asset.device_id
                or not asset.device_facility_id or (only_auto and asset.control_mode != "auto")):
            continue
        device = DeviceId(row.estate_id, asset.device_facility_id, asset.device_id)
        for action, params in setpoint_actions(asset.kind, values[step]):
            out.append(PlannedCommand(asset_id, device, action, params,
                                      command_id(row.id, asset_id, step, action, params)))
    return out


def send_step_commands(sessions: sessionmaker[Session], sender: CommandSender, plan_id: int,
                       *, now_ms: int, deadline_s: float, requested_by: str,
                       only_auto: bool = False) -> list[str]:
    """Send the current step's commands of a plan; return their ids.

    Ids are derived from the plan, asset, step and setpoint, so sending again records no
    new command: a final one is left alone, an open one is published again.
    """
    with sessions() as session:
        row = session.get(Plan, plan_id)
        if row is None:
            raise PlanNotFound(f"no plan {plan_id}")
        planned = step_commands(session, row, current_step(row, now_ms), only_auto=only_auto)
    sent: list[str] = []
    for c in planned:
        try:
            sent.append(sender.send(c.device, c.action, c.params, requested_by=requested_by,
                                    deadline_ms=now_ms + round(deadline_s * 1000),
                                    asset_id=c.asset_id, plan_id=plan_id,
                                    command_id=c.command_id, wait=False))
        except (MalformedCommand, BrokerError) as exc:
            log.error("plan %s: command %s to %s for %s not sent: %s", plan_id, c.action,
                      c.device, c.asset_id, exc)
    return sent


# --- approval ---

def _newer(session: Session, row: Plan) -> Plan | None:
    return session.scalars(
        select(Plan).where(Plan.estate_id == row.estate_id, Plan.id != row.id,
                           or_(Plan.horizon_start > row.horizon_start,
                               and_(Plan.horizon_start == row.horizon_start,
                                    Plan.id > row.id)))
        .order_by(Plan.horizon_start.desc(), Plan.id.desc())).first()


@dataclass(frozen=True, slots=True)
class Approval:
    plan_id: int
    already_approved: bool
    step: int
    commands: tuple[str, ...]


def _plan_of(session: Session, plan_id: int, estate_id: str | None) -> Plan:
    """The plan, if it exists and (when ``estate_id`` is given) belongs to that estate."""
    row = session.get(Plan, plan_id)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise PlanNotFound(f"no plan {plan_id}" + (f" in estate {estate_id!r}"
                                                   if estate_id is not None else ""))
    return row


def approve(sessions: sessionmaker[Session], sender: CommandSender, plan_id: int,
            operator: str, *, now_ms: int, deadline_s: float, estate_id: str | None = None,
            revision: int | None = None) -> Approval:
    """Approve a draft plan and send its current step's commands.

    Only the estate's newest plan, still a draft, whose first step has not passed, can be
    approved; with ``revision`` only if the draft is still the revision the operator saw
    (a scheduled run rewrites a draft in place). Approving an approved plan again sends
    nothing and answers the commands its approval sent. Raises ``PlanNotFound`` or
    ``PlanConflict``.
    """
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    actor = f"operator:{operator}"
    with sessions.begin() as session:
        row = _plan_of(session, plan_id, estate_id)
        already = row.status == "approved"
        if not already:
            seen = row.summary.get("revision")
            if revision is not None and revision != seen:
                raise PlanConflict(f"plan {plan_id} was planned again (revision {seen}, "
                                   f"you saw {revision}): review it and approve again")
            if row.status != "draft":
                raise PlanConflict(f"plan {plan_id} is {row.status}: only a draft plan can "
                                   "be approved")
            newer = _newer(session, row)
            if newer is not None:
                raise PlanConflict(f"plan {newer.id} is newer than plan {plan_id}: approve "
                                   "the newest plan")
            first_end = row.horizon_start + timedelta(minutes=row.step_minutes)
            if now >= first_end:
                raise PlanConflict(f"the first step of plan {plan_id} ended at "
                                   f"{first_end.isoformat()}: it is too late to approve it")
            moved = session.execute(
                update(Plan).where(Plan.id == plan_id, Plan.status == "draft")
                .values(status="approved", approved_by=operator, approved_at=now))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise PlanConflict(f"plan {plan_id} changed while it was being approved")
        session.add(AuditEntry(at=now, actor=actor,
                               action="plan.approve_again" if already else "plan.approved",
                               subject_type=SUBJECT, subject_id=str(plan_id),
                               detail={"status_before": row.status if already else "draft"}))
    if already:
        # Nothing is sent again: a retried or repeated approval must not replay a step's
        # setpoints over those that newer plans have sent since.
        with sessions() as session:
            ids = session.scalars(
                select(Command.id).where(Command.plan_id == plan_id,
                                         Command.requested_by.like("operator:%"))
                .order_by(Command.created_at, Command.id)).all()
            approved = session.scalars(select(AuditEntry.detail).where(
                AuditEntry.subject_type == SUBJECT, AuditEntry.subject_id == str(plan_id),
                AuditEntry.action == "plan.approved")).first()
        step = int((approved or {}).get("step", 0))
        return Approval(plan_id, True, step, tuple(ids))
    with sessions() as session:
        fresh = session.get(Plan, plan_id)
        assert fresh is not None
        step = current_step(fresh, now_ms)
    with sessions.begin() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.subject_type == SUBJECT, AuditEntry.subject_id == str(plan_id),
            AuditEntry.action == "plan.approved").order_by(AuditEntry.id.desc())).first()
        if entry is not None:
            entry.detail = {**entry.detail, "step": step}
    sent = send_step_commands(sessions, sender, plan_id, now_ms=now_ms, deadline_s=deadline_s,
                              requested_by=actor)
    log.info("plan %s approved by %s: %d commands for step %d", plan_id, operator, len(sent),
             step)
    return Approval(plan_id, already, step, tuple(sent))


def reject(sessions: sessionmaker[Session], plan_id: int, operator: str, *, now_ms: int,
           reason: str = "", estate_id: str | None = None) -> None:
    """Reject a draft plan (nothing is sent). Raises ``PlanNotFound`` or ``PlanConflict``."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    with sessions.begin() as session:
        row = _plan_of(session, plan_id, estate_id)
        if row.status != "draft":
            raise PlanConflict(f"plan {plan_id} is {row.status}: only a draft plan can be "
                               "rejected")
        moved = session.execute(update(Plan).where(Plan.id == plan_id, Plan.status == "draft")
                                .values(status="rejected"))
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise PlanConflict(f"plan {plan_id} changed while it was being rejected")
        session.add(AuditEntry(at=now, actor=f"operator:{operator}", action="plan.rejected",
                               subject_type=SUBJECT, subject_id=str(plan_id),
                               detail={"reason": reason or None}))


# --- views for the API ---

def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def plan_overview(row: Plan) -> dict[str, Any]:
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


def plan_detail(row: Plan) -> dict[str, Any]:
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


def list_plans(sessions: sessionmaker[Session], estate_id: str, limit: int
               ) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(select(Plan).where(Plan.estate_id == estate_id)
                               .order_by(Plan.id.desc()).limit(limit))
        return [plan_overview(r) for r in rows]


def get_plan(sessions: sessionmaker[Session], plan_id: int,
             estate_id: str | None = None) -> dict[str, Any]:
    with sessions() as session:
        row = _plan_of(session, plan_id, estate_id)
        detail = plan_detail(row)
        audit = session.scalars(select(AuditEntry).where(
            AuditEntry.subject_type == SUBJECT, AuditEntry.subject_id == str(plan_id))
            .order_by(AuditEntry.id))
        detail["audit"] = [{"at": _iso(a.at), "actor": a.actor, "action": a.action,
                            "detail": a.detail} for a in audit]
        return detail


def plan_commands(sessions: sessionmaker[Session], plan_id: int,
                  estate_id: str | None = None) -> list[dict[str, Any]]:
    """Every command sent for a plan, with its state and audit trail."""
    store = CommandStore(sessions)
    with sessions() as session:
        _plan_of(session, plan_id, estate_id)
        rows: Sequence[Command] = list(session.scalars(
            select(Command).where(Command.plan_id == plan_id)
            .order_by(Command.created_at, Command.id)))
    return [{"id": c.id, "asset": c.asset_id, "device": f"{c.facility_id}/{c.device_id}",
             "action": c.action, "params": c.params, "status": c.status, "reason": c.reason,
             "detail": c.detail, "requested_by": c.requested_by,
             "created_at": _iso(c.created_at), "deadline_at": _iso(c.deadline_at),
             "sent_at": _iso(c.sent_at), "answered_at": _iso(c.answered_at),
             "audit": [{"at": _iso(a.at), "actor": a.actor, "action": a.action,
                        "detail": dict(a.detail)} for a in store.audit(c.id)]}
            for c in rows]
