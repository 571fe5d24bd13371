"""The backtest of the load forecast: forecast held-out days from the history before
each, score them (MAPE, WAPE) against the actuals and the seasonal-naive baseline. Pure,
as ``dispatch.planning.demand_model``; docs/forecasting.md."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from dispatch.planning.demand_model import (
    HOUR_MS,
    NEAR_ZERO_SHARE,
    RANK,
    STEP_MS,
    WEEK_MS,
    FloatArray,
    ForecastParams,
    Method,
    check_regular,
    forecast_on_calendar,
    local_calendar,
    regular_times,
)


@dataclass(frozen=True, slots=True)
class Scores:
    """MAPE (%) over steps whose actual is not near zero, WAPE (%) over all scored steps;
    NaN when nothing could be scored."""

    mape: float
    wape: float

    @classmethod
    def of(cls, actual: FloatArray, predicted: FloatArray) -> Scores:
        if actual.size == 0:
            return cls(math.nan, math.nan)
        error = np.abs(predicted - actual)
        size = np.abs(actual)
        floor = NEAR_ZERO_SHARE * float(np.mean(size))
        big = size > floor
        mape = float(np.mean(error[big] / size[big]) * 100) if big.any() else math.nan
        total = float(np.sum(size))
        wape = float(np.sum(error) / total * 100) if total > 0 else math.nan
        return cls(mape, wape)


@dataclass(frozen=True, slots=True)
class DayScore:
    """One held-out local day: the forecast's rung and its scores against the baseline."""

    day: date
    method: Method
    steps: int
    forecast: Scores
    naive: Scores


@dataclass(frozen=True, slots=True)
class Backtest:
    """Held-out days and the scores pooled over all their steps."""

    days: tuple[DayScore, ...]
    forecast: Scores
    naive: Scores

    @property
    def methods(self) -> tuple[Method, ...]:
        return tuple(sorted({d.method for d in self.days}, key=RANK.__getitem__))


def backtest(times_ms: npt.ArrayLike, values_kw: npt.ArrayLike, timezone: str | ZoneInfo,
             days: int, *, issue_hours_before: int = 0, default_kw: float = 0.0,
             params: ForecastParams | None = None) -> Backtest:
    """Forecast each of the last ``days`` complete local days of the series from the
    history before it, issued ``issue_hours_before`` hours before its local midnight, and
    score it against the actuals and against the seasonal-naive baseline (the same local
    time a week earlier).

    Both are scored on the same steps: those with an actual and a baseline value (or an
    actual alone when the history is too short for any baseline).
    """
    params = params or ForecastParams()
    times = np.asarray(times_ms, dtype=np.int64)
    values = np.asarray(values_kw, dtype=np.float64)
    check_regular(times, values)
    if times.size == 0:
        return Backtest((), Scores(math.nan, math.nan), Scores(math.nan, math.nan))
    calendar = local_calendar(np.append(times, times[-1] + STEP_MS), timezone)
    # Local midnights: where the date changes; the last day counts if the series ends there.
    bounds = np.flatnonzero(np.diff(calendar.day) != 0) + 1
    held_out = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))[-days:]
    position = {(int(d), int(s)): i for i, (d, s) in
                enumerate(zip(calendar.day.tolist(), calendar.slot.tolist(), strict=True))}
    scored: list[DayScore] = []
    pooled: dict[str, list[FloatArray]] = {"actual": [], "forecast": [], "naive": []}
    lookback = params.weeks * WEEK_MS
    for first, end in held_out:
        start_ms = int(times[first]) - issue_hours_before * HOUR_MS
        if start_ms % STEP_MS:
            raise ValueError("issue_hours_before must keep the issue on the 15-minute grid")
        history = np.flatnonzero((times < start_ms) & (times >= start_ms - lookback))
        targets = regular_times(start_ms, (int(times[end - 1]) - start_ms) // STEP_MS + 1)
        target_cal = (calendar.take(np.searchsorted(times, targets))
                      if targets[0] >= times[0] else local_calendar(targets, timezone))
        fc = forecast_on_calendar(times[history], values[history], calendar.take(history), targets,
                       target_cal, start_ms, default_kw, params)
        predicted = fc.values_kw[-(end - first):]
        actual = values[first:end]
        naive = np.array([values[j] if (j := position.get((int(d) - 7, int(s)))) is not None
                          else np.nan for d, s in zip(calendar.day[first:end],
                                                      calendar.slot[first:end], strict=True)])
        mask = np.isfinite(actual) & np.isfinite(predicted)
        if np.isfinite(naive).any():
            mask &= np.isfinite(naive)
        day = date.fromordinal(int(calendar.day[first]))
        scored.append(DayScore(day, fc.method, int(mask.sum()),
                               Scores.of(actual[mask], predicted[mask]),
                               Scores.of(actual[mask], naive[mask])))
        pooled["actual"].append(actual[mask])
        pooled["forecast"].append(predicted[mask])
        pooled["naive"].append(naive[mask])
    if not scored:
        return Backtest((), Scores(math.nan, math.nan), Scores(math.nan, math.nan))
    actual_all = np.concatenate(pooled["actual"])
    naive_all = np.concatenate(pooled["naive"])
    # Days before the first week of history have no baseline: it is pooled where it exists.
    has_naive = np.isfinite(naive_all)
    return Backtest(tuple(scored), Scores.of(actual_all, np.concatenate(pooled["forecast"])),
                    Scores.of(actual_all[has_naive], naive_all[has_naive]))
