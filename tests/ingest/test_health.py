"""Ingest says when it is ready: /health answers 200 once it is connected and subscribed
with its decoder and writer running, and 503 while the broker is away; and it reads its
rules (the estate file's channels, the field cap) from its settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.ops_http import wait_healthy
from estate.model import SAMPLE_ESTATE
from estate.settings import MqttSettings
from estate.topics import DeviceId
from ingest.__main__ import rules
from ingest.settings import IngestSettings
from launcher.servers import Mosquitto, free_port
from tests.conftest import RunningIngest


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()


def test_health_is_readiness_and_follows_the_broker(
        own_broker: Mosquitto, start_ingest: Callable[..., RunningIngest]) -> None:
    port = free_port()
    start_ingest(mqtt=MqttSettings(port=own_broker.port), http_port=port,
                 decode_in_process=True)
    url = f"http://127.0.0.1:{port}/health"
    body = wait_healthy(url, 60)
    assert body is not None
    assert body["ready"] is True
    assert body["checks"] == {"mqtt_connected": True, "subscribed": True,
                              "decoder_alive": True, "writer_alive": True}
    assert body["worker"].startswith("ingest-")

    own_broker.stop()
    deadline = time.monotonic() + 60
    while (answer := httpx.get(url, timeout=5)).status_code == 200:
        assert time.monotonic() < deadline, "still ready with the broker gone"
        time.sleep(0.1)
    assert answer.status_code == 503
    assert answer.json()["checks"]["subscribed"] is False

    own_broker.start()
    assert wait_healthy(url, 120) is not None, "not ready again after the broker returned"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "ingest_dead_letters_total" in metrics


def test_the_estate_file_and_the_field_cap_reach_the_decoder(tmp_path: Path) -> None:
    estate = tmp_path / "estate.yaml"
    estate.write_text(SAMPLE_ESTATE.read_text().replace(
        "{id: dyehouse-temp, kind: temperature,",
        "{id: dyehouse-temp, kind: temperature, channels: {temperature: [bath-1]},"))
    accepted = rules(IngestSettings(estate_file=estate, max_fields_per_device=12))
    assert accepted.extra_fields == {DeviceId("demo", "textile", "dyehouse-temp"):
                                     frozenset({"temperature.bath-1"})}
    assert accepted.max_fields_per_device == 12
    assert rules(IngestSettings()).extra_fields == {}
