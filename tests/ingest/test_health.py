"""Ingest says when it is ready: /health answers 200 once it is connected and subscribed
with its decoder and writer running, and 503 while the broker is away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.ops_http import wait_healthy
from estate.settings import MqttSettings
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
