"""Meter to operator through the real parts.

The simulator publishes a known set of readings to the real Mosquitto; the ingest service
writes them to the real InfluxDB; the web API, served by uvicorn on a real port, must
return exactly what was published: the count, every value, unit and timestamp.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from edge.publisher import Publisher, publish_range
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import MqttSettings
from estate.topics import DeviceId

STEPS = 40  # 40 steps x 15 meters x ~3.5 quantities: about 2,000 readings
STEP_MS = 15_000


@pytest.fixture
def ingest(start_ingest: Callable[..., object]) -> None:
    start_ingest()


def _wait_for_count(http: httpx.Client, params: dict[str, str], expected: int,
                    timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = http.get("/api/readings", params=params).json()
        if body.get("count", 0) >= expected:
            return body
        time.sleep(0.25)
    return body


def test_published_readings_come_back_exactly_through_the_web_api(
        ingest: None, web_client: httpx.Client, mqtt_settings: MqttSettings) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    simulator = EstateSimulator(spec, seed=7)
    publisher = Publisher(mqtt_settings, f"sim-{uuid.uuid4().hex[:8]}",
                          DeviceId(spec.id, "edge", "sim-e2e"))
    publisher.start(simulator.devices)
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - now_ms % STEP_MS - STEPS * STEP_MS
    sent = publish_range(simulator, publisher, start_ms, STEPS, STEP_MS)
    publisher.stop(simulator.devices)
    assert len(sent) > 1_500

    params = {
        "start": datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(),
        "end": datetime.fromtimestamp((start_ms + STEPS * STEP_MS) / 1000, UTC).isoformat(),
    }
    body = _wait_for_count(web_client, params, len(sent), timeout_s=60)

    expected = sorted(
        ({"time_ms": r.time_ms, "facility": r.facility, "device": r.device,
          "quantity": r.quantity, "channel": r.channel, "value": r.value, "unit": r.unit}
         for r in sent),
        key=lambda r: (r["time_ms"], r["facility"], r["device"], r["quantity"], r["channel"]))
    assert body["count"] == len(sent)
    assert body["truncated"] is False
    assert body["readings"] == expected

    # A filtered query answers the subset, in canonical units.
    one = web_client.get("/api/readings", params={
        **params, "facility": "textile", "device": "main", "quantity": "power"}).json()
    assert one["count"] == STEPS
    assert {r["unit"] for r in one["readings"]} == {"kW"}

    # The live view saw the same messages on MQTT.
    live = web_client.get("/api/live").json()
    latest = {(v["facility"], v["device"], v["quantity"], v["channel"]): v["value"]
              for v in live["values"]}
    last_step = [r for r in sent if r.time_ms == start_ms + (STEPS - 1) * STEP_MS]
    assert latest == {(r.facility, r.device, r.quantity, r.channel): r.value
                      for r in last_step}


def test_readings_api_refuses_bad_requests_with_a_reason(web_client: httpx.Client) -> None:
    cases = [
        ({"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T09:00:00Z"}, "end must be after"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-11-26T00:00:00Z"}, "at most 31 days"),
        ({"start": "2026-11-26T09:00:00", "end": "2026-11-26T10:00:00"}, "time zone"),
        ({"start": "2026-11-26T09:00:00Z", "end": "2026-11-26T10:00:00Z",
          "device": "x' OR 1=1"}, "pattern"),
        ({"start": "2026-11-26T09:00:00Z", "end": "2026-11-26T10:00:00Z",
          "quantity": "mass"}, "unknown quantity"),
        ({"start": "yesterday", "end": "2026-11-26T10:00:00Z"}, "datetime"),
        # Beyond what the store's 64-bit nanoseconds hold: a reason, not a 500.
        ({"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"}, "between 1970"),
    ]
    for params, reason in cases:
        response = web_client.get("/api/readings", params=params)
        assert response.status_code == 422, params
        assert reason in response.text, (params, response.text)
