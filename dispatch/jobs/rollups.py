"""Rollups of the raw readings (1 minute, 15 minutes, 1 hour) and register consumption.

One scheduled job, no continuous queries and no ``SELECT ... INTO`` (InfluxDB 3 has
neither): it reads aggregates over windows through the store port and writes the rollup
points back as line protocol into longer retention policies. A point's identity
(measurement, tags, window start) makes a recomputed window overwrite itself, so any window
may be computed as often as needed. The levels and which windows a run computes are
``dispatch.jobs.rollup_levels``; docs/rollups.md tells the whole story.

Late readings are rolled up again on request: points in ``ROLLUP_REQUESTS``
(``rollup_request``, defined in ``estate.schema`` because ingest writes them).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from dispatch.jobs.consumption import consumption_by_window
from dispatch.jobs.rollup_levels import (
    CONSUMPTION_15M,
    HOUR_MS,
    LEVELS,
    MINUTE_MS,
    POLICY_1M,
    POLICY_LONG,
    QUARTER_MS,
    ROLLUP_WATERMARK,
    TAG_KEYS,
    Level,
    Progress,
    align_down,
    merge_ranges,
    plan,
    progress_names,
    request_range,
    spans,
    take,
)
from dispatch.settings import RollupSettings
from estate.errors import StoreRejected
from estate.lineprotocol import line
from estate.ports import Aggregate, Aggregation, Point, SeriesRef, TimeRange, TimeSeriesStore, Where
from estate.schema import ROLLUP_REQUESTS, split_field_key
from estate.stored import METER_TAGS, RAW_READINGS
from estate.units import QUANTITIES, Kind

log = logging.getLogger(__name__)

_NS_PER_MS: Final = 1_000_000
_QUANTITY_NAMES: Final = tuple(sorted(QUANTITIES))
COUNTERS: Final = tuple(sorted(q.name for q in QUANTITIES.values() if q.kind is Kind.COUNTER))
REQUEST_SOURCE: Final = "rollups"
"""The ``source`` tag of the requests the job writes for what it left for its next run."""

def ensure_rollup_policies(store: TimeSeriesStore, retention_1m: str = "90d",
                           retention_long: str = "INF") -> None:
    """Create the rollup retention policies, or bring their durations in line with settings."""
    for name, duration in ((POLICY_1M, retention_1m), (POLICY_LONG, retention_long)):
        store.ensure_retention(name, duration)


def try_rollup_policies(store: TimeSeriesStore, settings: RollupSettings) -> None:
    """``ensure_rollup_policies`` where the store allows it; a warning where it refuses.

    InfluxDB 3 has no retention policy statements: its administrator makes the databases.
    If they are missing too, the writes will say so.
    """
    try:
        ensure_rollup_policies(store, settings.retention_1m, settings.retention_long)
    except StoreRejected as exc:
        log.warning("cannot create the rollup retention policies (%s); they must exist "
                    "already (docs/rollups.md)", exc)


@dataclass
class RunSummary:
    """What one run wrote: points per measurement, requests handled and left for later."""

    points: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    requeued: int = 0


class Rollups:
    """The rollup job; call it (the scheduler does) or ``run(now_ms)`` it."""

    def __init__(self, store: TimeSeriesStore, settings: RollupSettings, *,
                 manage_policies: bool = True) -> None:
        """``manage_policies``: create the retention policies (InfluxDB 1.x); on 2.x the
        administrator makes a bucket for each instead (docs/rollups.md)."""
        self._store = store
        self._settings = settings
        self._policies_ready = not manage_policies
        self._trailing_ms = {MINUTE_MS: round(settings.trailing_1m_s * 1000),
                             QUARTER_MS: round(settings.trailing_15m_s * 1000),
                             HOUR_MS: round(settings.trailing_1h_s * 1000)}

    def __call__(self) -> RunSummary:
        return self.run()

    def run(self, now_ms: int | None = None) -> RunSummary:
        now_ms = time.time_ns() // _NS_PER_MS if now_ms is None else now_ms
        if not self._policies_ready:
            try_rollup_policies(self._store, self._settings)
            self._policies_ready = True
        progress = self._load_progress(now_ms)
        saved = progress.fields()
        summary = RunSummary()
        try:
            for level in LEVELS:
                self._roll_up(level, now_ms, progress, summary)
            self._handle_requests(now_ms, progress, summary)
        finally:
            if progress.fields() != saved:
                self._write([line(ROLLUP_WATERMARK, {}, progress.fields(),
                                  align_down(now_ms, HOUR_MS) * _NS_PER_MS)], POLICY_LONG)
        log.debug("rollups: %s points, %d requests", dict(summary.points), summary.requests)
        return summary

    def _roll_up(self, level: Level, now_ms: int, progress: Progress,
                 summary: RunSummary) -> None:
        source = level.source.measurement if level.source else None
        if source is not None and source not in progress.done_ms:
            return  # its source has never been rolled up: nothing to build on
        window = plan(level.window_ms, now_ms, self._settings,
                      self._trailing_ms[level.window_ms],
                      done_ms=progress.done_ms.get(level.measurement),
                      source_done_ms=progress.done_ms.get(source) if source else None,
                      source_since_ms=progress.since_ms.get(source) if source else None)
        if window is None:
            return
        summary.points[level.measurement] += self.recompute(level, *window)
        progress.done_ms[level.measurement] = window[1]
        progress.since_ms.setdefault(level.measurement, window[0])

    def recompute(self, level: Level, start_ms: int, end_ms: int) -> int:
        """Roll up ``[start, end)`` (whole windows) of one level; returns the points written."""
        if level.source is None and level.consumption:
            return self._consumption_from_readings(start_ms, end_ms)
        step = level.window_ms * self._settings.max_query_windows
        # One quantity a query: InfluxDB 1.x's cost grows with the series in a query
        # (10,000 meters' power, 10 minutes: 6 s), so this keeps each query well inside
        # the store's timeout and each answer a fraction of the whole. The raw readings hold
        # a field per quantity and channel; the rollups a point per quantity and channel.
        source: SeriesRef
        queries: list[tuple[list[Aggregation], Where, tuple[str, ...], dict[str, str]]]
        if level.source is None:
            source = RAW_READINGS
            queries = [(raw_aggregations(key), Where(), METER_TAGS, dict(
                zip(("quantity", "channel"), split_field_key(key), strict=True)))
                for key in self._raw_fields()]
        else:
            source = level.source.series
            queries = [(rollup_aggregations(level), Where({"quantity": q}), TAG_KEYS, {})
                       for q in _QUANTITY_NAMES]
        written = 0
        for s, e in spans(start_ms, end_ms, step):
            for aggregations, where, group_by, tags in queries:
                points = self._store.window_aggregates(source, aggregations, TimeRange(s, e),
                                                       level.window_ms, where=where,
                                                       group_by=group_by)
                lines = [rollup_line(series_prefix(level.measurement, {**p.tags, **tags}),
                                     fields, p.time_ms)
                         for p in points
                         if (fields := _fields(p, level.consumption)) is not None]
                self._write(lines, level.policy)
                written += len(lines)
        return written

    def _raw_fields(self, counters: bool = False) -> list[str]:
        """The fields of the raw readings (every ``quantity[.channel]`` ever written), or
        those of registers; names of unknown quantities are left alone."""
        names = self._store.field_names(RAW_READINGS)
        wanted = COUNTERS if counters else _QUANTITY_NAMES
        return sorted(n for n in names if split_field_key(n)[0] in wanted)

    def recompute_request(self, start_ms: int, end_ms: int) -> Counter[str]:
        """Recompute every level over whole hours ``[start, end)`` in which late readings
        arrived. Consumption reaches one window further: the first reading after the range
        now has a later predecessor."""
        written: Counter[str] = Counter()
        for level in LEVELS:
            end = end_ms + level.window_ms if level.consumption else end_ms
            written[level.measurement] += self.recompute(level, start_ms, end)
        return written

    def _consumption_from_readings(self, start_ms: int, end_ms: int) -> int:
        lookback_ms = round(self._settings.previous_reading_lookback_s * 1000)
        written = 0
        for field_name in self._raw_fields(counters=True):
            names = dict(zip(("quantity", "channel"), split_field_key(field_name), strict=True))
            previous: dict[tuple[str, ...], float | None] = {
                _key(latest.tags): float(value)
                for latest in self._store.latest_values(
                    RAW_READINGS, [field_name], TimeRange(start_ms - lookback_ms, start_ms),
                    group_by=METER_TAGS)
                if isinstance(value := latest.values.get(field_name), int | float)}
            for s, e in spans(start_ms, end_ms, self._settings.raw_query_span_s * 1000):
                lines = []
                for tags, values in _by_group(self._store.points(
                        RAW_READINGS, TimeRange(s, e), fields=[field_name],
                        group_by=METER_TAGS), field_name):
                    key = _key(tags)
                    windows, previous[key] = consumption_by_window(previous.get(key), values,
                                                                   QUARTER_MS)
                    prefix = series_prefix(CONSUMPTION_15M.measurement, {**tags, **names})
                    lines += [rollup_line(prefix, c.fields(), w)
                              for w, c in sorted(windows.items())]
                self._write(lines, CONSUMPTION_15M.policy)
                written += len(lines)
        return written

    def _handle_requests(self, now_ms: int, progress: Progress, summary: RunSummary) -> None:
        oldest_ms = now_ms - round(self._settings.max_age_s * 1000)
        after_ms = oldest_ms if progress.requests_ms is None else progress.requests_ms + 1
        # A whole millisecond as the upper bound: times come back in ms, and the watermark
        # must not pass a request that shares the millisecond of the newest one read.
        until_ms = now_ms - round(self._settings.request_settle_s * 1000)
        if until_ms <= after_ms:
            return
        rows = [(p.time_ms, p.fields.get("start_ms"), p.fields.get("end_ms"))
                for p in self._store.points(SeriesRef(ROLLUP_REQUESTS),
                                            TimeRange(after_ms, until_ms),
                                            fields=["start_ms", "end_ms"])]
        if not rows:
            return
        ranges = []
        for t_ms, start, end in rows:
            if not isinstance(start, int) or not isinstance(end, int) or end < start:
                log.warning("ignoring rollup request at %s: start_ms=%r end_ms=%r", t_ms, start,
                            end)
                continue
            ranges.append(request_range(max(start, oldest_ms), min(end, now_ms)))
        todo, rest = take(merge_ranges(ranges), self._settings.max_span_per_run_s * 1000)
        for start, end in todo:
            log.info("rolling up %d..%d again on request", start, end)
            summary.points.update(self.recompute_request(start, end))
        if rest:
            # Left for the next run, as requests like any other: the watermark moves on.
            self._write([line(ROLLUP_REQUESTS, {"source": REQUEST_SOURCE},
                              {"start_ms": s, "end_ms": e - 1}, now_ms * _NS_PER_MS + i)
                         for i, (s, e) in enumerate(rest)], None)
            log.info("rollup requests over %d ms left for the next run",
                     sum(e - s for s, e in rest))
        summary.requests += len(rows)
        summary.requeued += len(rest)
        progress.requests_ms = max(row[0] for row in rows)

    def _load_progress(self, now_ms: int) -> Progress:
        found = self._store.latest_values(
            SeriesRef(ROLLUP_WATERMARK, POLICY_LONG), progress_names(),
            TimeRange(now_ms - round(self._settings.max_age_s * 1000)))
        return Progress.from_fields(found[0].values) if found else Progress()

    def _write(self, lines: list[str], policy: str | None) -> None:
        size = self._settings.write_batch_lines
        for i in range(0, len(lines), size):
            try:
                self._store.write_lines(lines[i:i + size], retention_policy=policy)
            except StoreRejected as exc:
                # InfluxDB stored the rest of the batch; a window older than its policy's
                # duration has nowhere to go, which is no reason to stop the job.
                if "beyond retention policy" not in str(exc):
                    raise
                log.warning("rollup points older than %s's duration dropped: %s", policy, exc)


def raw_aggregations(raw_field: str) -> list[Aggregation]:
    """What a 1-minute window keeps of the raw readings' field ``quantity[.channel]``. The
    mean is not asked for: it is ``sum / count`` at every level."""
    return [Aggregation(name, Aggregate(name), raw_field)
            for name in ("sum", "count", "min", "max", "last")]


def rollup_aggregations(level: Level) -> list[Aggregation]:
    """What a window of ``level`` keeps of the windows of its source level."""
    if level.consumption:
        return [Aggregation(name, Aggregate.SUM, name)
                for name in ("value", "resets", "rollovers", "backwards")]
    return [Aggregation("sum", Aggregate.SUM, "sum"), Aggregation("count", Aggregate.SUM, "count"),
            Aggregation("min", Aggregate.MIN, "min"), Aggregation("max", Aggregate.MAX, "max"),
            Aggregation("last", Aggregate.LAST, "last")]


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """Measurement and tags of a series' lines, escaped exactly as ``line`` does it.

    Built once per series: ``line`` for each of hundreds of thousands of rollup points
    costs seconds a run (14 µs a point, against under 1 µs for the fields alone).
    """
    return line(measurement, {k: tags.get(k, "") for k in TAG_KEYS}, {"_": 0},
                0).removesuffix(" _=0i 0")


def rollup_line(prefix: str, fields: Mapping[str, float | int], t_ms: int) -> str:
    """One rollup point; our own field names need no escaping, values are what ``line``
    writes (``repr`` of a finite float, an integer with ``i``)."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, int):
            parts.append(f"{name}={value}i")
        elif math.isfinite(value):
            parts.append(f"{name}={value!r}")
        else:
            raise ValueError(f"line protocol cannot carry {value!r}")
    return f"{prefix} {','.join(parts)} {t_ms * _NS_PER_MS}"


def _fields(point: Point, consumption: bool) -> dict[str, float | int] | None:
    """The fields of a rollup point from an aggregate answer; None for a window with a
    missing aggregate."""
    n = {k: v for k, v in point.fields.items() if isinstance(v, int | float)}
    if len(n) < len(point.fields):
        return None
    if consumption:
        return {"value": float(n["value"]), "resets": int(n["resets"]),
                "rollovers": int(n["rollovers"]), "backwards": int(n["backwards"])}
    total, count = float(n["sum"]), int(n["count"])
    return {"mean": total / count, "min": float(n["min"]), "max": float(n["max"]),
            "last": float(n["last"]), "sum": total, "count": count}


def _by_group(points: Iterable[Point], field_name: str,
              ) -> list[tuple[Mapping[str, str], list[tuple[int, float]]]]:
    """The points' values of ``field_name`` per group, in time order."""
    groups: dict[tuple[str, ...], tuple[Mapping[str, str], list[tuple[int, float]]]] = {}
    for p in points:
        value = p.fields.get(field_name)
        entry = groups.setdefault(_key(p.tags), (p.tags, []))
        if isinstance(value, int | float) and not isinstance(value, bool):
            entry[1].append((p.time_ms, float(value)))
    return list(groups.values())


def _key(tags: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(tags.get(k, "") for k in TAG_KEYS)
