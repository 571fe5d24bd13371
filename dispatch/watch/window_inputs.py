"""What the windowed rules are handed each cycle, read through the store port: per window
length, the aggregates (count, mean, minimum, maximum) of each series per meter, added up
from one-step windows of the raw readings; each meter's newest reading; and the capacity
inputs (the incomers' mean import against the limits in force)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np

from dispatch.alarms.frames import CapacityInputs, SeriesKey, SeriesWindow, WindowFrame
from dispatch.alarms.model import ESTATE_SOURCE, facility_source
from estate.model import EstateSpec
from estate.ports import Aggregate, Aggregation, Point, TimeRange, TimeSeriesStore, Where
from estate.schema import field_key
from estate.stored import RAW_READINGS

_METER = ("facility", "device")
_FUNCTIONS = (("count", Aggregate.COUNT), ("mean", Aggregate.MEAN), ("min", Aggregate.MIN),
              ("max", Aggregate.MAX))


def _aggregations(keys: Iterable[SeriesKey]) -> list[Aggregation]:
    return [Aggregation(f"{field_key(q, c)}|{name}", function, field_key(q, c))
            for q, c in sorted(keys) for name, function in _FUNCTIONS]


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def read_frame(store: TimeSeriesStore, estate: str, meters: Sequence[str],
               keys: Iterable[SeriesKey], end_ms: int, span_s: float, step_ms: int,
               ) -> WindowFrame:
    """The frame over ``[end_ms - span_s, end_ms)``: the store's one-step windows (aligned
    to the epoch, as ``end_ms`` is) added up per meter: counts summed, means weighted by
    the counts, minimum of minimums, maximum of maximums."""
    keys = sorted(set(keys))
    n = len(meters)
    index = {ref: i for i, ref in enumerate(meters)}
    start = end_ms - int(span_s * 1000)
    count = {k: np.zeros(n, dtype=np.int64) for k in keys}
    total = {k: np.zeros(n) for k in keys}
    low = {k: np.full(n, np.inf) for k in keys}
    high = {k: np.full(n, -np.inf) for k in keys}
    points = store.window_aggregates(RAW_READINGS, _aggregations(keys),
                                     TimeRange(start, end_ms), step_ms,
                                     where=Where({"estate": estate}), group_by=_METER)
    for p in points:
        i = index.get(f"{p.tags.get('facility')}/{p.tags.get('device')}")
        if i is None:
            continue
        for k in keys:
            _add(p, field_key(*k), i, count[k], total[k], low[k], high[k])
    series = {}
    for k in keys:
        c = count[k]
        empty = c == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(empty, np.nan, total[k] / np.maximum(c, 1))
        lo, hi = low[k], high[k]
        lo[empty] = np.nan
        hi[empty] = np.nan
        series[k] = SeriesWindow(c, mean, lo, hi)
    return WindowFrame(end_ms, span_s, series)


def _add(p: Point, name: str, i: int, count: np.ndarray, total: np.ndarray,
         low: np.ndarray, high: np.ndarray) -> None:
    n = _number(p.fields.get(f"{name}|count"))
    mean = _number(p.fields.get(f"{name}|mean"))
    if not n or mean is None:
        return
    count[i] += int(n)
    total[i] += mean * n
    lo, hi = _number(p.fields.get(f"{name}|min")), _number(p.fields.get(f"{name}|max"))
    if lo is not None:
        low[i] = min(low[i], lo)
    if hi is not None:
        high[i] = max(high[i], hi)


def read_last_seen(store: TimeSeriesStore, estate: str, meters: Sequence[str], end_ms: int,
                   lookback_s: float, default_ms: int) -> np.ndarray:
    """Each meter's newest reading time up to ``end_ms`` within ``lookback_s``; for a
    meter with none, ``default_ms`` (the evaluator's start: a meter never heard is silent
    from then on)."""
    out = np.full(len(meters), default_ms, dtype=np.int64)
    index = {ref: i for i, ref in enumerate(meters)}
    newest = store.newest_points(RAW_READINGS, TimeRange(end_ms - int(lookback_s * 1000),
                                                         end_ms),
                                 where=Where({"estate": estate}), group_by=_METER)
    for p in newest:
        i = index.get(f"{p.tags.get('facility')}/{p.tags.get('device')}")
        if i is not None:
            out[i] = max(int(out[i]), p.time_ms)
    return out


def limits_in_force(spec: EstateSpec, day: date) -> dict[str, float]:
    """The capacity limit of the estate and of each facility with a sub-limit on ``day``:
    a limit of the description valid that day, the estate's contracted capacity else."""
    out = {ESTATE_SOURCE: spec.contracted_capacity_kw}
    for limit in spec.capacity_limits:
        if limit.valid_from <= day and (limit.valid_to is None or day < limit.valid_to):
            source = ESTATE_SOURCE if limit.facility is None else facility_source(
                limit.facility)
            out[source] = limit.limit_kw
    return out


def capacity_inputs(spec: EstateSpec, meters: Sequence[str], frames: dict[float, WindowFrame],
                    windows: dict[str, float], end_ms: int) -> CapacityInputs:
    """The mean import of each capacity source over its window (the sum of its incomers'
    mean power: the estate's every incomer, a facility its own) and the limits in force."""
    incomers = {f"{f.id}/{m.id}": f.id for f in spec.facilities for m in f.meters if m.incomer}
    index = {ref: i for i, ref in enumerate(meters)}
    demand: dict[str, float] = {}
    for source, span in windows.items():
        power = frames.get(span, WindowFrame(end_ms, span, {})).series.get(("power", ""))
        if power is None:
            continue
        wanted = [ref for ref, facility in incomers.items()
                  if source == ESTATE_SOURCE or source == facility_source(facility)]
        means = [power.mean[index[ref]] for ref in wanted if ref in index]
        if means and all(np.isfinite(means)):
            demand[source] = float(np.sum(means))
    day = datetime.fromtimestamp(end_ms / 1000, UTC).astimezone(ZoneInfo(spec.timezone)).date()
    return CapacityInputs(demand, limits_in_force(spec, day))
