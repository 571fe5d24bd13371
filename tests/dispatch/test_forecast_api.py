"""``GET /api/forecast``: stored forecasts beside measured demand, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.accounts.roles import Role
from dispatch.planning.demand_model import STEP_MS
from dispatch.planning.forecasts import ESTATE_SCOPE, ForecastJob
from dispatch.settings import ForecastSettings
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from estate.settings import InfluxSettings
from tests.conftest import served
from tests.dispatch.registries import sample_registry
from tests.dispatch.test_forecasting import SPEC, demand, now_quarter, write_history
from tests.web_login import add_users, logged_in


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_forecast_and_actual_side_by_side(store: InfluxV1Store,
                                          influx_settings: InfluxSettings,
                                          tmp_path: Path) -> None:
    end = now_quarter()
    write_history(store, influx_settings.database, end, weeks=2)
    # Issued a day ago, so the last day has both a forecast and a measurement.
    ForecastJob(store, SPEC, ForecastSettings()).run(
        now_ms=end - 96 * STEP_MS + 60_000)
    registry = sample_registry(tmp_path)
    add_users(registry, vera=Role.VIEWER)
    app = create_app(WebContext(SPEC, store, LiveState(SPEC.id), registry=registry))
    with served(app) as url, logged_in(url, "vera") as http:
        answer = http.get(f"{url}/api/forecast", params={
            "facility": "textile", "start": _iso(end - 96 * STEP_MS), "end": _iso(end)})
        assert answer.status_code == 200, answer.text
        steps = answer.json()["steps"]
        assert [s["time_ms"] for s in steps] == list(range(end - 96 * STEP_MS, end, STEP_MS))
        assert all(s["method"] == "profile+level" for s in steps)
        times = np.array([s["time_ms"] for s in steps])
        actual = np.array([s["actual_kw"] for s in steps], dtype=float)
        assert np.allclose(actual, demand("textile", times))
        forecast = np.array([s["forecast_kw"] for s in steps], dtype=float)
        assert np.allclose(forecast, actual, rtol=0.05)  # the history's pattern is regular

        whole = http.get(f"{url}/api/forecast", params={
            "start": _iso(end - 4 * STEP_MS), "end": _iso(end)}).json()
        assert whole["facility"] == ESTATE_SCOPE
        expected = sum(demand(f.id, times[-4:]) for f in SPEC.facilities
                       if any(m.incomer for m in f.meters))
        assert np.allclose([s["actual_kw"] for s in whole["steps"]], expected)

        future = http.get(f"{url}/api/forecast", params={
            "start": _iso(end + 96 * STEP_MS), "end": _iso(end + 100 * STEP_MS)}).json()
        assert [s["actual_kw"] for s in future["steps"]] == [None] * 4
        assert [s["forecast_kw"] for s in future["steps"]] == [None] * 4  # beyond the horizon

        for params, status, reason in (
                ({"facility": "nowhere"}, 404, "no facility"),
                ({"facility": "bad name"}, 422, ""),
                ({"start": _iso(end), "end": _iso(end - STEP_MS)}, 422, "end must be after"),
                ({"start": _iso(end - 10 * 96 * STEP_MS)}, 422, "at most 8 days"),
                ({"start": "2026-11-26T10:00"}, 422, "time zone")):
            query = {"start": _iso(end - STEP_MS), "end": _iso(end)} | params
            bad = http.get(f"{url}/api/forecast", params=query)
            assert bad.status_code == status, (params, bad.text)
            assert reason in bad.text
