"""Plans in the registry (table ``plans``): saving a run, approval and rejection as
transactions, and what a plan asks of its assets.

A plan's life::

    draft ──approve──► approved
      │  └──reject───► rejected
      └──(a newer plan of the estate)──► superseded

Every move writes an ``audit_log`` row in its own transaction, and the commands it causes
(a run's automatic setpoints, an approval's step) in the same one: the commands table is
the outbox the sender delivers from, so a crash after the commit loses no command. A
run of the scheduler saves only under its lease (``fence``: the transaction begins with
``check_fence``). Which step and which commands is ``dispatch.control.approval``'s
decision (``DecideCommands``); docs/planning.md tells the whole story.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from dispatch.registry.command_store import add_command
from dispatch.registry.db import Registry
from dispatch.registry.lock import Fence, check_fence
from dispatch.registry.models import AssetRow, AuditRow, CommandRow, PlanRow
from dispatch.registry.outbox import add_event, iso
from dispatch.registry.records import (
    CommandableAsset,
    DecideCommands,
    DeliveryClaim,
    PlanDraft,
    PlanSetpoints,
    SavedPlan,
)
from estate.errors import PlanConflict, PlanNotFound
from estate.topics import DeviceId

SUBJECT: Final = "plan"
APPROVED: Final = "plan.approved"
FAILURE_CHARS: Final = 2_000
"""A plan failure's reason as the audit log keeps it, at most. Why: it repeats names from
the estate file (assets, facilities), which an operator controls; 2,000 characters hold
about twenty refused fields."""


def plan_of(session: Session, plan_id: int, estate_id: str | None) -> PlanRow:
    """The plan, if it exists and (when ``estate_id`` is given) belongs to that estate."""
    row = session.get(PlanRow, plan_id)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise PlanNotFound(f"no plan {plan_id}" + (f" in estate {estate_id!r}"
                                                   if estate_id is not None else ""))
    return row


def _newer(session: Session, row: PlanRow) -> PlanRow | None:
    return session.scalars(
        select(PlanRow).where(PlanRow.estate_id == row.estate_id, PlanRow.id != row.id,
                              or_(PlanRow.horizon_start > row.horizon_start,
                                  and_(PlanRow.horizon_start == row.horizon_start,
                                       PlanRow.id > row.id)))
        .order_by(PlanRow.horizon_start.desc(), PlanRow.id.desc())).first()


class PlanStore:
    """The registry's plans."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def save(self, draft: PlanDraft, trigger: str, at: datetime, *, fence: Fence | None = None,
             commands: DecideCommands | None = None, claim: DeliveryClaim | None = None,
             ) -> SavedPlan:
        """Store a run as the plan of its estate and horizon start.

        One row per (estate, horizon start): a run for a horizon whose plan is still a
        draft (or superseded) rewrites that row; one whose plan an operator already decided
        on is left alone, unless an event asked for it (then a new draft is added). Every
        other draft of the estate becomes ``superseded``. The plan is ``approved`` at once
        when ``draft.auto``. A written plan's ``commands`` are written with it, claimed
        for delivery by ``claim``. With ``fence``, nothing is written unless that lease is
        still current: raises ``Deposed``.
        """
        with self._registry.writing() as session:
            if fence is not None:
                check_fence(session, fence)
            row = session.scalars(
                select(PlanRow).where(PlanRow.estate_id == draft.estate_id,
                                      PlanRow.horizon_start == draft.horizon_start)
                .order_by(PlanRow.id.desc())).first()
            if row is not None and row.status not in ("draft", "superseded"):
                if not trigger.startswith("event:"):
                    return SavedPlan(row.id, row.status, False, row.summary.get("revision", 1))
                row = None
            revision = 1 if row is None else int(row.summary.get("revision", 0)) + 1
            if row is None:
                row = PlanRow(estate_id=draft.estate_id, created_at=at)
                session.add(row)
            _fill(row, draft, trigger, at, revision)
            session.flush()
            session.execute(update(PlanRow).where(PlanRow.estate_id == draft.estate_id,
                                                  PlanRow.status == "draft",
                                                  PlanRow.id != row.id)
                            .values(status="superseded"))
            if row.status in ("draft", "approved"):
                _plan_event(session, row, "ready" if row.status == "draft" else "approved",
                            at, f"r{revision}", trigger=trigger)
            session.add(AuditRow(at=at, actor="dispatch", action=f"plan.{row.status}",
                                 subject_type=SUBJECT, subject_id=str(row.id),
                                 detail={"trigger": trigger, "revision": revision,
                                         "solver_status": row.solver_status,
                                         "cost": row.cost, "baseline_cost": row.baseline_cost,
                                         "lease_token": fence.token if fence else None}))
            ids: tuple[str, ...] = ()
            if commands is not None:
                _, ids = _write_commands(session, row, commands, claim, at)
            return SavedPlan(row.id, row.status, True, revision, ids)

    def record_failure(self, estate_id: str, trigger: str, reason: str, at: datetime) -> None:
        """A run that made no plan: an audit row ``plan.failed`` on the estate with the
        reason (for inputs the optimiser refuses, each asset and field)."""
        with self._registry.writing() as session:
            session.add(AuditRow(at=at, actor="dispatch", action="plan.failed",
                                 subject_type="estate", subject_id=estate_id,
                                 detail={"trigger": trigger, "reason": reason[:FAILURE_CHARS]}))

    def approve_draft(self, plan_id: int, operator: str, *, at: datetime,
                      commands: DecideCommands | None = None,
                      claim: DeliveryClaim | None = None,
                      estate_id: str | None = None, revision: int | None = None,
                      ) -> tuple[bool, int, tuple[str, ...]]:
        """Approve a draft plan and write the commands it causes, in one transaction;
        ``(already, step, command ids)``. A plan approved already is only audited (and
        answers the step and commands of its approval: nothing new is written). Only the
        estate's newest plan, still a draft, whose first step has not ended at ``at``, can
        be approved; with ``revision`` only if the draft is still the revision the operator
        saw. Raises ``PlanNotFound`` or ``PlanConflict``."""
        actor = f"operator:{operator}"
        with self._registry.writing() as session:
            row = plan_of(session, plan_id, estate_id)
            if row.status == "approved":
                session.add(AuditRow(at=at, actor=actor, action="plan.approve_again",
                                     subject_type=SUBJECT, subject_id=str(plan_id),
                                     detail={"status_before": row.status}))
                return (True, *_approval_commands(session, plan_id))
            _check_approvable(session, row, at, revision)
            moved = session.execute(
                update(PlanRow).where(PlanRow.id == plan_id, PlanRow.status == "draft")
                .values(status="approved", approved_by=operator, approved_at=at)
                .execution_options(synchronize_session="fetch"))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise PlanConflict(f"plan {plan_id} changed while it was being approved")
            step, ids = (0, ()) if commands is None else _write_commands(
                session, row, commands, claim, at)
            _plan_event(session, row, "approved", at, "operator", by=operator)
            session.add(AuditRow(at=at, actor=actor, action=APPROVED, subject_type=SUBJECT,
                                 subject_id=str(plan_id),
                                 detail={"status_before": "draft", "step": step,
                                         "commands": len(ids)}))
        return False, step, ids

    def approval_commands(self, plan_id: int) -> tuple[int, tuple[str, ...]]:
        """The step an operator's approval sent commands for, and their ids."""
        with self._registry.reading() as session:
            return _approval_commands(session, plan_id)

    def reject_draft(self, plan_id: int, operator: str, *, at: datetime, reason: str = "",
                     estate_id: str | None = None) -> None:
        """Reject a draft plan. Raises ``PlanNotFound`` or ``PlanConflict``."""
        with self._registry.writing() as session:
            row = plan_of(session, plan_id, estate_id)
            if row.status != "draft":
                raise PlanConflict(f"plan {plan_id} is {row.status}: only a draft plan can be "
                                   "rejected")
            moved = session.execute(update(PlanRow)
                                    .where(PlanRow.id == plan_id, PlanRow.status == "draft")
                                    .values(status="rejected"))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise PlanConflict(f"plan {plan_id} changed while it was being rejected")
            session.add(AuditRow(at=at, actor=f"operator:{operator}", action="plan.rejected",
                                 subject_type=SUBJECT, subject_id=str(plan_id),
                                 detail={"reason": reason or None}))

    def setpoints(self, plan_id: int) -> PlanSetpoints:
        """What the plan asks of each asset per step. Raises ``PlanNotFound``."""
        with self._registry.reading() as session:
            row = plan_of(session, plan_id, None)
            return PlanSetpoints(row.id, row.estate_id, row.horizon_start, row.step_minutes,
                                 dict(row.setpoints))

    def commandable_assets(self, estate_id: str, asset_ids: Iterable[str],
                           ) -> dict[str, CommandableAsset]:
        """The assets among ``asset_ids`` that are in service and have a device."""
        with self._registry.reading() as session:
            return _commandable(session, estate_id, asset_ids)


def _approval_commands(session: Session, plan_id: int) -> tuple[int, tuple[str, ...]]:
    ids = session.scalars(
        select(CommandRow.id).where(CommandRow.plan_id == plan_id,
                                    CommandRow.requested_by.like("operator:%"))
        .order_by(CommandRow.created_at, CommandRow.position, CommandRow.id)).all()
    approved = session.scalars(select(AuditRow.detail).where(
        AuditRow.subject_type == SUBJECT, AuditRow.subject_id == str(plan_id),
        AuditRow.action == APPROVED)).first()
    return int((approved or {}).get("step", 0)), tuple(ids)


def _commandable(session: Session, estate_id: str, asset_ids: Iterable[str],
                 ) -> dict[str, CommandableAsset]:
    rows = session.scalars(select(AssetRow).where(AssetRow.estate_id == estate_id,
                                                  AssetRow.id.in_(list(asset_ids))))
    return {a.id: CommandableAsset(a.id, a.kind, a.control_mode,
                                   DeviceId(estate_id, a.device_facility_id, a.device_id))
            for a in rows
            if a.retired_at is None and a.device_id and a.device_facility_id}


def _write_commands(session: Session, row: PlanRow, decide: DecideCommands,
                    claim: DeliveryClaim | None, at: datetime) -> tuple[int, tuple[str, ...]]:
    """Decide the commands of ``row`` as it now stands and write them ``pending`` in
    ``session``'s transaction; the step and every id decided (one written before, by an
    earlier decision naming the same command, is left as it is)."""
    plan = PlanSetpoints(row.id, row.estate_id, row.horizon_start, row.step_minutes,
                         dict(row.setpoints))
    decided = decide(plan, _commandable(session, row.estate_id, plan.setpoints), row.status)
    at_ms = round(at.timestamp() * 1000)
    for command in decided.commands:
        add_command(session, command, at_ms=at_ms, claimed_by=claim.claimer if claim else None,
                    claim_ms=claim.ms if claim else 0)
    return decided.step, tuple(c.request.id for c in decided.commands)


def _plan_event(session: Session, row: PlanRow, kind: str, at: datetime, key: str,
                **extra: Any) -> None:
    """``plan.ready`` or ``plan.approved`` in the outbox, in the change's transaction."""
    add_event(session, row.estate_id, f"plan.{kind}", SUBJECT, str(row.id),
              {"plan_id": row.id, "revision": int(row.summary.get("revision", 1)),
               "horizon_start": iso(row.horizon_start), "cost": row.cost,
               "baseline_cost": row.baseline_cost, "solver_status": row.solver_status}
              | extra, at, f"plan:{row.id}:{kind}:{key}")


def _check_approvable(session: Session, row: PlanRow, at: datetime,
                      revision: int | None) -> None:
    seen = row.summary.get("revision")
    if revision is not None and revision != seen:
        raise PlanConflict(f"plan {row.id} was planned again (revision {seen}, you saw "
                           f"{revision}): review it and approve again")
    if row.status != "draft":
        raise PlanConflict(f"plan {row.id} is {row.status}: only a draft plan can be approved")
    newer = _newer(session, row)
    if newer is not None:
        raise PlanConflict(f"plan {newer.id} is newer than plan {row.id}: approve the newest "
                           "plan")
    first_end = row.horizon_start + timedelta(minutes=row.step_minutes)
    if at >= first_end:
        raise PlanConflict(f"the first step of plan {row.id} ended at {first_end.isoformat()}: "
                           "it is too late to approve it")


def _fill(row: PlanRow, draft: PlanDraft, trigger: str, at: datetime, revision: int) -> None:
    summary: dict[str, Any] = {"revision": revision, **draft.summary}
    row.horizon_start = draft.horizon_start
    row.horizon_end = draft.horizon_end
    row.step_minutes = draft.step_minutes
    row.status = "approved" if draft.auto else "draft"
    row.trigger = trigger
    row.solver_status = draft.solver_status
    row.mip_gap = draft.mip_gap
    row.objective = draft.objective
    row.cost = draft.cost
    row.baseline_cost = draft.baseline_cost
    row.peak_kw = draft.peak_kw
    row.baseline_peak_kw = draft.baseline_peak_kw
    row.explanation = draft.explanation
    row.approved_by = "auto" if draft.auto else None
    row.approved_at = at if draft.auto else None
    row.setpoints = {name: list(values) for name, values in draft.setpoints.items()}
    row.summary = summary
