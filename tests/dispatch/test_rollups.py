"""Rollups and register consumption: the arithmetic alone, then against the real InfluxDB."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.__main__ import run_worker
from dispatch.jobs.consumption import Consumption, consumption_by_window
from dispatch.jobs.rollup_levels import (
    CONSUMPTION_1H,
    CONSUMPTION_15M,
    HOUR_MS,
    LEVELS,
    MINUTE_MS,
    POLICY_1M,
    POLICY_LONG,
    QUARTER_MS,
    READING_1H,
    READING_1M,
    READING_15M,
    ROLLUP_WATERMARK,
    Level,
    Progress,
    align_down,
    align_up,
    merge_ranges,
    plan,
    progress_names,
    request_range,
    spans,
    take,
)
from dispatch.jobs.rollups import (
    REQUEST_SOURCE,
    ROLLUP_REQUESTS,
    Rollups,
    ensure_rollup_policies,
    raw_aggregations,
    rollup_aggregations,
    rollup_line,
    series_prefix,
)
from dispatch.settings import DispatchSettings, RollupSettings
from estate.errors import StoreRejected
from estate.lineprotocol import line, readings_lines
from estate.ports import Aggregate
from estate.readings import Reading
from estate.settings import InfluxSettings
from tests.doubles import InMemoryTimeSeriesStore

NS = 1_000_000
Key = tuple[str, str, str, str, str]  # estate, facility, device, quantity, channel


# Window arithmetic.

def test_windows_align_to_the_epoch_and_spans_cover_exactly() -> None:
    assert align_down(HOUR_MS + 59_999, MINUTE_MS) == HOUR_MS
    assert align_up(HOUR_MS + 1, QUARTER_MS) == HOUR_MS + QUARTER_MS
    assert align_up(HOUR_MS, QUARTER_MS) == HOUR_MS
    assert spans(0, 25, 10) == [(0, 10), (10, 20), (20, 25)]
    assert spans(5, 5, 10) == []


def test_merge_joins_overlapping_and_touching_ranges_and_drops_empty_ones() -> None:
    assert merge_ranges([(50, 60), (0, 10), (10, 20), (15, 30), (40, 40)]) == [
        (0, 30), (50, 60)]


def test_take_splits_ranges_at_the_budget() -> None:
    assert take([(0, 10), (20, 40), (50, 60)], 15) == ([(0, 10), (20, 25)],
                                                       [(25, 40), (50, 60)])
    assert take([(0, 10)], 10) == ([(0, 10)], [])


def test_a_request_covers_the_whole_hours_of_its_first_and_last_reading() -> None:
    assert request_range(HOUR_MS + 5, 2 * HOUR_MS + 7) == (HOUR_MS, 3 * HOUR_MS)
    # end_ms is the last reading itself: one at the top of the hour needs that hour.
    assert request_range(HOUR_MS, 2 * HOUR_MS) == (HOUR_MS, 3 * HOUR_MS)
    assert request_range(HOUR_MS, 2 * HOUR_MS - 1) == (HOUR_MS, 2 * HOUR_MS)


# Planning a run.

SETTINGS = RollupSettings()
DAY_MS = 24 * HOUR_MS
T = 1000 * DAY_MS  # a whole day, far from zero


def _plan(level: Level, now_ms: int, done: int | None = None, source_done: int | None = None,
          source_since: int | None = None, settings: RollupSettings = SETTINGS,
          ) -> tuple[int, int] | None:
    trailing = {MINUTE_MS: settings.trailing_1m_s, QUARTER_MS: settings.trailing_15m_s,
                HOUR_MS: settings.trailing_1h_s}[level.window_ms]
    return plan(level.window_ms, now_ms, settings, round(trailing * 1000), done_ms=done,
                source_done_ms=source_done, source_since_ms=source_since)


def test_a_window_is_rolled_up_only_once_complete_and_after_the_grace() -> None:
    # 20 s after 10:05 the 10:04 minute is complete but still inside the 30 s grace.
    assert _plan(READING_1M, T + 5 * MINUTE_MS + 20_000) == (T - 6 * MINUTE_MS,
                                                             T + 4 * MINUTE_MS)
    assert _plan(READING_1M, T + 5 * MINUTE_MS + 30_000) == (T - 5 * MINUTE_MS,
                                                             T + 5 * MINUTE_MS)


def test_a_coarse_level_waits_for_a_new_window_and_recomputes_its_trailing_period() -> None:
    now = T + 20 * MINUTE_MS
    assert _plan(READING_15M, now, done=T + QUARTER_MS, source_done=T + 19 * MINUTE_MS) is None
    later = T + 30 * MINUTE_MS + 30_000
    assert _plan(READING_15M, later, done=T + QUARTER_MS, source_done=T + 30 * MINUTE_MS) == (
        T + 30 * MINUTE_MS - 2 * HOUR_MS, T + 30 * MINUTE_MS)


def test_a_level_never_passes_the_level_it_is_built_from() -> None:
    assert _plan(READING_1H, T + 3 * HOUR_MS, source_done=T + HOUR_MS + 45 * MINUTE_MS) == (
        T + HOUR_MS - 6 * HOUR_MS, T + HOUR_MS)


def test_a_level_starts_no_earlier_than_the_first_window_of_its_source() -> None:
    # The 1-minute level began at 10:05: the 10:00 quarter would be missing five minutes.
    now = T + 2 * HOUR_MS + 30_000
    assert _plan(READING_15M, now, source_done=T + 2 * HOUR_MS,
                 source_since=T + 5 * MINUTE_MS) == (T + QUARTER_MS, T + 2 * HOUR_MS)
    assert _plan(READING_15M, T + 10 * MINUTE_MS, source_done=T + 10 * MINUTE_MS,
                 source_since=T + 5 * MINUTE_MS) is None


def test_a_stopped_worker_catches_up_in_bounded_steps_and_not_beyond_max_age() -> None:
    settings = RollupSettings(max_span_per_run_s=3 * 3600)
    now = T + 2 * DAY_MS
    assert _plan(READING_1M, now, done=T, settings=settings) == (T, T + 3 * HOUR_MS)
    far = T + 40 * DAY_MS
    start, end = _plan(READING_1M, far, done=T, settings=settings) or (0, 0)
    assert start == far - 30 * DAY_MS
    assert end == start + 3 * HOUR_MS


def test_settings_refuse_a_coarse_level_that_cannot_see_what_its_source_changes() -> None:
    with pytest.raises(ValidationError, match="trailing_15m_s"):
        RollupSettings(trailing_1m_s=3600, trailing_15m_s=3600)
    with pytest.raises(ValidationError, match="trailing_1h_s"):
        RollupSettings(trailing_15m_s=7200, trailing_1h_s=7200)


@pytest.mark.parametrize("level", [lv for lv in LEVELS if lv is not CONSUMPTION_15M],
                         ids=lambda lv: lv.measurement)
def test_every_level_is_aggregated_from_its_source_level(level: Level) -> None:
    if level.source is None:
        aggregations = raw_aggregations("voltage.l1")
        assert {a.field for a in aggregations} == {"voltage.l1"}
        assert [a.name for a in aggregations] == ["sum", "count", "min", "max", "last"]
    else:
        aggregations = rollup_aggregations(level)
        # Sums of sums and counts, never a mean of means.
        assert all(a.function is not Aggregate.MEAN for a in aggregations)
        assert {a.field for a in aggregations} == {a.name for a in aggregations}


# Lines.

texts = st.text(min_size=0, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)


TAG_NAMES = ("estate", "facility", "device", "quantity", "channel")


@given(tags=st.fixed_dictionaries(dict.fromkeys(TAG_NAMES, texts)),
       values=st.tuples(finite, finite, st.integers(0, 2**62)), t_ms=st.integers(0, 2**42))
def test_a_rollup_line_is_exactly_what_the_general_serializer_writes(
        tags: dict[str, str], values: tuple[float, float, int], t_ms: int) -> None:
    fields = {"mean": values[0], "sum": values[1], "count": values[2]}
    assert rollup_line(series_prefix("reading_1m", tags), fields, t_ms) == line(
        "reading_1m", tags, fields, t_ms * NS)


def test_a_rollup_line_refuses_what_line_protocol_cannot_carry() -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        rollup_line("m", {"mean": math.nan}, 0)


def test_progress_survives_its_round_trip_through_the_store_fields() -> None:
    progress = Progress({"reading_1m": 5, "consumption_1h": 7}, {"reading_1m": 1}, 9)
    assert Progress.from_fields(progress.fields()) == progress
    assert set(progress.fields()) <= set(progress_names())
    assert Progress.from_fields(dict.fromkeys(progress_names())) == Progress()


# Consumption.

def _consumed(previous: float | None, readings: list[tuple[int, float]],
              ) -> dict[int, tuple[float, int, int, int]]:
    windows, _ = consumption_by_window(previous, readings, QUARTER_MS)
    return {w: (c.value, c.resets, c.rollovers, c.backwards) for w, c in windows.items()}


def test_increases_count_their_delta_in_the_window_of_the_later_reading() -> None:
    q = QUARTER_MS
    assert _consumed(100.0, [(0, 110.0), (q - 1, 115.0), (q, 120.0), (3 * q + 5, 150.0)]) == {
        0: (15.0, 0, 0, 0), q: (5.0, 0, 0, 0), 3 * q: (30.0, 0, 0, 0)}


def test_a_rollover_counts_what_passed_the_top_and_what_came_after() -> None:
    assert _consumed(99_999_990.0, [(0, 5.0), (1, 7.0)]) == {0: (17.0, 0, 1, 0)}


def test_a_reset_counts_nothing_and_counting_resumes_from_the_new_value() -> None:
    assert _consumed(4505.0, [(0, 2.0), (1, 5.0)]) == {0: (3.0, 1, 0, 0)}


def test_a_reading_that_went_backwards_counts_nothing_and_is_passed_over() -> None:
    # 28 after 29 is a bad reading; 32 is judged against 29, as ingest's guard does.
    assert _consumed(29.0, [(0, 28.0), (1, 32.0)]) == {0: (3.0, 0, 0, 1)}


def test_consumption_fields_are_what_the_points_carry() -> None:
    assert Consumption(1.5, 1, 2, 3).fields() == {"value": 1.5, "resets": 1, "rollovers": 2,
                                                  "backwards": 3}


def test_without_a_previous_reading_the_first_one_only_starts_the_count() -> None:
    windows, carried = consumption_by_window(None, [(5, 10.0), (QUARTER_MS, 12.0)], QUARTER_MS)
    assert {w: c.value for w, c in windows.items()} == {0: 0.0, QUARTER_MS: 2.0}
    assert carried == 12.0
    assert consumption_by_window(None, [], QUARTER_MS) == ({}, None)


@given(first=st.floats(0, 1e9), steps=st.lists(
    st.tuples(st.integers(1, 10 * MINUTE_MS), st.floats(0, 1e6)), max_size=60))
def test_only_increases_consume_exactly_last_minus_first(
        first: float, steps: list[tuple[int, float]]) -> None:
    readings, t, value = [(0, first)], 0, first
    for gap, increase in steps:
        t, value = t + gap, value + increase
        readings.append((t, value))
    windows, carried = consumption_by_window(None, readings, QUARTER_MS)
    total = math.fsum(c.value for c in windows.values())
    assert math.isclose(total, value - first, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, value))
    assert carried == value
    assert not any(c.resets or c.rollovers or c.backwards for c in windows.values())


@given(values=st.lists(st.integers(0, 10**8 - 1), min_size=1, max_size=40),
       cut=st.integers(0, 40))
def test_cutting_a_series_at_a_window_boundary_changes_nothing(values: list[int],
                                                               cut: int) -> None:
    # Chunked queries carry the last value from one chunk into the next.
    readings = [(i * 5 * MINUTE_MS, float(v)) for i, v in enumerate(values)]
    boundary = align_down(min(cut, len(readings)) * 5 * MINUTE_MS, QUARTER_MS)
    whole, last = consumption_by_window(7.0, readings, QUARTER_MS)
    first_part, carried = consumption_by_window(
        7.0, [r for r in readings if r[0] < boundary], QUARTER_MS)
    second_part, last_again = consumption_by_window(
        carried, [r for r in readings if r[0] >= boundary], QUARTER_MS)
    assert {**first_part, **second_part} == whole
    assert last_again == last


# The job against a store that refuses what InfluxDB 3 refuses.

def test_without_retention_policy_statements_the_job_still_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryTimeSeriesStore(retention_statements=False)
    job = Rollups(store, SETTINGS)
    job.run(now_ms=T)
    job.run(now_ms=T + MINUTE_MS)
    assert "cannot create the rollup retention policies" in caplog.text
    assert store.retention_requests == [POLICY_1M]  # tried once, at the first run
    # Progress is kept in the long policy all the same.
    assert [policy for policy, _ in store.writes] == [POLICY_LONG, POLICY_LONG]


def test_on_influxdb_2_the_job_leaves_retention_to_the_buckets() -> None:
    store = InMemoryTimeSeriesStore()
    Rollups(store, SETTINGS, manage_policies=False).run(now_ms=T)
    assert store.retention_requests == []


# Against the real InfluxDB.

def _key(tags: dict[str, Any]) -> Key:
    return (tags["estate"], tags["facility"], tags["device"], tags["quantity"],
            tags.get("channel") or "")


def _tags(key: Key) -> dict[str, str]:
    return dict(zip(TAG_NAMES, key, strict=True))


def _write_readings(store: InfluxV1Store, readings: dict[Key, list[tuple[int, float]]]) -> None:
    store.write_lines(readings_lines(Reading(*k, v, t) for k, rows in readings.items()
                                     for t, v in rows))


def _points(store: InfluxV1Store, db: str, level: Level, start_ms: int, end_ms: int,
            ) -> dict[tuple[Key, int], dict[str, Any]]:
    out = {}
    for s in store.query(f'SELECT * FROM "{db}"."{level.policy}"."{level.measurement}" '
                         "WHERE time >= $s AND time < $e GROUP BY *",
                         {"s": start_ms * NS, "e": end_ms * NS}):
        for row in s.values:
            fields = dict(zip(s.columns, row, strict=True))
            out[(_key(s.tags), fields.pop("time"))] = fields
    return out


def _stats(readings: dict[Key, list[tuple[int, float]]], window_ms: int,
           ) -> dict[tuple[Key, int], dict[str, Any]]:
    """What a level must hold, computed straight from the raw readings."""
    groups: dict[tuple[Key, int], list[float]] = defaultdict(list)
    for key, rows in readings.items():
        for t, v in sorted(rows):
            groups[(key, align_down(t, window_ms))].append(v)
    return {k: {"sum": sum(vs), "count": len(vs), "min": min(vs), "max": max(vs),
                "last": vs[-1], "mean": sum(vs) / len(vs)} for k, vs in groups.items()}


def _gauges(start_ms: int, minutes: int) -> dict[Key, list[tuple[int, float]]]:
    """Three power meters reading every 20 s, one with a channel, two named alike."""
    n = minutes * 3
    return {
        ("e", "f1", "a", "power", ""): [(start_ms + i * 20_000, float(i * 7 % 11))
                                        for i in range(n)],
        ("e", "f1", "b", "power", "L1"): [(start_ms + i * 20_000, float(100 + i * 5 % 13))
                                          for i in range(n)],
        ("e", "f2", "a", "power", ""): [(start_ms + i * 20_000, -float(i % 4))
                                        for i in range(n)],
    }


ENERGY: Key = ("e", "f1", "m", "energy_import", "")
WATER: Key = ("e", "f2", "m", "water_volume", "")


def _energy_register(m: int) -> float:
    """An 8-digit register that rolls over at minute 10, is reset at 20, reads 28 at 30."""
    if m < 10:
        return 99_999_900.0 + 10 * m
    if m < 20:
        return 5.0 + 500 * (m - 10)
    if m < 30:
        return 2.0 + 3 * (m - 20)
    if m == 30:
        return 28.0  # below 29: a bad reading
    return 32.0 + 3 * (m - 31)


def _registers(start_ms: int) -> dict[Key, list[tuple[int, float]]]:
    # The readings before the hour are what the first minute is measured from.
    return {
        ENERGY: [(start_ms - 20 * MINUTE_MS, 99_999_890.0)]
        + [(start_ms + m * MINUTE_MS, _energy_register(m)) for m in range(60)],
        WATER: [(start_ms - 20 * MINUTE_MS, 7.5)]
        + [(start_ms + m * MINUTE_MS, 10 + m * 2.5) for m in range(60)],
    }


def _last_complete_hour() -> int:
    return align_down(time.time_ns() // NS, HOUR_MS) - HOUR_MS


# Each level reaches back over the whole hour of test data.
WHOLE_HOUR = RollupSettings(trailing_1m_s=3600, trailing_15m_s=4500, trailing_1h_s=8100)


def test_policies_are_created_once_and_follow_the_settings(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    ensure_rollup_policies(store)
    ensure_rollup_policies(store)
    ensure_rollup_policies(store, retention_1m="120d")
    policies = {row[0]: row[1] for row in
                store.query(f'SHOW RETENTION POLICIES ON "{db}"')[0].values}
    assert policies[POLICY_1M] == "2880h0m0s"
    assert policies[POLICY_LONG] == "0s"  # INF
    assert policies["raw"] == "720h0m0s"


def test_every_level_holds_exact_statistics_per_meter(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    h0 = _last_complete_hour()
    readings = {**_gauges(h0, 60), **_registers(h0)}
    _write_readings(store, readings)
    summary = Rollups(store, WHOLE_HOUR).run(now_ms=h0 + HOUR_MS + 31_000)
    in_hour = {k: [r for r in rows if r[0] >= h0] for k, rows in readings.items()}
    for level in (READING_1M, READING_15M, READING_1H):
        stored = _points(store, db, level, h0 - 3 * HOUR_MS, h0 + 2 * HOUR_MS)
        assert stored == _stats(in_hour, level.window_ms), level.measurement
        assert summary.points[level.measurement] == len(stored)
    assert len(_points(store, db, READING_1M, h0, h0 + HOUR_MS)) == 5 * 60
    # Worked by hand, so the check does not rest on the oracle above alone.
    hour = _points(store, db, READING_1H, h0, h0 + HOUR_MS)
    assert hour[(("e", "f1", "a", "power", ""), h0)] == {
        "count": 180, "sum": 900.0, "mean": 5.0, "min": 0.0, "max": 10.0, "last": 10.0}
    assert hour[(("e", "f2", "a", "power", ""), h0)]["mean"] == -1.5
    assert hour[(("e", "f1", "b", "power", "L1"), h0)]["min"] == 100.0
    assert hour[(ENERGY, h0)]["last"] == 116.0


def test_consumption_counts_rollovers_resets_and_bad_readings_per_window(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    h0 = _last_complete_hour()
    _write_readings(store, {**_gauges(h0, 60), **_registers(h0)})
    Rollups(store, WHOLE_HOUR).run(now_ms=h0 + HOUR_MS + 31_000)
    q = QUARTER_MS
    fields = ("value", "resets", "rollovers", "backwards")

    def consumed(level: Level) -> dict[tuple[Key, int], tuple[Any, ...]]:
        return {k: tuple(f[n] for n in fields)
                for k, f in _points(store, db, level, h0 - 3 * HOUR_MS, h0 + 2 * HOUR_MS).items()}

    assert consumed(CONSUMPTION_15M) == {
        # 10 from the reading before the hour, 9 × 10, 15 across the top, 4 × 500.
        (ENERGY, h0): (2115.0, 0, 1, 0),
        # 5 × 500, a reset, 9 × 3.
        (ENERGY, h0 + q): (2527.0, 1, 0, 0),
        # 28 is passed over; 32 - 29, then 13 × 3.
        (ENERGY, h0 + 2 * q): (42.0, 0, 0, 1),
        (ENERGY, h0 + 3 * q): (45.0, 0, 0, 0),
        **{(WATER, h0 + i * q): (37.5, 0, 0, 0) for i in range(4)},
    }
    assert consumed(CONSUMPTION_1H) == {(ENERGY, h0): (4729.0, 1, 1, 1),
                                        (WATER, h0): (150.0, 0, 0, 0)}


def test_running_again_rewrites_the_same_points(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    h0 = _last_complete_hour()
    _write_readings(store, {**_gauges(h0, 60), **_registers(h0)})
    now = h0 + HOUR_MS + 31_000
    first = Rollups(store, WHOLE_HOUR).run(now_ms=now)
    before = {lv: _points(store, db, lv, h0 - 3 * HOUR_MS, now) for lv in LEVELS}
    # Forget the progress: a new worker recomputes every window of the trailing periods.
    store.query(f'DROP MEASUREMENT "{ROLLUP_WATERMARK}"')
    second = Rollups(store, WHOLE_HOUR).run(now_ms=now)
    assert second.points == first.points
    assert sum(first.points.values()) == 5 * 60 + 5 * 4 + 5 + 2 * 4 + 2
    assert {lv: _points(store, db, lv, h0 - 3 * HOUR_MS, now) for lv in LEVELS} == before
    # With the progress kept, the same moment needs nothing new.
    assert Rollups(store, WHOLE_HOUR).run(now_ms=now).points.total() == 0


def _watermark(store: InfluxV1Store, db: str) -> dict[str, Any]:
    series = store.query(f'SELECT * FROM "{db}"."{POLICY_LONG}"."{ROLLUP_WATERMARK}" '
                         "WHERE time > now() - 1d ORDER BY time DESC LIMIT 1")
    return dict(zip(series[0].columns, series[0].values[0], strict=True))


def test_a_request_rolls_up_an_older_range_once_and_the_watermark_advances(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    h5 = align_down(time.time_ns() // NS, HOUR_MS) - 5 * HOUR_MS
    readings = {**_gauges(h5, 30), **_registers(h5)}
    readings = {k: [r for r in rows if r[0] < h5 + 30 * MINUTE_MS] for k, rows in readings.items()}
    _write_readings(store, readings)
    job = Rollups(store, RollupSettings())
    job.run()
    assert _points(store, db, READING_1M, h5, h5 + HOUR_MS) == {}, "outside the trailing period"
    assert _points(store, db, CONSUMPTION_15M, h5, h5 + HOUR_MS) == {}

    requested_ms = time.time_ns() // NS - 60_000
    store.write_lines([line(ROLLUP_REQUESTS, {"source": "ingest-1"},
                            {"start_ms": h5, "end_ms": h5 + 29 * MINUTE_MS},
                            requested_ms * NS + 123)])
    summary = job.run()
    assert summary.requests == 1
    in_range = {k: [r for r in rows if r[0] >= h5] for k, rows in readings.items()}
    for level in (READING_1M, READING_15M, READING_1H):
        assert _points(store, db, level, h5, h5 + HOUR_MS) == _stats(in_range, level.window_ms)
    assert len(_points(store, db, READING_1M, h5, h5 + HOUR_MS)) == 5 * 30
    energy = _points(store, db, CONSUMPTION_15M, h5, h5 + HOUR_MS)
    assert [energy[(ENERGY, h5 + i * QUARTER_MS)]["value"] for i in range(2)] == [2115.0, 2527.0]
    assert _points(store, db, CONSUMPTION_1H, h5, h5 + HOUR_MS)[(WATER, h5)]["value"] == 75.0
    assert _watermark(store, db)["requests_ms"] == requested_ms

    # Handled requests are not handled again, even by a new worker.
    assert Rollups(store, RollupSettings()).run().requests == 0


def test_a_late_register_reading_moves_consumption_out_of_the_window_after_it(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    h5 = align_down(time.time_ns() // NS, HOUR_MS) - 5 * HOUR_MS
    now_ns = time.time_ns()

    def request(start_ms: int, end_ms: int, age_s: int) -> str:
        return line(ROLLUP_REQUESTS, {"source": "ingest-1"},
                    {"start_ms": start_ms, "end_ms": end_ms}, now_ns - age_s * 10**9)

    _write_readings(store, {ENERGY: [(h5 + 35 * MINUTE_MS, 90.0), (h5 + 50 * MINUTE_MS, 100.0),
                                     (h5 + 65 * MINUTE_MS, 200.0)]})
    store.write_lines([request(h5 + 35 * MINUTE_MS, h5 + 65 * MINUTE_MS, 90)])
    job = Rollups(store, RollupSettings())
    job.run()

    def consumed(level: Level) -> dict[int, float]:
        return {t: f["value"] for (_, t), f in
                _points(store, db, level, h5, h5 + 2 * HOUR_MS).items()}

    assert consumed(CONSUMPTION_15M) == {h5 + 30 * MINUTE_MS: 0.0, h5 + 45 * MINUTE_MS: 10.0,
                                         h5 + HOUR_MS: 100.0}
    # The reading of 10:55 arrives late: the next reading, in the next hour, now counts
    # only from it.
    _write_readings(store, {ENERGY: [(h5 + 55 * MINUTE_MS, 180.0)]})
    store.write_lines([request(h5 + 55 * MINUTE_MS, h5 + 55 * MINUTE_MS, 60)])
    assert job.run().requests == 1
    assert consumed(CONSUMPTION_15M) == {h5 + 30 * MINUTE_MS: 0.0, h5 + 45 * MINUTE_MS: 90.0,
                                         h5 + HOUR_MS: 20.0}
    assert consumed(CONSUMPTION_1H) == {h5: 90.0, h5 + HOUR_MS: 20.0}


def test_a_long_request_is_spread_over_runs_without_losing_any_of_it(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    start = align_down(time.time_ns() // NS, HOUR_MS) - 8 * HOUR_MS
    key: Key = ("e", "f1", "a", "power", "")
    _write_readings(store, {key: [(start + i * 5 * MINUTE_MS, float(i)) for i in range(36)]})
    now = time.time_ns() // NS
    store.write_lines([line(ROLLUP_REQUESTS, {"source": "ingest-1"},
                            {"start_ms": start, "end_ms": start + 3 * HOUR_MS - 1},
                            (now - 60_000) * NS)])
    job = Rollups(store, RollupSettings(max_span_per_run_s=3600))

    first = job.run(now_ms=now)
    assert (first.requests, first.requeued) == (1, 1)
    hours = _points(store, db, READING_1H, start, start + 3 * HOUR_MS)
    assert [t for _, t in hours] == [start]
    left = store.query(f'SELECT "start_ms", "end_ms" FROM "{ROLLUP_REQUESTS}" '
                       'WHERE "source" = $s AND time > now() - 1d', {"s": REQUEST_SOURCE})
    assert [row[1:] for row in left[0].values] == [[start + HOUR_MS, start + 3 * HOUR_MS - 1]]

    second = job.run(now_ms=now + 31_000)  # the left-over request has settled
    third = job.run(now_ms=now + 62_000)
    assert (second.requeued, third.requeued, third.requests) == (1, 0, 1)
    hours = _points(store, db, READING_1H, start, start + 3 * HOUR_MS)
    assert {t: f["count"] for (_, t), f in hours.items()} == {
        start + i * HOUR_MS: 12 for i in range(3)}
    assert job.run(now_ms=now + 93_000).requests == 0


def test_a_stopped_worker_catches_up_beyond_the_trailing_period(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    db = influx_settings.database
    h0 = _last_complete_hour()
    _write_readings(store, _gauges(h0 - QUARTER_MS, 75))
    # The first run ever rolls up the last 10 minutes (from 09:55), and no quarter: the
    # 09:45 quarter would be rolled up from 5 of its 15 minutes.
    Rollups(store, RollupSettings()).run(now_ms=h0 + 5 * MINUTE_MS + 31_000)
    assert len(_points(store, db, READING_1M, h0 - HOUR_MS, h0 + HOUR_MS)) == 3 * 10
    assert _points(store, db, READING_15M, h0 - HOUR_MS, h0 + HOUR_MS) == {}
    # The next run comes 55 minutes later, far beyond the 10-minute trailing period.
    Rollups(store, RollupSettings()).run(now_ms=h0 + HOUR_MS + 31_000)
    assert len(_points(store, db, READING_1M, h0, h0 + HOUR_MS)) == 3 * 60
    quarters = _points(store, db, READING_15M, h0 - HOUR_MS, h0 + HOUR_MS)
    assert sorted({t for _, t in quarters}) == [h0 + i * QUARTER_MS for i in range(4)]
    hour = _points(store, db, READING_1H, h0, h0 + HOUR_MS)
    assert sorted(f["count"] for f in hour.values()) == [180, 180, 180]
    progress = _watermark(store, db)
    assert progress["reading_1m_done_ms"] == h0 + HOUR_MS
    assert progress["reading_1h_done_ms"] == h0 + HOUR_MS
    assert progress["reading_1m_since_ms"] == h0 - 5 * MINUTE_MS


def test_windows_older_than_a_policy_keeps_are_dropped_without_stopping_the_job(
        store: InfluxV1Store, influx_settings: InfluxSettings,
        caplog: pytest.LogCaptureFixture) -> None:
    db = influx_settings.database
    h5 = align_down(time.time_ns() // NS, HOUR_MS) - 5 * HOUR_MS
    _write_readings(store, _registers(h5))
    store.write_lines([line(ROLLUP_REQUESTS, {"source": "ingest-1"},
                            {"start_ms": h5, "end_ms": h5 + 59 * MINUTE_MS},
                            time.time_ns() - 60 * 10**9)])
    caplog.set_level(logging.WARNING, logger="dispatch.jobs.rollups")
    summary = Rollups(store, RollupSettings(retention_1m="1h")).run()
    assert summary.requests == 1
    assert "dropped" in caplog.text
    assert _points(store, db, READING_1M, h5, h5 + HOUR_MS) == {}
    # Consumption lives in the long policy and is computed from raw readings all the same.
    assert _points(store, db, CONSUMPTION_1H, h5, h5 + HOUR_MS)[(ENERGY, h5)]["value"] == 4729.0




def test_the_worker_runs_the_rollup_job(influx_settings: InfluxSettings,
                                        store: InfluxV1Store, tmp_path: Path) -> None:
    stop = threading.Event()
    settings = DispatchSettings(influx=influx_settings, rollups=RollupSettings(every_s=3600),
                                registry_url=f"sqlite:///{tmp_path / 'registry.sqlite'}",
                                http_port=0)
    worker = threading.Thread(target=run_worker, args=(settings, stop), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if store.query(f'SELECT * FROM "{influx_settings.database}"."{POLICY_LONG}".'
                               f'"{ROLLUP_WATERMARK}" WHERE time > now() - 1d'):
                    break
            except StoreRejected:
                pass  # the policy is not there yet
            time.sleep(0.1)
        else:
            pytest.fail("the worker wrote no rollup progress within 20 s")
    finally:
        stop.set()
        worker.join(20)
    assert not worker.is_alive()
