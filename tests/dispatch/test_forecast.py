"""The load forecast and its backtest, on synthetic series (pure, no store)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from dispatch.planning.demand_backtest import backtest
from dispatch.planning.demand_model import (
    DAY_MS,
    HOUR_MS,
    STEP_MS,
    WEEK_MS,
    FloatArray,
    IntArray,
    Method,
    forecast_demand,
    local_calendar,
    regular_times,
)

ATHENS = ZoneInfo("Europe/Athens")


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       tz: tzinfo = ATHENS) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=tz).timestamp() * 1000)


def factory_load(times: IntArray) -> FloatArray:
    """A two-shift factory: a daytime hump on workdays, a morning shift on Saturdays, base
    load otherwise (kW, by local time)."""
    cal = local_calendar(times, ATHENS)
    hour = cal.slot / 4
    workday = (cal.weekday < 5) & (hour >= 6) & (hour < 22)
    saturday = (cal.weekday == 5) & (hour >= 7) & (hour < 13)
    return np.where(workday, 600 + 200 * np.sin((hour - 6) / 16 * np.pi),
                    np.where(saturday, 300.0, 120.0))


def test_profile_and_level_beat_the_seasonal_naive_baseline() -> None:
    rng = np.random.default_rng(7)
    times = regular_times(ms(2026, 9, 7), 6 * 7 * 96)
    # Production rises by a quarter ten days before the end: the baseline copies last
    # week's level and noise, the forecast measures the new level.
    shift = np.where(times >= times[-1] - 10 * DAY_MS, 1.25, 1.0)
    values = factory_load(times) * shift * (1 + 0.08 * rng.standard_normal(times.size))
    result = backtest(times, values, ATHENS, 14)
    assert len(result.days) == 14
    assert all(d.steps == 96 for d in result.days)
    assert result.methods == (Method.PROFILE_LEVEL,)
    assert result.forecast.mape < 0.75 * result.naive.mape
    assert result.forecast.wape < 0.75 * result.naive.wape
    assert result.forecast.mape < 12


def test_local_slots_follow_daylight_saving_changes() -> None:
    # Athens: 03:00 EET -> 04:00 EEST on 2026-03-29, 04:00 EEST -> 03:00 EET on 2026-10-25.
    spring = local_calendar([ms(2026, 3, 29, 0, 45, tz=UTC), ms(2026, 3, 29, 1, 0, tz=UTC)],
                            ATHENS)
    assert spring.slot.tolist() == [11, 16]  # 02:45, then 04:00
    autumn = local_calendar([ms(2026, 10, 25, 0, 45, tz=UTC), ms(2026, 10, 25, 1, 0, tz=UTC)],
                            ATHENS)
    assert autumn.slot.tolist() == [15, 12]  # 03:45 EEST, then 03:00 EET again
    days = local_calendar(regular_times(ms(2026, 3, 28), 3 * 96), ATHENS).day
    assert np.bincount(days - days.min()).tolist()[:2] == [96, 92]
    days = local_calendar(regular_times(ms(2026, 10, 24), 3 * 96), ATHENS).day
    assert np.bincount(days - days.min()).tolist()[:2] == [96, 100]


def test_a_forecast_across_the_spring_change_keeps_local_working_hours() -> None:
    times = regular_times(ms(2026, 2, 22), 5 * 7 * 96)  # up to 2026-03-29 00:00 EET
    cal = local_calendar(times, ATHENS)
    values = np.where((cal.slot >= 8 * 4) & (cal.slot < 17 * 4), 500.0, 100.0)
    start = ms(2026, 3, 29)
    result = forecast_demand(times, values, start, 2 * 96, ATHENS)
    assert int(times[-1]) + STEP_MS == start
    assert result.method is Method.PROFILE_LEVEL
    high = result.times_ms[result.values_kw > 300]
    # 08:00 local is 06:00 UTC in winter and 05:00 UTC in summer.
    assert int(times[values > 300][-1]) == ms(2026, 3, 28, 14, 45, tz=UTC)
    assert int(high[0]) == ms(2026, 3, 29, 5, 0, tz=UTC)
    assert int(high[-1]) == ms(2026, 3, 30, 13, 45, tz=UTC)
    assert high.size == 2 * 9 * 4
    assert np.allclose(result.values_kw[result.values_kw > 300], 500.0)


def test_gaps_are_passed_over_and_a_never_measured_time_of_day_is_filled() -> None:
    rng = np.random.default_rng(3)
    times = regular_times(ms(2026, 9, 7), 5 * 7 * 96)
    values = factory_load(times)
    values[rng.random(times.size) < 0.2] = np.nan
    values[10 * 96:11 * 96] = np.nan  # a whole day lost
    values[local_calendar(times, ATHENS).slot == 40] = np.nan  # 10:00 never measured
    start = int(times[-1]) + STEP_MS
    result = forecast_demand(times, values, start, 96, ATHENS)
    assert result.method is Method.PROFILE_LEVEL
    assert np.isfinite(result.values_kw).all()
    assert "never measured" in result.note
    expected = factory_load(result.times_ms)
    measured = local_calendar(result.times_ms, ATHENS).slot != 40
    assert np.allclose(result.values_kw[measured], expected[measured], rtol=0.02)


@pytest.mark.parametrize(("history_ms", "method", "note"), [
    (5 * WEEK_MS, Method.PROFILE_LEVEL, "weekday-by-weekday"),
    (10 * DAY_MS, Method.PROFILE_LEVEL, "workday/Saturday/Sunday"),
    (3 * DAY_MS, Method.DAILY_PROFILE, "all-days"),
    (6 * HOUR_MS, Method.PERSISTENCE, "last hour's mean"),
    (0, Method.NONE, "no measured demand"),
])
def test_each_rung_of_the_ladder_is_chosen_by_the_history_and_stated(
        history_ms: int, method: Method, note: str) -> None:
    start = ms(2026, 10, 12)  # a Monday
    times = regular_times(start - history_ms, history_ms // STEP_MS)
    values = factory_load(times)
    result = forecast_demand(times, values, start, 192, ATHENS, default_kw=777.0)
    assert result.method is method
    assert note in result.note
    assert result.values_kw.shape == (192,)
    assert np.isfinite(result.values_kw).all()
    assert result.from_history is (method is not Method.NONE)
    if method is Method.PERSISTENCE:
        assert np.allclose(result.values_kw, np.mean(values[-4:]))
    if method is Method.NONE:
        assert np.all(result.values_kw == 777.0)


def test_stale_short_history_is_no_history() -> None:
    start = ms(2026, 10, 12)
    times = regular_times(start - 3 * DAY_MS, 8)  # two hours, three days ago
    result = forecast_demand(times, np.full(8, 50.0), start, 96, ATHENS, default_kw=10.0)
    assert result.method is Method.NONE
    assert np.all(result.values_kw == 10.0)
    assert "old" in result.note


def test_the_level_follows_a_recent_change_and_decays_towards_the_recent_days() -> None:
    start = ms(2026, 10, 12)
    times = regular_times(start - 4 * WEEK_MS, 4 * 7 * 96)
    values = np.full(times.size, 100.0)
    values[-12:] = 150.0  # the last three hours half as much again
    result = forecast_demand(times, values, start, 192, ATHENS)
    assert result.values_kw[0] == pytest.approx(150.0, rel=0.01)
    # After a day the correction has settled to the last three days' level (3 h of 72).
    assert result.values_kw[96] == pytest.approx(100 * (1 + 0.5 * 12 / 288), rel=0.01)
    assert np.all(np.diff(result.values_kw) <= 1e-9)


def test_near_zero_load_is_levelled_by_a_difference_not_a_ratio() -> None:
    start = ms(2026, 10, 12)
    times = regular_times(start - 4 * WEEK_MS, 4 * 7 * 96)
    values = np.zeros(times.size)
    values[-12:] = 5.0
    result = forecast_demand(times, values, start, 96, ATHENS)
    assert "kW now" in result.note
    assert result.values_kw[0] == pytest.approx(5.0, rel=0.01)
    assert np.isfinite(result.values_kw).all()


def test_a_history_off_the_15_minute_grid_is_refused() -> None:
    times = np.array([0, STEP_MS, 3 * STEP_MS], dtype=np.int64)
    with pytest.raises(ValueError, match="regular grid"):
        forecast_demand(times, np.ones(3), 4 * STEP_MS, 4, ATHENS)
    with pytest.raises(ValueError, match="15-minute boundary"):
        forecast_demand(times[:2], np.ones(2), 4 * STEP_MS + 1, 4, ATHENS)


def test_a_backtest_issued_the_day_before_scores_only_the_held_out_days() -> None:
    times = regular_times(ms(2026, 9, 7), 4 * 7 * 96)
    values = factory_load(times)
    result = backtest(times, values, ATHENS, 3, issue_hours_before=12)
    assert [d.day.isoformat() for d in result.days] == ["2026-10-02", "2026-10-03",
                                                        "2026-10-04"]
    # A pattern without noise: both are exact, and the scores say so.
    assert result.forecast.mape == pytest.approx(0.0, abs=1e-9)
    assert result.naive.wape == pytest.approx(0.0, abs=1e-9)


def test_a_backtest_without_a_week_of_history_has_no_baseline() -> None:
    times = regular_times(ms(2026, 9, 7), 3 * 96)
    result = backtest(times, factory_load(times), ATHENS, 2)
    assert len(result.days) == 2
    assert math.isnan(result.naive.mape)
    assert result.days[0].method is Method.DAILY_PROFILE
    assert math.isfinite(result.forecast.wape)


def test_the_method_forecasts_water_and_gas_flows_as_well() -> None:
    """Nothing in the method is about power: a tenant's water (m3/h) and gas (m3/h) with
    their own working pattern get profile+level forecasts close to the pattern."""
    rng = np.random.default_rng(3)
    times = regular_times(ms(2026, 9, 7), 5 * 7 * 96)
    cal = local_calendar(times, ATHENS)
    hour = cal.slot / 4
    working = (cal.weekday < 5) & (hour >= 7) & (hour < 17)
    for base, peak in ((2.0, 18.0), (10.0, 95.0)):  # water, gas
        flow = np.where(working, peak, base) * (1 + 0.05 * rng.standard_normal(times.size))
        start = int(times[-1]) + STEP_MS
        forecast = forecast_demand(times, flow, start, 96, ATHENS)
        assert forecast.method is Method.PROFILE_LEVEL
        target = local_calendar(forecast.times_ms, ATHENS)
        expected = np.where((target.weekday < 5) & (target.slot >= 28) & (target.slot < 68),
                            peak, base)
        assert np.allclose(forecast.values_kw, expected, rtol=0.1)
