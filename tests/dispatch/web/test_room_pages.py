"""Acceptance: the control room's pages in a real headless Chromium, served by uvicorn over
the real PostgreSQL registry, fed by the worker's own control-room step. An operator
acknowledges and shelves an alarm on the board, opens, assigns, reassigns and closes an
incident, writes in the shift log and hands the shift over; the incoming operator
acknowledges each alarm and incident and accepts. A viewer sees the board without a
button. Times are the estate's (Europe/Athens) in a browser set to UTC. Screenshots at
1366x768 and at a phone's 390x844 are saved beside the test's files (``SCREENSHOTS``
names another directory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from dispatch.registry import incident_desk
from tests.conftest import served
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import PASSWORD, WebRoom
from tests.dispatch.web.control_room import (
    OTHER_METER,
    TENANT_METER,
    room_on,
    step,
    transition,
)
from tests.web_login import log_in_page, logged_in

pytestmark = [pytest.mark.servers, pytest.mark.browser]

DESK = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
ZONE = ZoneInfo(SPEC.timezone)


@pytest.fixture
def view(pg_url: str) -> Iterator[tuple[str, WebRoom]]:
    with room_on(pg_url, allowed_hosts=["127.0.0.1"]) as made, served(made.app) as url:
        yield url, made


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("SCREENSHOTS", tmp_path))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _page(browser: Browser, url: str, username: str, size: dict[str, int] = DESK) -> Page:
    context = browser.new_context(viewport=size, timezone_id="UTC")  # not the estate's zone
    page = context.new_page()
    log_in_page(page, url, username, PASSWORD)
    return page


def _shoot(page: Page, shots: Path, name: str) -> None:
    """A screenshot at the desk's size and one at a phone's, the page fitting each width."""
    for label, size in (("desk", DESK), ("phone", PHONE)):
        page.set_viewport_size(size)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= size["width"] + 1, f"{name} scrolls sideways at {size['width']}px"
        path = shots / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
    page.set_viewport_size(DESK)


def _raise(room: WebRoom, now: datetime) -> None:
    step(room.registry, [
        transition("raise", OTHER_METER, "no-data", now - timedelta(minutes=30), "medium"),
        transition("raise", TENANT_METER, "no-data", now - timedelta(minutes=20), "high"),
        transition("raise", "estate", "capacity", now - timedelta(minutes=10), "critical",
                   "capacity")])


def test_an_operator_acknowledges_and_shelves_alarms_on_the_board(
        view: tuple[str, WebRoom], browser: Browser, shots: Path) -> None:
    url, room = view
    now = datetime.now(UTC).replace(microsecond=0)
    _raise(room, now)
    page = _page(browser, url, "ana")
    page.goto(f"{url}/alarms")
    rows = page.locator("#alarms tbody tr[data-alarm]")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-severity") for i in range(3)] == [
        "critical", "high", "medium"]
    local = (now - timedelta(minutes=10)).astimezone(ZONE).strftime("%H:%M")
    expect(rows.first.locator("time").first).to_have_text(local)
    tenant = page.locator(f'#alarms tbody tr:has-text("{TENANT_METER}")')
    tenant.locator("button[data-ack]").click()
    expect(page.locator("#result")).to_contain_text("acknowledged")
    expect(tenant.locator(".state")).to_contain_text("acknowledged by ana")
    other = page.locator(f'#alarms tbody tr:has-text("{OTHER_METER}")')
    other.locator("button[data-shelve]").click()
    page.select_option("#shelve-minutes", "120")
    page.fill("#shelve-reason", "meter being replaced")
    page.click("#shelve-form button[type=submit]")
    expect(other.locator(".state")).to_contain_text("shelved by ana until")
    expect(other).to_have_attribute("data-state", "shelved")
    page.locator('#alarms tbody tr[data-severity="critical"] button[data-comment]').click()
    page.fill("#comment-text", "grid operator informed")
    page.click("#comment-form button[type=submit]")
    expect(page.locator("#result")).to_contain_text("comment added")
    _shoot(page, shots, "alarms-operator")
    page.context.close()

    viewer = _page(browser, url, "vera")
    viewer.goto(f"{url}/alarms")
    expect(viewer.locator("#alarms tbody tr[data-alarm]")).to_have_count(3)
    expect(viewer.locator("#alarms button").first).to_be_hidden()
    viewer.context.close()


def test_an_operator_opens_assigns_reassigns_and_closes_an_incident(
        view: tuple[str, WebRoom], browser: Browser, shots: Path) -> None:
    url, room = view
    now = datetime.now(UTC)
    _raise(room, now)
    with room.registry.writing() as session:
        incident_desk.open_incident_by_operator(
            session, SPEC.id, "late-one", "Feeder south tripped", "critical", "electrical",
            "ana", now - timedelta(minutes=20), facility="utilities")
    step(room.registry, [])  # the worker tells the breach
    page = _page(browser, url, "ana")
    page.goto(f"{url}/incidents")
    late = page.locator('tr:has-text("Feeder south tripped")')
    expect(late.locator('[data-breach="response"]')).to_contain_text("response SLA breached")
    expect(page.locator('.crew[data-crew="pipes"]')).to_contain_text("water")
    page.fill("#open-title", "Water on the floor of the textile dye house")
    page.select_option("#open-severity", "high")
    page.select_option("#open-skill", "water")
    page.select_option("#open-facility", "textile")
    page.click("#open-form button[type=submit]")
    expect(page.locator("#open-result")).to_contain_text("opened")
    row = page.locator('tr:has-text("Water on the floor")')
    expect(page.locator('[data-location="textile"]')).to_contain_text("Water on the floor")
    row.locator("select[data-crew-for]").select_option("pipes")
    row.locator("button[data-assign]").click()
    expect(row.locator(".crew-cell")).to_contain_text("pipes")
    row.locator("select[data-crew-for]").select_option("facilities")
    row.locator("button[data-assign]").click()
    expect(row.locator(".crew-cell")).to_contain_text("facilities")
    expect(page.locator("#result")).to_contain_text("given to facilities")
    _shoot(page, shots, "incidents-operator")
    row.locator("button[data-close-incident]").click()
    page.fill("#close-reason", "a blocked drain, cleared by the facilities crew")
    page.click("#close-form button[type=submit]")
    expect(page.locator("#result")).to_contain_text("closed")
    expect(page.locator('tr:has-text("Water on the floor")')).to_have_count(0)
    page.context.close()


def test_an_entry_and_a_handover_the_incoming_operator_acknowledges_and_accepts(
        view: tuple[str, WebRoom], browser: Browser, shots: Path) -> None:
    url, room = view
    _raise(room, datetime.now(UTC))
    page = _page(browser, url, "ana")
    page.goto(f"{url}/shift")
    page.select_option("#entry-kind", "open_item")
    page.fill("#entry-text", "Pump 2 at the booster station vibrates: check at 08:00")
    page.click("#entry-form button[type=submit]")
    expect(page.locator("#log tbody tr[data-entry]")).to_have_count(1)
    expect(page.locator("#log tbody tr[data-entry]")).to_contain_text("ana")
    page.fill("#incoming", "sam")
    page.fill("#handover-note", "quiet night, one pump to watch")
    page.click("#prepare-form button[type=submit]")
    expect(page.locator("#waiting-what")).to_contain_text("waiting for sam")
    expect(page.locator("#accept-bar")).to_be_hidden()
    _shoot(page, shots, "shift-outgoing")
    page.context.close()

    with logged_in(url, "sam", PASSWORD) as client:
        waiting = client.get("/api/shift/handover").json()["waiting"]
    items = len(waiting["alarms"]) + len(waiting["incidents"])
    assert len(waiting["alarms"]) == 3
    assert waiting["incidents"], "triage opened incidents for the alarms"
    incoming = _page(browser, url, "sam")
    incoming.goto(f"{url}/shift")
    boxes = incoming.locator("#waiting-items [data-item]")
    expect(boxes).to_have_count(items)
    expect(incoming.locator("#accept")).to_be_disabled()
    for i in range(items - 1):
        boxes.nth(i).check()
    expect(incoming.locator("#accept-left")).to_contain_text(f"1 of {items}")
    expect(incoming.locator("#accept")).to_be_disabled()
    boxes.last.check()
    _shoot(incoming, shots, "shift-incoming")
    incoming.click("#accept")
    expect(incoming.locator("#handover-result")).to_contain_text("shift accepted by sam")
    first = incoming.locator("#recent tbody tr").first
    expect(first).to_contain_text("ana")
    expect(first).to_contain_text(f"{items} of {items}")
    expect(incoming.locator("#prepare-form")).to_be_visible()
    incoming.context.close()
