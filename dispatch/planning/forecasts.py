"""Load forecasts per facility and for the estate: history from the store, forecasts back.

The arithmetic is ``dispatch.planning.demand_model`` (pure); this module does the I/O around it:

    reading_15m (rollup_long, "mean" of each incomer's power)  ─┐
    reading (raw, only where the rollups do not reach yet)  ────┴─► demand per facility
        ─► forecast_demand per facility and for the estate ─► forecast (rollup_long)

A facility's demand is the sum of its incomer meters' power (sub-meters are inside it);
the estate's is the sum of its facilities'. docs/forecasting.md tells the whole story.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
from rich.console import Console
from rich.table import Table

from adapters.influx import make_store
from dispatch.jobs.rollup_levels import POLICY_LONG, READING_15M
from dispatch.jobs.rollups import try_rollup_policies
from dispatch.planning.demand_backtest import Backtest, backtest
from dispatch.planning.demand_model import (
    DAY_MS,
    NEAR_ZERO_SHARE,
    STEP_MS,
    WEEK_MS,
    FloatArray,
    Forecast,
    ForecastParams,
    IntArray,
    forecast_demand,
    regular_times,
)
from dispatch.settings import ForecastSettings, RollupSettings
from estate.lineprotocol import line
from estate.model import EstateSpec, load_estate
from estate.ports import (
    Aggregate,
    Aggregation,
    Point,
    SeriesRef,
    TimeRange,
    TimeSeriesStore,
    Where,
)
from estate.schema import FORECASTS, field_key
from estate.settings import InfluxSettings
from estate.stored import RAW_READINGS

log = logging.getLogger(__name__)

ESTATE_SCOPE: Final = "_estate"
"""The ``facility`` tag of the whole estate's forecast (not a valid facility id, so it
cannot collide with one)."""
FORECAST_POLICY: Final = POLICY_LONG
"""Forecasts are kept as long as the quarter-hour rollups they are compared with."""
QUANTITY: Final = "power"

_NS_PER_MS: Final = 1_000_000
# One query's answer: at most a week of quarter-hours (672 rows) for at most 50 meters,
# about 34,000 rows, well inside the store's timeout (docs/rollups.md, *Cost*).
_ROLLUP_QUERY_SPAN_MS: Final = WEEK_MS
_RAW_QUERY_SPAN_MS: Final = DAY_MS
_METERS_PER_QUERY: Final = 50
# 5,000 lines per write is where InfluxDB 1.x reaches its full write rate (as ingest).
_WRITE_BATCH_LINES: Final = 5000

MeterKey = tuple[str, str]  # facility, device
Means = dict[MeterKey, dict[int, float]]  # window start (ms) -> mean power (kW)


# Reading demand history.

def incomers(spec: EstateSpec) -> dict[str, list[str]]:
    """Per facility, its incomer meters (facilities without one are left out)."""
    out = {f.id: [m.id for m in f.meters if m.incomer and m.kind == "electricity"]
           for f in spec.facilities}
    for facility in [f for f, meters in out.items() if not meters]:
        log.warning("facility %s has no incomer meter: no demand forecast for it", facility)
        del out[facility]
    return out


def nominal_kw(spec: EstateSpec) -> dict[str, float]:
    """Per facility, the sum of its incomers' nominal load: the guess without history."""
    return {f.id: sum(m.nominal for m in f.meters if m.incomer and m.kind == "electricity")
            for f in spec.facilities}


_METER: Final = ("facility", "device")


def _read_means(read: Callable[[TimeRange, Where], list[Point]], estate: str,
                meters: Sequence[MeterKey], start_ms: int, end_ms: int, span_ms: int,
                tags: Mapping[str, str] | None = None) -> Means:
    """The ``mean`` of each meter per window from ``read``, a batch of meters and a span
    of time a call."""
    out: Means = {m: {} for m in meters}
    for i in range(0, len(meters), _METERS_PER_QUERY):
        batch = [dict(zip(_METER, m, strict=True)) for m in meters[i:i + _METERS_PER_QUERY]]
        where = Where({"estate": estate, **(tags or {})}, any_of=batch)
        for s in range(start_ms, end_ms, span_ms):
            for point in read(TimeRange(s, min(s + span_ms, end_ms)), where):
                key = (point.tags.get("facility", ""), point.tags.get("device", ""))
                mean = point.fields.get("mean")
                if isinstance(mean, int | float) and not isinstance(mean, bool):
                    out.setdefault(key, {})[point.time_ms] = float(mean)
    return out


def rollup_power_means(store: TimeSeriesStore, estate: str, meters: Sequence[MeterKey],
                       start_ms: int, end_ms: int) -> Means:
    """The 15-minute mean power of each meter from the ``reading_15m`` rollup."""
    def read(span: TimeRange, where: Where) -> list[Point]:
        return store.points(READING_15M.series, span, fields=["mean"], where=where,
                            group_by=_METER)

    return _read_means(read, estate, meters, start_ms, end_ms, _ROLLUP_QUERY_SPAN_MS,
                       {"quantity": QUANTITY, "channel": ""})


def raw_power_means(store: TimeSeriesStore, estate: str, meters: Sequence[MeterKey],
                    start_ms: int, end_ms: int) -> Means:
    """The 15-minute mean power of each meter computed from the raw readings.

    The one place in forecasting that knows the layout of the raw ``reading``
    measurement (``estate.schema.READINGS``: one point per meter and instant, tags
    estate, facility, device, a field per ``quantity[.channel]``): when that layout
    changes, this function changes and nothing else here does.
    """
    mean = [Aggregation("mean", Aggregate.MEAN, field_key(QUANTITY, ""))]

    def read(span: TimeRange, where: Where) -> list[Point]:
        return store.window_aggregates(RAW_READINGS, mean, span, STEP_MS, where=where,
                                       group_by=_METER)

    return _read_means(read, estate, meters, start_ms, end_ms, _RAW_QUERY_SPAN_MS)


@dataclass(frozen=True, slots=True)
class DemandHistory:
    """Demand (kW) per quarter-hour, NaN where not measured, per facility and the estate."""

    times_ms: IntArray
    facilities: dict[str, FloatArray]
    estate: FloatArray
    raw_windows: int  # meter quarter-hours taken from raw readings


def _sum_measured(rows: Mapping[str, FloatArray], size: int, what: str) -> FloatArray:
    """The sum per step of the rows measured at all in the range; NaN where one of them is
    missing (a part of a sum is no demand). Rows never measured are left out: a meter not
    yet installed must not blank out its facility."""
    measured = []
    for key, values in rows.items():
        if np.isfinite(values).any():
            measured.append(values)
        else:
            log.info("%s %s has no measurement in the range: left out", what, key)
    if not measured:
        return np.full(size, np.nan)
    return np.asarray(np.sum(measured, axis=0), dtype=np.float64)


def read_demand(store: TimeSeriesStore, spec: EstateSpec, start_ms: int, end_ms: int, *,
                raw_fallback_ms: int = 0) -> DemandHistory:
    """Demand of every facility with an incomer, and of the estate, over ``[start, end)``.

    The quarter-hours after the newest one in the rollups, within ``raw_fallback_ms`` of
    the end, are computed from the raw readings (the newest quarter-hour is rolled up only
    after it ends; a rollup job can be behind). Gaps inside the rollups stay gaps.
    """
    times = regular_times(start_ms, (end_ms - start_ms) // STEP_MS)
    by_facility = incomers(spec)
    meters = [(f, d) for f, devices in by_facility.items() for d in devices]
    means = rollup_power_means(store, spec.id, meters, start_ms, end_ms)
    newest = max((t for known in means.values() for t in known), default=None)
    raw_from = max(start_ms if newest is None else newest + STEP_MS, end_ms - raw_fallback_ms)
    raw_windows = 0
    if raw_from < end_ms:
        for key, known in raw_power_means(store, spec.id, meters, raw_from, end_ms).items():
            raw_windows += len(known.keys() - means.setdefault(key, {}).keys())
            means[key] = known | means[key]
    index = {int(t): i for i, t in enumerate(times)}
    rows: dict[MeterKey, FloatArray] = {}
    for key in meters:
        row = np.full(times.size, np.nan)
        for t_ms, mean in means.get(key, {}).items():
            if (i := index.get(t_ms)) is not None:
                row[i] = mean
        rows[key] = row
    facilities = {f: _sum_measured({d: rows[(f, d)] for d in devices}, times.size,
                                   f"incomer of {f}")
                  for f, devices in by_facility.items()}
    return DemandHistory(times, facilities, _sum_measured(facilities, times.size, "facility"),
                         raw_windows)


# Writing and reading forecasts.

def forecast_lines(estate: str, scope: str, forecast: Forecast) -> list[str]:
    """The points of one forecast; their identity is (estate, scope, quantity, step), so
    a forecast issued again overwrites the steps it covers, whatever method it used."""
    tags = {"estate": estate, "facility": scope, "quantity": QUANTITY}
    return [line(FORECASTS, tags, {"value": float(v), "issued_ms": forecast.issued_ms,
                                   "method": forecast.method.value}, int(t) * _NS_PER_MS)
            for t, v in zip(forecast.times_ms.tolist(), forecast.values_kw.tolist(),
                            strict=True)]


@dataclass(frozen=True, slots=True)
class StoredForecast:
    """Forecast steps as stored: each the newest issue that covered it."""

    times_ms: IntArray
    values_kw: FloatArray
    issued_ms: IntArray
    methods: tuple[str, ...]


def load_forecast(store: TimeSeriesStore, estate: str, facility: str, start_ms: int,
                  end_ms: int) -> StoredForecast:
    """The stored forecast of a facility (or ``ESTATE_SCOPE``) over ``[start, end)``."""
    points = store.points(
        SeriesRef(FORECASTS, FORECAST_POLICY), TimeRange(start_ms, end_ms),
        fields=["value", "issued_ms", "method"],
        where=Where({"estate": estate, "facility": facility, "quantity": QUANTITY}))
    rows = [(p.time_ms, value, p.fields.get("issued_ms"), p.fields.get("method"))
            for p in points if isinstance(value := p.fields.get("value"), int | float)]
    return StoredForecast(np.array([r[0] for r in rows], dtype=np.int64),
                          np.array([float(r[1]) for r in rows], dtype=np.float64),
                          np.array([int(r[2]) if isinstance(r[2], int) else -1 for r in rows],
                                   dtype=np.int64),
                          tuple(str(r[3]) for r in rows))


class ForecastJob:
    """Issue and store the forecasts of every facility and the estate; call it (the
    scheduler does) or ``run(now_ms)`` it."""

    def __init__(self, store: TimeSeriesStore, spec: EstateSpec, settings: ForecastSettings,
                 *, rollups: RollupSettings | None = None, manage_policies: bool = True,
                 ) -> None:
        """``rollups``: the retention settings, so that the policy forecasts go to is made
        as the rollup job makes it; ``manage_policies`` false on InfluxDB 2.x (buckets)."""
        self._store = store
        self._spec = spec
        self._settings = settings
        self._rollups = rollups or RollupSettings()
        self._policies_ready = not manage_policies

    def __call__(self) -> dict[str, Forecast]:
        return self.run()

    def run(self, now_ms: int | None = None) -> dict[str, Forecast]:
        """Forecast from the current quarter-hour on, from the history before it."""
        now_ms = time.time_ns() // _NS_PER_MS if now_ms is None else now_ms
        if not self._policies_ready:
            try_rollup_policies(self._store, self._rollups)
            self._policies_ready = True
        start = now_ms - now_ms % STEP_MS
        history = read_demand(self._store, self._spec, start - self._settings.weeks * WEEK_MS,
                              start, raw_fallback_ms=round(self._settings.raw_fallback_s * 1000))
        nominal = nominal_kw(self._spec)
        series = {**history.facilities, ESTATE_SCOPE: history.estate}
        defaults = {**nominal, ESTATE_SCOPE: sum(nominal[f] for f in history.facilities)}
        issued: dict[str, Forecast] = {}
        lines: list[str] = []
        for scope, values in series.items():
            forecast = forecast_demand(history.times_ms, values, start,
                                       self._settings.horizon_steps, self._spec.timezone,
                                       default_kw=defaults[scope],
                                       params=ForecastParams(weeks=self._settings.weeks))
            issued[scope] = forecast
            lines += forecast_lines(self._spec.id, scope, forecast)
            log.log(logging.INFO if forecast.from_history else logging.WARNING,
                    "forecast %s: %s (%s)", scope, forecast.method, forecast.note)
        for i in range(0, len(lines), _WRITE_BATCH_LINES):
            self._store.write_lines(lines[i:i + _WRITE_BATCH_LINES],
                                    retention_policy=FORECAST_POLICY)
        return issued


# The backtest command.

def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def backtest_command(estate_file: Path, influx: InfluxSettings, days: int, *,
                     issue_hours_before: int = 0, settings: ForecastSettings | None = None,
                     console: Console | None = None,
                     now_ms: int | None = None) -> dict[str, Backtest]:
    """``estate forecast backtest``: forecast each of the last ``days`` complete local days
    from the history before it and print MAPE and WAPE against the seasonal-naive
    baseline, per facility and for the estate."""
    settings = settings or ForecastSettings()
    console = console or Console()
    spec = load_estate(estate_file)
    tz = ZoneInfo(spec.timezone)
    now_ms = time.time_ns() // _NS_PER_MS if now_ms is None else now_ms
    local_now = datetime.fromtimestamp(now_ms / 1000, tz)
    end_ms = int(local_now.replace(hour=0, minute=0, second=0, microsecond=0)
                 .timestamp() * 1000)
    # The profile's weeks before the first held-out day, and a week for the baseline.
    history_days = days + 7 * settings.weeks + 7 + math.ceil(issue_hours_before / 24)
    start_ms = end_ms - history_days * DAY_MS
    store = make_store(influx)
    try:
        history = read_demand(store, spec, start_ms, end_ms,
                              raw_fallback_ms=round(settings.raw_fallback_s * 1000))
    finally:
        store.close()
    nominal = nominal_kw(spec)
    results: dict[str, Backtest] = {}
    for scope, values in {**history.facilities, ESTATE_SCOPE: history.estate}.items():
        results[scope] = backtest(history.times_ms, values, tz, days,
                                  issue_hours_before=issue_hours_before,
                                  default_kw=nominal.get(scope, 0.0),
                                  params=ForecastParams(weeks=settings.weeks))
    first_day = (local_now - timedelta(days=days)).date()
    table = Table(title=f"Forecast backtest, estate {spec.id}: {days} held-out days from "
                        f"{first_day}, issued {issue_hours_before} h before local midnight",
                  caption=f"MAPE leaves out steps below {NEAR_ZERO_SHARE:.0%} of the mean "
                          "load; naive = the same local time a week earlier")
    for column in ("scope", "method", "days", "MAPE %", "WAPE %", "naive MAPE %",
                   "naive WAPE %"):
        table.add_column(column, justify="left" if column in ("scope", "method") else "right")
    names = {f.id: f.name for f in spec.facilities}
    for scope, result in results.items():
        label = "estate" if scope == ESTATE_SCOPE else f"{scope} ({names[scope]})"
        table.add_row(label, ", ".join(m.value for m in result.methods) or "-",
                      str(len(result.days)), _percent(result.forecast.mape),
                      _percent(result.forecast.wape), _percent(result.naive.mape),
                      _percent(result.naive.wape))
    console.print(table)
    return results
