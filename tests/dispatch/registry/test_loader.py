"""Loading the estate YAML into the registry: idempotent, updates, retirements, deletions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select

from dispatch.registry.db import session_factory, upgrade
from dispatch.registry.loader import load_into_registry, registry_command
from dispatch.registry.models import (
    AssetRow,
    Base,
    CapacityLimitRow,
    FacilityRow,
    MeterRow,
    TariffPeriodRow,
    TariffRow,
)
from estate.model import SAMPLE_ESTATE, EstateSpec, load_estate


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every estate table, in key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for name, table in Base.metadata.tables.items():
            rows = connection.execute(select(table).order_by(*table.primary_key.columns))
            out[name] = [tuple(r) for r in rows]
    return out


def _load(engine: Engine, spec: EstateSpec) -> Any:
    with session_factory(engine).begin() as session:
        return load_into_registry(session, spec)


def _edited(change: Callable[[dict[str, Any]], dict[str, Any]]) -> EstateSpec:
    return EstateSpec.model_validate(change(yaml.safe_load(SAMPLE_ESTATE.read_text("utf-8"))))


def test_sample_loads_and_a_second_load_changes_nothing(engine: Engine) -> None:
    upgrade(engine)
    spec = load_estate(SAMPLE_ESTATE)
    first = _load(engine, spec)
    assert first.counts["assets"]["added"] == 7
    assert first.counts["tariffs"]["added"] == 2
    assert first.counts["capacity_limits"]["added"] == 5
    before = _snapshot(engine)
    second = _load(engine, spec)
    assert not second.changed
    assert _snapshot(engine) == before
    with session_factory(engine)() as session:
        battery = session.get(AssetRow, ("demo", "battery"))
        assert battery is not None
        assert battery.facility_id is None
        assert (battery.device_facility_id, battery.device_id) == ("utilities", "battery")
        assert battery.params["soc_max_kwh"] == 1000
        winter = session.scalars(select(TariffRow).order_by(TariffRow.valid_from)).first()
        assert winter is not None
        assert [(p.name, p.start_minute, p.end_minute, p.days_mask)
                for p in winter.periods][:2] == [("low", 23 * 60, 7 * 60, 0b1111111),
                                                 ("medium", 7 * 60, 17 * 60, 0b0011111)]


def test_changes_update_retire_and_delete(engine: Engine) -> None:
    upgrade(engine)
    _load(engine, load_estate(SAMPLE_ESTATE))

    def change(raw: dict[str, Any]) -> dict[str, Any]:
        raw["assets"] = [a for a in raw["assets"] if a["id"] != "genset"]
        raw["assets"][0]["soc_max_kwh"] = 1200
        raw["tariffs"] = raw["tariffs"][:1]
        raw["tariffs"][0]["periods"][2]["price"] = 0.25
        raw["capacity_limits"][0]["limit_kw"] = 2600
        raw["facilities"][2]["meters"] = raw["facilities"][2]["meters"][:1]
        gas = next(n for n in raw["networks"] if n["id"] == "gas")
        gas["nodes"][0]["feeds"].remove("metal/gas")
        return raw

    summary = _load(engine, _edited(change))
    assert summary.counts["assets"]["retired"] == 1
    assert summary.counts["assets"]["updated"] == 1
    assert summary.counts["tariffs"]["deleted"] == 1
    assert summary.counts["tariffs"]["updated"] == 1
    assert summary.counts["capacity_limits"]["updated"] == 1
    assert summary.counts["meters"]["retired"] >= 1
    with session_factory(engine)() as session:
        genset = session.get(AssetRow, ("demo", "genset"))
        assert genset is not None
        assert genset.retired_at is not None
        battery = session.get(AssetRow, ("demo", "battery"))
        assert battery is not None
        assert battery.params["soc_max_kwh"] == 1200
        assert len(session.scalars(select(TariffRow)).all()) == 1
        assert 0.25 in {p.energy_price for p in session.scalars(select(TariffPeriodRow))}
        assert session.scalars(select(CapacityLimitRow).where(
            CapacityLimitRow.facility_id.is_(None))).one().limit_kw == 2600
        retired = session.scalars(select(MeterRow).where(MeterRow.retired_at.is_not(None))).all()
        assert {m.facility_id for m in retired} == {"metal"}

    again = _load(engine, load_estate(SAMPLE_ESTATE))  # the original file brings them back
    assert again.counts["assets"]["updated"] == 2
    with session_factory(engine)() as session:
        assert session.scalars(select(AssetRow).where(AssetRow.retired_at.is_not(None))).all() == []
        assert session.scalars(select(MeterRow).where(MeterRow.retired_at.is_not(None))).all() == []
        assert session.scalars(select(FacilityRow).where(
            FacilityRow.retired_at.is_not(None))).all() == []
        assert len(session.scalars(select(TariffRow)).all()) == 2


def test_registry_command_migrates_and_loads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'registry.sqlite'}"
    summary = registry_command(url, SAMPLE_ESTATE)
    assert summary.counts["facilities"]["added"] == 5
    assert "assets: 7 added" in str(summary)
    assert not registry_command(url, SAMPLE_ESTATE).changed
