"""Assets, tariffs and capacity limits in the estate description: parsing and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from estate.assets import (
    BatterySpec,
    DeferrableLoadSpec,
    TariffPeriodSpec,
    check_day_coverage,
    days_mask,
    parse_clock,
)
from estate.errors import ConfigError
from estate.model import SAMPLE_ESTATE, load_estate


def _sample() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(SAMPLE_ESTATE.read_text(encoding="utf-8"))
    return raw


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_the_sample_has_every_kind_of_asset_a_tariff_and_limits() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    assert {a.kind for a in spec.assets} == {"battery", "genset", "deferrable_load",
                                             "thermal_storage", "pump_tank", "pv"}
    battery = next(a for a in spec.assets if isinstance(a, BatterySpec))
    assert battery.facility is None
    assert (battery.device_facility, battery.device_id) == ("utilities", "battery")
    assert battery.params()["charge_kw"] == 500
    assert "id" not in battery.params()
    assert [t.valid_from.isoformat() for t in spec.tariffs] == ["2026-01-01", "2026-06-01"]
    assert {c.facility for c in spec.capacity_limits} == {None, "textile", "foods", "metal",
                                                          "utilities"}


def test_clock_and_days() -> None:
    assert parse_clock("07:30") == 450
    assert parse_clock("24:00", end=True) == 1440
    for bad in ("24:00", "7", "07:60", "ab:cd"):
        with pytest.raises(ValueError, match="time of day"):
            parse_clock(bad)
    assert days_mask(["mon", "sun"]) == 0b1000001


def _period(name: str, start: str, end: str, *days: str) -> TariffPeriodSpec:
    extra: dict[str, Any] = {"days": days} if days else {}
    return TariffPeriodSpec(name=name, price=0.1, start=start, end=end, **extra)


def test_day_coverage_accepts_wrapping_periods_and_names_gaps_and_overlaps() -> None:
    check_day_coverage([_period("low", "22:00", "06:00"), _period("day", "06:00", "22:00")])
    check_day_coverage([_period("all", "00:00", "24:00")])
    with pytest.raises(ValueError, match=r"no period covers mon at 06:00"):
        check_day_coverage([_period("low", "22:00", "06:00"), _period("day", "07:00", "22:00")])
    with pytest.raises(ValueError, match=r"periods 'low' and 'day' overlap on mon at 21:00"):
        check_day_coverage([_period("low", "21:00", "06:00"), _period("day", "06:00", "22:00")])
    with pytest.raises(ValueError, match=r"no period covers sat at 00:00"):
        check_day_coverage([_period("all", "00:00", "24:00", "mon", "tue", "wed", "thu",
                                    "fri")])


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["assets"][0].update(facility="bakery"), "asset 'battery': no facility 'bakery'"),
    (lambda r: r["assets"][0].update(device="nowhere/battery"),
     "device 'nowhere/battery' names no known facility"),
    (lambda r: r["assets"][0].update(device="battery"), "must be written facility/device"),
    (lambda r: r["assets"].append(dict(r["assets"][1])), "asset 'genset' appears twice"),
    (lambda r: r["assets"][0].update(kind="flywheel"), "flywheel"),
    (lambda r: r["assets"][0].update(soc_min_kwh=2000), "soc_min_kwh must be below"),
    (lambda r: r["assets"][1].update(min_kw=500), "min_kw must not exceed max_kw"),
    (lambda r: r["assets"][2].update(energy_kwh=5000), "cannot be drawn at 250.0 kW within"),
    (lambda r: r["tariffs"][0]["periods"].pop(0), "no period covers mon at 00:00"),
    (lambda r: r["tariffs"][0]["periods"][2].update(start="16:00"),
     "periods 'medium' and 'peak' overlap on mon at 16:00"),
    (lambda r: r["tariffs"][1].update(valid_from="2026-05-01"),
     "versions from 2026-01-01 and 2026-05-01 overlap"),
    (lambda r: r["tariffs"][0].update(valid_to="2025-01-01"), "valid_to must be after"),
    (lambda r: r["capacity_limits"][1].update(facility="bakery"),
     "capacity limit: no facility 'bakery'"),
    (lambda r: r["capacity_limits"].append({"limit_kw": 1, "valid_from": "2026-03-01"}),
     "capacity limits of the estate from 2026-01-01 and 2026-03-01 overlap"),
])
def test_mistakes_stop_the_load_with_a_message_naming_them(
        tmp_path: Path, change: Any, message: str) -> None:
    raw = _sample()
    change(raw)
    with pytest.raises(ConfigError, match=r"estate file .* is invalid") as info:
        load_estate(_write(tmp_path, raw))
    assert message in str(info.value)


def test_a_deferrable_window_may_wrap_past_midnight() -> None:
    load = DeferrableLoadSpec(id="x", kind="deferrable_load", energy_kwh=100, max_kw=20,
                              window_start="22:00", window_end="03:00")
    assert load.days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    with pytest.raises(ValueError, match="within 300 minutes"):
        DeferrableLoadSpec(id="x", kind="deferrable_load", energy_kwh=101, max_kw=20,
                           window_start="22:00", window_end="03:00")


def test_an_estate_without_assets_still_loads(tmp_path: Path) -> None:
    raw = _sample()
    for key in ("assets", "tariffs", "capacity_limits"):
        del raw[key]
    spec = load_estate(_write(tmp_path, raw))
    assert (spec.assets, spec.tariffs, spec.capacity_limits) == ([], [], [])
