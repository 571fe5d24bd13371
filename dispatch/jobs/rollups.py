"""Rollups of the raw readings (1 minute, 15 minutes, 1 hour) and register consumption.

One scheduled job, no continuous queries and no ``SELECT ... INTO`` (InfluxDB 3 has
neither): it reads aggregates over windows through the store port and writes the rollup
points back as line protocol into longer retention policies. A point's
identity (measurement, tags, window start) makes a recomputed window overwrite itself, so
any window may be computed as often as needed. docs/rollups.md tells the whole story.

Levels, each from the one before, so a coarser level never rereads raw data:

    reading            raw, default policy "raw"
     ├─ reading_1m      rollup_1m     sum, count, min, max, last -> mean = sum / count
     │   └─ reading_15m  rollup_long  sums of sums and counts, min of mins, max of maxes,
     │       └─ reading_1h            last of lasts
     └─ consumption_15m  rollup_long  registers only: deltas between readings (Python)
         └─ consumption_1h            sums

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
from dispatch.settings import RollupSettings
from estate.errors import StoreRejected
from estate.lineprotocol import FieldValue, line
from estate.ports import Aggregate, Aggregation, Point, SeriesRef, TimeRange, TimeSeriesStore, Where
from estate.schema import ROLLUP_REQUESTS, split_field_key
from estate.stored import METER_TAGS, RAW_READINGS
from estate.units import QUANTITIES, Kind

log = logging.getLogger(__name__)

MINUTE_MS: Final = 60_000
QUARTER_MS: Final = 15 * MINUTE_MS
HOUR_MS: Final = 60 * MINUTE_MS
_NS_PER_MS: Final = 1_000_000

POLICY_1M: Final = "rollup_1m"
"""The retention policy of the 1-minute rollups (90 days by default)."""
POLICY_LONG: Final = "rollup_long"
"""The retention policy of the 15-minute and hourly rollups and consumption (forever)."""
ROLLUP_WATERMARK: Final = "rollup_watermark"
"""The job's progress, in ``rollup_long``: per level the end of the last window rolled up
(``<measurement>_done_ms``) and the start of the first (``<measurement>_since_ms``), and the
time of the newest rollup request handled (``requests_ms``)."""
REQUEST_SOURCE: Final = "rollups"
"""The ``source`` tag of the requests the job writes for what it left for its next run."""

TAG_KEYS: Final = ("estate", "facility", "device", "quantity", "channel")
_QUANTITY_NAMES: Final = tuple(sorted(QUANTITIES))
COUNTERS: Final = tuple(sorted(q.name for q in QUANTITIES.values() if q.kind is Kind.COUNTER))


@dataclass(frozen=True, slots=True)
class Level:
    """One rollup level: what it is called, its window, where it lives, what it is made of."""

    measurement: str
    window_ms: int
    policy: str
    source: Level | None  # None: the raw readings
    consumption: bool = False

    @property
    def series(self) -> SeriesRef:
        return SeriesRef(self.measurement, self.policy)


READING_1M: Final = Level("reading_1m", MINUTE_MS, POLICY_1M, None)
READING_15M: Final = Level("reading_15m", QUARTER_MS, POLICY_LONG, READING_1M)
READING_1H: Final = Level("reading_1h", HOUR_MS, POLICY_LONG, READING_15M)
CONSUMPTION_15M: Final = Level("consumption_15m", QUARTER_MS, POLICY_LONG, None, True)
CONSUMPTION_1H: Final = Level("consumption_1h", HOUR_MS, POLICY_LONG, CONSUMPTION_15M, True)
LEVELS: Final = (READING_1M, READING_15M, READING_1H, CONSUMPTION_15M, CONSUMPTION_1H)
"""Every level, each after the level it is computed from."""


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


# Window arithmetic.

def align_down(t_ms: int, window_ms: int) -> int:
    return t_ms - t_ms % window_ms


def align_up(t_ms: int, window_ms: int) -> int:
    return -(-t_ms // window_ms) * window_ms


def spans(start_ms: int, end_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive pieces of at most ``step_ms``."""
    return [(s, min(s + step_ms, end_ms)) for s in range(start_ms, end_ms, step_ms)]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of half-open ranges, sorted, touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def take(ranges: list[tuple[int, int]], budget_ms: int,
         ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split sorted ranges into the first ``budget_ms`` of them and the rest."""
    now: list[tuple[int, int]] = []
    rest: list[tuple[int, int]] = []
    for start, end in ranges:
        if budget_ms <= 0:
            rest.append((start, end))
            continue
        cut = min(end, start + budget_ms)
        now.append((start, cut))
        budget_ms -= cut - start
        if cut < end:
            rest.append((cut, end))
    return now, rest


def plan(window_ms: int, now_ms: int, settings: RollupSettings, trailing_ms: int, *,
         done_ms: int | None = None, source_done_ms: int | None = None,
         source_since_ms: int | None = None) -> tuple[int, int] | None:
    """Which windows of a level this run computes, as ``[start, end)``, or None.

    The end is the last complete window before ``now - grace`` that the source level has
    covered; nothing is done until a new window is complete. The start reaches back over
    the trailing period, or further to where the level stopped last (a worker that was
    stopped catches up), but never before the source level's first window (``since``: a
    window it only partly covers would be rolled up from part of its data), nor beyond
    ``max_age``. One run covers at most ``max_span_per_run`` of it.
    """
    end = align_down(now_ms - round(settings.grace_s * 1000), window_ms)
    if source_done_ms is not None:
        end = min(end, align_down(source_done_ms, window_ms))
    if done_ms is not None and end <= done_ms:
        return None
    start = align_down(end - trailing_ms, window_ms)
    if done_ms is not None:
        start = min(start, align_down(done_ms, window_ms))
    start = max(start, align_up(now_ms - round(settings.max_age_s * 1000), window_ms))
    if source_since_ms is not None:
        start = max(start, align_up(source_since_ms, window_ms))
    end = min(end, start + max(window_ms, align_down(settings.max_span_per_run_s * 1000,
                                                     window_ms)))
    return (start, end) if end > start else None


def request_range(start_ms: int, end_ms: int) -> tuple[int, int]:
    """The whole hours a request covers (its ``end_ms`` is its last reading, included)."""
    return align_down(start_ms, HOUR_MS), align_up(end_ms + 1, HOUR_MS)


# The job.

@dataclass
class Progress:
    """Where the job stands; kept in ``rollup_watermark`` so a restarted worker continues.

    Per level: ``done`` is the end of the last window rolled up, ``since`` the start of
    the first; and the time of the newest rollup request handled.
    """

    done_ms: dict[str, int] = field(default_factory=dict)
    since_ms: dict[str, int] = field(default_factory=dict)
    requests_ms: int | None = None

    def fields(self) -> dict[str, FieldValue]:
        out: dict[str, FieldValue] = {}
        for level in LEVELS:
            for suffix, known in (("done_ms", self.done_ms), ("since_ms", self.since_ms)):
                if level.measurement in known:
                    out[f"{level.measurement}_{suffix}"] = known[level.measurement]
        if self.requests_ms is not None:
            out["requests_ms"] = self.requests_ms
        return out

    @classmethod
    def from_fields(cls, row: Mapping[str, object]) -> Progress:
        def known(suffix: str) -> dict[str, int]:
            return {lv.measurement: int(value) for lv in LEVELS
                    if isinstance(value := row.get(f"{lv.measurement}_{suffix}"), int)}
        requests = row.get("requests_ms")
        return cls(known("done_ms"), known("since_ms"),
                   requests if isinstance(requests, int) else None)


def progress_names() -> list[str]:
    """The fields of ``rollup_watermark``."""
    return [f"{lv.measurement}_{suffix}" for lv in LEVELS
            for suffix in ("done_ms", "since_ms")] + ["requests_ms"]


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
