"""Crews' calendars in the estate's local time, shifts across midnight included."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from dispatch.incidents.crews import crew_from_spec, crews_on_shift
from estate.model import SAMPLE_ESTATE, load_estate

SPEC = load_estate(SAMPLE_ESTATE)
TZ = ZoneInfo(SPEC.timezone)
CREWS = {c.id: crew_from_spec(c, SPEC.crew_position(c)) for c in SPEC.crews}


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=TZ)  # 2026-12-07 is a Monday


@pytest.mark.parametrize(("crew", "moment", "on"), [
    ("electric-day", _local(7, 6), True),
    ("electric-day", _local(7, 17, 59), True),
    ("electric-day", _local(7, 18), False),
    ("electric-day", _local(12, 10), True),  # Saturday morning
    ("electric-day", _local(12, 14), False),
    ("electric-day", _local(13, 10), False),  # Sunday
    ("electric-night", _local(7, 23), True),
    ("electric-night", _local(8, 3), True),  # Monday's shift, past midnight
    ("electric-night", _local(8, 6), False),
    ("electric-night", _local(8, 12), False),
    ("gas-on-call", _local(13, 3), True),
    ("facilities", _local(7, 8), True),
    ("facilities", _local(7, 17), False),
])
def test_on_shift_in_local_time(crew: str, moment: datetime, on: bool) -> None:
    assert CREWS[crew].on_shift(moment.astimezone(UTC), TZ) is on


def test_crews_carry_skills_positions_and_capacity() -> None:
    pipes = CREWS["pipes"]
    assert pipes.can("water")
    assert pipes.can("gas")
    assert not pipes.can("electrical")
    assert pipes.position == (380.0, 40.0)  # based at the workshop units
    assert pipes.capacity == 2
    at_night = _local(9, 2).astimezone(UTC)
    assert {c.id for c in crews_on_shift(CREWS.values(), at_night, TZ)} == {
        "electric-night", "gas-on-call"}
    stood_down = replace(CREWS["gas-on-call"], available=False)
    assert not stood_down.on_shift(at_night, TZ)
