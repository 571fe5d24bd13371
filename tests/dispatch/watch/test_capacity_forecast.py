"""The capacity rules that look ahead, fed the stored forecast: the forecast job's series
in the store (as the job writes it), read by the planning room's reader the worker hands
the windowed rules' job. A forecast above the contracted capacity within the horizon
raises ``capacity-forecast`` (naming the time); one below it, or none, raises nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from dispatch.planning.capacity_forecast import capacity_forecasts, scope_of
from dispatch.planning.demand_model import Forecast, Method
from dispatch.planning.forecasts import ESTATE_SCOPE, FORECAST_POLICY, forecast_lines
from dispatch.registry import alarm_board
from dispatch.registry.room_step import RoomContext
from dispatch.settings import AlarmSettings
from dispatch.watch.window_job import WindowJob
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryTimeSeriesStore

NOW = datetime(2026, 12, 7, 8, 0, 20, tzinfo=UTC)  # a Monday, 10:00 in Athens
NOW_MS = int(NOW.timestamp() * 1000)
QUARTER_MS = 900_000


def _store_forecast(store: InMemoryTimeSeriesStore, scope: str, peak_kw: float,
                    peak_step: int) -> None:
    """Ten quarter-hours from the hour, flat at a tenth of the capacity but one step."""
    start = NOW_MS // QUARTER_MS * QUARTER_MS
    times = np.arange(start, start + 10 * QUARTER_MS, QUARTER_MS, dtype=np.int64)
    values = np.full(10, SPEC.contracted_capacity_kw / 10)
    values[peak_step] = peak_kw
    forecast = Forecast(times, values, Method.DAILY_PROFILE, "test", NOW_MS - 60_000)
    store.write_lines(forecast_lines(SPEC.id, scope, forecast),
                      retention_policy=FORECAST_POLICY)


def _job(tmp_path: Path, store: InMemoryTimeSeriesStore, fed: bool = True) -> WindowJob:
    registry = sample_registry(tmp_path)
    return WindowJob(SPEC, store, registry, RoomContext.of(SPEC),
                     AlarmSettings(window_every_s=60, window_grace_s=5),
                     forecasts=(lambda h, end: capacity_forecasts(store, SPEC, h, end))
                     if fed else None)


def _active(job: WindowJob) -> list[tuple[str, str, str]]:
    with job._registry.reading() as session:
        return [(r.alarm.source, r.alarm.rule_id, r.alarm.message)
                for r in alarm_board.active_alarms(session, SPEC.id)]


def test_the_sources_name_the_forecasts_of_the_estate_and_its_facilities() -> None:
    assert scope_of("estate") == ESTATE_SCOPE
    assert scope_of("facility:foods") == "foods"
    assert scope_of("textile/m1") is None


def test_a_forecast_above_the_contracted_capacity_raises_the_forecast_alarm(
        tmp_path: Path) -> None:
    store = InMemoryTimeSeriesStore()
    _store_forecast(store, ESTATE_SCOPE, SPEC.contracted_capacity_kw * 1.2, peak_step=5)
    job = _job(tmp_path, store)
    assert job(NOW_MS) is not None
    raised = [a for a in _active(job) if a[1] == "capacity-forecast"]
    assert [(s, r) for s, r, _ in raised] == [("estate", "capacity-forecast")]
    assert "forecast import of the estate 3000 kW" in raised[0][2]
    assert "09:15 UTC" in raised[0][2]  # the step above the limit (5 quarter-hours on)
    job._registry.close()


@pytest.mark.parametrize("fed", [True, False])
def test_a_forecast_below_the_capacity_or_none_fed_raises_nothing(
        tmp_path: Path, fed: bool) -> None:
    store = InMemoryTimeSeriesStore()
    _store_forecast(store, ESTATE_SCOPE, SPEC.contracted_capacity_kw * 0.9, peak_step=5)
    _store_forecast(store, "foods", 10_000.0, peak_step=8)  # 2 h on: beyond the horizon
    job = _job(tmp_path, store, fed=fed)
    assert job(NOW_MS) is not None
    assert [a for a in _active(job) if a[1] == "capacity-forecast"] == []
    job._registry.close()
