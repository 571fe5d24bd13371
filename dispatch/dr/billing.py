"""A month's statements from the registry (tenants, meters, tariffs, contracts, prices,
settlements) and the metered data (``dispatch.dr.metered.MeteredData``).

Which meters are billed (``dispatch.registry.dr_book.billed_meters``): each tenant's
electricity incomers, and its water and gas meters that feed no other meter. The shared
assets (no facility in the estate file) are read at their own meters: their net draw is
the estate's too, and their fuel (genset) and wear (battery) are their running cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from dispatch.dr.allocation import AllocationTerms
from dispatch.dr.metered import MeteredData, grid, on_grid, per_facility
from dispatch.dr.statements import (
    BillingRules,
    EstateBill,
    MonthUsage,
    Statement,
    estate_bill,
    monthly_statements,
)
from dispatch.optimiser import TariffPeriod, TariffVersion, period_names, step_prices
from dispatch.registry import dr_book
from dispatch.registry.db import Registry
from dispatch.registry.estate_store import planning_inputs
from dispatch.registry.records import AssetRecord, TariffRecord
from estate.errors import DemandResponseError

STEP_HOURS = 0.25


def month_span(month: str, timezone: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as the local month's first instant and the next month's."""
    try:
        year, number = (int(part) for part in month.split("-"))
        # Statements read readings stored as epoch time, with baselines and time zones
        # reaching a year either side: months outside 1971-9998 cannot hold any.
        if not 1971 <= year <= 9998:
            raise ValueError(f"year {year} out of range")
        tz = ZoneInfo(timezone)
        start = datetime(year, number, 1, tzinfo=tz)
        end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    except ValueError as exc:
        raise DemandResponseError(f"a month is written YYYY-MM, not {month[:20]!r}") from exc
    return start, end


def tariff_versions(rows: Sequence[TariffRecord]) -> list[TariffVersion]:
    return [TariffVersion(r.valid_from, r.valid_to, tuple(
        TariffPeriod(p.name, p.energy_price, p.start_minute / 60, p.end_minute / 60,
                     frozenset(d for d in range(7) if p.days_mask >> d & 1))
        for p in r.periods)) for r in rows]


@dataclass(frozen=True, slots=True, eq=False)
class StatementInputs:
    usage: MonthUsage
    rules: BillingRules
    names: dict[str, str]
    dr_net: dict[str, float]


def _running_cost(assets: Sequence[AssetRecord], power: dict[str, np.ndarray]) -> float:
    """Fuel of the shared gensets (output x fuel cost) and wear of the shared batteries
    (throughput x degradation cost), from their metered power."""
    cost = 0.0
    for asset in assets:
        kw = np.nan_to_num(power.get(asset.id, np.zeros(0)))
        if asset.kind == "genset":
            cost += float(np.maximum(-kw, 0).sum() * STEP_HOURS
                          * float(asset.params.get("fuel_cost", 0.0)))
        elif asset.kind == "battery":
            cost += float(np.abs(kw).sum() * STEP_HOURS
                          * float(asset.params.get("degradation_cost", 0.0)))
    return cost


def statement_inputs(registry: Registry, metered: MeteredData, estate_id: str,
                     month: str) -> StatementInputs:
    """Everything a month's statements are computed from."""
    inputs = planning_inputs(registry, estate_id)
    start, end = month_span(month, inputs.estate.timezone)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    times = grid(start_ms, end_ms)
    with registry.reading() as session:
        meters = dr_book.billed_meters(session, estate_id)
        terms = dr_book.contracts(session, estate_id)
        prices = dr_book.utility_prices(session, estate_id)
        dr_net = dr_book.settled_between(session, estate_id, start, end)
        capacity = dr_book.capacity_terms(session, estate_id, start.date())
    by_kind: dict[str, dict[str, list[str]]] = {"electricity": {}, "water": {}, "gas": {}}
    for m in meters:
        by_kind[m.kind].setdefault(m.facility_id, []).append(m.id)
    keys = {k: [(f, d) for f, ds in v.items() for d in ds] for k, v in by_kind.items()}
    power = per_facility(metered.power_kw(estate_id, keys["electricity"], start_ms, end_ms),
                         by_kind["electricity"], times)
    water = per_facility(metered.consumed(estate_id, keys["water"], "water_volume", start_ms,
                                          end_ms), by_kind["water"], times)
    gas = per_facility(metered.consumed(estate_id, keys["gas"], "gas_volume", start_ms,
                                        end_ms), by_kind["gas"], times)
    shared = [a for a in inputs.assets if a.facility_id is None and a.device_id is not None]
    shared_keys = [(str(a.device_facility_id), str(a.device_id)) for a in shared]
    read = metered.power_kw(estate_id, shared_keys, start_ms, end_ms) if shared_keys else {}
    shared_power = {a.id: on_grid(read.get(k, {}), times)
                    for a, k in zip(shared, shared_keys, strict=True)}
    tariffs = [t for t in inputs.tariffs if t.valid_from < end.date()
               and (t.valid_to is None or t.valid_to > start.date())]
    if not tariffs:
        raise DemandResponseError(f"estate {estate_id}: no tariff is valid in {month}")
    versions = tariff_versions(tariffs)
    first: TariffRecord = max((t for t in tariffs if t.valid_from <= start.date()),
                              key=lambda t: t.valid_from, default=tariffs[0])
    names = {f.id: f.name for f in inputs.facilities}
    sources = {f: "reading_15m power of {}; consumption_15m of {}".format(
        ", ".join(by_kind["electricity"].get(f, [])),
        ", ".join(by_kind["water"].get(f, []) + by_kind["gas"].get(f, []))) for f in names}
    sources["_shared"] = f"power of {', '.join(f'{f}/{d}' for f, d in shared_keys)}"
    usage = MonthUsage(month, times, STEP_HOURS, power, water, gas,
                       np.sum(list(shared_power.values()), axis=0)
                       if shared_power else np.zeros(times.size), sources)
    rules = BillingRules(
        first.currency, f"{first.valid_from.isoformat()} version",
        period_names(versions, start, times.size, STEP_HOURS),
        step_prices(versions, start, times.size, STEP_HOURS), first.demand_charge_per_kw,
        capacity[0] if capacity else inputs.estate.contracted_capacity_kw,
        capacity[1] if capacity else 0.0, prices.get("water", 0.0), prices.get("gas", 0.0),
        _running_cost(shared, shared_power),
        {f: AllocationTerms(t.allocation_rule, t.allocation_weight) for f, t in terms.items()})
    return StatementInputs(usage, rules, names, dr_net)


def estate_statements(registry: Registry, metered: MeteredData, estate_id: str,
                      month: str) -> tuple[list[Statement], EstateBill]:
    """The month's statement of every tenant, and the estate's bill they add up to."""
    s = statement_inputs(registry, metered, estate_id, month)
    return (monthly_statements(s.usage, s.rules, s.names, s.dr_net),
            estate_bill(s.usage, s.rules, list(s.names), s.dr_net))


