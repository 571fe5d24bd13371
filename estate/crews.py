"""Field crews of an estate: who can fix what, when they work and where they start from.

A crew has ``skills`` (``SKILLS``), a weekly calendar of ``shifts`` in the estate's local
time (a shift whose end is at or before its start runs past midnight, and belongs to the
day it starts), a ``base`` facility or a ``position`` on the site plan (metres east and
north, like facilities' positions), and a ``capacity``: how many incidents it may hold at
once (one being worked, the others queued behind it).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from estate.assets import WEEKDAYS, Clock, Weekday, parse_clock
from estate.errors import TopicError
from estate.topics import validate_identifier as _validate

Skill = Literal["electrical", "water", "gas", "metering", "hvac", "general"]
SKILLS: Final[tuple[Skill, ...]] = ("electrical", "water", "gas", "metering", "hvac",
                                    "general")
"""What an incident may need and a crew may have; ``general`` crews take any incident that
needs ``general``."""


class ShiftSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Weekday, ...] = WEEKDAYS
    start: Clock
    end: Clock

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        parse_clock(value, end=True)
        return value

    @property
    def start_minute(self) -> int:
        return parse_clock(self.start)

    @property
    def end_minute(self) -> int:
        return parse_clock(self.end, end=True)


class CrewSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = Field(max_length=200)
    skills: tuple[Skill, ...] = Field(min_length=1)
    base: str | None = None  # a facility id: the crew starts from its position
    position: tuple[float, float] | None = None
    capacity: Annotated[int, Field(ge=1, le=20)] = 1
    shifts: tuple[ShiftSpec, ...] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        try:
            return _validate(value, "crew id")
        except TopicError as exc:
            raise ValueError(exc.detail) from exc

    @model_validator(mode="after")
    def _where(self) -> CrewSpec:
        if self.base is not None and self.position is not None:
            raise ValueError(f"crew {self.id!r}: give a base or a position, not both")
        return self


def check_crews(crews: list[CrewSpec], facilities: set[str]) -> None:
    """Cross-checks: ids unique, bases exist. Raise ``ValueError`` naming the problem."""
    seen: set[str] = set()
    for crew in crews:
        if crew.id in seen:
            raise ValueError(f"crew {crew.id!r} appears twice")
        seen.add(crew.id)
        if crew.base is not None and crew.base not in facilities:
            raise ValueError(f"crew {crew.id!r}: no facility {crew.base!r} to be based at")
