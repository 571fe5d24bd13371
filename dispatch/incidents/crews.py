"""Crews as the assignment sees them: skills, a weekly calendar, a position, a capacity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from estate.assets import WEEKDAYS
from estate.crews import CrewSpec


@dataclass(frozen=True, slots=True)
class Shift:
    """Weekly: on the days of ``days_mask`` (bit 0 Monday) from ``start_minute`` to
    ``end_minute`` local; an end at or before the start runs past midnight."""

    days_mask: int
    start_minute: int
    end_minute: int

    def covers(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        today = bool(self.days_mask >> local.weekday() & 1)
        if self.start_minute < self.end_minute:
            return today and self.start_minute <= minute < self.end_minute
        yesterday = bool(self.days_mask >> ((local.weekday() - 1) % 7) & 1)
        return (today and minute >= self.start_minute) or (
            yesterday and minute < self.end_minute)


@dataclass(frozen=True, slots=True)
class Crew:
    id: str
    name: str
    skills: frozenset[str]
    position: tuple[float, float]
    capacity: int
    shifts: tuple[Shift, ...]
    # False: stood down by an operator (sick, vehicle broken down), whatever the calendar.
    available: bool = True

    def on_shift(self, at: datetime, timezone: ZoneInfo) -> bool:
        local = at.astimezone(timezone)
        return self.available and any(s.covers(local) for s in self.shifts)

    def can(self, skill: str) -> bool:
        return skill in self.skills


def crew_from_spec(spec: CrewSpec, position: tuple[float, float]) -> Crew:
    shifts = tuple(Shift(sum(1 << WEEKDAYS.index(d) for d in set(s.days)), s.start_minute,
                         s.end_minute) for s in spec.shifts)
    return Crew(spec.id, spec.name, frozenset(spec.skills), position, spec.capacity, shifts)


def crews_on_shift(crews: Iterable[Crew], at: datetime, timezone: ZoneInfo) -> list[Crew]:
    return [c for c in crews if c.on_shift(at, timezone)]
