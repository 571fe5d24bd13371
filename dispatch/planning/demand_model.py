"""Load forecasts from a series' own quarter-hourly history, and their backtest.

Pure: numpy and the standard library's zoneinfo, no I/O. ``dispatch.planning.forecasts`` reads the
history from the store and writes the forecasts back; docs/forecasting.md tells the story.

The method, for a regular 15-minute series of demand (kW, NaN for gaps):

- **profile**: the median of the same local (day type, quarter-hour of the day) over the
  last ``weeks`` weeks, with day types weekday by weekday where the target's weekday
  has ``min_days_by_weekday`` measured days, else workday / Saturday / Sunday, else all
  days. Local time comes from the estate's time zone for every timestamp, so a profile
  keeps its wall-clock shape across daylight-saving changes.
- **level**: the ratio of actuals to the profile over the last ``level_hours`` (or the
  difference, where the profile is too close to zero for a ratio to mean anything),
  decaying with ``level_decay_hours`` towards the ratio over the last ``level_base_days``.

When the history is short the forecast steps down a ladder, and says which rung it used:

    profile+level   at least ``min_days_profile_level`` usable days and the target's day type
    daily-profile   at least one usable day: one time-of-day profile for all days, levelled
    persistence     a valid value within ``persistence_max_age_hours``: its last hour's mean
    none            nothing usable: ``default_kw`` (the caller's best guess) at every step
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STEP_MS: Final = 15 * 60_000
HOUR_MS: Final = 60 * 60_000
DAY_MS: Final = 24 * HOUR_MS
WEEK_MS: Final = 7 * DAY_MS
SLOTS_PER_DAY: Final = 96
"""Quarter-hours of a local day, by wall clock (a DST day has 92 or 100 steps, and the
repeated hour of an autumn day falls into the same slots twice)."""

NEAR_ZERO_SHARE: Final = 0.05
"""Backtest: MAPE leaves out steps whose actual is below this share of the mean absolute
actual of the steps scored together (a day, or all held-out days): a percentage of almost
nothing is noise, not accuracy. WAPE (total absolute error over total actual) keeps them."""

_SATURDAY: Final = 5
_SUNDAY: Final = 6
_WORKDAY, _SATURDAY_CLASS, _SUNDAY_CLASS = 0, 1, 2


class Method(StrEnum):
    """The rung of the fallback ladder a forecast came from, best first."""

    PROFILE_LEVEL = "profile+level"
    DAILY_PROFILE = "daily-profile"
    PERSISTENCE = "persistence"
    NONE = "none"


class DayTyping(StrEnum):
    WEEKDAY = "weekday-by-weekday"
    CLASS = "workday/Saturday/Sunday"
    ALL = "all-days"


RANK: Final = {m: i for i, m in enumerate(Method)}


@dataclass(frozen=True, slots=True)
class ForecastParams:
    """Tuning of the forecast; each default says why it is what it is."""

    # Four weeks: each weekday's median rests on four days (one holiday cannot move it),
    # and the profile still follows the season within a month.
    weeks: int = 4
    # A median of three days outvotes one odd day; with fewer, weekdays are pooled into
    # workdays, where one odd day is one of many.
    min_days_by_weekday: int = 3
    # One week: every day type has been seen at least once.
    min_days_profile_level: int = 7
    # A local day counts as history when at least half its quarter-hours were measured.
    min_day_coverage: float = 0.5
    # Three hours show the current level (a shift started, a line down) without one
    # quarter-hour's noise deciding it.
    level_hours: float = 3.0
    # The level the correction settles to: the last three days against their profile,
    # so a lasting change (a new line, a lost order) is followed before the profile's
    # weeks catch up with it.
    level_base_days: float = 3.0
    # How fast the current level gives way to the recent one; after a day it is gone.
    level_decay_hours: float = 6.0
    # A ratio beyond these bounds is a meter or data fault more often than a real change.
    level_min_ratio: float = 0.5
    level_max_ratio: float = 2.0
    # Below a 1 kW mean profile a ratio is meaningless (a facility at rest); the level is
    # then corrected by a difference in kW instead.
    level_ratio_min_kw: float = 1.0
    # Persistence: the mean of the last hour measured, if it is at most a day old.
    persistence_hours: float = 1.0
    persistence_max_age_hours: float = 24.0


@dataclass(frozen=True, slots=True)
class Forecast:
    """Forecast values per 15-minute step, the rung they came from and why."""

    times_ms: IntArray
    values_kw: FloatArray
    method: Method
    note: str
    issued_ms: int

    @property
    def from_history(self) -> bool:
        """False when the values are only the caller's default (``Method.NONE``)."""
        return self.method is not Method.NONE


@dataclass(frozen=True, slots=True)
class LocalCalendar:
    """Per timestamp: local weekday (Monday 0), quarter-hour of the day, date ordinal."""

    weekday: IntArray
    slot: IntArray
    day: IntArray

    def take(self, index: slice | IntArray) -> LocalCalendar:
        return LocalCalendar(self.weekday[index], self.slot[index], self.day[index])


def local_calendar(times_ms: npt.ArrayLike, timezone: str | ZoneInfo) -> LocalCalendar:
    """The local weekday, quarter-hour slot and date of each timestamp (epoch ms)."""
    tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    times = np.asarray(times_ms, dtype=np.int64)
    weekday = np.empty(times.shape, dtype=np.int64)
    slot = np.empty(times.shape, dtype=np.int64)
    day = np.empty(times.shape, dtype=np.int64)
    for i, t in enumerate(times.tolist()):
        local = datetime.fromtimestamp(t / 1000, tz)
        weekday[i] = local.weekday()
        slot[i] = (local.hour * 60 + local.minute) // 15
        day[i] = local.toordinal()
    return LocalCalendar(weekday, slot, day)


def regular_times(start_ms: int, steps: int) -> IntArray:
    return start_ms + STEP_MS * np.arange(steps, dtype=np.int64)


def check_regular(times_ms: IntArray, values_kw: FloatArray) -> None:
    """Refuse a series that is not on one aligned 15-minute grid."""
    if times_ms.shape != values_kw.shape or times_ms.ndim != 1:
        raise ValueError("times and values must be 1-D arrays of the same length")
    if times_ms.size and (times_ms[0] % STEP_MS or np.any(np.diff(times_ms) != STEP_MS)):
        raise ValueError("history must be a regular grid of aligned 15-minute steps "
                         "(NaN for missing values)")


def forecast_demand(times_ms: npt.ArrayLike, values_kw: npt.ArrayLike, start_ms: int,
                    steps: int, timezone: str | ZoneInfo, *, default_kw: float = 0.0,
                    params: ForecastParams | None = None) -> Forecast:
    """Forecast ``steps`` quarter-hours from ``start_ms`` (issued then) from the history.

    Only history before ``start_ms`` is used. ``default_kw`` is what a series with no
    usable history gets (``Method.NONE``): a nominal load is a better guess than zero.
    """
    params = params or ForecastParams()
    if start_ms % STEP_MS:
        raise ValueError(f"start {start_ms} is not on a 15-minute boundary")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    times = np.asarray(times_ms, dtype=np.int64)
    values = np.asarray(values_kw, dtype=np.float64)
    check_regular(times, values)
    keep = (times < start_ms) & (times >= start_ms - params.weeks * WEEK_MS)
    times, values = times[keep], values[keep]
    targets = regular_times(start_ms, steps)
    calendar = local_calendar(np.concatenate([times, targets]), timezone)
    return forecast_on_calendar(times, values, calendar.take(slice(0, times.size)), targets,
                     calendar.take(slice(times.size, None)), start_ms, default_kw, params)


# The forecast itself, on arrays whose local calendar is already known.

def _group_median(keys: IntArray, values: FloatArray, size: int) -> FloatArray:
    """The median of the finite values of each key in ``range(size)``; NaN where none."""
    ok = np.isfinite(values)
    k, v = keys[ok], values[ok]
    order = np.lexsort((v, k))
    k, v = k[order], v[order]
    counts = np.bincount(k, minlength=size)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full(size, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = (v[lo] + v[hi]) / 2
    return out


def _day_class(weekday: IntArray) -> IntArray:
    return np.where(weekday == _SATURDAY, _SATURDAY_CLASS,
                    np.where(weekday == _SUNDAY, _SUNDAY_CLASS, _WORKDAY)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class _Profiles:
    by_weekday: FloatArray  # 7 x 96, flattened
    by_class: FloatArray  # 3 x 96
    all_days: FloatArray  # 96
    weekday_days: IntArray  # usable days per weekday
    class_days: IntArray  # usable days per class
    usable_days: int

    def lookup(self, cal: LocalCalendar, params: ForecastParams,
               ) -> tuple[FloatArray, npt.NDArray[np.int8], int]:
        """Per step: the profile value, the typing used (0 weekday, 1 class, 2 all days)
        as the history allows it, and how many steps fell to a coarser cell for a gap."""
        typed = self.usable_days >= params.min_days_profile_level
        cls = _day_class(cal.weekday)
        by_weekday = self.by_weekday[cal.weekday * SLOTS_PER_DAY + cal.slot]
        by_class = self.by_class[cls * SLOTS_PER_DAY + cal.slot]
        all_days = self.all_days[cal.slot]
        wanted = np.where((self.class_days[cls] < 1) | (not typed), 2,
                          np.where(self.weekday_days[cal.weekday] >= params.min_days_by_weekday,
                                   0, 1)).astype(np.int8)
        value = np.where(wanted == 0, by_weekday, np.where(wanted == 1, by_class, all_days))
        gaps = int(np.count_nonzero(~np.isfinite(value)))
        value = np.where(np.isfinite(value), value,
                         np.where(np.isfinite(by_class) & (wanted < 2), by_class, all_days))
        return value, wanted, gaps


def _profiles(values: FloatArray, cal: LocalCalendar, params: ForecastParams) -> _Profiles:
    valid = np.isfinite(values)
    days, first = np.unique(cal.day, return_index=True)
    per_day = np.bincount(np.searchsorted(days, cal.day), weights=valid.astype(np.float64),
                          minlength=days.size)
    usable = per_day >= params.min_day_coverage * SLOTS_PER_DAY
    usable_weekdays = cal.weekday[first][usable]
    weekday_days = np.bincount(usable_weekdays, minlength=7).astype(np.int64)
    class_days = np.bincount(_day_class(usable_weekdays), minlength=3).astype(np.int64)
    cls = _day_class(cal.weekday)
    return _Profiles(
        _group_median(cal.weekday * SLOTS_PER_DAY + cal.slot, values, 7 * SLOTS_PER_DAY),
        _group_median(cls * SLOTS_PER_DAY + cal.slot, values, 3 * SLOTS_PER_DAY),
        _group_median(cal.slot, values, SLOTS_PER_DAY),
        weekday_days, class_days, int(np.count_nonzero(usable)))


@dataclass(frozen=True, slots=True)
class _Level:
    ratio: bool
    now: float
    base: float

    def apply(self, profile: FloatArray, hours_ahead: FloatArray, decay_hours: float,
              ) -> FloatArray:
        level = self.base + (self.now - self.base) * np.exp(-hours_ahead / decay_hours)
        return profile * level if self.ratio else profile + level

    def describe(self) -> str:
        if self.ratio:
            return f"level x{self.now:.2f} now, x{self.base:.2f} later"
        return f"level {self.now:+.1f} kW now, {self.base:+.1f} kW later"


def _level(times: IntArray, actual: FloatArray, profile: FloatArray, start_ms: int,
           params: ForecastParams) -> _Level:
    def window(span_ms: float) -> tuple[FloatArray, FloatArray]:
        ok = (times >= start_ms - span_ms) & np.isfinite(actual) & np.isfinite(profile)
        return actual[ok], profile[ok]

    base_a, base_p = window(params.level_base_days * DAY_MS)
    now_a, now_p = window(params.level_hours * HOUR_MS)
    ref_p = base_p if base_p.size else now_p
    ratio = bool(ref_p.size) and float(np.mean(ref_p)) >= params.level_ratio_min_kw

    def measure(a: FloatArray, p: FloatArray) -> float | None:
        # An hour at least, so one quarter-hour's spike does not set the level.
        if a.size < 4:
            return None
        if not ratio:
            return float(np.mean(a - p))
        total_p = float(np.sum(p))
        if total_p <= 0:
            return None
        return float(np.clip(float(np.sum(a)) / total_p, params.level_min_ratio,
                             params.level_max_ratio))

    neutral = 1.0 if ratio else 0.0
    base = measure(base_a, base_p)
    now = measure(now_a, now_p)
    base = neutral if base is None else base
    return _Level(ratio, base if now is None else now, base)


def forecast_on_calendar(times: IntArray, values: FloatArray, cal: LocalCalendar,
                         targets: IntArray, target_cal: LocalCalendar, start_ms: int,
                         default_kw: float, params: ForecastParams) -> Forecast:
    """``forecast_demand`` on arrays whose local calendars are known already (the backtest
    computes the calendar of a whole series once)."""
    valid = np.isfinite(values)

    def result(values_kw: FloatArray, method: Method, note: str) -> Forecast:
        return Forecast(targets, values_kw.astype(np.float64), method, note, start_ms)

    if not valid.any():
        return result(np.full(targets.size, float(default_kw)), Method.NONE,
                      f"no measured demand in the last {params.weeks} weeks: "
                      f"{default_kw:g} kW assumed")
    last_ms = int(times[valid][-1])
    recent = valid & (times > last_ms - params.persistence_hours * HOUR_MS)
    persistence = float(np.mean(values[recent]))
    profiles = _profiles(values, cal, params)
    if profiles.usable_days == 0:
        age_h = (start_ms - last_ms - STEP_MS) / HOUR_MS
        if age_h > params.persistence_max_age_hours:
            return result(np.full(targets.size, float(default_kw)), Method.NONE,
                          f"last measured demand is {age_h:.0f} h old and no day is "
                          f"measured: {default_kw:g} kW assumed")
        return result(np.full(targets.size, persistence), Method.PERSISTENCE,
                      f"less than a measured day: the last hour's mean "
                      f"({persistence:.1f} kW) held")
    profile, typing, gaps = profiles.lookup(target_cal, params)
    history_profile, _, _ = profiles.lookup(cal, params)
    level = _level(times, values, history_profile, start_ms, params)
    hours_ahead = (targets - start_ms) / HOUR_MS
    forecast = level.apply(profile, hours_ahead.astype(np.float64), params.level_decay_hours)
    unfilled = int(np.count_nonzero(~np.isfinite(forecast)))
    forecast = np.where(np.isfinite(forecast), forecast, persistence)
    method = Method.DAILY_PROFILE if np.any(typing == 2) else Method.PROFILE_LEVEL
    used = ", ".join(t.value for i, t in enumerate(DayTyping) if np.any(typing == i))
    note = (f"{used} profile from {profiles.usable_days} measured days, {level.describe()}")
    if gaps:
        note += f"; {gaps} steps from a coarser profile (gaps)"
    if unfilled:
        note += f"; {unfilled} steps never measured at that time of day: last hour's mean"
    return result(forecast, method, note)
