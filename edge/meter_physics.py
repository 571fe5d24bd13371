"""How each kind of simulated meter behaves, one kind at a time as numpy arrays: its own
flow from the work its facility asks for, the weather and its noise (``own_flow``), and
every value it shows from its final flow, counters and stores advanced (``values_of``):
the three-phase picture of an electrical meter, a battery's charge, a tank's level, a
water meter's pressure. ``edge.simulator`` steps the estate with them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edge.signals import Weather, normal, smooth, uniform
from estate.topics import DeviceId

Floats = NDArray[np.float64]
Key = tuple[str, str]  # (quantity, channel)

# Phase-to-neutral voltage of a European low-voltage supply, and a typical industrial
# power factor: the simulated electricity meters wander around these.
NOMINAL_VOLTAGE: Final = 230.0
TYPICAL_POWER_FACTOR: Final = 0.92
WATER_PRESSURE_BAR: Final = 3.5
# A borehole pump lifting about 100 m uses about 0.45 kWh per m3.
PUMP_KWH_PER_M3: Final = 0.45
TANK_HEIGHT_M: Final = 5.0
# Slow process variation changes its course every quarter hour: the resolution of the
# tariffs and of the optimiser, so forecasts have structure to learn at that scale.
PROCESS_KNOT_MS: Final = 15 * 60_000
ELECTRICAL_KINDS: Final = frozenset({"electricity", "hvac", "pv", "battery", "genset", "pump"})
GENERATING_KINDS: Final = frozenset({"pv", "battery", "genset"})
# What is left of the water pressure below a water outage (bar): the pipes drain.
DRY_PRESSURE_BAR: Final = 0.1


@dataclass
class MeterGroup:
    """The meters of one kind, as arrays in file order."""

    kind: str
    devices: list[DeviceId]
    keys: NDArray[np.uint64]
    nominal: Floats
    base: Floats
    capacity: Floats
    facility: NDArray[np.intp]
    state: dict[str, Floats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Clock:
    time_ms: int
    hours: float  # since the previous step: what counters and stores integrate over
    hour: float  # local time of day
    weekday: int


def init_state(group: MeterGroup) -> None:
    n = len(group.devices)
    register = 1_000 + uniform(group.keys, 0, 900) * 499_000
    if group.kind in ELECTRICAL_KINDS:
        group.state["energy_import"] = register
        exports = 1_000 + uniform(group.keys, 0, 901) * 499_000
        group.state["energy_export"] = (exports if group.kind in GENERATING_KINDS
                                        else np.zeros(n))
    if group.kind == "battery":
        group.capacity = np.where(group.capacity > 0, group.capacity, 2 * group.nominal)
        group.state["soc"] = 0.3 + 0.4 * uniform(group.keys, 0, 902)
    if group.kind == "tank":
        group.capacity = np.where(group.capacity > 0, group.capacity, 10 * group.nominal)
        group.state["level"] = 0.4 + 0.4 * uniform(group.keys, 0, 903)
        group.state["filling"] = np.zeros(n)
    volume = 1_000 + uniform(group.keys, 0, 904) * 499_000
    if group.kind in ("water", "pump"):
        group.state["water_volume"] = volume
    if group.kind == "gas":
        group.state["gas_volume"] = volume


def share_of(group: MeterGroup, clock: Clock, activity: Floats) -> tuple[Floats, Floats]:
    """Per meter: the share of its nominal that work asks for now, and the slow process
    variation with noise around 1."""
    keys, t = group.keys, clock.time_ms
    share = group.base + (1 - group.base) * activity
    process = 1 + 0.08 * smooth(keys, t, PROCESS_KNOT_MS, 10) + 0.02 * normal(keys, t, 11)
    return share, process


def own_flow(group: MeterGroup, clock: Clock, weather: Weather, share: Floats, process: Floats,
          ) -> Floats | None:
    """Each meter's own flow before leaks, outages and networks: power (kW) for electrical
    kinds but the pump, water or gas flow (m3/h) for pumps, water and gas meters; None for
    kinds without one (temperature, tank)."""
    keys, t = group.keys, clock.time_ms
    kind = group.kind
    if kind == "electricity":
        return np.maximum(0.0, group.nominal * share * process)
    if kind == "hvac":
        cooling = np.clip((weather.ambient_c - 18) / 16, 0, 1)
        heating = 0.6 * np.clip((12 - weather.ambient_c) / 14, 0, 1)
        load = 0.08 + 0.92 * share * min(1.0, float(cooling + heating))
        hvac: Floats = np.maximum(0.0, group.nominal * load * (1 + 0.03 * normal(keys, t, 12)))
        return hvac
    if kind == "pv":
        sun = weather.clear_sky * (1 - 0.75 * weather.cloud)
        return -np.maximum(0.0, group.nominal * sun * (1 + 0.02 * normal(keys, t, 13)))
    if kind == "battery":
        return _battery_plan(group, clock)
    if kind == "genset":
        # The weekly test run: half an hour at 10:00 on a weekday of the genset's own.
        test_day = (keys % np.uint64(5)).astype(np.intp)
        running = (test_day == clock.weekday) & (10.0 <= clock.hour < 10.5)
        genset: Floats = -group.nominal * 0.7 * (1 + 0.02 * normal(keys, t, 14)) * running
        return genset
    if kind == "pump":
        # Pumps cycle in two-hour periods, on for the share of the period that demand asks.
        phase = uniform(keys, 0, 15)
        running = np.modf(t / 7_200_000 + phase)[0] < share
        return group.nominal * (1 + 0.02 * normal(keys, t, 16)) * running
    if kind in ("water", "gas"):
        return np.maximum(0.0, group.nominal * share * process)
    return None


def values_of(group: MeterGroup, clock: Clock, weather: Weather, flow: Floats | None,
            share: Floats, process: Floats, dry: NDArray[np.intp]) -> dict[Key, Floats]:
    """Every value of each meter from its final flow; counters and stores advance."""
    keys, t = group.keys, clock.time_ms
    kind = group.kind
    if kind in ("electricity", "hvac", "pv", "genset"):
        assert flow is not None
        return _electrical(group, clock, weather, flow)
    if kind == "battery":
        assert flow is not None
        _battery_store(group, clock, flow)
        values = _electrical(group, clock, weather, flow)
        values[("state_of_charge", "")] = group.state["soc"] * 100
        return values
    if kind == "pump":
        assert flow is not None
        group.state["water_volume"] += flow * clock.hours
        values = _electrical(group, clock, weather, flow * PUMP_KWH_PER_M3)
        values[("water_flow", "")] = flow
        values[("water_volume", "")] = group.state["water_volume"].copy()
        return values
    if kind == "tank":
        use = share * process
        if dry.size:  # the tank's outlet is cut: nothing leaves it
            use = use.copy()
            use[dry] = 0.0
        return _tank(group, clock, use)
    if kind in ("water", "gas"):
        assert flow is not None
        volume = f"{kind}_volume"
        group.state[volume] += flow * clock.hours
        values = {(f"{kind}_flow", ""): flow, (volume, ""): group.state[volume].copy()}
        if kind == "water":
            nominal = np.where(group.nominal > 0, group.nominal, 1.0)
            pressure = (WATER_PRESSURE_BAR - 0.3 * np.minimum(1.0, flow / nominal)
                        + 0.05 * normal(keys, t, 17))
            if dry.size:
                pressure[dry] = DRY_PRESSURE_BAR + 0.02 * normal(keys[dry], t, 17)
            values[("pressure", "")] = pressure
        return values
    # temperature: a controlled space around its setpoint, warmest mid-afternoon
    swing = (1 - group.base) * 4.0 * math.cos(2 * math.pi * (clock.hour - 15) / 24)
    return {("temperature", ""): group.nominal + swing + 0.1 * normal(keys, t, 18)}


def _battery_plan(group: MeterGroup, clock: Clock) -> Floats:
    """Charge at night and at midday, discharge in the evening peak, within 10-95 % charge."""
    h, rating, soc = clock.hour, group.nominal, group.state["soc"]
    plan = (0.5 if h < 6 else 0.3 if 11 <= h < 14 else -0.6 if 18 <= h < 22 else 0.0)
    power = rating * plan * (1 + 0.02 * normal(group.keys, clock.time_ms, 19))
    power = np.where((power > 0) & (soc >= 0.95), 0.0, power)
    return np.where((power < 0) & (soc <= 0.10), 0.0, power)


def _battery_store(group: MeterGroup, clock: Clock, power: Floats) -> None:
    """The charge after ``power`` for the step (round-trip losses: 95 % in, 95 % out)."""
    stored = np.where(power > 0, power * 0.95, power / 0.95) * clock.hours
    group.state["soc"] = np.clip(group.state["soc"] + stored / group.capacity, 0.0, 1.0)


def _tank(group: MeterGroup, clock: Clock, use: Floats) -> dict[Key, Floats]:
    """A tank drained by use and refilled at 2.5 times its nominal outflow, by hysteresis."""
    level, filling = group.state["level"], group.state["filling"]
    filling = np.where(level < 0.3, 1.0, np.where(level > 0.9, 0.0, filling))
    inflow = 2.5 * group.nominal * filling
    outflow = np.maximum(0.0, group.nominal * use)
    level = np.clip(level + (inflow - outflow) * clock.hours / group.capacity, 0.0, 1.0)
    group.state["level"], group.state["filling"] = level, filling
    return {("tank_level", ""): level * TANK_HEIGHT_M, ("state_of_charge", ""): level * 100}


def _electrical(group: MeterGroup, clock: Clock, weather: Weather, power: Floats,
                ) -> dict[Key, Floats]:
    """The three-phase picture of a meter drawing ``power`` kW (negative: delivering)."""
    keys, t = group.keys, clock.time_ms
    group.state["energy_import"] += np.maximum(power, 0.0) * clock.hours
    group.state["energy_export"] += np.maximum(-power, 0.0) * clock.hours
    pf = np.clip(TYPICAL_POWER_FACTOR + 0.01 * normal(keys, t, 20), 0.5, 1.0)
    magnitude = np.abs(power)
    values: dict[Key, Floats] = {("power", ""): power,
                                 ("energy_import", ""): group.state["energy_import"].copy(),
                                 ("energy_export", ""): group.state["energy_export"].copy(),
                                 ("power_factor", ""): pf,
                                 ("reactive_power", ""): magnitude * np.sqrt(1 - pf * pf) / pf,
                                 ("frequency", ""): np.full(len(keys), weather.frequency)}
    for k, phase in enumerate(("l1", "l2", "l3")):
        voltage = (NOMINAL_VOLTAGE + weather.voltage_drift
                   + 1.5 * normal(keys, t, 21 + k))
        # A few percent of imbalance between the phases, fixed per meter.
        imbalance = 1 + 0.04 * (uniform(keys, 0, 30 + k) - 0.5)
        values[("voltage", phase)] = voltage
        values[("current", phase)] = magnitude * 1000 / (3 * voltage * pf) * imbalance
    return values
