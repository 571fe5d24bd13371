"""What demand response reads of the metered data, as a port of its own: quarter-hour mean
power and quarter-hour consumption of a register, per meter.

``dispatch.jobs.metered.RollupMeterData`` serves it from the rollups (the composition root
hands one in); tests may hand in their own. Helpers here put the answers on a regular
grid of quarter-hours and add meters up per tenant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MeterKey = tuple[str, str]  # facility, device
PerWindow = dict[MeterKey, dict[int, float]]  # window start (ms) -> value
QUARTER_MS: Final = 900_000


class MeteredData(Protocol):
    def power_kw(self, estate: str, meters: Sequence[MeterKey], start_ms: int,
                 end_ms: int) -> PerWindow:
        """Each meter's mean power (kW) per quarter-hour of ``[start_ms, end_ms)``."""

    def consumed(self, estate: str, meters: Sequence[MeterKey], quantity: str,
                 start_ms: int, end_ms: int) -> PerWindow:
        """What each meter's register ``quantity`` counted per quarter-hour (canonical
        unit: kWh, m³)."""


def grid(start_ms: int, end_ms: int, step_ms: int = QUARTER_MS) -> IntArray:
    return np.arange(start_ms, end_ms, step_ms, dtype=np.int64)


def on_grid(values: Mapping[int, float], times: IntArray) -> FloatArray:
    """``values`` at ``times``; NaN where there is none."""
    out = np.full(times.size, np.nan)
    if not values or not times.size:
        return out
    step = int(times[1] - times[0]) if times.size > 1 else QUARTER_MS
    keys = np.fromiter(values.keys(), dtype=np.int64, count=len(values))
    vals = np.fromiter(values.values(), dtype=np.float64, count=len(values))
    index = (keys - times[0]) // step
    inside = (index >= 0) & (index < times.size) & ((keys - times[0]) % step == 0)
    out[index[inside]] = vals[inside]
    return out


def per_facility(data: PerWindow, meters: Mapping[str, Sequence[str]],
                 times: IntArray) -> dict[str, FloatArray]:
    """Per facility, the sum of its meters per step: NaN where any of them is missing (a
    part of a sum is not the tenant's figure)."""
    out: dict[str, FloatArray] = {}
    for facility, devices in meters.items():
        rows = [on_grid(data.get((facility, d), {}), times) for d in devices]
        out[facility] = (np.sum(rows, axis=0) if rows else np.full(times.size, np.nan))
    return out
