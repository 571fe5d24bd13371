"""A simulated estate: every meter of an estate description, deterministic for a seed.

Each meter follows its facility's working hours (a smooth ramp into and out of the shift,
weekends at base load unless the facility works them), with noise; counters integrate
their flow so registers and gauges agree. The same seed, start time and step always give
the same readings, which is what lets a test publish a known set and check it arrived.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from estate.model import MEASURES, EstateSpec, FacilitySpec, MeterSpec
from estate.readings import Reading
from estate.topics import DeviceId

# Phase-to-neutral voltage of a European low-voltage supply, and a typical industrial
# power factor: the simulated electricity meters wander around these.
NOMINAL_VOLTAGE = 230.0
TYPICAL_POWER_FACTOR = 0.92
WATER_PRESSURE_BAR = 3.5


@dataclass(slots=True)
class _MeterState:
    device: DeviceId
    meter: MeterSpec
    facility: FacilitySpec
    rng: np.random.Generator
    register: float
    last_ms: int | None = None


class EstateSimulator:
    """Produces the readings of every meter of ``spec`` at the times it is asked for."""

    def __init__(self, spec: EstateSpec, seed: int) -> None:
        self.spec = spec
        self._tz = ZoneInfo(spec.timezone)
        self._meters: list[_MeterState] = []
        for device, meter, facility in spec.devices():
            # One generator per meter, seeded by the meter's identity: adding a meter does
            # not change the others' readings.
            key = zlib.crc32(f"{device.facility}/{device.device}".encode())
            rng = np.random.default_rng([seed, key])
            register = float(rng.uniform(1_000, 500_000))
            self._meters.append(_MeterState(device, meter, facility, rng, register))

    @property
    def devices(self) -> list[DeviceId]:
        return [m.device for m in self._meters]

    def step(self, time_ms: int) -> list[tuple[DeviceId, list[Reading]]]:
        """The readings of every meter at ``time_ms``; counters advance since the last step."""
        return [(m.device, self._read(m, time_ms)) for m in self._meters]

    def _activity(self, facility: FacilitySpec, time_ms: int) -> float:
        """0 outside working hours, 1 in them, with half-hour ramps at shift change."""
        local = datetime.fromtimestamp(time_ms / 1000, UTC).astimezone(self._tz)
        if local.weekday() >= 5 and not facility.weekend:
            return 0.0
        hour = local.hour + local.minute / 60 + local.second / 3600
        ramp = 0.5
        rise = (hour - facility.shift_start) / ramp
        fall = (facility.shift_end - hour) / ramp
        return max(0.0, min(1.0, rise, fall))

    def _read(self, m: _MeterState, time_ms: int) -> list[Reading]:
        activity = self._activity(m.facility, time_ms)
        share = m.meter.base_share + (1 - m.meter.base_share) * activity
        noise = float(m.rng.normal(0.0, 0.03))
        flow = max(0.0, m.meter.nominal * share * (1 + noise))
        if m.last_ms is not None and time_ms > m.last_ms:
            m.register += flow * (time_ms - m.last_ms) / 3_600_000
        m.last_ms = time_ms
        values: dict[str, float]
        if m.meter.kind == "electricity":
            pf = TYPICAL_POWER_FACTOR + float(m.rng.normal(0.0, 0.01))
            voltage = NOMINAL_VOLTAGE + float(m.rng.normal(0.0, 1.5))
            values = {"power": flow, "energy_import": m.register, "voltage": voltage,
                      "current": flow * 1000 / (3 * voltage * pf), "power_factor": pf}
        elif m.meter.kind == "water":
            values = {"water_flow": flow, "water_volume": m.register,
                      "pressure": WATER_PRESSURE_BAR + float(m.rng.normal(0.0, 0.05))}
        elif m.meter.kind == "gas":
            values = {"gas_flow": flow, "gas_volume": m.register}
        else:
            day = 2 * math.pi * (time_ms / 86_400_000)
            swing = (1 - m.meter.base_share) * 4.0
            values = {"temperature": m.meter.nominal + swing * math.sin(day)
                      + float(m.rng.normal(0.0, 0.1))}
        return [
            Reading(m.device.estate, m.device.facility, m.device.device, quantity, channel,
                    round(values[quantity], 6), time_ms)
            for quantity, channel in MEASURES[m.meter.kind]
        ]
