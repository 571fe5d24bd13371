"""Commands and their audit trail in the registry (tables ``commands`` and ``audit_log``).

Each move of a command is a compare-and-set on its row plus one audit row in the same
transaction (and, for a command refused or timed out, its outbox event), so several
dispatch processes can share the registry without moving a command twice (the life cycle
is ``estate.commands``; the sender is ``dispatch.control.sender``).

The table is also the commands' outbox: whoever decides commands (an approval, a plan's
automatic setpoints) writes them ``pending`` with ``add_command`` in the transaction of
the decision, claimed by the sender that will deliver them; a sender delivers the pending
commands it claims (``claim_deliverable``), and takes over those whose claim expired (their
sender crashed before delivering them), so every decided command is delivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from dispatch.registry.db import Registry
from dispatch.registry.models import AuditRow, CommandRow
from dispatch.registry.outbox import add_event
from dispatch.registry.records import AuditRecord, CommandRecord, NewCommand
from estate.commands import FINAL_STATES, CommandRequest, CommandState, can_move
from estate.topics import DeviceId

SUBJECT: Final = "command"
_OPEN_STATES: Final = tuple(s.value for s in CommandState if s not in FINAL_STATES)
# The command outcomes other systems hear of (the outbox's event types).
_EVENTS: Final = {CommandState.REJECTED: "command.refused",
                  CommandState.FAILED: "command.refused",
                  CommandState.TIMED_OUT: "command.timed_out"}


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def device_path(device: DeviceId) -> str:
    """``estate/facility/device``, as the audit log names a device."""
    return f"{device.estate}/{device.facility}/{device.device}"


def command_record(row: CommandRow) -> CommandRecord:
    return CommandRecord(row.id, DeviceId(row.estate_id, row.facility_id, row.device_id),
                         row.action, row.params, CommandState(row.status), row.reason,
                         row.detail, row.requested_by, row.asset_id, row.plan_id, row.created_at,
                         row.deadline_at, row.sent_at, row.answered_at, row.position)


def add_command(session: Session, command: NewCommand, *, at_ms: int,
                claimed_by: str | None = None, claim_ms: int = 0) -> bool:
    """Record a new command as ``pending`` in ``session``'s transaction (with the decision
    that caused it), claimed by ``claimed_by`` for ``claim_ms``; False if its id exists."""
    request, device = command.request, command.device
    if session.get(CommandRow, request.id) is not None:
        return False
    session.add(CommandRow(
        id=request.id, estate_id=device.estate, facility_id=device.facility,
        device_id=device.device, asset_id=command.asset_id, action=request.action,
        params=dict(request.params), plan_id=command.plan_id,
        status=CommandState.PENDING.value, requested_by=request.issued_by,
        created_at=_at(at_ms), deadline_at=_at(request.deadline_ms),
        position=command.position, claimed_by=claimed_by,
        claimed_until=_at(at_ms + claim_ms) if claimed_by else None))
    session.add(AuditRow(
        at=_at(at_ms), actor=request.issued_by, action=f"command.{CommandState.PENDING}",
        subject_type=SUBJECT, subject_id=request.id,
        detail={"to": CommandState.PENDING.value, "device": device_path(device),
                "action": request.action, "params": dict(request.params),
                "deadline_ms": request.deadline_ms, "asset_id": command.asset_id,
                "plan_id": command.plan_id}))
    return True


class CommandStore:
    """Commands and their audit trail in the registry database."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def create(self, request: CommandRequest, device: DeviceId, *, at_ms: int,
               asset_id: str | None = None, plan_id: int | None = None,
               claimed_by: str | None = None, claim_ms: int = 0) -> bool:
        """Record a new command as ``pending``; False if its id exists already."""
        with self._registry.writing() as session:
            return add_command(session, NewCommand(request, device, asset_id, plan_id),
                               at_ms=at_ms, claimed_by=claimed_by, claim_ms=claim_ms)

    def claim_deliverable(self, estates: Sequence[str], claimer: str, *, now_ms: int,
                          claim_ms: int, limit: int = 100) -> list[CommandRecord]:
        """Claim for ``claimer`` the pending commands of ``estates`` that are its own or
        nobody's (never claimed, or the claim expired) and whose deadline has not passed;
        return them oldest decision first, each decision's in its order.

        The claim is one ``UPDATE`` (it takes the write lock before anything is read, so
        two senders claiming at once serialise); a claimer's own claims are renewed."""
        now, until = _at(now_ms), _at(now_ms + claim_ms)
        free = or_(CommandRow.claimed_by.is_(None), CommandRow.claimed_until < now,
                   CommandRow.claimed_by == claimer)
        deliverable = (CommandRow.status == CommandState.PENDING.value,
                       CommandRow.estate_id.in_(list(estates)), CommandRow.deadline_at > now,
                       free)
        order = (CommandRow.created_at, CommandRow.position, CommandRow.id)
        # A read first: the sweepers of every process look every second, and most of the
        # time there is nothing to claim, so they need not take the write lock for it.
        with self._registry.reading() as session:
            if session.scalar(select(CommandRow.id).where(*deliverable).limit(1)) is None:
                return []
        with self._registry.writing() as session:
            chosen = select(CommandRow.id).where(*deliverable).order_by(*order).limit(limit)
            session.execute(update(CommandRow).where(CommandRow.id.in_(chosen), *deliverable)
                            .values(claimed_by=claimer, claimed_until=until)
                            .execution_options(synchronize_session=False))
            rows = session.scalars(select(CommandRow).where(
                CommandRow.claimed_by == claimer, CommandRow.claimed_until == until,
                CommandRow.status == CommandState.PENDING.value).order_by(*order))
            return [command_record(r) for r in rows]

    def move(self, command_id: str, to: CommandState, *, actor: str, at_ms: int,
             reason: str | None = None, detail: str | None = None) -> bool:
        """Move a command to ``to`` if its life cycle allows; write the audit row.

        False when the command is unknown, already final, or further along than ``to``.
        """
        with self._registry.writing() as session:
            row = session.get(CommandRow, command_id)
            if row is None:
                return False
            current = CommandState(row.status)
            if not can_move(current, to):
                return False
            values: dict[str, Any] = {"status": to.value}
            if to in FINAL_STATES:
                values |= {"reason": reason or None, "detail": detail or None}
            if to is CommandState.SENT:
                values["sent_at"] = _at(at_ms)
            elif to is not CommandState.TIMED_OUT:
                values["answered_at"] = _at(at_ms)
            # Compare-and-set: another dispatch process may have moved it since the read.
            moved = session.execute(
                update(CommandRow).where(CommandRow.id == command_id,
                                      CommandRow.status == current.value).values(**values))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if to in _EVENTS:
                add_event(session, row.estate_id, _EVENTS[to], SUBJECT, command_id,
                          {"command_id": command_id, "facility": row.facility_id,
                           "device": row.device_id, "action": row.action,
                           "state": to.value, "reason": reason or None,
                           "detail": detail or None, "asset_id": row.asset_id,
                           "plan_id": row.plan_id},
                          _at(at_ms), f"command:{command_id}:{to.value}")
            session.add(AuditRow(
                at=_at(at_ms), actor=actor, action=f"command.{to}", subject_type=SUBJECT,
                subject_id=command_id,
                detail={"from": current.value, "to": to.value, "reason": reason or None,
                        "detail": detail or None}))
        return True

    def note(self, command_id: str, *, actor: str, action: str, at_ms: int,
             detail: Mapping[str, Any]) -> None:
        """An audit row that changes no state (an answer that came too late)."""
        with self._registry.writing() as session:
            session.add(AuditRow(at=_at(at_ms), actor=actor, action=action,
                                   subject_type=SUBJECT, subject_id=command_id,
                                   detail=dict(detail)))

    def get(self, command_id: str) -> CommandRecord | None:
        with self._registry.reading() as session:
            row = session.get(CommandRow, command_id)
            return None if row is None else command_record(row)

    def overdue(self, before_ms: int) -> list[str]:
        """Ids of commands without a final state whose deadline is before ``before_ms``."""
        with self._registry.reading() as session:
            return list(session.scalars(
                select(CommandRow.id).where(CommandRow.status.in_(_OPEN_STATES),
                                         CommandRow.deadline_at < _at(before_ms))
                .order_by(CommandRow.deadline_at)))

    def audit(self, command_id: str) -> list[AuditRecord]:
        """The command's audit rows, oldest first."""
        with self._registry.reading() as session:
            rows = session.scalars(
                select(AuditRow).where(AuditRow.subject_type == SUBJECT,
                                         AuditRow.subject_id == command_id)
                .order_by(AuditRow.id))
            return [AuditRecord(r.at, r.actor, r.action, r.detail) for r in rows]
