"""The operators' overview and plans pages in a real headless Chromium, fed by the real
broker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.planning.forecasts import nominal_kw
from dispatch.planning.rolling import PlanJob
from dispatch.registry.db import Registry, make_engine
from dispatch.registry.loader import load_into_registry
from dispatch.registry.models import PlanRow
from dispatch.settings import PlanningSettings
from edge.command_executors import SimulatedBattery
from edge.publisher import Publisher
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings, MqttSettings
from estate.topics import DeviceId
from tests.devices import simulated_battery
from tests.web_login import log_in_page


@pytest.mark.browser
def test_page_shows_live_values_as_meters_publish(web: str, mqtt_settings: MqttSettings,
                                                   browser: Browser, tmp_path: Path) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    simulator = EstateSimulator(spec, seed=3)
    publisher = Publisher(mqtt_settings, f"sim-{uuid.uuid4().hex[:8]}",
                          DeviceId(spec.id, "edge", "sim-page"))
    publisher.start(simulator.devices)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in_page(page, web)
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

    # A locator assertion, not a JavaScript string: the page's CSP forbids eval.
    expect(cell).not_to_have_text("–", timeout=15_000)
    shown = float(cell.inner_text().replace(",", ""))
    assert shown == pytest.approx(expected.value, abs=0.05)
    assert page.locator("#feed").get_attribute("data-state") == "ok"
    reporting = page.locator("#reporting").inner_text()
    assert reporting == f"{len(simulator.devices)} / {len(simulator.devices)}"
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    assert (tmp_path / "live.png").stat().st_size > 10_000
    publisher.stop(simulator.devices)
    page.close()


@pytest.mark.browser
def test_an_operator_sees_the_plan_against_its_baseline_and_approves_it(
        web: str, store: InfluxV1Store, influx_settings: InfluxSettings,
        mqtt_settings: MqttSettings, browser: Browser, tmp_path: Path) -> None:
    """The web fixture's registry (in ``tmp_path``) gets a plan from the real ``PlanJob``;
    the estate battery answers commands through the edge's handler on the real broker."""
    spec = load_estate(SAMPLE_ESTATE)
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    registry = Registry(engine)
    with registry.writing() as session:
        load_into_registry(session, spec)
    battery = DeviceId(spec.id, "utilities", "battery")
    made = PlanJob(store, registry, spec.id,
                   PlanningSettings(time_limit_s=30), nominal_kw=nominal_kw(spec)).run()
    assert made is not None
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    with simulated_battery(mqtt_settings, battery, tmp_path) as simulated:
        try:
            log_in_page(page, web)
            page.goto(f"{web}/plans")
            page.wait_for_selector(f'#plan[data-state="draft"][data-plan="{made.saved.id}"]')
            assert page.locator("#approve").is_visible()
            with registry.reading() as session:
                row = session.get(PlanRow, made.saved.id)
                assert row is not None
                cost, baseline = row.cost, row.baseline_cost
            assert cost is not None
            assert baseline is not None
            assert page.locator("#plan-cost").inner_text().startswith(f"{cost:,.0f}")
            saved = page.locator("#plan-saved").inner_text()
            assert saved.startswith(f"{baseline - cost:,.0f}")
            assert page.locator("#user").inner_text() == "ana (operator)"
            page.click("#approve")
            expect(page.locator('#confirm-commands tr[data-asset="battery"]')).to_be_visible()
            page.click("#confirm-send")
            page.wait_for_selector('#plan[data-state="approved"]')
            assert not page.locator("#approve").is_visible()  # nothing left to approve
            assert "commands sent" in page.locator("#decision").inner_text()
            page.wait_for_selector('tr[data-asset="battery"] td[data-status="done"]',
                                   timeout=30_000)
            held = simulated.asset(battery)
            assert isinstance(held, SimulatedBattery)
            with registry.reading() as session:
                row = session.get(PlanRow, made.saved.id)
                assert row is not None
                status = (row.status, row.approved_by)
                first_kw = round(row.setpoints["battery"][0], 1)
            assert status == ("approved", "ana")
            assert held.setpoint_kw == first_kw  # the plan's first step, carried out
            page.screenshot(path=str(tmp_path / "plan.png"), full_page=True)
        finally:
            page.close()
            engine.dispose()
