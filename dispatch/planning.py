"""The rolling re-plan: assemble the estate's problem, optimise it, store the plan.

    registry (estate, facilities, assets, tariffs, limits) ─┐
    forecast (rollup_long, per facility) ───────────────────┼─► EstateProblem ─► optimise
    reading_15m (this month's peak), reading (latest SoC) ──┘        │
                                           plans row + plan series ◄─┘ ─► auto commands

``assemble`` is the problem assembly (every fallback it takes is a note that goes into the
plan's explanation); ``PlanJob`` is the scheduler's job; storage, approval and commands are
``dispatch.plans``. docs/planning.md tells the whole story.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.commands import CommandSender
from dispatch.forecasting import ESTATE_SCOPE, load_forecast, rollup_power_means
from dispatch.optimiser import (
    PV,
    Battery,
    DeferrableLoad,
    EstateProblem,
    Genset,
    ProblemError,
    PumpTank,
    SolveOptions,
    TariffError,
    TariffPeriod,
    TariffVersion,
    ThermalStorage,
    optimise,
    step_prices,
)
from dispatch.optimiser import Plan as OptimisedPlan
from dispatch.optimiser.problem import Asset as OptimiserAsset
from dispatch.optimiser.problem import FloatArray
from dispatch.plans import (
    PLAN_POLICY,
    SavedPlan,
    plan_lines,
    record_plan_failure,
    save_plan,
    send_step_commands,
)
from dispatch.registry.models import Asset, CapacityLimit, Estate, Facility, Meter, Tariff
from dispatch.rollups import try_rollup_policies
from dispatch.settings import PlanningSettings, RollupSettings
from estate.assets import (
    BatterySpec,
    DeferrableLoadSpec,
    GensetSpec,
    PumpTankSpec,
    PVSpec,
    ThermalStorageSpec,
    parse_clock,
)
from estate.ports import TimeSeriesStore
from estate.retention import quote_identifier
from estate.schema import READINGS

log = logging.getLogger(__name__)

SHARED: Final = ESTATE_SCOPE
"""The problem's pseudo-facility of the shared assets (no ``facility`` in the estate file):
they sit at the estate's grid connection, behind no tenant's incomer, so they count in the
estate's import but under no tenant's sub-limit. Its base load is zero."""

_NS_PER_MS: Final = 1_000_000
_MINUTE_MS: Final = 60_000
# The latest telemetry older than this says nothing about an asset's state now.
TELEMETRY_MAX_AGE_MS: Final = 3_600_000
# Clear-sky shape of a PV plant without a forecast: production between these local hours,
# a sine arch peaking half way (solar noon in most of Europe's time zones, summer time
# included, lies between 12:00 and 14:00).
PV_DAY_HOURS: Final = (6.0, 19.0)
# A chiller's cooling demand, estimated from the chiller plant's metered draw, is held to
# this share of the chiller's output: the plant's meter also counts pumps and fans, and a
# demand at full output would leave no room to pre-cool (or even to cover the tank's losses).
COOLING_DEMAND_SHARE: Final = 0.8
# A genset drawing (producing) more than this is running; meters read a few watts when off.
RUNNING_KW: Final = 1.0


@dataclass(frozen=True, slots=True)
class PlannedAsset:
    """A registry asset as the problem holds it."""

    id: str
    kind: str
    name: str
    control_mode: str
    commandable: bool


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


class PlanningError(Exception):
    """The registry cannot describe a plan (no such estate, tariffs without prices)."""


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

def tariff_versions(rows: Sequence[Tariff]) -> list[TariffVersion]:
    """Registry tariff rows as the optimiser's versions (minutes -> hours, mask -> days)."""
    return [TariffVersion(
        valid_from=row.valid_from, valid_until=row.valid_to,
        periods=tuple(TariffPeriod(p.name, p.energy_price, p.start_minute / 60,
                                   p.end_minute / 60,
                                   frozenset(d for d in range(7) if p.days_mask >> d & 1))
                      for p in row.periods)) for row in rows]


def _per_version(rows: Sequence[Tariff], value: Callable[[Tariff], float], start: datetime,
                 steps: int, step_hours: float) -> FloatArray:
    """A per-step array of a value that each version holds as one number."""
    versions = [TariffVersion(r.valid_from, r.valid_to, (), value(r)) for r in rows]
    return step_prices(versions, start, steps, step_hours)


# --- telemetry ---

def latest_values(store: TimeSeriesStore, estate: str, devices: Sequence[tuple[str, str]],
                  now_ms: int) -> dict[tuple[str, str], dict[str, float]]:
    """The latest power (kW) and state of charge (%) of each device in the last hour."""
    if not devices:
        return {}
    clauses = " OR ".join(f'("facility" = $f{i} AND "device" = $d{i})'
                          for i in range(len(devices)))
    params: dict[str, str | int] = {"estate": estate,
                                    "since": (now_ms - TELEMETRY_MAX_AGE_MS) * _NS_PER_MS}
    for i, (facility, device) in enumerate(devices):
        params[f"f{i}"], params[f"d{i}"] = facility, device
    series = store.query(
        'SELECT last("power") AS "power", last("state_of_charge") AS "soc" FROM '
        f'{quote_identifier(READINGS)} WHERE "estate" = $estate AND time >= $since AND '
        f'({clauses}) GROUP BY "facility", "device"', params)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for s in series:
        key = (s.tags.get("facility", ""), s.tags.get("device", ""))
        for record in s.records():
            # a reading that is not a finite number says nothing (and would be refused
            # by the optimiser, stopping every plan until it aged out)
            out[key] = {k: float(record[k]) for k in ("power", "soc")
                        if isinstance(record.get(k), int | float)
                        and math.isfinite(record[k])}
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


def clear_sky_kw(peak_kw: float, start: datetime, steps: int, step_hours: float) -> FloatArray:
    """A PV plant's output on a clear day: a sine arch over the local daylight hours."""
    out = np.zeros(steps)
    rise, fall = PV_DAY_HOURS
    origin = start.astimezone(UTC)
    for k in range(steps):  # a few hundred steps, local time each: a loop is clearest
        local = (origin + timedelta(hours=(k + 0.5) * step_hours)).astimezone(start.tzinfo)
        hour = local.hour + local.minute / 60
        if rise < hour < fall:
            out[k] = peak_kw * math.sin(math.pi * (hour - rise) / (fall - rise))
    return out


# --- assets ---

def _steps(minutes: int, step_minutes: int) -> int:
    return max(1, math.ceil(minutes / step_minutes))


def deferrable_window(spec: DeferrableLoadSpec, start: datetime, steps: int,
                      step_minutes: int) -> tuple[int, int, float] | None:
    """The first window of the load that overlaps the horizon, as ``[first, end)`` steps,
    and the share of the window inside the horizon; None if none overlaps."""
    tz = start.tzinfo
    assert isinstance(tz, ZoneInfo)
    step_ms = step_minutes * _MINUTE_MS
    start_ms = _ms(start)
    end_ms = start_ms + steps * step_ms
    open_minute = parse_clock(spec.window_start)
    close_minute = parse_clock(spec.window_end, end=True)
    day = start.date() - timedelta(days=1)
    while _ms(datetime.combine(day, clock_time(), tz)) < end_ms:
        weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()]
        if weekday in spec.days:
            opens = datetime.combine(day, clock_time(), tz) + timedelta(minutes=open_minute)
            closes_day = day if close_minute > open_minute else day + timedelta(days=1)
            closes = datetime.combine(closes_day, clock_time(), tz) + timedelta(
                minutes=close_minute)
            # Wall-clock times: a daylight-saving change inside the window is kept.
            w_open, w_close = _ms(opens), _ms(closes)
            first = max(0, -(-(w_open - start_ms) // step_ms))
            last = min(steps, (w_close - start_ms) // step_ms)
            if last > first:
                share = (min(w_close, end_ms) - max(w_open, start_ms)) / (w_close - w_open)
                return int(first), int(last), min(1.0, share)
        day += timedelta(days=1)
    return None


_SPECS: Final[dict[str, Any]] = {
    "battery": BatterySpec, "genset": GensetSpec, "deferrable_load": DeferrableLoadSpec,
    "thermal_storage": ThermalStorageSpec, "pump_tank": PumpTankSpec, "pv": PVSpec,
}


@dataclass
class _Parts:
    batteries: list[Battery] = field(default_factory=list)
    deferrables: list[DeferrableLoad] = field(default_factory=list)
    gensets: list[Genset] = field(default_factory=list)
    thermal: list[ThermalStorage] = field(default_factory=list)
    pumps: list[PumpTank] = field(default_factory=list)
    pv: list[PV] = field(default_factory=list)
    # Power already in a tenant's forecast that the problem adds again as an asset.
    held_kw: dict[str, float] = field(default_factory=dict)


def _add_asset(row: Asset, spec: Any, facility: str, parts: _Parts, start: datetime,
               steps: int, step_minutes: int, telemetry: Mapping[str, float],
               notes: list[str]) -> bool:
    """Turn one registry asset into the optimiser's; False if it has no part in this
    horizon (a deferrable load without a window in it)."""
    label = row.name or row.id
    step_hours = step_minutes / 60
    if isinstance(spec, BatterySpec):
        if "soc" in telemetry:
            soc = spec.soc_max_kwh * telemetry["soc"] / 100
        else:
            soc = (spec.soc_min_kwh + spec.soc_max_kwh) / 2
            notes.append(f"{label}: no state of charge in the last hour; "
                         f"{soc:,.0f} kWh (half way) assumed")
        soc = min(max(soc, spec.soc_min_kwh), spec.soc_max_kwh)
        parts.batteries.append(Battery(
            row.id, facility, spec.soc_min_kwh, spec.soc_max_kwh, soc, spec.charge_kw,
            spec.discharge_kw, spec.charge_efficiency, spec.discharge_efficiency,
            degradation_cost=spec.degradation_cost))
    elif isinstance(spec, GensetSpec):
        running = abs(telemetry.get("power", 0.0)) > RUNNING_KW
        parts.gensets.append(Genset(
            row.id, facility, spec.min_kw, spec.max_kw, spec.fuel_cost, spec.start_cost,
            _steps(spec.min_up_minutes, step_minutes), _steps(spec.min_down_minutes,
                                                              step_minutes),
            initially_on=running))
    elif isinstance(spec, DeferrableLoadSpec):
        window = deferrable_window(spec, start, steps, step_minutes)
        if window is None:
            return False
        first, end, share = window
        if share < 1.0:
            notes.append(f"{label}: {share:.0%} of its window lies in the horizon; "
                         f"{spec.energy_kwh * share:,.0f} of its {spec.energy_kwh:,.0f} kWh "
                         "are planned")
        parts.deferrables.append(DeferrableLoad(
            row.id, facility, spec.energy_kwh * share, spec.max_kw, first, end, spec.min_kw,
            _steps(spec.min_run_minutes, step_minutes), spec.non_interruptible))
    elif isinstance(spec, ThermalStorageSpec):
        drawn = max(0.0, telemetry.get("power", 0.0))
        if "power" not in telemetry:
            notes.append(f"{label}: no recent power reading; no cooling demand assumed")
        parts.held_kw[facility] = parts.held_kw.get(facility, 0.0) + drawn
        parts.thermal.append(ThermalStorage(
            row.id, facility, spec.chiller_max_kw_th, spec.cop,
            np.full(steps, min(drawn * spec.cop,
                               COOLING_DEMAND_SHARE * spec.chiller_max_kw_th)),
            spec.tank_min_kwh, spec.tank_max_kwh, (spec.tank_min_kwh + spec.tank_max_kwh) / 2,
            loss_per_hour=spec.loss_per_hour))
        notes.append(f"{label}: tank level not measured; half full assumed")
    elif isinstance(spec, PumpTankSpec):
        drawn = max(0.0, telemetry.get("power", 0.0))
        if "power" not in telemetry:
            notes.append(f"{label}: no recent power reading; no water demand assumed")
        parts.held_kw[facility] = parts.held_kw.get(facility, 0.0) + drawn
        parts.pumps.append(PumpTank(
            row.id, facility, spec.pump_max_kw, spec.flow_per_kw,
            np.full(steps, min(drawn, spec.pump_max_kw) * spec.flow_per_kw),
            spec.tank_min_m3, spec.tank_max_m3, (spec.tank_min_m3 + spec.tank_max_m3) / 2,
            overflow=spec.overflow, spill_cost=spec.spill_cost))
        notes.append(f"{label}: tank level not measured; half full assumed")
    elif isinstance(spec, PVSpec):
        parts.pv.append(PV(row.id, facility, clear_sky_kw(spec.peak_kw, start, steps,
                                                          step_hours)))
        notes.append(f"{label}: no PV forecast; a clear-sky day assumed")
    return True


# --- the assembly ---

def assemble(session: Session, store: TimeSeriesStore, estate_id: str,
             settings: PlanningSettings, now_ms: int,
             nominal_kw: Mapping[str, float] | None = None) -> Assembly:
    """The problem for the horizon starting at the next step boundary after ``now_ms``."""
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise PlanningError(f"estate {estate_id!r} is not in the registry "
                            "(estate registry load)")
    tz = ZoneInfo(estate.timezone)
    step_minutes, steps = settings.step_minutes, settings.horizon_steps
    step_hours, step_ms = step_minutes / 60, step_minutes * _MINUTE_MS
    start_ms = horizon_start_ms(now_ms, step_minutes)
    start = _local(start_ms, tz)
    first_day, last_day = start.date(), _local(start_ms + steps * step_ms - 1, tz).date()
    notes: list[str] = []
    nominal = dict(nominal_kw or {})

    facilities = list(session.scalars(
        select(Facility).where(Facility.estate_id == estate_id, Facility.retired_at.is_(None))
        .order_by(Facility.id)))
    assets = list(session.scalars(
        select(Asset).where(Asset.estate_id == estate_id, Asset.retired_at.is_(None))
        .order_by(Asset.id)))
    meters = list(session.scalars(
        select(Meter).where(Meter.estate_id == estate_id, Meter.retired_at.is_(None),
                            Meter.incomer.is_(True), Meter.kind == "electricity")))
    tariffs = [t for t in session.scalars(select(Tariff).where(Tariff.estate_id == estate_id))
               if t.valid_from <= last_day and (t.valid_to is None or t.valid_to > first_day)]
    limits = [c for c in session.scalars(
        select(CapacityLimit).where(CapacityLimit.estate_id == estate_id))
        if _valid(c.valid_from, c.valid_to, first_day)]
    if not tariffs:
        raise PlanningError(f"estate {estate_id}: no tariff is valid from {first_day}")
    names = [f.id for f in facilities]
    if any(a.facility_id is None for a in assets):
        names.append(SHARED)
    labels = {f.id: f.name for f in facilities} | {SHARED: "shared estate assets"}
    labels |= {a.id: a.name for a in assets if a.name}

    devices = sorted({(a.device_facility_id, a.device_id) for a in assets
                      if a.device_facility_id is not None and a.device_id is not None})
    telemetry = latest_values(store, estate_id, devices, now_ms)
    parts = _Parts()
    planned: list[PlannedAsset] = []
    for row in assets:
        spec = _SPECS[row.kind].model_validate({"id": row.id, "kind": row.kind,
                                                **row.params})
        facility = row.facility_id or SHARED
        values = telemetry.get((row.device_facility_id or "", row.device_id or ""), {})
        if _add_asset(row, spec, facility, parts, start, steps, step_minutes, values, notes):
            planned.append(PlannedAsset(
                row.id, row.kind, row.name or row.id, row.control_mode,
                commandable=bool(row.device_id) and row.kind != "pv"))

    base = np.zeros((len(names), steps))
    for i, f in enumerate(facilities):
        if f.id not in nominal:
            nominal[f.id] = 0.0
        load = _base_load(store, estate_id, f.id, start_ms, steps, step_ms, nominal[f.id],
                          notes, f.name)
        # The chillers and pumps are metered inside their tenant's incomer: their draw
        # now is in the forecast, and the problem adds them again as assets.
        base[i] = np.maximum(load - parts.held_kw.get(f.id, 0.0), 0.0)

    tariff = min(tariffs, key=lambda t: (not _valid(t.valid_from, t.valid_to, first_day),
                                         t.valid_from))
    estate_limit = next((c.limit_kw for c in limits if c.facility_id is None),
                        estate.contracted_capacity_kw)
    facility_limit = np.full((len(names), steps), np.inf)
    for c in limits:
        if c.facility_id in names:
            facility_limit[names.index(c.facility_id)] = c.limit_kw
    incomers = [(m.facility_id, m.id) for m in meters]
    prior_peak = billing_peak_kw(store, estate_id, incomers, start)

    problem = EstateProblem(
        start=start, step_hours=step_hours, facilities=tuple(names), base_load_kw=base,
        import_price=step_prices(tariff_versions(tariffs), start, steps, step_hours),
        export_price=_per_version(tariffs, lambda t: t.export_price, start, steps,
                                  step_hours),
        capacity_kw=estate_limit,
        export_limit_kw=_per_version(
            tariffs, lambda t: math.inf if t.export_limit_kw is None else t.export_limit_kw,
            start, steps, step_hours),
        demand_charge=tariff.demand_charge_per_kw, prior_peak_kw=prior_peak,
        facility_limit_kw=facility_limit,
        batteries=tuple(parts.batteries), deferrables=tuple(parts.deferrables),
        gensets=tuple(parts.gensets), thermal=tuple(parts.thermal), pumps=tuple(parts.pumps),
        pv=tuple(parts.pv), labels=labels)
    in_problem: tuple[OptimiserAsset, ...] = (
        *problem.batteries, *problem.deferrables, *problem.gensets, *problem.thermal,
        *problem.pumps, *problem.pv)
    order = {a.name: i for i, a in enumerate(in_problem)}
    planned.sort(key=lambda a: order[a.id])
    return Assembly(estate_id, problem, tuple(planned), tuple(notes), tariff.currency,
                    step_minutes)


# --- the job ---

@dataclass(frozen=True, slots=True, eq=False)
class PlanOutcome:
    """What one run made: the stored row, the problem and the optimiser's plan."""

    saved: SavedPlan
    assembly: Assembly
    result: OptimisedPlan
    commands: tuple[str, ...]  # ids of the commands sent to auto assets


class PlanJob:
    """The rolling re-plan: call it (the scheduler does), ``run(now_ms)`` it, or ask for a
    plan out of turn with ``replan(reason)``.

    ``request_soon`` is how ``replan`` reaches the scheduler (``Scheduler.run_soon``);
    without it a re-plan runs at once in the caller's thread.
    """

    def __init__(self, store: TimeSeriesStore, database: str, sessions: sessionmaker[Session],
                 estate_id: str, settings: PlanningSettings, *,
                 sender: CommandSender | None = None,
                 nominal_kw: Mapping[str, float] | None = None,
                 rollups: RollupSettings | None = None, manage_policies: bool = True) -> None:
        self._store = store
        self._db = database
        self._sessions = sessions
        self._estate = estate_id
        self._settings = settings
        self._sender = sender
        self._nominal = dict(nominal_kw or {})
        self._rollups = rollups or RollupSettings()
        self._policies_ready = not manage_policies
        self._events: list[str] = []
        self._events_lock = threading.Lock()
        self._lock = threading.Lock()
        self.request_soon: Callable[[], None] | None = None

    def __call__(self) -> PlanOutcome | None:
        return self.run()

    def replan(self, reason: str) -> None:
        """Plan again soon because of an event (a demand-response order, an asset
        offline); the plan's trigger says ``event:<reason>``."""
        with self._events_lock:  # not the run's lock: an event must not wait for a solve
            self._events.append(reason)
        if self.request_soon is not None:
            self.request_soon()
        else:
            self.run()

    def run(self, now_ms: int | None = None) -> PlanOutcome | None:
        """Plan the horizon from the next step boundary; None when no plan can be made
        (the registry lacks the estate or its tariff), which is logged."""
        now_ms = time.time_ns() // _NS_PER_MS if now_ms is None else now_ms
        # The periodic run and an event's run are separate scheduler jobs: one at a time.
        with self._lock:
            with self._events_lock:
                events, self._events = self._events, []
            trigger = "event:" + ",".join(dict.fromkeys(events)) if events else "schedule"
            self._ensure_policies()
            try:
                with self._sessions() as session:
                    assembly = assemble(session, self._store, self._estate, self._settings,
                                        now_ms, self._nominal)
                result = optimise(assembly.problem, SolveOptions(
                    time_limit_s=self._settings.time_limit_s,
                    mip_rel_gap=self._settings.mip_rel_gap))
            except (PlanningError, TariffError, ProblemError) as exc:
                # The registry describes no plan: nothing the next run would do better
                # until someone corrects the estate file, so say it loudly and wait.
                log.error("no plan for %s: %s", self._estate, exc)
                record_plan_failure(self._sessions, self._estate, trigger, str(exc),
                                    at=datetime.fromtimestamp(now_ms / 1000, UTC))
                return None
            saved = save_plan(self._sessions, assembly, result, trigger,
                              at=datetime.fromtimestamp(now_ms / 1000, UTC))
            if saved.written:
                self._store.write_lines(plan_lines(assembly, result, saved.id),
                                        retention_policy=PLAN_POLICY)
            commands: tuple[str, ...] = ()
            if saved.written and self._sender is not None:
                commands = tuple(send_step_commands(
                    self._sessions, self._sender, saved.id, now_ms=now_ms,
                    deadline_s=self._settings.command_deadline_s,
                    requested_by=f"plan:{saved.id}", only_auto=saved.status != "approved"))
            log.info("plan %s (%s, %s) for %s from %s: cost %.2f against %.2f, peak %.0f "
                     "against %.0f kW, solved in %.2f s; %d auto commands",
                     saved.id, saved.status, result.status.value, self._estate,
                     assembly.problem.start.isoformat(), result.cost, result.baseline.cost,
                     result.peak_kw, result.baseline.peak_kw, result.timings.total_s,
                     len(commands))
            return PlanOutcome(saved, assembly, result, commands)

    def _ensure_policies(self) -> None:
        if self._policies_ready:
            return
        try_rollup_policies(self._store, self._db, self._rollups)
        self._policies_ready = True
