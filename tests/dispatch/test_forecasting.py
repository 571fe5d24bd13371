"""Forecasts from the real InfluxDB: history from the quarter-hour rollups (and raw readings
where the rollups do not reach yet), forecasts stored as series, and the backtest command."""

from __future__ import annotations

import io
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from rich.console import Console

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.jobs.rollup_levels import POLICY_LONG, READING_15M
from dispatch.jobs.rollups import ensure_rollup_policies, rollup_line, series_prefix
from dispatch.planning.demand_model import STEP_MS, WEEK_MS, IntArray, Method, local_calendar
from dispatch.planning.forecasts import (
    ESTATE_SCOPE,
    FORECAST_POLICY,
    FORECASTS,
    ForecastJob,
    ForecastSettings,
    backtest_command,
    load_forecast,
    read_demand,
)
from estate.lineprotocol import readings_lines
from estate.model import SAMPLE_ESTATE, EstateSpec, FacilitySpec, MeterSpec, load_estate
from estate.readings import Reading
from estate.settings import InfluxSettings

SPEC = load_estate(SAMPLE_ESTATE)
TZ = ZoneInfo(SPEC.timezone)
RAW_HOURS = 2  # the newest hours exist only as raw readings, as before the rollup job ran
INCOMERS = [(f.id, m.id) for f in SPEC.facilities for m in f.meters if m.incomer]
SCOPES = {f for f, _ in INCOMERS}


def meter_load(facility: FacilitySpec, meter: MeterSpec, times: IntArray) -> np.ndarray:
    """The sample estate's shape: nominal power in working hours, the base share outside."""
    cal = local_calendar(times, TZ)
    working = ((cal.weekday < 5) | facility.weekend) & (cal.slot >= facility.shift_start * 4) \
        & (cal.slot < facility.shift_end * 4)
    return np.where(working, meter.nominal, meter.nominal * meter.base_share)


def demand(facility_id: str, times: IntArray) -> np.ndarray:
    facility = next(f for f in SPEC.facilities if f.id == facility_id)
    return sum((meter_load(facility, m, times) for m in facility.meters if m.incomer),
               np.zeros(times.size))


def write_history(store: InfluxV1Store, database: str, end_ms: int, weeks: int = 5) -> None:
    """Quarter-hour rollups of every electricity meter as the rollup job writes them, up to
    ``RAW_HOURS`` before ``end_ms``; raw readings (every 5 minutes) after that."""
    ensure_rollup_policies(store)
    rollup_end = end_ms - RAW_HOURS * 3_600_000
    times = np.arange(end_ms - weeks * WEEK_MS, rollup_end, STEP_MS, dtype=np.int64)
    raw_times = np.arange(rollup_end, end_ms, 5 * 60_000, dtype=np.int64)
    lines, raw = [], []
    for device, meter, facility in SPEC.devices():
        if meter.kind != "electricity":
            continue
        tags = {"estate": SPEC.id, "facility": facility.id, "device": device.device,
                "quantity": "power", "channel": ""}
        prefix = series_prefix(READING_15M.measurement, tags)
        for t, v in zip(times.tolist(), meter_load(facility, meter, times).tolist(),
                        strict=True):
            lines.append(rollup_line(prefix, {"mean": v, "min": v, "max": v, "last": v,
                                              "sum": v * 15, "count": 15}, t))
        raw += [Reading(SPEC.id, facility.id, device.device, "power", "", v, t)
                for t, v in zip(raw_times.tolist(),
                                meter_load(facility, meter, raw_times).tolist(), strict=True)]
    for i in range(0, len(lines), 5000):
        store.write_lines(lines[i:i + 5000], retention_policy=POLICY_LONG)
    store.write_lines(readings_lines(raw))


def now_quarter() -> int:
    now = time.time_ns() // 1_000_000
    return now - now % STEP_MS


def test_demand_is_the_sum_of_incomers_from_rollups_and_then_raw_readings(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    end = now_quarter()
    write_history(store, influx_settings.database, end, weeks=1)
    history = read_demand(store, SPEC, end - WEEK_MS, end, raw_fallback_ms=86_400_000)
    assert set(history.facilities) == SCOPES
    assert history.times_ms.size == 7 * 96
    # The loom hall and the chillers are sub-meters: inside the incomer, not added.
    for facility, values in history.facilities.items():
        assert np.allclose(values, demand(facility, history.times_ms)), facility
    assert np.allclose(history.estate, sum(history.facilities.values()))
    # The newest two hours came from raw readings, one quarter-hour per incomer each.
    assert history.raw_windows == RAW_HOURS * 4 * len(INCOMERS)


def test_the_job_stores_forecasts_near_the_pattern_and_reissuing_overwrites(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    end = now_quarter()
    write_history(store, influx_settings.database, end)
    job = ForecastJob(store, SPEC, ForecastSettings())
    issued = job.run(now_ms=end + 60_000)
    assert set(issued) == SCOPES | {ESTATE_SCOPE}
    horizon = end + 192 * STEP_MS
    expected_total = np.zeros(192)
    for scope in issued:
        stored = load_forecast(store, SPEC.id, scope, end, horizon)
        assert stored.times_ms.tolist() == list(range(end, horizon, STEP_MS))
        assert set(stored.methods) == {Method.PROFILE_LEVEL.value}
        assert set(stored.issued_ms.tolist()) == {end}
        if scope != ESTATE_SCOPE:
            expected = demand(scope, stored.times_ms)
            expected_total += expected
            assert np.allclose(stored.values_kw, expected, rtol=0.02), scope
    estate = load_forecast(store, SPEC.id, ESTATE_SCOPE, end, horizon)
    assert np.allclose(estate.values_kw, expected_total, rtol=0.02)

    def count() -> int:
        series = store.query(f'SELECT count("value") FROM "{FORECAST_POLICY}"."{FORECASTS}"')
        return int(series[0].values[0][1])

    scopes = len(SCOPES) + 1
    assert count() == scopes * 192
    job.run(now_ms=end + 120_000)  # the same quarter-hour: the same points again
    assert count() == scopes * 192
    job.run(now_ms=end + STEP_MS)  # a quarter-hour later: one step more per scope
    assert count() == scopes * 193
    later = load_forecast(store, SPEC.id, "textile", end, horizon + STEP_MS)
    assert later.issued_ms[0] == end
    assert set(later.issued_ms[1:].tolist()) == {end + STEP_MS}


def test_a_tenant_without_history_gets_its_nominal_load_and_the_flag(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    end = now_quarter()
    write_history(store, influx_settings.database, end, weeks=2)
    newcomer = FacilitySpec(id="bakery", name="New Bakery", meters=[
        MeterSpec(id="main", kind="electricity", incomer=True, nominal=90)])
    spec = EstateSpec.model_validate(
        SPEC.model_dump() | {"facilities": [*SPEC.model_dump()["facilities"],
                                            newcomer.model_dump()]})
    issued = ForecastJob(store, spec, ForecastSettings(),
                         manage_policies=False).run(now_ms=end)
    assert issued["bakery"].method is Method.NONE
    assert not issued["bakery"].from_history
    assert np.all(issued["bakery"].values_kw == 90.0)
    stored = load_forecast(store, spec.id, "bakery", end, end + 192 * STEP_MS)
    assert set(stored.methods) == {"none"}
    # The estate is the sum of the tenants measured, not blanked by the newcomer.
    assert issued[ESTATE_SCOPE].method is Method.PROFILE_LEVEL


def test_the_backtest_command_prints_mape_for_every_facility_and_the_estate(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    now = now_quarter()
    local = datetime.fromtimestamp(now / 1000, TZ)
    midnight = int(local.replace(hour=0, minute=0).timestamp() * 1000)
    write_history(store, influx_settings.database, midnight, weeks=6)
    out = io.StringIO()
    results = backtest_command(SAMPLE_ESTATE, influx_settings, 7,
                               console=Console(file=out, width=200), now_ms=now)
    text = out.getvalue()
    assert set(results) == SCOPES | {ESTATE_SCOPE}
    for scope, result in results.items():
        assert len(result.days) == 7
        assert result.methods == (Method.PROFILE_LEVEL,)
        # A pattern without noise is forecast almost exactly, and the baseline repeats it.
        assert result.forecast.mape < 1.0, scope
        assert result.naive.mape < 1.0, scope
        label = "estate" if scope == ESTATE_SCOPE else scope
        row = next(r for r in text.splitlines() if r.startswith(f"│ {label}"))
        assert re.search(r"profile\+level\s*│\s*7\s*│\s*\d+\.\d\s*│", row), row
    assert "MAPE %" in text
    assert "naive MAPE %" in text


@pytest.mark.parametrize("scope", ["textile", ESTATE_SCOPE])
def test_nothing_stored_reads_back_empty(store: InfluxV1Store,
                                         influx_settings: InfluxSettings, scope: str) -> None:
    ensure_rollup_policies(store)
    stored = load_forecast(store, SPEC.id, scope, 0, 10 * STEP_MS)
    assert stored.times_ms.size == 0
    assert stored.methods == ()
