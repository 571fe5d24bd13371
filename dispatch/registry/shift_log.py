"""The stored shift log and handovers (``dispatch.incidents.shiftlog`` applied to the
registry), with outbox events for handovers, in the caller's transaction.

- ``write_log_entry`` (idempotent by the writer's ``key``), ``resolve_log_item``,
  ``log_entries``;
- ``prepare_handover``: gathers the shift's entries since the last accepted handover, the
  open items, the active alarms and the open incidents, and stores them as they stand
  (one handover waits per estate; asking again for the same one returns it);
- ``accept_handover``: by the incoming operator only, once; ``pending_handover``,
  ``get_handover``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from dispatch.incidents import shiftlog
from dispatch.incidents.shiftlog import (
    AlarmSummary,
    Handover,
    IncidentSummary,
    LogEntry,
    ShiftLogError,
    resolve_item,
    write_entry,
)
from dispatch.registry.alarm_board import active_alarms
from dispatch.registry.control_room import HandoverRow, ShiftLogEntryRow
from dispatch.registry.incident_desk import open_incidents
from dispatch.registry.outbox import RecordNotFound, add_event, insert_ignoring, iso

_entries = cast(Table, ShiftLogEntryRow.__table__)
_handovers = cast(Table, HandoverRow.__table__)
MAX_KEY = 64


def _entry(row: ShiftLogEntryRow) -> LogEntry:
    return LogEntry(str(row.id), row.estate_id, row.at, row.by, row.kind,  # type: ignore[arg-type]
                    row.text, row.resolved_at, row.resolved_by)


def write_log_entry(session: Session, estate_id: str, by: str, at: datetime, kind: str,
                    text: str, key: str | None = None) -> LogEntry:
    """Write an entry; with ``key``, writing it again returns the first."""
    entry = write_entry("0", estate_id, by, at, kind, text)
    values = {"estate_id": estate_id, "entry_key": key[:MAX_KEY] if key else None,
              "at": at, "by": entry.by, "kind": entry.kind, "text": entry.text}
    new_id = insert_ignoring(session, _entries, values, ["estate_id", "entry_key"])
    if new_id is None:
        row = session.scalars(select(ShiftLogEntryRow).where(
            ShiftLogEntryRow.estate_id == estate_id,
            ShiftLogEntryRow.entry_key == values["entry_key"])).one()
        return _entry(row)
    row2 = session.get(ShiftLogEntryRow, new_id)
    assert row2 is not None
    return _entry(row2)


def resolve_log_item(session: Session, entry_id: int, by: str, at: datetime, *,
                     estate_id: str | None = None) -> LogEntry:
    """Resolve an open item; one already resolved is left as it is."""
    row = session.get(ShiftLogEntryRow, entry_id, with_for_update=True)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise RecordNotFound(f"no log entry {entry_id}")
    if row.resolved_at is not None:
        return _entry(row)
    resolved = resolve_item(_entry(row), by, at)
    row.resolved_at, row.resolved_by = resolved.resolved_at, resolved.resolved_by
    session.flush()
    return resolved


def log_entries(session: Session, estate_id: str, since: datetime | None = None,
                limit: int = 1000) -> list[LogEntry]:
    """Entries from ``since`` (all without it) and every open item, oldest first."""
    query = select(ShiftLogEntryRow).where(ShiftLogEntryRow.estate_id == estate_id)
    if since is not None:
        query = query.where(or_(ShiftLogEntryRow.at >= since, (
            (ShiftLogEntryRow.kind == "open_item") & ShiftLogEntryRow.resolved_at.is_(None))))
    rows = session.scalars(query.order_by(ShiftLogEntryRow.at, ShiftLogEntryRow.id)
                           .limit(limit))
    return [_entry(r) for r in rows]


def _snapshot(h: Handover) -> dict[str, Any]:
    return {
        "entries": [{"id": e.id, "at": iso(e.at), "by": e.by, "kind": e.kind, "text": e.text,
                     "resolved_at": iso(e.resolved_at), "resolved_by": e.resolved_by}
                    for e in h.entries],
        "alarms": [{"source": a.source, "rule_id": a.rule_id, "severity": a.severity,
                    "state": a.state, "message": a.message, "raised_at": iso(a.raised_at)}
                   for a in h.alarms],
        "incidents": [{"id": i.id, "title": i.title, "severity": i.severity,
                       "status": i.status, "crew": i.crew, "opened_at": iso(i.opened_at)}
                      for i in h.incidents]}


def _at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _handover(row: HandoverRow) -> Handover:
    snap = row.snapshot
    entries = tuple(LogEntry(e["id"], row.estate_id, datetime.fromisoformat(e["at"]), e["by"],
                             e["kind"], e["text"], _at(e["resolved_at"]), e["resolved_by"])
                    for e in snap.get("entries", []))
    alarms = tuple(AlarmSummary(a["source"], a["rule_id"], a["severity"], a["state"],
                                a["message"], datetime.fromisoformat(a["raised_at"]))
                   for a in snap.get("alarms", []))
    incidents = tuple(IncidentSummary(i["id"], i["title"], i["severity"], i["status"],
                                      i["crew"], datetime.fromisoformat(i["opened_at"]))
                      for i in snap.get("incidents", []))
    return Handover(str(row.id), row.estate_id, row.outgoing, row.incoming, row.prepared_at,
                    row.note, entries, alarms, incidents, row.accepted_at,
                    tuple(snap.get("acknowledged", ())))


def _payload(h: Handover) -> dict[str, Any]:
    return {"handover_id": int(h.id), "outgoing": h.outgoing, "incoming": h.incoming,
            "prepared_at": iso(h.prepared_at), "accepted_at": iso(h.accepted_at),
            "entries": len(h.entries), "alarms": len(h.alarms), "incidents": len(h.incidents)}


def prepare_handover(session: Session, estate_id: str, outgoing: str, incoming: str,
                     at: datetime, note: str = "") -> Handover:
    """Put the shift in front of ``incoming`` (see the module's docstring)."""
    waiting = pending_handover(session, estate_id)
    if waiting is not None:
        if (waiting.outgoing, waiting.incoming) == (outgoing.strip(), incoming.strip()):
            return waiting
        raise ShiftLogError(f"the handover from {waiting.outgoing} to {waiting.incoming} "
                            "is waiting to be accepted")
    last = session.scalars(select(HandoverRow.accepted_at).where(
        HandoverRow.estate_id == estate_id, HandoverRow.accepted_at.is_not(None))
        .order_by(HandoverRow.accepted_at.desc())).first()
    entries = log_entries(session, estate_id, since=last)
    alarms = [AlarmSummary(r.alarm.source, r.alarm.rule_id, r.alarm.severity, r.alarm.state,
                           r.alarm.message, r.alarm.raised_at)
              for r in active_alarms(session, estate_id)]
    incidents = [IncidentSummary(i.id, i.title, i.severity, i.status, i.crew, i.opened_at)
                 for i in open_incidents(session, estate_id)]
    handover = shiftlog.prepare_handover("0", estate_id, outgoing, incoming, at, entries,
                                         alarms, incidents, note, since=last)
    new_id = insert_ignoring(session, _handovers, {
        "estate_id": estate_id, "outgoing": handover.outgoing, "incoming": handover.incoming,
        "prepared_at": at, "pending_slot": 1, "note": handover.note,
        "snapshot": _snapshot(handover)}, ["estate_id", "pending_slot"])
    if new_id is None:  # another request prepared one meanwhile
        return prepare_handover(session, estate_id, outgoing, incoming, at, note)
    stored = replace(handover, id=str(new_id))
    add_event(session, estate_id, "handover.prepared", "handover", stored.id,
              _payload(stored), at, f"handover:{new_id}:prepared")
    return stored


def accept_handover(session: Session, handover_id: int, by: str, at: datetime, *,
                    estate_id: str | None = None,
                    acknowledged: Iterable[str] | None = None) -> Handover:
    """The incoming operator accepts; accepting again (the same operator) returns it.
    With ``acknowledged``, every alarm and incident handed over must be in it, and the
    acknowledgement is kept with the handover."""
    row = session.get(HandoverRow, handover_id, with_for_update=True)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise RecordNotFound(f"no handover {handover_id}")
    current = _handover(row)
    if current.accepted and by.strip() == current.incoming:
        return current
    accepted = shiftlog.accept_handover(current, by, at, acknowledged)
    if accepted.acknowledged:
        row.snapshot = {**row.snapshot, "acknowledged": list(accepted.acknowledged)}
    row.accepted_at = accepted.accepted_at
    row.pending_slot = None
    session.flush()
    add_event(session, row.estate_id, "handover.accepted", "handover", accepted.id,
              _payload(accepted), at, f"handover:{row.id}:accepted")
    return accepted


def pending_handover(session: Session, estate_id: str) -> Handover | None:
    row = session.scalars(select(HandoverRow).where(
        HandoverRow.estate_id == estate_id, HandoverRow.pending_slot == 1)).first()
    return None if row is None else _handover(row)


def get_handover(session: Session, handover_id: int, *, estate_id: str | None = None,
                 ) -> Handover:
    row = session.get(HandoverRow, handover_id)
    if row is None or (estate_id is not None and row.estate_id != estate_id):
        raise RecordNotFound(f"no handover {handover_id}")
    return _handover(row)


def recent_handovers(session: Session, estate_id: str, limit: int = 20) -> list[Handover]:
    """The newest handovers, the newest first (the one waiting among them)."""
    rows = session.scalars(select(HandoverRow).where(HandoverRow.estate_id == estate_id)
                           .order_by(HandoverRow.prepared_at.desc(), HandoverRow.id.desc())
                           .limit(limit))
    return [_handover(r) for r in rows]
