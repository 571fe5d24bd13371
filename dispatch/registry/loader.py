"""Loading an estate description (YAML, ``estate.model``) into the registry.

The load is an idempotent upsert: loading the same file again changes no row, a changed
file updates the rows it changed. What the file no longer lists is handled by what may
still refer to it:

- facilities, meters and assets are *retired* (``retired_at`` set), never deleted: plans,
  commands, alarms and the audit log name them, and their history must stay readable. Listed
  again, they come back (``retired_at`` cleared).
- tariff versions and capacity limits are *deleted*: they are configuration with validity
  dates, nothing refers to their rows, and a plan keeps the prices it used in its summary.

Rows are matched by their identifiers: facility, meter and asset ids; a tariff version by
name and ``valid_from``; a capacity limit by facility (none: the estate) and ``valid_from``.
Networks (``dispatch.registry.networks``) are configuration and deleted when the file
drops them; crews (``dispatch.registry.crew_roster.load_crews``) are retired, as
assignments name them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.registry.crew_roster import load_crews
from dispatch.registry.db import Registry
from dispatch.registry.models import (
    AssetRow,
    CapacityLimitRow,
    EstateRow,
    FacilityRow,
    MeterRow,
    TariffPeriodRow,
    TariffRow,
)
from dispatch.registry.networks import load_networks
from estate.assets import TariffSpec, days_mask
from estate.model import EstateSpec, load_estate

log = logging.getLogger(__name__)


@dataclass
class LoadSummary:
    """What a load did, per table: added, updated, unchanged, retired, deleted."""

    estate: str
    counts: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, table: str, outcome: str) -> None:
        self.counts.setdefault(table, Counter())[outcome] += 1

    @property
    def changed(self) -> bool:
        return any(n for c in self.counts.values() for k, n in c.items() if k != "unchanged")

    def lines(self) -> list[str]:
        order = ("added", "updated", "unchanged", "retired", "deleted")
        return [f"{table}: " + ", ".join(f"{c[k]} {k}" for k in order if c[k])
                for table, c in self.counts.items()]

    def __str__(self) -> str:
        return "\n".join([f"estate {self.estate}", *self.lines()])


def _assign(row: Any, values: dict[str, Any]) -> bool:
    """Set the attributes that differ; True if any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _upsert(session: Session, summary: LoadSummary, table: str, existing: dict[Any, Any],
            key: Any, make: type[Any], values: dict[str, Any]) -> Any:
    row = existing.pop(key, None)
    if row is None:
        row = make(**values)
        session.add(row)
        summary.count(table, "added")
    elif _assign(row, values):
        summary.count(table, "updated")
    else:
        summary.count(table, "unchanged")
    return row


def _retire(rows: dict[Any, Any], summary: LoadSummary, table: str, now: datetime) -> None:
    for row in rows.values():
        if row.retired_at is None:
            row.retired_at = now
            summary.count(table, "retired")


def _periods(spec: TariffSpec) -> list[dict[str, Any]]:
    return [{"position": i, "name": p.name, "days_mask": days_mask(p.days),
             "start_minute": p.start_minute, "end_minute": p.end_minute,
             "energy_price": p.price} for i, p in enumerate(spec.periods)]


def _load_tariffs(session: Session, spec: EstateSpec, summary: LoadSummary) -> None:
    existing: dict[tuple[str, date], TariffRow] = {
        (t.name, t.valid_from): t
        for t in session.scalars(select(TariffRow).where(TariffRow.estate_id == spec.id))}
    for t in spec.tariffs:
        values = {"estate_id": spec.id, "name": t.name, "valid_from": t.valid_from,
                  "valid_to": t.valid_to, "currency": t.currency,
                  "demand_charge_per_kw": t.demand_charge_per_kw,
                  "export_price": t.export_price, "export_limit_kw": t.export_limit_kw}
        row = existing.pop((t.name, t.valid_from), None)
        wanted = _periods(t)
        if row is None:
            session.add(TariffRow(**values, periods=[TariffPeriodRow(**p) for p in wanted]))
            summary.count("tariffs", "added")
            continue
        changed = _assign(row, values)
        have = [{k: getattr(p, k) for k in wanted[0]} for p in row.periods] if wanted else []
        if have != wanted:
            # Periods are replaced as a whole: their positions are their identity.
            row.periods.clear()
            session.flush()
            row.periods.extend(TariffPeriodRow(**p) for p in wanted)
            changed = True
        summary.count("tariffs", "updated" if changed else "unchanged")
    for row in existing.values():
        session.delete(row)
        summary.count("tariffs", "deleted")


def _load_limits(session: Session, spec: EstateSpec, summary: LoadSummary) -> None:
    existing: dict[tuple[str | None, date], CapacityLimitRow] = {
        (c.facility_id, c.valid_from): c
        for c in session.scalars(select(CapacityLimitRow)
                                 .where(CapacityLimitRow.estate_id == spec.id))}
    for c in spec.capacity_limits:
        _upsert(session, summary, "capacity_limits", existing, (c.facility, c.valid_from),
                CapacityLimitRow, {"estate_id": spec.id, "facility_id": c.facility,
                                "limit_kw": c.limit_kw, "valid_from": c.valid_from,
                                "valid_to": c.valid_to, "penalty_per_kw": c.penalty_per_kw})
    for row in existing.values():
        session.delete(row)
        summary.count("capacity_limits", "deleted")


def load_into_registry(session: Session, spec: EstateSpec,
                       now: datetime | None = None) -> LoadSummary:
    """Upsert ``spec`` into the registry in ``session`` (the caller commits)."""
    now = now or datetime.now(UTC)
    summary = LoadSummary(spec.id)
    estates = {e.id: e for e in session.scalars(select(EstateRow).where(EstateRow.id == spec.id))}
    _upsert(session, summary, "estates", estates, spec.id, EstateRow, {
        "id": spec.id, "name": spec.name, "timezone": spec.timezone,
        "contracted_capacity_kw": spec.contracted_capacity_kw})
    session.flush()

    facilities = {f.id: f for f in session.scalars(
        select(FacilityRow).where(FacilityRow.estate_id == spec.id))}
    meters = {(m.facility_id, m.id): m for m in session.scalars(
        select(MeterRow).where(MeterRow.estate_id == spec.id))}
    for f in spec.facilities:
        _upsert(session, summary, "facilities", facilities, f.id, FacilityRow, {
            "estate_id": spec.id, "id": f.id, "name": f.name, "sector": f.sector,
            "retired_at": None})
    session.flush()  # meters, assets and limits refer to facilities
    for f in spec.facilities:
        for m in f.meters:
            _upsert(session, summary, "meters", meters, (f.id, m.id), MeterRow, {
                "estate_id": spec.id, "facility_id": f.id, "id": m.id, "kind": m.kind,
                "name": m.name, "incomer": m.incomer, "retired_at": None})
    _retire(meters, summary, "meters", now)
    _retire(facilities, summary, "facilities", now)

    assets = {a.id: a for a in session.scalars(
        select(AssetRow).where(AssetRow.estate_id == spec.id))}
    for a in spec.assets:
        _upsert(session, summary, "assets", assets, a.id, AssetRow, {
            "estate_id": spec.id, "id": a.id, "facility_id": a.facility, "kind": a.kind,
            "name": a.name, "params": a.params(), "control_mode": a.control_mode,
            "device_facility_id": a.device_facility, "device_id": a.device_id,
            "retired_at": None})
    _retire(assets, summary, "assets", now)

    _load_tariffs(session, spec, summary)
    _load_limits(session, spec, summary)
    session.flush()
    for table, counts in (("networks", load_networks(session, spec)),
                          ("crews", load_crews(session, spec, now))):
        for outcome, n in counts.items():
            for _ in range(n):
                summary.count(table, outcome)
    log.info("estate %s loaded into the registry: %s", spec.id, "; ".join(summary.lines()))
    return summary


def load_estate_into(registry: Registry, spec: EstateSpec) -> LoadSummary:
    """Load ``spec`` into ``registry`` in one transaction (it logs what it changed)."""
    with registry.writing() as session:
        return load_into_registry(session, spec)


def registry_command(url: str, estate_file: Path) -> LoadSummary:
    """``estate registry load``: migrate the registry at ``url``, then load the file."""
    spec = load_estate(estate_file)
    registry = Registry(url)
    try:
        registry.migrate()
        return load_estate_into(registry, spec)
    finally:
        registry.close()
