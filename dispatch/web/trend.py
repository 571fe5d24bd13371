"""``GET /api/trend``: one quantity of one meter over a time range, as minimum, mean and
maximum per step, at most ``MAX_POINTS`` steps whatever the range.

Which data answers (docs/api.md, *Trends*):

- a range up to ``RAW_SPAN`` (6 hours) is read from the raw readings, aggregated over
  steps of at least a second so that no more than ``MAX_POINTS`` come back;
- a longer one from the coarsest rollup level (``dispatch.jobs.rollup_levels``: 1 minute,
  15 minutes, 1 hour) whose window is no longer than the step the cap asks for, with steps
  a whole number of that level's windows: a 24-hour trend in 2-minute steps from
  ``reading_1m``, a 31-day one in 45-minute steps from ``reading_15m``, a year in
  9-hour steps from ``reading_1h``. The minimum is the least of the minimums, the mean
  the sum of the sums over the sum of the counts, the maximum the greatest maximum, so
  the answer is exact at every step;
- the newest steps, which the rollup job has not reached yet (it runs every minute, and a
  quarter-hour or an hour is rolled up once it is over), are read from the raw readings
  when they are at most ``RAW_TAIL`` old, so a trend reaches the present.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from dispatch.jobs.rollup_levels import READING_1H, READING_1M, READING_15M, Level, align_down
from dispatch.web.auth import Viewer, facility_scope
from dispatch.web.deps import Spec, Store
from dispatch.web.ranges import checked_range
from estate.model import MEASURES, EstateSpec
from estate.ports import Aggregate, Aggregation, Point, TimeRange, TimeSeriesStore, Where
from estate.schema import field_key
from estate.stored import RAW_READINGS
from estate.topics import IDENTIFIER_PATTERN
from estate.units import QUANTITIES

# A chart is about a thousand pixels wide: more points than that draw nothing more, and
# a thousand is a few tens of kilobytes of JSON.
MAX_POINTS: Final = 1000
# Up to six hours the raw readings answer (at one reading every few seconds, a few
# thousand points for InfluxDB to aggregate); past that, the rollups.
RAW_SPAN: Final = timedelta(hours=6)
# The newest steps are read raw when the rollups stop at most this long before the end:
# the hourly level lags by an hour and a half at most; six hours also covers a rollup job
# that was stopped for a while, and bounds what a tail costs.
RAW_TAIL: Final = timedelta(hours=6)
# A year and a day: the hourly rollups are kept for good, so a year-on-year view works.
MAX_RANGE: Final = timedelta(days=366)
# Raw steps are whole seconds: readings carry milliseconds, meters report every second
# at most.
MIN_RAW_STEP_MS: Final = 1000
ROLLUP_LEVELS: Final = (READING_1H, READING_15M, READING_1M)  # coarsest first
_RAW_MS: Final = int(RAW_SPAN.total_seconds() * 1000)
_TAIL_MS: Final = int(RAW_TAIL.total_seconds() * 1000)

Ident = Annotated[str, Query(pattern=f"^{IDENTIFIER_PATTERN}$")]

router = APIRouter()


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a trend is read from and in what steps."""

    level: Level | None  # None: the raw readings
    step_ms: int

    @property
    def name(self) -> str:
        return "raw" if self.level is None else self.level.measurement


def resolution(span_ms: int, max_points: int = MAX_POINTS) -> Resolution:
    """The source and step for a range of ``span_ms``: raw up to ``RAW_SPAN``, else the
    coarsest rollup level fine enough for ``max_points`` steps."""
    needed_ms = -(-span_ms // max_points)
    if span_ms <= _RAW_MS:
        return Resolution(None, max(MIN_RAW_STEP_MS, -(-needed_ms // 1000) * 1000))
    level = next((lv for lv in ROLLUP_LEVELS if lv.window_ms <= needed_ms), READING_1M)
    return Resolution(level, max(1, -(-needed_ms // level.window_ms)) * level.window_ms)


def _value(fields: Any, name: str) -> float | None:
    value = fields.get(name)
    return float(value) if isinstance(value, int | float) else None


def _rollup_steps(store: TimeSeriesStore, level: Level, span: TimeRange, step_ms: int,
                  where: Where) -> list[tuple[int, float | None, float | None, float | None]]:
    if step_ms == level.window_ms:
        points = store.points(level.series, span, fields=["min", "mean", "max"],
                              where=where, limit_per_group=MAX_POINTS + 1)
        return [(p.time_ms, _value(p.fields, "min"), _value(p.fields, "mean"),
                 _value(p.fields, "max")) for p in points]
    aggregated = store.window_aggregates(
        level.series, [Aggregation("min", Aggregate.MIN, "min"),
                       Aggregation("max", Aggregate.MAX, "max"),
                       Aggregation("sum", Aggregate.SUM, "sum"),
                       Aggregation("count", Aggregate.SUM, "count")],
        span, step_ms, where=where)
    return [(p.time_ms, _value(p.fields, "min"), _mean(p), _value(p.fields, "max"))
            for p in aggregated]


def _mean(point: Point) -> float | None:
    total, count = _value(point.fields, "sum"), _value(point.fields, "count")
    return total / count if total is not None and count else None


def _raw_steps(store: TimeSeriesStore, field: str, span: TimeRange, step_ms: int,
               where: Where) -> list[tuple[int, float | None, float | None, float | None]]:
    aggregated = store.window_aggregates(
        RAW_READINGS, [Aggregation("min", Aggregate.MIN, field),
                       Aggregation("mean", Aggregate.MEAN, field),
                       Aggregation("max", Aggregate.MAX, field)],
        span, step_ms, where=where)
    return [(p.time_ms, _value(p.fields, "min"), _value(p.fields, "mean"),
             _value(p.fields, "max")) for p in aggregated]


def read_trend(store: TimeSeriesStore, estate: str, meter: tuple[str, str],
               measure: tuple[str, str], start_ms: int, end_ms: int,
               ) -> tuple[Resolution, list[tuple[int, float | None, float | None, float | None]]]:
    """The steps of ``measure`` (quantity, channel) of ``meter`` (facility, device) in
    ``[start_ms, end_ms)``: (time, min, mean, max), oldest first, at most ``MAX_POINTS``."""
    facility, device = meter
    quantity, channel = measure
    chosen = resolution(end_ms - start_ms)
    step = chosen.step_ms
    span = TimeRange(align_down(start_ms, step), end_ms)
    raw_where = Where({"estate": estate, "facility": facility, "device": device})
    field = field_key(quantity, channel)
    if chosen.level is None:
        steps = _raw_steps(store, field, span, step, raw_where)
    else:
        rollup_where = Where({"estate": estate, "facility": facility, "device": device,
                              "quantity": quantity, "channel": channel})
        steps = _rollup_steps(store, chosen.level, span, step, rollup_where)
        tail_from = align_down(steps[-1][0], step) if steps else span.start_ms
        if end_ms - tail_from <= _TAIL_MS:
            steps = [s for s in steps if s[0] < tail_from]
            steps += _raw_steps(store, field, TimeRange(tail_from, end_ms), step, raw_where)
    return chosen, steps[-MAX_POINTS:]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds"
                                                            ).replace("+00:00", "Z")


def _checked_meter(spec: EstateSpec, facility: str, meter: str, quantity: str,
                   channel: str) -> None:
    """404 for a meter the estate does not have; 422 for what it does not measure."""
    found = next((m for f in spec.facilities if f.id == facility
                  for m in f.meters if m.id == meter), None)
    if found is None:
        raise HTTPException(404, f"no meter {meter!r} in facility {facility!r}")
    if (quantity, channel) not in MEASURES[found.kind]:
        offered = ", ".join(f"{q}.{c}" if c else q for q, c in MEASURES[found.kind])
        raise HTTPException(422, f"meter {facility}/{meter} ({found.kind}) does not "
                                 f"measure {field_key(quantity, channel)!r}; it measures "
                                 f"{offered}")


@router.get("/api/trend", response_class=Response, responses={
    200: {"content": {"application/json": {"schema": {"type": "object"}}},
          "description": "min, mean and max per step (docs/api.md)"}})
def trend(
    spec: Spec, store: Store, identity: Viewer, facility: Ident, meter: Ident,
    quantity: Annotated[str, Query(pattern=r"^[a-z_]{1,40}$")],
    start: datetime, end: datetime,
    channel: Annotated[str, Query(pattern=f"^({IDENTIFIER_PATTERN})?$")] = "",
) -> Response:
    """Minimum, mean and maximum per step of one meter's quantity in ``[start, end)``, at
    most 1,000 steps: raw readings up to 6 hours, the rollups past that (docs/api.md)."""
    start_ms, end_ms = checked_range(start, end, MAX_RANGE)
    facility_scope(identity, facility)
    if quantity not in QUANTITIES:
        raise HTTPException(422, f"unknown quantity {quantity!r}")
    _checked_meter(spec, facility, meter, quantity, channel)
    chosen, steps = read_trend(store, spec.id, (facility, meter), (quantity, channel),
                               start_ms, end_ms)
    body = {"estate": spec.id, "facility": facility, "meter": meter, "quantity": quantity,
            "channel": channel, "resolution": chosen.name, "step_s": chosen.step_ms / 1000,
            "unit": QUANTITIES[quantity].unit, "start": _iso(start_ms), "end": _iso(end_ms),
            "points": [{"t": _iso(t), "min": lo, "mean": mean, "max": hi}
                       for t, lo, mean, hi in steps],
            "bounded": True, "max_points": MAX_POINTS}
    # Encoded straight to JSON: a thousand points through FastAPI's generic encoder cost
    # more than reading them.
    return Response(orjson.dumps(body), media_type="application/json")
