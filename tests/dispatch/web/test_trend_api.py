"""``GET /api/trend`` in process, on the in-memory store: which data answers a range, the
cap on points, the raw tail past the rollups, refusals and a tenant's scope. The same
against the real InfluxDB and rollup job is in tests/dispatch/test_trend_served.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.jobs.rollup_levels import (
    HOUR_MS,
    MINUTE_MS,
    QUARTER_MS,
    READING_15M,
    align_down,
)
from dispatch.jobs.rollups import rollup_line, series_prefix
from dispatch.web.trend import MAX_POINTS, resolution
from estate.lineprotocol import reading_line
from estate.readings import Reading
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import OTHER_FACILITY, TENANT_FACILITY, WebRoom

DAY_MS = 24 * HOUR_MS


@pytest.mark.parametrize(("span_ms", "name", "step_ms"), [
    (HOUR_MS, "raw", 4_000),
    (6 * HOUR_MS, "raw", 22_000),
    (6 * HOUR_MS + 1, "reading_1m", MINUTE_MS),
    (DAY_MS, "reading_1m", 2 * MINUTE_MS),
    (7 * DAY_MS, "reading_1m", 11 * MINUTE_MS),
    (15 * DAY_MS, "reading_15m", 2 * QUARTER_MS),
    (31 * DAY_MS, "reading_15m", 3 * QUARTER_MS),
    (366 * DAY_MS, "reading_1h", 9 * HOUR_MS),
])
def test_the_coarsest_source_that_keeps_the_steps_under_the_cap(
        span_ms: int, name: str, step_ms: int) -> None:
    chosen = resolution(span_ms)
    assert (chosen.name, chosen.step_ms) == (name, step_ms)
    assert span_ms / chosen.step_ms <= MAX_POINTS


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _raw(room: WebRoom, facility: str, times_ms: range, value: float = 10.0) -> None:
    room.store.write_lines([reading_line(Reading(SPEC.id, facility, "main", "power", "",
                                                 value + (t // MINUTE_MS) % 7, t))
                            for t in times_ms])


def _quarters(room: WebRoom, start_ms: int, end_ms: int) -> None:
    prefix = series_prefix(READING_15M.measurement, {
        "estate": SPEC.id, "facility": TENANT_FACILITY, "device": "main",
        "quantity": "power", "channel": ""})
    room.store.write_lines(
        [rollup_line(prefix, {"min": 1.0, "max": 9.0, "mean": 5.0, "sum": 75.0,
                              "count": 15, "last": 5.0}, t)
         for t in range(start_ms, end_ms, QUARTER_MS)], READING_15M.policy)


def test_a_month_is_read_from_the_quarter_hours_and_the_newest_hours_raw(room: WebRoom) -> None:
    end_ms = (datetime.now(UTC).timestamp() * 1000) // HOUR_MS * HOUR_MS
    end_ms = int(end_ms)
    start_ms = end_ms - 31 * DAY_MS
    rolled_to = end_ms - 2 * HOUR_MS  # the rollup job's lag, exaggerated
    _quarters(room, start_ms, rolled_to)
    _raw(room, TENANT_FACILITY, range(rolled_to - HOUR_MS, end_ms, MINUTE_MS), value=100.0)
    answer = room.login("vera").get("/api/trend", params={
        "facility": TENANT_FACILITY, "meter": "main", "quantity": "power",
        "start": _iso(start_ms), "end": _iso(end_ms)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["resolution"], body["unit"], body["bounded"]) == ("reading_15m", "kW", True)
    assert body["step_s"] == 45 * 60
    points = body["points"]
    assert len(points) <= MAX_POINTS
    # Three quarter-hours a step: min of mins, sum of sums over sum of counts, max of maxes.
    # Steps are aligned to the epoch: the first starts at or before the range.
    first_step = align_down(start_ms, 45 * MINUTE_MS)
    assert datetime.fromisoformat(points[0]["t"]).timestamp() * 1000 == first_step
    assert (points[0]["min"], points[0]["mean"], points[0]["max"]) == (1.0, 5.0, 9.0)
    # The steps past the rollups come from the raw readings (values 100 to 106).
    assert points[-1]["min"] >= 100.0
    assert points[-1]["max"] <= 106.0
    times = [p["t"] for p in points]
    assert times == sorted(times)
    assert len(set(times)) == len(times)


def test_a_short_range_is_raw_and_never_over_the_cap(room: WebRoom) -> None:
    end_ms = int(datetime.now(UTC).timestamp() * 1000) // MINUTE_MS * MINUTE_MS
    start_ms = end_ms - 6 * HOUR_MS
    # A reading a second for six hours: 21,600 readings, at most 1,000 steps.
    room.store.write_lines([reading_line(Reading(SPEC.id, TENANT_FACILITY, "main", "power",
                                                 "", float(t % 60_000) / 1000, t))
                            for t in range(start_ms, end_ms, 1000)])
    body = room.login("vera").get("/api/trend", params={
        "facility": TENANT_FACILITY, "meter": "main", "quantity": "power",
        "start": _iso(start_ms), "end": _iso(end_ms)}).json()
    assert body["resolution"] == "raw"
    assert body["step_s"] == 22
    assert MAX_POINTS - 20 <= len(body["points"]) <= MAX_POINTS
    assert all(p["min"] <= p["mean"] <= p["max"] for p in body["points"])


def test_refusals_name_their_reason(room: WebRoom) -> None:
    viewer = room.login("vera")
    base = {"facility": TENANT_FACILITY, "meter": "main", "quantity": "power",
            "start": "2026-11-01T00:00Z", "end": "2026-11-02T00:00Z"}
    cases = [
        ({"end": "2026-10-31T00:00Z"}, 422, "end must be after start"),
        ({"start": "2026-11-01T00:00"}, 422, "time zone"),
        ({"start": "2024-11-01T00:00Z"}, 422, "at most 366 days"),
        ({"quantity": "flux"}, 422, "unknown quantity"),
        ({"quantity": "water_flow"}, 422, "does not measure"),
        ({"meter": "nope"}, 404, "no meter 'nope'"),
        ({"facility": "../etc"}, 422, "pattern"),
    ]
    for change, status, reason in cases:
        answer = viewer.get("/api/trend", params=base | change)
        assert answer.status_code == status, (change, answer.text)
        assert reason in answer.text, (change, answer.text)
    missing = viewer.get("/api/trend", params={"facility": TENANT_FACILITY})
    assert missing.status_code == 422


def test_a_tenant_reads_its_own_meters_only(room: WebRoom) -> None:
    tenant = room.login("tina")
    window = {"meter": "main", "quantity": "power", "start": "2026-11-01T00:00Z",
              "end": "2026-11-01T01:00Z"}
    assert tenant.get("/api/trend", params=window | {"facility": TENANT_FACILITY}
                      ).status_code == 200
    refused = tenant.get("/api/trend", params=window | {"facility": OTHER_FACILITY})
    assert refused.status_code == 403
    assert TENANT_FACILITY in refused.text


def test_a_range_without_data_is_empty_not_an_error(room: WebRoom) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    body = room.login("vera").get("/api/trend", params={
        "facility": TENANT_FACILITY, "meter": "main", "quantity": "power",
        "start": _iso(int(start.timestamp() * 1000)),
        "end": _iso(int((start + timedelta(days=2)).timestamp() * 1000))}).json()
    assert body["points"] == []
    assert body["resolution"] == "reading_1m"
