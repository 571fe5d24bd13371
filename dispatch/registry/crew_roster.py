"""The stored crews and their weekly shifts: loaded from the estate description (the loader
calls ``load_crews``), read for the assignment planner (``crews``), and stood down or
back up by an operator (``set_crew_available``). Each function takes a ``Session`` in a
transaction the caller commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.incidents.crews import Crew, Shift
from dispatch.registry.control_room import CrewRow, CrewShiftRow
from dispatch.registry.outbox import RecordNotFound
from estate.assets import WEEKDAYS
from estate.model import EstateSpec


def load_crews(session: Session, spec: EstateSpec, now: datetime) -> dict[str, int]:
    """Upsert the estate description's crews and their shifts; crews it no longer lists are
    retired (assignments name them). Counts of added, updated, unchanged, retired."""
    counts = {"added": 0, "updated": 0, "unchanged": 0, "retired": 0}
    existing = {c.id: c for c in session.scalars(select(CrewRow).where(
        CrewRow.estate_id == spec.id))}
    for crew in spec.crews:
        x, y = spec.crew_position(crew)
        values = {"name": crew.name, "skills": sorted(crew.skills), "position_x": x,
                  "position_y": y, "capacity": crew.capacity, "retired_at": None}
        shifts = [(sum(1 << WEEKDAYS.index(d) for d in set(s.days)), s.start_minute,
                   s.end_minute) for s in crew.shifts]
        row = existing.pop(crew.id, None)
        if row is None:
            session.add(CrewRow(estate_id=spec.id, id=crew.id, available=True, **values))
            counts["added"] += 1
            changed = True
        else:
            changed = any(getattr(row, k) != v for k, v in values.items())
            for k, v in values.items():
                setattr(row, k, v)
        session.flush()
        have = [(s.days_mask, s.start_minute, s.end_minute) for s in session.scalars(
            select(CrewShiftRow).where(CrewShiftRow.estate_id == spec.id,
                                       CrewShiftRow.crew_id == crew.id)
            .order_by(CrewShiftRow.position))]
        if have != shifts:
            for old in session.scalars(select(CrewShiftRow).where(
                    CrewShiftRow.estate_id == spec.id, CrewShiftRow.crew_id == crew.id)):
                session.delete(old)
            session.flush()
            session.add_all(CrewShiftRow(estate_id=spec.id, crew_id=crew.id, position=i,
                                         days_mask=d, start_minute=s, end_minute=e)
                            for i, (d, s, e) in enumerate(shifts))
            changed = True
        if row is not None:
            counts["updated" if changed else "unchanged"] += 1
    for row in existing.values():
        if row.retired_at is None:
            row.retired_at = now
            counts["retired"] += 1
    session.flush()
    return counts


def crews(session: Session, estate_id: str) -> list[Crew]:
    """The estate's crews (retired ones left out), with their shifts."""
    rows = session.scalars(select(CrewRow).where(
        CrewRow.estate_id == estate_id, CrewRow.retired_at.is_(None)).order_by(CrewRow.id))
    shifts: dict[str, list[Shift]] = {}
    for s in session.scalars(select(CrewShiftRow).where(CrewShiftRow.estate_id == estate_id)
                             .order_by(CrewShiftRow.crew_id, CrewShiftRow.position)):
        shifts.setdefault(s.crew_id, []).append(Shift(s.days_mask, s.start_minute,
                                                      s.end_minute))
    return [Crew(r.id, r.name, frozenset(r.skills), (r.position_x, r.position_y), r.capacity,
                 tuple(shifts.get(r.id, ())), r.available) for r in rows]


def set_crew_available(session: Session, estate_id: str, crew_id: str, available: bool,
                       ) -> None:
    """Stand a crew down (sick, vehicle broken down) or back up, whatever its calendar."""
    row = session.get(CrewRow, (estate_id, crew_id))
    if row is None:
        raise RecordNotFound(f"no crew {crew_id}")
    row.available = available
