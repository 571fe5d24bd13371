"""Acceptance: a month of simulated history (``estate backfill``), rolled up as the worker
does, gives a statement per tenant whose totals add up to the estate's bill from its meters
within 0.5 %, the bill computed a second way here: hourly, from the raw energy and volume
registers rather than the quarter-hour rollups of power the statements use, with prices
read from the estate file rather than through the optimiser's tariff code."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.dr.billing import estate_statements
from dispatch.dr.statement_files import write_statements
from dispatch.dr.statements import EstateBill, Statement
from dispatch.jobs.metered import RollupMeterData
from dispatch.jobs.rollup_levels import CONSUMPTION_15M, READING_1M, READING_15M
from dispatch.jobs.rollups import Rollups, ensure_rollup_policies
from dispatch.registry import dr_book
from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from dispatch.settings import RollupSettings
from edge.backfill import backfill_command
from edge.settings import EdgeSettings
from estate.model import SAMPLE_ESTATE, EstateSpec, load_estate
from estate.ports import Aggregate, Aggregation, TimeRange, Where
from estate.settings import InfluxSettings
from estate.stored import RAW_READINGS
from launcher.servers import InfluxDB

pytestmark = [pytest.mark.servers, pytest.mark.slow]

HOUR_MS = 3_600_000
QUARTER_MS = 900_000
WATER, GAS = 1.8, 0.65


def _last_month(tz: ZoneInfo) -> tuple[str, datetime, datetime]:
    now = datetime.now(tz)
    end = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (end - timedelta(days=1)).replace(day=1)
    return start.strftime("%Y-%m"), start, end


@pytest.fixture
def history(influxdb: InfluxDB) -> Iterator[tuple[InfluxSettings, EstateSpec]]:
    """Last month and this month so far, backfilled at quarter-hours into a database that
    keeps raw readings long enough."""
    settings = InfluxSettings(url=influxdb.url, database="statement_month",
                              raw_retention="120d")
    spec = load_estate(SAMPLE_ESTATE)
    _, start, _ = _last_month(ZoneInfo(spec.timezone))
    days = (datetime.now(UTC) - start).total_seconds() / 86400 + 0.1
    backfill_command(days, 900, settings=EdgeSettings(backfill_influx=settings, seed=11),
                     show_progress=False)
    yield settings, spec
    store = InfluxV1Store(settings)
    store.query('DROP DATABASE "statement_month"')
    store.close()


def _price_per_hour(spec: EstateSpec, moment: datetime) -> float:
    """The tariff's energy price at a local moment, read straight from the estate file."""
    day = moment.date()
    for tariff in spec.tariffs:
        if tariff.valid_from <= day and (tariff.valid_to is None or day < tariff.valid_to):
            minute = moment.hour * 60 + moment.minute
            for period in tariff.periods:
                start, end = period.start_minute, period.end_minute
                inside = start <= minute < end if start < end else (minute >= start
                                                                    or minute < end)
                if inside and moment.strftime("%a").lower() in period.days:
                    return period.price
    raise AssertionError(f"no price at {moment}")


def _register_sums(store: InfluxV1Store, spec: EstateSpec, meters: list[tuple[str, str]],
                   field: str, start_ms: int, end_ms: int, window_ms: int,
                   ) -> dict[int, float]:
    """The sum over ``meters`` of what their register counted per window: the register's
    last value in each window less the one before (the first window against the last
    reading before ``start_ms``)."""
    totals: dict[int, float] = {}
    for facility, device in meters:
        points = store.window_aggregates(
            RAW_READINGS, [Aggregation("last", Aggregate.LAST, field)],
            TimeRange(start_ms - window_ms, end_ms), window_ms,
            where=Where({"estate": spec.id, "facility": facility, "device": device}))
        series = sorted((p.time_ms, float(p.fields["last"] or 0.0)) for p in points)
        for (_, before), (t, after) in itertools.pairwise(series):
            totals[t] = totals.get(t, 0.0) + max(after - before, 0.0)
    return totals


def _independent_bill(store: InfluxV1Store, spec: EstateSpec, start: datetime,
                      end: datetime) -> float:
    tz = ZoneInfo(spec.timezone)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    parents = {node.meter for net in spec.networks for node in net.nodes if node.feeds}
    incomers = [(f.id, m.id) for f in spec.facilities for m in f.meters
                if m.incomer and m.kind == "electricity"]
    leaves = {kind: [(f.id, m.id) for f in spec.facilities for m in f.meters
                     if m.kind == kind and f"{f.id}/{m.id}" not in parents]
              for kind in ("water", "gas")}
    battery, genset = ("utilities", "battery"), ("utilities", "genset")
    hourly = _register_sums(store, spec, [*incomers, battery], "energy_import", start_ms,
                            end_ms, HOUR_MS)
    exported = _register_sums(store, spec, [battery, genset], "energy_export", start_ms,
                              end_ms, HOUR_MS)
    energy = sum((kwh - exported.get(t, 0.0)) * _price_per_hour(
        spec, datetime.fromtimestamp(t / 1000, tz)) for t, kwh in hourly.items())
    quarter = _register_sums(store, spec, [*incomers, battery], "energy_import", start_ms,
                             end_ms, QUARTER_MS)
    quarter_out = _register_sums(store, spec, [battery, genset], "energy_export", start_ms,
                                 end_ms, QUARTER_MS)
    peak = max((kwh - quarter_out.get(t, 0.0)) * 4 for t, kwh in quarter.items())
    tariff = max((t for t in spec.tariffs if t.valid_from <= start.date()),
                 key=lambda t: t.valid_from)
    capacity = next(c for c in spec.capacity_limits if c.facility is None)
    water = sum(_register_sums(store, spec, leaves["water"], "water_volume", start_ms,
                               end_ms, HOUR_MS).values())
    gas = sum(_register_sums(store, spec, leaves["gas"], "gas_volume", start_ms, end_ms,
                             HOUR_MS).values())
    genset_out = sum(_register_sums(store, spec, [genset], "energy_export", start_ms, end_ms,
                                    HOUR_MS).values())
    battery_through = sum(
        sum(_register_sums(store, spec, [battery], field, start_ms, end_ms, HOUR_MS).values())
        for field in ("energy_import", "energy_export"))
    assets = {a.id: a for a in spec.assets}
    return (energy + peak * tariff.demand_charge_per_kw
            + max(peak - capacity.limit_kw, 0.0) * capacity.penalty_per_kw
            + water * WATER + gas * GAS + genset_out * assets["genset"].fuel_cost
            + battery_through * assets["battery"].degradation_cost)


def _month(registry: Registry, store: InfluxV1Store, spec: EstateSpec,
           ) -> tuple[list[Statement], EstateBill, float, str]:
    """Last month's statements and bill, and the bill computed independently."""
    registry.migrate()
    load_estate_into(registry, spec)
    now = datetime.now(UTC)
    with registry.writing() as session:
        dr_book.set_utility_price(session, spec.id, "water", WATER, now)
        dr_book.set_utility_price(session, spec.id, "gas", GAS, now)
        dr_book.set_contract(session, spec.id, dr_book.ContractRecord(
            "metal", "standard", None, "energy", 1.0), now)
    month, start, end = _last_month(ZoneInfo(spec.timezone))
    # The rollup job's levels over the month, as the worker's job would have made them
    # (a week of minutes a query: the backfill has a reading a quarter-hour).
    ensure_rollup_policies(store)
    rollups = Rollups(store, RollupSettings(max_query_windows=7 * 1440))
    first, last = int(start.timestamp() * 1000) - HOUR_MS, int(end.timestamp() * 1000)
    for level in (READING_1M, READING_15M, CONSUMPTION_15M):
        rollups.recompute(level, first, last)
    assert store.count(READING_15M.series, TimeRange(first, last)) > 0
    statements, bill = estate_statements(registry, RollupMeterData(store), spec.id, month)
    return statements, bill, _independent_bill(store, spec, start, end), month


def test_statements_add_up_to_the_estates_bill_within_half_a_percent(
        history: tuple[InfluxSettings, EstateSpec], pg_url: str, tmp_path: Path) -> None:
    settings, spec = history
    registry = Registry(pg_url)
    store = InfluxV1Store(settings)
    try:
        statements, bill, independent, month = _month(registry, store, spec)
    finally:
        store.close()
        registry.close()
    tenants = sum(s.total for s in statements)
    print(f"\n{month}: {len(statements)} statements add up to {tenants:,.2f} EUR; the "
          f"estate's bill from its meters {bill.total:,.2f}; computed hourly from the "
          f"registers {independent:,.2f} ({(tenants / independent - 1) * 100:+.3f} %)")
    assert {s.facility for s in statements} == {f.id for f in spec.facilities}
    assert all(s.total > 0 for s in statements)
    assert tenants == pytest.approx(bill.total, rel=1e-9)
    assert tenants == pytest.approx(independent, rel=0.005)
    csv_path, pdf_path = write_statements(statements, spec.name, tmp_path, month)
    assert pdf_path.read_bytes().startswith(b"%PDF-")
    assert csv_path.read_text().count("\n") == sum(len(s.lines) + 1 for s in statements) + 1
