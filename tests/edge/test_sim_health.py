"""The simulator's /metrics and /health: counted per step, healthy while stepping and
connected, against the real broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from edge.__main__ import run
from edge.settings import EdgeSettings
from edge.sim_health import SimulatorMetrics
from estate.settings import MqttSettings
from launcher.servers import free_port


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_a_step_is_counted_whole_and_a_stalled_loop_is_unhealthy() -> None:
    metrics = SimulatorMetrics(1.0, publishing=False)
    assert metrics.health()[0]
    metrics.stepped(1_000, messages=3, readings=30)
    ok, body = metrics.health()
    assert not ok, "a step of 1970 is long past: the loop looks stalled"
    assert body["stalled"]
    now_ms = time.time_ns() // 1_000_000
    metrics.stepped(now_ms, messages=2, readings=20)
    assert metrics.health()[0]
    totals = metrics.totals()
    assert (totals.steps, totals.messages, totals.readings) == (2, 5, 50)
    connected = SimulatorMetrics(1.0, publishing=True)
    connected.stepped(now_ms, 1, 1)
    assert not connected.health()[0], "publishing without a broker is not healthy"


def test_the_running_simulator_serves_its_metrics_and_health(
        mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    port = free_port()
    settings = EdgeSettings(mqtt=mqtt_settings, interval_s=0.5, http_port=port,
                            client_id=f"sim-{port}",
                            command_log_path=tmp_path / "commands.sqlite")
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(settings, stop), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        samples: dict[str, float] = {}
        while time.monotonic() < deadline:
            try:
                samples = scrape(url)
                if samples.get("simulator_steps_total", 0) >= 2:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert samples.get("simulator_steps_total", 0) >= 2, samples
        assert samples["simulator_mqtt_connected"] == 1
        assert samples["simulator_readings_published_total"] > \
            samples["simulator_messages_published_total"] > 0
        health = httpx.get(f"{url}/health", timeout=5)
        assert health.status_code == 200, health.text
        assert health.json()["mqtt"]["ok"] is True
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
