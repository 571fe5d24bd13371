"""The page's status strip in a real headless Chromium: the store and the broker stopped and
started again under a running web view, and the supervised services as the supervisor's
status file describes them.

The web view gets an InfluxDB and a Mosquitto of its own (not the session's), since the
test stops them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Browser, Page

from dispatch.__main__ import build_web
from dispatch.accounts.roles import Role
from dispatch.settings import DispatchSettings, WebSettings
from edge.publisher import Publisher
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings, MqttSettings
from estate.topics import DeviceId
from launcher.servers import InfluxDB, Mosquitto
from launcher.supervisor import ChildStatus, write_atomically
from tests.conftest import served
from tests.web_login import add_users, log_in_page

pytestmark = [pytest.mark.servers, pytest.mark.browser]

# The page polls every 3 s and the store's ping is cached for 2 s; a loaded machine adds
# the reconnection of the web view's MQTT client (its first retry within 1.5 s).
SHOWN_WITHIN_MS = 20_000
KILLED_AT = datetime(2026, 12, 4, 11, 42, 7, tzinfo=UTC).timestamp()


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[InfluxDB, Mosquitto]]:
    influx, broker = InfluxDB(tmp_path / "influxdb"), Mosquitto(tmp_path / "mosquitto")
    influx.start()
    broker.start()
    yield influx, broker
    broker.stop()
    influx.stop()


def strip(page: Page) -> str:
    return page.locator("#health").inner_text()


def publish_one_step(mqtt: MqttSettings) -> None:
    """Every simulated meter's readings of now, once."""
    spec = load_estate(SAMPLE_ESTATE)
    simulator = EstateSimulator(spec, seed=5)
    publisher = Publisher(mqtt, f"sim-{uuid.uuid4().hex[:8]}",
                          DeviceId(spec.id, "edge", "sim-health"))
    publisher.start(simulator.devices)
    try:
        for device, readings in simulator.step(time.time_ns() // 1_000_000):
            publisher.publish(device, readings)
    finally:
        publisher.stop(simulator.devices)


def test_the_page_shows_the_store_and_the_broker_going_down_and_up(
        own_servers: tuple[InfluxDB, Mosquitto], browser: Browser, tmp_path: Path) -> None:
    influx, broker = own_servers
    status = tmp_path / "supervisor.json"
    write_atomically(status, orjson.dumps({"status": "ok", "children": [asdict(ChildStatus(
        "influxdb", state="running", restarts=1, last_exit="killed by SIGKILL",
        last_exit_at=KILLED_AT))]}))
    mqtt = MqttSettings(host="127.0.0.1", port=broker.port)
    parts = build_web(DispatchSettings(
        mqtt=mqtt,
        influx=InfluxSettings(url=influx.url, database="estate", timeout_s=2),
        web=WebSettings(supervisor_status=str(status)),
        registry_url=f"sqlite:///{tmp_path / 'registry.sqlite'}"))
    assert parts.registry is not None
    add_users(parts.registry, ana=Role.OPERATOR)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    try:
        with served(parts.app) as url:
            log_in_page(page, url)
            page.wait_for_selector('#svc-store[data-state="ok"]', timeout=SHOWN_WITHIN_MS)
            page.wait_for_selector('#svc-broker[data-state="ok"]', timeout=SHOWN_WITHIN_MS)
            service = page.locator('[data-service="influxdb"]')
            # On the estate's clock (Europe/Athens, UTC+2 in winter), not the browser's (UTC).
            assert service.inner_text() == \
                "influxdb: running, restarted 1x, killed by SIGKILL at 13:42:07"
            # Connected, but nothing came yet: the feed is stale, and says so.
            page.wait_for_selector('#feed[data-state="warn"]', timeout=SHOWN_WITHIN_MS)
            assert page.locator("#feed").inner_text() == "live feed: stale"

            influx.stop()
            stopped = time.monotonic()
            page.wait_for_selector('#svc-store[data-state="bad"]', timeout=SHOWN_WITHIN_MS)
            print(f"store down shown in {time.monotonic() - stopped:.1f} s")
            assert "store: down" in strip(page)
            page.screenshot(path=str(tmp_path / "store-down.png"), full_page=True)
            influx.start()
            page.wait_for_selector('#svc-store[data-state="ok"]', timeout=SHOWN_WITHIN_MS)
            assert "store: up" in strip(page)

            publish_one_step(mqtt)
            value = page.locator('[data-key="textile/main/power/"]')
            page.wait_for_selector('[data-key="textile/main/power/"][data-stale="false"]',
                                   timeout=SHOWN_WITHIN_MS)
            page.wait_for_selector('#feed[data-state="ok"]', timeout=SHOWN_WITHIN_MS)
            broker.stop()
            stopped = time.monotonic()
            page.wait_for_selector('#svc-broker[data-state="bad"]', timeout=SHOWN_WITHIN_MS)
            print(f"broker down shown in {time.monotonic() - stopped:.1f} s")
            assert "broker: down" in strip(page)
            feed = page.locator("#feed")
            assert (feed.get_attribute("data-state"), feed.inner_text()) == \
                ("bad", "live feed: broker down")
            assert "values stale" in page.locator("#summary").inner_text()
            assert value.get_attribute("data-stale") == "true"  # the value held, not live
            page.screenshot(path=str(tmp_path / "broker-down.png"), full_page=True)
            assert (tmp_path / "broker-down.png").stat().st_size > 10_000
            broker.start()
            page.wait_for_selector('#svc-broker[data-state="ok"]', timeout=SHOWN_WITHIN_MS)
            page.wait_for_selector('#feed[data-state="ok"]', timeout=SHOWN_WITHIN_MS)
            assert feed.inner_text() == "live feed: connected"
    finally:
        page.close()
        parts.close()
