"""The estate's optimisation problem for the next horizon, assembled from the registry
and the store: base loads from the forecasts, this month's peak from the quarter-hour
rollups, the assets' state from their latest telemetry, tariffs and limits valid then.

Every fallback taken is a note that goes into the plan's explanation. ``PlanJob``
(``dispatch.planning.rolling``) runs it; docs/planning.md tells the whole story.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from dispatch.optimiser import (
    EstateProblem,
    TariffPeriod,
    TariffVersion,
    step_prices,
)
from dispatch.optimiser.problem import Asset as OptimiserAsset
from dispatch.optimiser.problem import FloatArray
from dispatch.planning.forecasts import ESTATE_SCOPE, load_forecast, rollup_power_means
from dispatch.planning.problem_assets import Parts, PlannedAsset, asset_parts
from dispatch.registry.records import CapacityLimitRecord, PlanningInputs, TariffRecord
from dispatch.settings import PlanningSettings
from estate.errors import PlanningError
from estate.ports import TimeRange, TimeSeriesStore, Where
from estate.stored import RAW_READINGS

SHARED: Final = ESTATE_SCOPE
"""The problem's pseudo-facility of the shared assets (no ``facility`` in the estate file):
they sit at the estate's grid connection, behind no tenant's incomer, so they count in the
estate's import but under no tenant's sub-limit. Its base load is zero."""

_MINUTE_MS: Final = 60_000
# The latest telemetry older than this says nothing about an asset's state now.
TELEMETRY_MAX_AGE_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True, eq=False)
class Assembly:
    """One problem, the assets behind it, and every assumption made to build it."""

    estate_id: str
    problem: EstateProblem
    assets: tuple[PlannedAsset, ...]
    notes: tuple[str, ...]
    currency: str
    step_minutes: int

    @property
    def start_ms(self) -> int:
        return int(self.problem.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.problem.steps * self.step_minutes * _MINUTE_MS


def horizon_start_ms(now_ms: int, step_minutes: int) -> int:
    """The next step boundary at or after ``now_ms`` (steps aligned to UTC midnight)."""
    step = step_minutes * _MINUTE_MS
    return -(-now_ms // step) * step


def _local(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _valid(valid_from: date, valid_to: date | None, day: date) -> bool:
    return valid_from <= day and (valid_to is None or day < valid_to)


# --- tariffs and limits ---

def tariff_versions(rows: Sequence[TariffRecord]) -> list[TariffVersion]:
    """Registry tariff rows as the optimiser's versions (minutes -> hours, mask -> days)."""
    return [TariffVersion(
        valid_from=row.valid_from, valid_until=row.valid_to,
        periods=tuple(TariffPeriod(p.name, p.energy_price, p.start_minute / 60,
                                   p.end_minute / 60,
                                   frozenset(d for d in range(7) if p.days_mask >> d & 1))
                      for p in row.periods)) for row in rows]


def _per_version(rows: Sequence[TariffRecord], value: Callable[[TariffRecord], float],
                 start: datetime, steps: int, step_hours: float) -> FloatArray:
    """A per-step array of a value that each version holds as one number."""
    versions = [TariffVersion(r.valid_from, r.valid_to, (), value(r)) for r in rows]
    return step_prices(versions, start, steps, step_hours)


# --- telemetry ---

def latest_values(store: TimeSeriesStore, estate: str, devices: Sequence[tuple[str, str]],
                  now_ms: int) -> dict[tuple[str, str], dict[str, float]]:
    """The latest power (kW) and state of charge (%) of each device in the last hour."""
    found = store.latest_values(
        RAW_READINGS, ["power", "state_of_charge"], TimeRange(now_ms - TELEMETRY_MAX_AGE_MS),
        where=Where({"estate": estate},
                    any_of=[{"facility": f, "device": d} for f, d in devices]),
        group_by=("facility", "device"))
    out: dict[tuple[str, str], dict[str, float]] = {}
    for latest in found:
        key = (latest.tags.get("facility", ""), latest.tags.get("device", ""))
        # A reading that is not a finite number says nothing (and would be refused by the
        # optimiser, stopping every plan until it aged out).
        out[key] = {name: float(value) for name, value in
                    (("power", latest.values.get("power")),
                     ("soc", latest.values.get("state_of_charge")))
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value)}
    return out


def billing_peak_kw(store: TimeSeriesStore, estate: str, incomers: Sequence[tuple[str, str]],
                    start: datetime) -> float:
    """The highest quarter-hour estate demand of ``start``'s calendar month before it.

    The sum of the incomers' ``reading_15m`` means per quarter-hour; 0 when nothing is
    rolled up yet.
    """
    month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first_ms, end_ms = _ms(month), _ms(start)
    if not incomers or first_ms >= end_ms:
        return 0.0
    totals: dict[int, float] = {}
    for means in rollup_power_means(store, estate, incomers, first_ms, end_ms).values():
        for t, kw in means.items():
            totals[t] = totals.get(t, 0.0) + kw
    return max(0.0, max(totals.values(), default=0.0))


# --- base load ---

def _base_load(store: TimeSeriesStore, estate: str, facility: str, start_ms: int,
               steps: int, step_ms: int, nominal: float, notes: list[str],
               label: str) -> FloatArray:
    """The facility's forecast per step; nominal load where none is stored (noted)."""
    stored = load_forecast(store, estate, facility, start_ms, start_ms + steps * step_ms)
    values = np.full(steps, np.nan)
    if stored.times_ms.size:
        index = (stored.times_ms - start_ms) // step_ms
        inside = (index >= 0) & (index < steps)
        sums = np.bincount(index[inside], weights=stored.values_kw[inside], minlength=steps)
        counts = np.bincount(index[inside], minlength=steps)
        values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    missing = int(np.isnan(values).sum())
    if missing:
        notes.append(f"{label}: no stored forecast for {missing} of {steps} steps; its "
                     f"nominal load {nominal:,.0f} kW is assumed there")
    if "none" in stored.methods:
        notes.append(f"{label}: the forecast has no history behind it (nominal load)")
    return np.where(np.isnan(values), nominal, values)


# --- the assembly ---

@dataclass(frozen=True, slots=True)
class _Horizon:
    tz: ZoneInfo
    start: datetime
    start_ms: int
    steps: int
    step_minutes: int
    first_day: date
    last_day: date

    @property
    def step_ms(self) -> int:
        return self.step_minutes * _MINUTE_MS

    @property
    def step_hours(self) -> float:
        return self.step_minutes / 60


def _horizon(timezone: str, settings: PlanningSettings, now_ms: int) -> _Horizon:
    tz = ZoneInfo(timezone)
    step_minutes, steps = settings.step_minutes, settings.horizon_steps
    start_ms = horizon_start_ms(now_ms, step_minutes)
    end_ms = start_ms + steps * step_minutes * _MINUTE_MS
    start = _local(start_ms, tz)
    return _Horizon(tz, start, start_ms, steps, step_minutes, start.date(),
                    _local(end_ms - 1, tz).date())


def _base_loads(store: TimeSeriesStore, inputs: PlanningInputs, names: Sequence[str],
                h: _Horizon, nominal: Mapping[str, float], parts: Parts,
                notes: list[str]) -> FloatArray:
    base = np.zeros((len(names), h.steps))
    for i, f in enumerate(inputs.facilities):
        load = _base_load(store, inputs.estate.id, f.id, h.start_ms, h.steps, h.step_ms,
                          nominal.get(f.id, 0.0), notes, f.name)
        # The chillers and pumps are metered inside their tenant's incomer: their draw
        # now is in the forecast, and the problem adds them again as assets.
        base[i] = np.maximum(load - parts.held_kw.get(f.id, 0.0), 0.0)
    return base


def _facility_limits(limits: Sequence[CapacityLimitRecord], names: Sequence[str],
                     steps: int) -> FloatArray:
    out = np.full((len(names), steps), np.inf)
    for c in limits:
        if c.facility_id in names:
            out[names.index(c.facility_id)] = c.limit_kw
    return out


def assemble(inputs: PlanningInputs, store: TimeSeriesStore, settings: PlanningSettings,
             now_ms: int, nominal_kw: Mapping[str, float] | None = None) -> Assembly:
    """The problem for the horizon starting at the next step boundary after ``now_ms``."""
    estate = inputs.estate
    h = _horizon(estate.timezone, settings, now_ms)
    notes: list[str] = []
    tariffs = [t for t in inputs.tariffs
               if t.valid_from <= h.last_day and (t.valid_to is None or t.valid_to > h.first_day)]
    limits = [c for c in inputs.limits if _valid(c.valid_from, c.valid_to, h.first_day)]
    if not tariffs:
        raise PlanningError(f"estate {estate.id}: no tariff is valid from {h.first_day}")
    names = [f.id for f in inputs.facilities]
    if any(a.facility_id is None for a in inputs.assets):
        names.append(SHARED)
    labels = {f.id: f.name for f in inputs.facilities} | {SHARED: "shared estate assets"}
    labels |= {a.id: a.name for a in inputs.assets if a.name}

    devices = sorted({(a.device_facility_id, a.device_id) for a in inputs.assets
                      if a.device_facility_id is not None and a.device_id is not None})
    telemetry = latest_values(store, estate.id, devices, now_ms)
    parts, planned = asset_parts(inputs.assets, SHARED, h.start, h.steps, h.step_minutes,
                                 telemetry, notes)
    base = _base_loads(store, inputs, names, h, nominal_kw or {}, parts, notes)
    tariff = min(tariffs, key=lambda t: (not _valid(t.valid_from, t.valid_to, h.first_day),
                                         t.valid_from))
    incomers = [(m.facility_id, m.id) for m in inputs.incomers]
    problem = EstateProblem(
        start=h.start, step_hours=h.step_hours, facilities=tuple(names), base_load_kw=base,
        import_price=step_prices(tariff_versions(tariffs), h.start, h.steps, h.step_hours),
        export_price=_per_version(tariffs, lambda t: t.export_price, h.start, h.steps,
                                  h.step_hours),
        capacity_kw=next((c.limit_kw for c in limits if c.facility_id is None),
                         estate.contracted_capacity_kw),
        export_limit_kw=_per_version(
            tariffs, lambda t: math.inf if t.export_limit_kw is None else t.export_limit_kw,
            h.start, h.steps, h.step_hours),
        demand_charge=tariff.demand_charge_per_kw,
        prior_peak_kw=billing_peak_kw(store, estate.id, incomers, h.start),
        facility_limit_kw=_facility_limits(limits, names, h.steps),
        batteries=tuple(parts.batteries), deferrables=tuple(parts.deferrables),
        gensets=tuple(parts.gensets), thermal=tuple(parts.thermal), pumps=tuple(parts.pumps),
        pv=tuple(parts.pv), labels=labels)
    in_problem: tuple[OptimiserAsset, ...] = (
        *problem.batteries, *problem.deferrables, *problem.gensets, *problem.thermal,
        *problem.pumps, *problem.pv)
    order = {a.name: i for i, a in enumerate(in_problem)}
    planned.sort(key=lambda a: order[a.id])
    return Assembly(estate.id, problem, tuple(planned), tuple(notes), tariff.currency,
                    h.step_minutes)
