"""The level a store starts the plan at: measured when the telemetry allows, otherwise the
middle of its range, with the reason in words."""

from __future__ import annotations

import math

import pytest

from dispatch.planning.levels import store_level
from estate.assets import PumpTankSpec
from estate.model import SAMPLE_ESTATE, load_estate


@pytest.mark.parametrize(("percent", "age_s", "value", "measured", "note"), [
    (60.0, 30.0, 240.0, True, ""),
    (None, None, 225.0, False, "tower: level not measured; half full assumed"),
    (60.0, 7200.0, 225.0, False, "tower: no level in the last 60 minutes; half full assumed"),
    (130.0, 5.0, 225.0, False, "tower: implausible level 130 %; half full assumed"),
    (math.nan, 5.0, 225.0, False, "tower: level not measured; half full assumed"),
    (5.0, 5.0, 50.0, True, "tower: measured 20 m³, below the plan's minimum; 50 m³ assumed"),
    (100.0, 5.0, 400.0, True, ""),
])
def test_store_level(percent: float | None, age_s: float | None, value: float,
                     measured: bool, note: str) -> None:
    level = store_level("tower", 50.0, 400.0, 400.0, percent, age_s)
    assert (level.value, level.measured, level.note) == (value, measured, note)


def test_above_the_plans_maximum() -> None:
    level = store_level("cold tank", 0.0, 900.0, 1200.0, 90.0, 0.0, unit="kWh")
    assert (level.value, level.note) == (
        900.0, "cold tank: measured 1,080 kWh, above the plan's maximum; 900 kWh assumed")


def test_the_sample_names_its_towers_level_meter() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    well = next(a for a in spec.assets if a.id == "well")
    assert isinstance(well, PumpTankSpec)
    assert well.level_meter == "utilities/tower"
    assert spec.meter_kinds()[well.level_meter] == "tank"
    assert well.params()["level_meter"] == "utilities/tower"
