"""``/api/overview`` and ``/api/trend`` of the web view built as ``python -m dispatch web``
builds it, served by uvicorn, against the real Mosquitto, InfluxDB and rollup job: live
values from the broker, alarms from the registry, trends from raw readings and from the
rollups, a tenant's scope, the cap and the refusals."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection
from dispatch.accounts.roles import Role
from dispatch.alarms.model import AlarmTransition
from dispatch.jobs.rollup_levels import HOUR_MS, MINUTE_MS, READING_1H, READING_1M, READING_15M
from dispatch.jobs.rollups import Rollups
from dispatch.registry.account_desk import add_user
from dispatch.registry.alarm_board import record_transitions
from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from dispatch.settings import RollupSettings
from dispatch.web.trend import MAX_POINTS
from estate.lineprotocol import reading_line
from estate.readings import Reading
from estate.senml import encode_readings
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC
from tests.web_login import PASSWORD, logged_in

pytestmark = pytest.mark.servers

DAY_MS = 24 * HOUR_MS


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def _value(t_ms: int) -> float:
    """The meter's power at ``t_ms``: a ramp within each hour, so every step differs."""
    return 100.0 + (t_ms % HOUR_MS) // MINUTE_MS


def test_trends_read_raw_then_the_rollups_exactly_within_the_cap(
        web: str, store: InfluxV1Store) -> None:
    now_ms = time.time_ns() // 1_000_000
    end_ms = now_ms // (10 * MINUTE_MS) * (10 * MINUTE_MS)  # whole steps of 2 and 5 min
    start_ms = end_ms - 3 * DAY_MS
    times = range(start_ms, end_ms, MINUTE_MS)  # a reading a minute for three days
    lines = [reading_line(Reading(SPEC.id, "textile", "main", "power", "", _value(t), t))
             for t in times]
    for k in range(0, len(lines), 5000):
        store.write_lines(lines[k:k + 5000])
    # The rollup job has caught up to two hours ago: the rest of the range is raw only.
    rolled_to = end_ms // HOUR_MS * HOUR_MS - 2 * HOUR_MS
    job = Rollups(store, RollupSettings(max_query_windows=1440))
    job.run(now_ms=start_ms)  # makes the retention policies
    for level in (READING_1M, READING_15M, READING_1H):
        job.recompute(level, start_ms // HOUR_MS * HOUR_MS, rolled_to)
    with logged_in(web, "ana") as http:
        def trend(span_ms: int) -> dict:
            answer = http.get("/api/trend", params={
                "facility": "textile", "meter": "main", "quantity": "power",
                "start": _iso(end_ms - span_ms), "end": _iso(end_ms)})
            assert answer.status_code == 200, answer.text
            return answer.json()

        raw = trend(3 * HOUR_MS)
        assert (raw["resolution"], raw["step_s"]) == ("raw", 11)
        assert [p["mean"] for p in raw["points"]] == [
            _value(t) for t in range(end_ms - 3 * HOUR_MS, end_ms, MINUTE_MS)]
        day = trend(DAY_MS)
        assert (day["resolution"], day["step_s"]) == ("reading_1m", 120)
        for point in day["points"]:  # two readings a step: t and t + 1 min
            t = _ms(point["t"])
            assert point["min"] == _value(t)
            assert point["max"] == _value(t + MINUTE_MS)
            assert point["mean"] == pytest.approx((_value(t) + _value(t + MINUTE_MS)) / 2)
        # Every step is there: the rolled-up ones and the raw tail after them.
        assert len(day["points"]) == DAY_MS // (2 * MINUTE_MS)
        assert _ms(day["points"][-1]["t"]) == end_ms - 2 * MINUTE_MS
        three = trend(3 * DAY_MS)
        assert (three["resolution"], three["step_s"]) == ("reading_1m", 300)
        assert len(three["points"]) <= MAX_POINTS
        # The first step may begin before the data; the second is whole.
        second = three["points"][1]
        assert second["min"] == min(_value(_ms(second["t"]) + m * MINUTE_MS) for m in range(5))
        assert second["max"] == max(_value(_ms(second["t"]) + m * MINUTE_MS) for m in range(5))


def test_a_long_range_comes_from_the_quarter_hours(web: str, store: InfluxV1Store) -> None:
    day0 = (time.time_ns() // 1_000_000) // DAY_MS * DAY_MS - 20 * DAY_MS
    lines = [reading_line(Reading(SPEC.id, "textile", "main", "power", "", _value(t), t))
             for t in range(day0, day0 + DAY_MS, MINUTE_MS)]
    store.write_lines(lines)
    job = Rollups(store, RollupSettings(max_query_windows=1440))
    job.run(now_ms=day0)
    for level in (READING_1M, READING_15M):
        job.recompute(level, day0, day0 + DAY_MS)
    with logged_in(web, "ana") as http:
        body = http.get("/api/trend", params={
            "facility": "textile", "meter": "main", "quantity": "power",
            "start": _iso(day0), "end": _iso(day0 + 15 * DAY_MS)}).json()
    assert (body["resolution"], body["step_s"]) == ("reading_15m", 1800)
    assert len(body["points"]) == DAY_MS // (30 * MINUTE_MS)  # the day that has data
    first = body["points"][0]
    assert (first["min"], first["max"]) == (_value(day0), _value(day0 + 29 * MINUTE_MS))
    assert first["mean"] == pytest.approx(sum(_value(day0 + m * MINUTE_MS)
                                              for m in range(30)) / 30)


def _publish(mqtt: MqttConnection, facility: str, device: str, quantity: str,
             value: float) -> None:
    ident = DeviceId(SPEC.id, facility, device)
    reading = Reading(SPEC.id, facility, device, quantity, "", value,
                      time.time_ns() // 1_000_000)
    mqtt.publish(ident.topic(Channel.TELEMETRY), encode_readings(ident, [reading]),
                 qos=1).wait(5)


def test_the_overview_from_the_broker_and_the_registry(
        web: str, mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    load_estate_into(registry, SPEC)  # the worker's part: alarms belong to a known estate
    add_user(registry, "tina", PASSWORD, Role.VIEWER, "foods")
    with registry.writing() as session:
        record_transitions(session, SPEC.id, [AlarmTransition(
            "raise", "foods/coldroom-temp", "warm", "threshold", "critical", 9.0, "warm",
            time.time_ns() // 1_000_000)])
    mqtt = MqttConnection(mqtt_settings, f"test-overview-{uuid.uuid4().hex[:8]}")
    mqtt.connect()
    # The session's broker keeps what earlier tests retained: a simulator stopped cleanly
    # leaves its devices "offline". These two are online now, as a device says on start.
    for facility, device in (("utilities", "grid"), ("textile", "main")):
        mqtt.publish(DeviceId(SPEC.id, facility, device).topic(Channel.STATUS),
                     orjson.dumps({"state": "online", "ts": time.time()}), qos=1,
                     retain=True).wait(5)
    try:
        with logged_in(web, "ana") as http:
            deadline = time.monotonic() + 15
            while True:
                _publish(mqtt, "utilities", "grid", "power", 1234.5)
                _publish(mqtt, "textile", "main", "power", 321.0)
                body = http.get("/api/overview").json()
                power = next(u for u in body["utilities"] if u["utility"] == "electricity")
                textile = next(f for f in power["facilities"] if f["id"] == "textile")
                if (power["import"] is not None and textile["value"] is not None
                        and textile["state"] != "offline"):
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
            assert power["import"]["value"] == 1234.5
            assert textile["value"] == 321.0
            assert textile["state"] == "ok"
            assert body["feed"]["connected"] is True
            assert body["feed"]["stale"] is False
            foods = next(f for f in power["facilities"] if f["id"] == "foods")
            assert (foods["state"], foods["worst_severity"]) == ("alarm", "critical")
        with logged_in(web, "tina") as tenant:
            own = tenant.get("/api/overview").json()
            assert {f["id"] for u in own["utilities"] for f in u["facilities"]} == {"foods"}
            assert all(u["import"] is None for u in own["utilities"])
            refused = tenant.get("/api/trend", params={
                "facility": "textile", "meter": "main", "quantity": "power",
                "start": "2026-11-01T00:00Z", "end": "2026-11-02T00:00Z"})
            assert refused.status_code == 403
            too_long = tenant.get("/api/trend", params={
                "facility": "foods", "meter": "main", "quantity": "power",
                "start": "2025-01-01T00:00Z", "end": "2026-11-02T00:00Z"})
            assert too_long.status_code == 422
            assert "366 days" in too_long.text
    finally:
        mqtt.close()
        registry.close()
