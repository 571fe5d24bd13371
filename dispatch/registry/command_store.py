"""Commands and their audit trail in the registry (tables ``commands`` and ``audit_log``).

Each move of a command is a compare-and-set on its row plus one audit row in the same
transaction, so several dispatch processes can share the registry without moving a command
twice (the life cycle is ``estate.commands``; the sender is ``dispatch.control.sender``).
A command refused by its device or timed out writes its outbox event in that transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select, update

from dispatch.registry.db import Registry
from dispatch.registry.models import AuditRow, CommandRow
from dispatch.registry.outbox import add_event
from dispatch.registry.records import AuditRecord, CommandRecord
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
                         row.deadline_at, row.sent_at, row.answered_at)


class CommandStore:
    """Commands and their audit trail in the registry database."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def create(self, request: CommandRequest, device: DeviceId, *, at_ms: int,
               asset_id: str | None = None, plan_id: int | None = None) -> bool:
        """Record a new command as ``pending``; False if its id exists already."""
        with self._registry.writing() as session:
            if session.get(CommandRow, request.id) is not None:
                return False
            session.add(CommandRow(
                id=request.id, estate_id=device.estate, facility_id=device.facility,
                device_id=device.device, asset_id=asset_id, action=request.action,
                params=dict(request.params), plan_id=plan_id,
                status=CommandState.PENDING.value, requested_by=request.issued_by,
                created_at=_at(at_ms), deadline_at=_at(request.deadline_ms)))
            session.add(AuditRow(
                at=_at(at_ms), actor=request.issued_by, action=f"command.{CommandState.PENDING}",
                subject_type=SUBJECT, subject_id=request.id,
                detail={"to": CommandState.PENDING.value, "device": device_path(device),
                        "action": request.action, "params": dict(request.params),
                        "deadline_ms": request.deadline_ms, "asset_id": asset_id,
                        "plan_id": plan_id}))
        return True

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
