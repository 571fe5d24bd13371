"""Acceptance: an operator's shift in the pages of the view, in Debian's Chromium, against
the demo's own ACL'd broker.

The web view is wired as ``python -m dispatch web`` wires it (``build_web``: its own broker
account, the live feed, the command sender) over the real InfluxDB and a registry on
SQLite; the meters publish with the simulator's account, and the estate battery answers
commands through the edge's real handler with that account too; nobody answers for the
other assets, whose commands time out. An operator logs in, watches a live value change
without reloading, opens the plan, reads in the confirmation every command the approval
will send, approves, and reads the device's answers on the command log. Screenshots at
1366x768 and at a phone's 390x844 are saved under ``test-output/pages/``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.__main__ import WebParts, build_web
from dispatch.accounts.roles import Role
from dispatch.jobs.rollup_levels import READING_1M, READING_15M
from dispatch.jobs.rollups import Rollups
from dispatch.planning.forecasts import nominal_kw
from dispatch.planning.rolling import PlanJob
from dispatch.registry.db import Registry
from dispatch.settings import DispatchSettings, PlanningSettings, RollupSettings
from edge.command_executors import SimulatedAssetExecutor, SimulatedBattery
from edge.publisher import Publisher
from edge.simulator import EstateSimulator
from estate.lineprotocol import reading_line
from estate.model import SAMPLE_ESTATE, load_estate
from estate.readings import Reading
from estate.settings import InfluxSettings
from estate.topics import DeviceId
from tests.conftest import DemoBroker, served
from tests.devices import simulated_battery
from tests.dispatch.registries import sample_registry
from tests.web_login import add_users, log_in_page, logged_in

pytestmark = [pytest.mark.servers, pytest.mark.browser]

SPEC = load_estate(SAMPLE_ESTATE)
BATTERY = DeviceId(SPEC.id, "utilities", "battery")
# A short deadline: the commands nobody answers time out within seconds.
PLANNING = PlanningSettings(time_limit_s=30, command_deadline_s=2)
DESK = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
SHOTS = Path(os.environ.get("ESTATE_TEST_OUTPUT", "test-output")) / "pages"
POWER = '[data-key="textile/main/power/"] b'


@dataclass
class Shift:
    url: str
    registry: Registry
    store: InfluxV1Store
    parts: WebParts
    battery: SimulatedAssetExecutor
    publisher: Publisher
    simulator: EstateSimulator


@pytest.fixture
def shift(demo_broker: DemoBroker, influx_settings: InfluxSettings, store: InfluxV1Store,
          tmp_path: Path) -> Iterator[Shift]:
    registry = sample_registry(tmp_path)
    url = registry.url
    add_users(registry, ana=Role.OPERATOR, vera=Role.VIEWER)
    simulator = EstateSimulator(SPEC, seed=5)
    publisher = Publisher(demo_broker.settings("simulator"), f"sim-{uuid.uuid4().hex[:8]}",
                          DeviceId(SPEC.id, "edge", "sim-pages"))
    publisher.start(simulator.devices)
    parts = build_web(DispatchSettings(mqtt=demo_broker.settings("web"),
                                       influx=influx_settings, registry_url=url,
                                       planning=PLANNING))
    try:
        with simulated_battery(demo_broker.settings("simulator"), BATTERY, tmp_path) as held, \
                served(parts.app) as web:
            yield Shift(web, registry, store, parts, held, publisher, simulator)
    finally:
        publisher.stop(simulator.devices)
        parts.close()
        registry.close()


def _publish_step(shift: Shift, at_ms: int) -> float:
    """One round of every meter's readings; the textile incomer's power it carried."""
    step = shift.simulator.step(at_ms)
    for device, readings in step:
        shift.publisher.publish(device, readings)
    return next(r.value for d, rs in step for r in rs
                if d.facility == "textile" and d.device == "main" and r.quantity == "power")


def _history(shift: Shift) -> None:
    """Twenty hours of the textile incomer's power, a reading a minute, as ingest writes
    them, rolled up as the worker's rollup job does."""
    now_ms = time.time_ns() // 1_000_000
    shift.store.write_lines([
        reading_line(Reading(SPEC.id, "textile", "main", "power", "", 400 + k % 37,
                             now_ms - k * 60_000)) for k in range(1, 1200)])
    rollups = Rollups(shift.store, RollupSettings())
    rollups.run(now_ms)  # its retention policies, and the newest minutes
    for level in (READING_1M, READING_15M):
        assert rollups.recompute(level, now_ms - 1200 * 60_000, now_ms) > 0


def _shown_kw(page: Page) -> float:
    return float(page.locator(POWER).inner_text().replace(",", ""))


def _shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, path
    return path


def _watch_a_live_value_change(page: Page, shift: Shift) -> None:
    now_ms = time.time_ns() // 1_000_000
    first = _publish_step(shift, now_ms)
    expect(page.locator(POWER)).not_to_have_text("–", timeout=15_000)
    assert _shown_kw(page) == pytest.approx(first, abs=0.05)
    expect(page.locator("#feed")).to_have_attribute("data-state", "ok")
    shown = page.locator(POWER).inner_text()
    for k in range(1, 20):  # the next step of a meter's profile differs within a few
        second = _publish_step(shift, now_ms + 2000 * k)
        if abs(second - first) > 0.5:
            break
    # The same page, not reloaded: the value moves as the meter publishes.
    expect(page.locator(POWER)).not_to_have_text(shown, timeout=15_000)
    assert _shown_kw(page) == pytest.approx(second, abs=0.05)


def _confirmation(page: Page, plan_id: int, shift: Shift) -> list[dict[str, Any]]:
    """Open the approval's confirmation; check it names every command the preview does
    (asset, setpoint, step time); return the preview."""
    with logged_in(shift.url, "vera") as viewer:
        preview = viewer.get(f"/api/plans/{plan_id}/preview").json()
    page.click("#approve")
    dialog = page.locator("#confirm-approve")
    expect(dialog).to_be_visible()
    rows = dialog.locator("#confirm-commands tbody tr")
    expect(rows).to_have_count(len(preview["commands"]))
    assert len(preview["commands"]) >= 2
    for row, command in zip(rows.all(), preview["commands"], strict=True):
        assert row.get_attribute("data-asset") == command["asset"]
        text = row.inner_text()
        assert command["action"] in text
        assert f"{command['setpoint_kw']:,.1f} kW" in text
        assert command["device"] in text
    step = dialog.locator("#confirm-step").inner_text()
    assert f"Step {preview['step'] + 1}," in step
    assert SPEC.timezone in step
    return list(preview["commands"])


def test_an_operator_watches_live_values_approves_a_plan_and_reads_the_answers(
        shift: Shift, browser: Browser) -> None:
    _history(shift)
    made = PlanJob(shift.store, shift.registry, SPEC.id, PLANNING,
                   nominal_kw=nominal_kw(SPEC)).run()
    assert made is not None
    plan_id = made.saved.id
    context = browser.new_context(viewport=DESK)
    page = context.new_page()
    log_in_page(page, shift.url, "ana")
    expect(page.locator("#user")).to_have_text("ana (operator)")
    titles = page.locator("#nav a").all_inner_texts()
    assert titles[:3] == ["Overview", "Plans", "Commands"]
    assert "Demand response" in titles
    assert "Webhooks" not in titles, "an admin's page, not offered to an operator"
    loads: list[str] = []
    page.on("framenavigated", lambda frame: loads.append(frame.url))
    _watch_a_live_value_change(page, shift)
    assert loads == [], "the value changed without a reload"
    # The overview per utility: the textile mill's electricity draw, live and fresh.
    textile = page.locator('#utilities [data-utility="electricity"] tr[data-facility="textile"]')
    expect(textile).to_have_attribute("data-state", "ok", timeout=10_000)
    expect(textile.locator("td.value b")).not_to_have_text("–")
    expect(page.locator('[data-utility="electricity"] [data-import]')).not_to_have_text("–")
    _shot(page, "overview-1366")

    # The facility: its live values, and its day's trend from InfluxDB.
    textile.locator("a").click()
    page.wait_for_url(f"{shift.url}/facility/textile")
    expect(page.locator('#meters [data-key="main/power/"] b')).not_to_have_text("–")
    expect(page.locator("#trend-chart canvas")).to_have_count(1)
    expect(page.locator("#trend-note")).to_contain_text("steps, newest")
    assert int(page.locator("#trend-chart").get_attribute("data-points") or 0) > 100
    expect(page.locator("#plan-chart canvas")).to_have_count(1)
    _shot(page, "facility-1366")

    page.click('#nav a:text("Plans")')
    page.wait_for_selector(f'#plan[data-state="draft"][data-plan="{plan_id}"]')
    expect(page.locator("#setpoint-chart canvas")).to_have_count(1)
    _shot(page, "plan-1366")
    commands = _confirmation(page, plan_id, shift)
    _shot(page, "plan-confirm-1366")
    page.click("#confirm-send")
    page.wait_for_selector('#plan[data-state="approved"]')
    expect(page.locator("#decision")).to_contain_text(f"approved: {len(commands)} commands sent")
    expect(page.locator('#plan-commands tr[data-asset="battery"] td[data-status="done"]')
           ).to_be_visible(timeout=30_000)
    battery_kw = next(c["setpoint_kw"] for c in commands if c["asset"] == "battery")
    held = shift.battery.asset(BATTERY)
    assert isinstance(held, SimulatedBattery)
    assert held.setpoint_kw == pytest.approx(round(battery_kw, 1))

    page.click('#nav a:text("Commands")')
    battery = page.locator('#commands tr[data-asset="battery"] td[data-status]')
    expect(battery).to_contain_text("done", timeout=15_000)
    # Nobody answers for the genset: its commands end timed out, and say so.
    genset = page.locator('#commands tr[data-asset="genset"] td[data-status="timed_out"]')
    expect(genset.first).to_contain_text("timed out: no answer", timeout=30_000)
    decision = page.locator(f'#decisions tr[data-plan="{plan_id}"]')
    expect(decision).to_contain_text("ana")
    expect(decision).to_contain_text("approved")
    _shot(page, "commands-1366")
    context.close()

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = phone.new_page()
    log_in_page(page, shift.url, "ana")
    expect(page.locator(POWER)).not_to_have_text("–", timeout=15_000)
    _shot(page, "overview-390")
    page.goto(f"{shift.url}/facility/textile")
    expect(page.locator("#trend-chart canvas")).to_have_count(1)
    _shot(page, "facility-390")
    page.goto(f"{shift.url}/plans?plan={plan_id}")
    page.wait_for_selector('#plan[data-state="approved"]')
    expect(page.locator('#plan-commands tr[data-asset="battery"]')).to_be_visible()
    _shot(page, "plan-390")
    page.goto(f"{shift.url}/commands")
    expect(page.locator('#commands tr[data-asset="battery"]')).to_have_count(1)
    _shot(page, "commands-390")
    phone.close()


def test_a_rejection_needs_a_reason_and_a_viewer_cannot_decide(
        shift: Shift, browser: Browser) -> None:
    made = PlanJob(shift.store, shift.registry, SPEC.id, PLANNING,
                   nominal_kw=nominal_kw(SPEC)).run()
    assert made is not None
    plan_id = made.saved.id
    context = browser.new_context(viewport=DESK)
    page = context.new_page()
    log_in_page(page, shift.url, "vera")
    page.goto(f"{shift.url}/plans")
    page.wait_for_selector(f'#plan[data-state="draft"][data-plan="{plan_id}"]')
    expect(page.locator("#decide")).to_be_hidden()  # a viewer reads, never decides
    context.close()

    context = browser.new_context(viewport=DESK)
    page = context.new_page()
    log_in_page(page, shift.url, "ana")
    page.goto(f"{shift.url}/plans")
    page.wait_for_selector(f'#plan[data-state="draft"][data-plan="{plan_id}"]')
    page.click("#reject")
    dialog = page.locator("#confirm-reject")
    expect(dialog).to_be_visible()
    page.click("#reject-send")
    expect(dialog).to_be_visible()  # no reason: nothing sent, the dialog waits for one
    page.fill("#reject-reason", "genset on maintenance until noon")
    page.click("#reject-send")
    page.wait_for_selector('#plan[data-state="rejected"]')
    expect(page.locator("#decision")).to_have_text("rejected: genset on maintenance until noon")
    page.click('#nav a:text("Commands")')
    decision = page.locator(f'#decisions tr[data-plan="{plan_id}"]')
    expect(decision).to_contain_text("rejected")
    expect(decision).to_contain_text("reason: genset on maintenance until noon")
    expect(page.locator("#commands tbody")).to_contain_text("No command.")
    context.close()
