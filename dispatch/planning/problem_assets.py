"""Registry assets as the optimiser's: a battery with its state of charge, a genset
running or not, a deferrable load's window on the horizon, a chiller's and a pump's demand,
a PV plant's clear-sky output. Every assumption made is a note for the plan's
explanation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np

from dispatch.optimiser import (
    PV,
    Battery,
    DeferrableLoad,
    Genset,
    PumpTank,
    ThermalStorage,
)
from dispatch.optimiser.problem import FloatArray
from dispatch.registry.records import AssetRecord
from estate.assets import (
    BatterySpec,
    DeferrableLoadSpec,
    GensetSpec,
    PumpTankSpec,
    PVSpec,
    ThermalStorageSpec,
    parse_clock,
)

_MINUTE_MS: Final = 60_000
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



def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


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


SPECS: Final[dict[str, Any]] = {
    "battery": BatterySpec, "genset": GensetSpec, "deferrable_load": DeferrableLoadSpec,
    "thermal_storage": ThermalStorageSpec, "pump_tank": PumpTankSpec, "pv": PVSpec,
}


@dataclass
class Parts:
    batteries: list[Battery] = field(default_factory=list)
    deferrables: list[DeferrableLoad] = field(default_factory=list)
    gensets: list[Genset] = field(default_factory=list)
    thermal: list[ThermalStorage] = field(default_factory=list)
    pumps: list[PumpTank] = field(default_factory=list)
    pv: list[PV] = field(default_factory=list)
    # Power already in a tenant's forecast that the problem adds again as an asset.
    held_kw: dict[str, float] = field(default_factory=dict)


def add_asset(row: AssetRecord, spec: Any, facility: str, parts: Parts, start: datetime,
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




def asset_parts(assets: Sequence[AssetRecord], shared: str, start: datetime, steps: int,
                step_minutes: int, telemetry: Mapping[tuple[str, str], Mapping[str, float]],
                notes: list[str]) -> tuple[Parts, list[PlannedAsset]]:
    """Every asset as the optimiser's (a facility-less one at ``shared``), and the assets
    with a part in this horizon."""
    parts = Parts()
    planned: list[PlannedAsset] = []
    for row in assets:
        spec = SPECS[row.kind].model_validate({"id": row.id, "kind": row.kind, **row.params})
        values = telemetry.get((row.device_facility_id or "", row.device_id or ""), {})
        if add_asset(row, spec, row.facility_id or shared, parts, start, steps, step_minutes,
                     values, notes):
            planned.append(PlannedAsset(
                row.id, row.kind, row.name or row.id, row.control_mode,
                commandable=bool(row.device_id) and row.kind != "pv"))
    return parts, planned
