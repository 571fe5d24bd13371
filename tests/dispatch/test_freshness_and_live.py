"""The meter-freshness check, the live state and the web view's health answer."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import InboundMessage
from dispatch.jobs.freshness import FRESHNESS, check_freshness, find_stale
from dispatch.web.live import LiveState
from estate.lineprotocol import reading_line
from estate.readings import Reading
from estate.senml import encode_readings
from estate.topics import Channel, DeviceId
from tests.asgi import request

NOW_MS = 1_795_000_000_000
A, B, C = (DeviceId("demo", "foods", d) for d in ("a", "b", "c"))


def test_a_meter_is_stale_when_silent_longer_than_allowed_or_never_heard() -> None:
    last_seen = {("foods", "a"): NOW_MS - 10_000, ("foods", "b"): NOW_MS - 120_000}
    assert find_stale([A, B, C], last_seen, NOW_MS, stale_after_ms=60_000) == [B, C]
    assert find_stale([A, B, C], last_seen, NOW_MS, stale_after_ms=600_000) == [C]


def test_the_check_reads_the_store_and_records_its_result(store: InfluxV1Store) -> None:
    now_ms = time.time_ns() // 1_000_000
    store.write_lines([
        reading_line(Reading("demo", "foods", "a", "power", "", 1.0, now_ms - 9_000)),
        # The newest point counts whatever quantity it holds.
        reading_line(Reading("demo", "foods", "a", "pressure", "", 3.0, now_ms - 5_000)),
        reading_line(Reading("demo", "foods", "b", "power", "", 1.0, now_ms - 600_000)),
        reading_line(Reading("other", "foods", "c", "power", "", 1.0, now_ms - 1_000)),
    ])
    result = check_freshness(store, "demo", [A, B, C], stale_after_s=60)
    assert result.stale == [B, C]  # c reported, but for another estate
    assert result.last_seen_ms == {("foods", "a"): now_ms - 5_000,
                                   ("foods", "b"): now_ms - 600_000}
    recorded = store.query(f'SELECT "expected", "stale", "stale_devices" FROM "{FRESHNESS}"')
    assert recorded[0].values[0][1:] == [3, 2, "foods/b,foods/c"]


def _message(device: DeviceId, channel: Channel, payload: bytes) -> InboundMessage:
    return InboundMessage(device.topic(channel), payload, 0, False, 0)


def test_live_state_keeps_the_newest_value_and_each_status() -> None:
    live = LiveState("demo")
    now_ms = time.time_ns() // 1_000_000
    newer = Reading("demo", "foods", "a", "power", "", 2.0, now_ms)
    older = Reading("demo", "foods", "a", "power", "", 1.0, now_ms - 1_000)
    live.handle(_message(A, Channel.TELEMETRY, encode_readings(A, [newer])))
    live.handle(_message(A, Channel.TELEMETRY, encode_readings(A, [older])))  # redelivered
    live.handle(_message(A, Channel.STATUS, orjson.dumps({"state": "online"})))
    live.handle(_message(B, Channel.STATUS, b"not json"))
    other = DeviceId("elsewhere", "foods", "a")
    live.handle(_message(other, Channel.TELEMETRY, encode_readings(other, [newer])))
    live.handle(InboundMessage("estate/v1/demo/broken", b"[]", 0, False, 0))
    snapshot = live.snapshot()
    assert [(v["device"], v["value"], v["unit"]) for v in snapshot["values"]] == [
        ("a", 2.0, "kW")]
    assert sorted((s["device"], s["state"]) for s in snapshot["status"]) == [
        ("a", "online"), ("b", "unknown")]
    assert live.snapshot(since_version=snapshot["version"])["values"] == []


def test_health_is_ok_with_the_store_and_feed_up(web: str) -> None:
    deadline = time.monotonic() + 10
    answer = httpx.get(f"{web}/api/health", timeout=5)
    while answer.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)  # the live feed connects in the background
        answer = httpx.get(f"{web}/api/health", timeout=5)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok"
    assert body["influxdb"]["version"].startswith("1.")
    assert body["mqtt"] == {"ok": True}


def test_health_is_503_and_says_why_when_influxdb_is_unreachable(tmp_path: Path) -> None:
    from dispatch.accounts.roles import Role
    from dispatch.web.app import create_app
    from dispatch.web.deps import WebContext
    from estate.model import SAMPLE_ESTATE, load_estate
    from estate.settings import InfluxSettings
    from launcher.servers import free_port
    from tests.asgi import AppClient
    from tests.dispatch.registries import sample_registry
    from tests.web_login import PASSWORD, add_users

    dead = InfluxV1Store(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=2))
    registry = sample_registry(tmp_path)
    add_users(registry, vera=Role.VIEWER)
    app = create_app(WebContext(load_estate(SAMPLE_ESTATE), dead, LiveState("demo"),
                                mqtt_connected=lambda: True, registry=registry))
    # In process: the test is about the app's answers, and the dead store is a closed port.
    # Health needs no login (orchestrators probe it); readings do.
    answer = request(app, "GET", "/api/health")
    client = AppClient(app, base_url="http://localhost")
    try:
        assert client.post("/api/session", json={"username": "vera", "password": PASSWORD}
                           ).status_code == 200
        readings = client.get("/api/readings", params={
            "start": "2026-11-26T09:00:00Z", "end": "2026-11-26T10:00:00Z"})
    finally:
        client.close()
        dead.close()
        registry.close()
    assert answer.status_code == 503
    assert answer.json()["status"] == "degraded"
    assert answer.json()["influxdb"]["ok"] is False
    assert readings.status_code == 503
    assert "unavailable" in readings.json()["detail"]
