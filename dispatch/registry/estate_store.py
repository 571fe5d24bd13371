"""The estate as the registry holds it, read for planning: facilities, assets, incomer
meters, tariff versions and capacity limits (retired rows left out)."""

from __future__ import annotations

from sqlalchemy import select

from dispatch.registry.db import Registry
from dispatch.registry.models import (
    AssetRow,
    CapacityLimitRow,
    EstateRow,
    FacilityRow,
    MeterRow,
    TariffRow,
)
from dispatch.registry.records import (
    AssetRecord,
    CapacityLimitRecord,
    EstateRecord,
    FacilityRecord,
    MeterRecord,
    PlanningInputs,
    TariffPeriodRecord,
    TariffRecord,
)
from estate.errors import PlanningError


def planning_inputs(registry: Registry, estate_id: str) -> PlanningInputs:
    """Everything of ``estate_id`` a plan is assembled from; ``PlanningError`` when the
    registry has no such estate."""
    with registry.reading() as session:
        estate = session.get(EstateRow, estate_id)
        if estate is None:
            raise PlanningError(f"estate {estate_id!r} is not in the registry "
                                "(estate registry load)")
        facilities = session.scalars(
            select(FacilityRow).where(FacilityRow.estate_id == estate_id,
                                      FacilityRow.retired_at.is_(None))
            .order_by(FacilityRow.id))
        assets = session.scalars(
            select(AssetRow).where(AssetRow.estate_id == estate_id,
                                   AssetRow.retired_at.is_(None))
            .order_by(AssetRow.id))
        incomers = session.scalars(
            select(MeterRow).where(MeterRow.estate_id == estate_id,
                                   MeterRow.retired_at.is_(None),
                                   MeterRow.incomer.is_(True), MeterRow.kind == "electricity")
            .order_by(MeterRow.facility_id, MeterRow.id))
        tariffs = session.scalars(select(TariffRow).where(TariffRow.estate_id == estate_id)
                                  .order_by(TariffRow.valid_from, TariffRow.id))
        limits = session.scalars(
            select(CapacityLimitRow).where(CapacityLimitRow.estate_id == estate_id)
            .order_by(CapacityLimitRow.valid_from, CapacityLimitRow.id))
        return PlanningInputs(
            EstateRecord(estate.id, estate.name, estate.timezone,
                         estate.contracted_capacity_kw),
            tuple(FacilityRecord(f.id, f.name) for f in facilities),
            tuple(AssetRecord(a.id, a.kind, a.name, dict(a.params), a.facility_id,
                              a.control_mode, a.device_facility_id, a.device_id)
                  for a in assets),
            tuple(MeterRecord(m.facility_id, m.id) for m in incomers),
            tuple(TariffRecord(t.valid_from, t.valid_to, t.currency, t.demand_charge_per_kw,
                               t.export_price, t.export_limit_kw,
                               tuple(TariffPeriodRecord(p.name, p.energy_price, p.start_minute,
                                                        p.end_minute, p.days_mask)
                                     for p in t.periods))
                  for t in tariffs),
            tuple(CapacityLimitRecord(c.facility_id, c.limit_kw, c.valid_from, c.valid_to)
                  for c in limits))
