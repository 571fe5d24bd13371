"""Customer baselines: what a tenant would have drawn in an event window had there been no
event, so that what it delivered can be measured against it.

The method is the one demand-response programmes commonly use, "high X of Y" (for example
CAISO's and PJM's "10 of 10", NYISO's "5 of 10"): among the last ``y`` like days (weekdays
for a weekday, weekend days for a weekend day) with complete data in the window and no
event of their own, the ``x`` with the highest mean load in the window are averaged per
quarter-hour. A same-day adjustment then shifts (``additive``) or scales
(``multiplicative``) that profile by how the day itself ran in the ``adjustment_hours``
before the window, within ``adjustment_cap`` of the profile. The method's name and every
parameter are stored beside each figure (``Baseline.params``).

Pure: quarter-hour demand in (epoch ms and kW, NaN where not measured), a profile out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

QUARTER_MS: Final = 900_000
METHOD: Final = "high_x_of_y"
ADJUSTMENTS: Final = ("none", "additive", "multiplicative")
LOOKBACK_FACTOR: Final = 3
"""Calendar days searched per like day wanted: ``y`` weekdays need about 1.4 ``y`` days,
weekend days 3.5 ``y``; three times covers weekdays with holidays and events excluded, and
a weekend baseline then settles for fewer days (noted) rather than reading months."""


@dataclass(frozen=True, slots=True)
class BaselineMethod:
    x: int = 4
    y: int = 10
    adjustment: str = "additive"
    adjustment_hours: float = 2.0
    adjustment_cap: float = 0.2
    exclude: frozenset[date] = field(default_factory=frozenset)
    """Days left out as like days: days of earlier events."""

    def __post_init__(self) -> None:
        if not 1 <= self.x <= self.y <= 60:
            raise ValueError(f"a high-X-of-Y baseline needs 1 <= x <= y <= 60, not "
                             f"x={self.x}, y={self.y}")
        if self.adjustment not in ADJUSTMENTS:
            raise ValueError(f"adjustment must be one of {', '.join(ADJUSTMENTS)}")
        if not 0 <= self.adjustment_cap <= 1 or not 0 < self.adjustment_hours <= 12:
            raise ValueError("adjustment_cap must be 0-1 and adjustment_hours 0-12")

    def params(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "adjustment": self.adjustment,
                "adjustment_hours": self.adjustment_hours,
                "adjustment_cap": self.adjustment_cap,
                "excluded_days": sorted(d.isoformat() for d in self.exclude)}

    def lookback_days(self) -> int:
        return self.y * LOOKBACK_FACTOR + 1


@dataclass(frozen=True, slots=True, eq=False)
class Baseline:
    """A baseline profile (kW per step of the window) and how it was made."""

    method: str
    params: dict[str, Any]
    values_kw: FloatArray
    days: tuple[date, ...]
    adjustment_kw: float
    note: str

    @property
    def known(self) -> bool:
        return bool(self.values_kw.size) and bool(np.isfinite(self.values_kw).all())

    def record(self) -> dict[str, Any]:
        """Everything needed to reproduce the figure, for the registry."""
        return {"method": self.method, **self.params,
                "days": [d.isoformat() for d in self.days],
                "adjustment_kw": round(self.adjustment_kw, 3), "note": self.note}


def _values_at(times_ms: IntArray, values: FloatArray, wanted: IntArray) -> FloatArray:
    """``values`` at the instants ``wanted``; NaN where there is no point."""
    if not times_ms.size:
        return np.full(wanted.size, np.nan)
    index = np.clip(np.searchsorted(times_ms, wanted), 0, times_ms.size - 1)
    return np.where(times_ms[index] == wanted, values[index], np.nan)


def _day_times(start: datetime, days_back: int, steps: int, step_ms: int) -> IntArray:
    """The window's instants ``days_back`` days earlier, at the same local clock time."""
    moved = datetime.combine(start.date() - timedelta(days=days_back), start.time(),
                             start.tzinfo)
    first = int(moved.timestamp() * 1000)
    return first + np.arange(steps, dtype=np.int64) * step_ms


def _like(day: date, other: date) -> bool:
    return (day.weekday() >= 5) == (other.weekday() >= 5)


def high_x_of_y(times_ms: IntArray, values_kw: FloatArray, start_ms: int, end_ms: int,
                timezone: str, method: BaselineMethod, *,
                step_ms: int = QUARTER_MS) -> Baseline:
    """The baseline of ``[start_ms, end_ms)`` from the demand history ``times_ms`` (sorted
    epoch ms of step starts) and ``values_kw``."""
    tz = ZoneInfo(timezone)
    start = datetime.fromtimestamp(start_ms / 1000, tz)
    steps = max(0, (end_ms - start_ms) // step_ms)
    chosen: list[tuple[float, date, FloatArray]] = []
    for back in range(1, method.lookback_days() + 1):
        day = start.date() - timedelta(days=back)
        if not _like(start.date(), day) or day in method.exclude:
            continue
        profile = _values_at(times_ms, values_kw, _day_times(start, back, steps, step_ms))
        if steps and np.isfinite(profile).all():
            chosen.append((float(profile.mean()), day, profile))
        if len(chosen) == method.y:
            break
    if not chosen:
        return Baseline(METHOD, method.params(), np.full(steps, np.nan), (), 0.0,
                        "no like day with complete data in the window")
    top = sorted(chosen, key=lambda c: c[0], reverse=True)[:method.x]
    profile = np.mean([c[2] for c in top], axis=0)
    note = "" if len(chosen) == method.y else (
        f"only {len(chosen)} of {method.y} like days had complete data")
    shift, why = _adjustment(times_ms, values_kw, start, [c[1] for c in top], method,
                             step_ms, float(profile.mean()))
    note = "; ".join(n for n in (note, why) if n)
    if method.adjustment == "multiplicative":
        adjusted = profile * shift
        adjustment_kw = float(adjusted.mean() - profile.mean())
    else:
        adjusted = profile + shift
        adjustment_kw = shift
    return Baseline(METHOD, method.params(), np.maximum(adjusted, 0.0),
                    tuple(sorted(c[1] for c in top)), adjustment_kw, note)


def _adjustment(times_ms: IntArray, values_kw: FloatArray, start: datetime,
                days: list[date], method: BaselineMethod, step_ms: int,
                profile_mean: float) -> tuple[float, str]:
    """The same-day shift (kW, additive) or factor (multiplicative), and a note when the
    day's own data was missing (no adjustment then)."""
    neutral = 1.0 if method.adjustment == "multiplicative" else 0.0
    if method.adjustment == "none":
        return neutral, ""
    steps = int(method.adjustment_hours * 3_600_000 // step_ms)
    before = start - timedelta(milliseconds=steps * step_ms)
    today = _values_at(times_ms, values_kw, _day_times(before, 0, steps, step_ms))
    if not np.isfinite(today).all():
        return neutral, "no same-day adjustment: the hours before the window are not metered"
    others = [_values_at(times_ms, values_kw,
                         _day_times(before, (start.date() - d).days, steps, step_ms))
              for d in days]
    reference = float(np.nanmean(others)) if others else float("nan")
    if not np.isfinite(reference):
        return neutral, "no same-day adjustment: the like days lack the hours before"
    cap = method.adjustment_cap
    if method.adjustment == "multiplicative":
        if reference <= 0:
            return neutral, "no same-day adjustment: no load in the like days' hours before"
        return float(np.clip(today.mean() / reference, 1 - cap, 1 + cap)), ""
    bound = cap * max(profile_mean, 0.0)
    return float(np.clip(today.mean() - reference, -bound, bound)), ""
