"""The operators' page in a real headless Chromium, fed by the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from edge.publisher import Publisher
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import MqttSettings
from estate.topics import DeviceId

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make deps`"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.browser
def test_page_shows_live_values_as_meters_publish(web: str, mqtt_settings: MqttSettings,
                                                   browser: Browser, tmp_path: Path) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    simulator = EstateSimulator(spec, seed=3)
    publisher = Publisher(mqtt_settings, f"sim-{uuid.uuid4().hex[:8]}",
                          DeviceId(spec.id, "edge", "sim-page"))
    publisher.start(simulator.devices)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(web)
    page.wait_for_selector('section[data-facility="textile"]')
    # Nothing published yet: the power cell shows a dash.
    cell = page.locator('[data-key="textile/main/power/"] b')
    assert cell.inner_text() == "–"

    now_ms = time.time_ns() // 1_000_000
    step = simulator.step(now_ms)
    for device, readings in step:
        publisher.publish(device, readings)
    expected = next(r for d, rs in step for r in rs
                    if d.facility == "textile" and d.device == "main" and r.quantity == "power")

    page.wait_for_function(
        "document.querySelector('[data-key=\"textile/main/power/\"] b').textContent !== '–'",
        timeout=15_000)
    shown = float(cell.inner_text().replace(",", ""))
    assert shown == pytest.approx(expected.value, abs=0.05)
    assert page.locator("#feed").get_attribute("data-state") == "ok"
    reporting = page.locator("#reporting").inner_text()
    assert reporting == f"{len(simulator.devices)} / {len(simulator.devices)}"
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    assert (tmp_path / "live.png").stat().st_size > 10_000
    publisher.stop(simulator.devices)
    page.close()
