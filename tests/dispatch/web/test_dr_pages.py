"""Acceptance: demand response and statements in the operators' view, served by uvicorn
over the real PostgreSQL registry and the real InfluxDB (17 days of simulated history).
Over HTTP: a supervisor enters an order and settles it, a tenant sees its own share and
statement only. In a real headless Chromium: a supervisor logs in, enters an order on the
page and sees it with the tenants' shares; a tenant's user sees only its own statement.
Screenshots are saved beside the test's files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from launcher.servers import InfluxDB
from tests.conftest import served
from tests.dispatch.dr.flow import at, estate, quarter
from tests.dispatch.web.access import PASSWORD
from tests.dispatch.web.dr_room import OTHER, TENANT, DrRoom, dr_room
from tests.web_login import log_in_page, logged_in

pytestmark = pytest.mark.servers


@pytest.fixture
def view(influxdb: InfluxDB, pg_url: str) -> Iterator[tuple[str, DrRoom]]:
    with estate(influxdb.url, "dr_pages", pg_url, time.time_ns() // 1_000_000) as sample, \
            dr_room(sample, allowed_hosts=["127.0.0.1"]) as room, served(room.app) as url:
        yield url, room


def _this_month(room: DrRoom) -> str:
    return datetime.now(ZoneInfo(room.spec.timezone)).strftime("%Y-%m")


def test_orders_and_statements_over_http_on_postgresql_and_influxdb(
        view: tuple[str, DrRoom]) -> None:
    url, room = view
    end = quarter(time.time_ns() // 1_000_000) - 3_600_000
    start = end - 4 * 900_000
    with logged_in(url, "sam", PASSWORD, 60) as supervisor, \
            logged_in(url, "tina", PASSWORD, 60) as tenant, \
            logged_in(url, "ana", PASSWORD, 60) as operator:
        body = {"kind": "cut", "kw": 300.0, "start": at(start).isoformat(),
                "end": at(end).isoformat(), "payment_per_kwh": 0.4, "penalty_per_kwh": 0.6}
        assert operator.post("/api/dr/orders", json=body).status_code == 403
        made = supervisor.post("/api/dr/orders", json=body)
        assert made.status_code == 201, made.text
        shares = {p["facility"]: p["requested_kwh"] for p in made.json()["parts"]}
        assert sum(shares.values()) == pytest.approx(300.0, abs=0.5)
        order_id = made.json()["id"]
        settled = supervisor.post(f"/api/dr/orders/{order_id}/settle")
        assert settled.status_code == 200, settled.text
        assert all(p["settlement"] is not None for p in settled.json()["parts"])
        seen = tenant.get(f"/api/dr/orders/{order_id}").json()
        assert [p["facility"] for p in seen["parts"]] == [TENANT]
        assert seen["parts"][0]["requested_kwh"] == pytest.approx(shares[TENANT])
        month = _this_month(room)
        own = tenant.get(f"/api/statements/{month}")
        assert own.status_code == 200, own.text
        assert [s["facility"] for s in own.json()["statements"]] == [TENANT]
        assert tenant.get(f"/api/statements/{month}/{OTHER}").status_code == 403
        every = supervisor.get(f"/api/statements/{month}").json()
        assert len(every["statements"]) == len(room.spec.facilities)
        assert every["tenants_total"] == pytest.approx(every["estate_bill"]["total"],
                                                       rel=0.005)
        pdf = supervisor.get(every["files"]["pdf"])
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")


@pytest.mark.browser
def test_a_supervisor_enters_an_order_and_a_tenant_sees_its_statement_in_chromium(
        view: tuple[str, DrRoom], browser: Browser, tmp_path: Path) -> None:
    url, room = view
    # Typed on the estate's clock, in a browser on UTC.
    start = datetime.fromtimestamp(quarter(time.time_ns() // 1_000_000) / 1000,
                                   ZoneInfo(room.spec.timezone)) - timedelta(hours=3)
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  timezone_id="UTC")
    page = context.new_page()
    log_in_page(page, url, "sam", PASSWORD)
    page.goto(f"{url}/dr")
    expect(page.locator("#new-order")).to_be_visible()
    page.select_option("#order-kind", "cut")
    page.fill("#order-kw", "250")
    page.fill("#order-start", start.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#order-end", (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#order-payment", "0.4")
    page.click("#order-form button[type=submit]")
    expect(page.locator("#order-result")).to_contain_text("split among", timeout=60_000)
    row = page.locator("#orders tbody tr").first
    expect(row).to_contain_text("split, opted in")
    shown = {f.id for f in room.spec.facilities}
    for facility in shown:
        expect(row.locator(f'.shares [data-facility="{facility}"]')).to_be_visible()
    expect(page.locator("#parts tbody tr")).to_have_count(len(shown))
    expect(page.locator("#shortfall")).to_contain_text("unassigned")
    with logged_in(url, "sam", PASSWORD, 60) as supervisor:
        newest = supervisor.get("/api/dr/orders", params={"limit": 1}).json()["orders"][0]
    assert datetime.fromisoformat(newest["start"]) == start
    page.screenshot(path=str(tmp_path / "dr-supervisor.png"), full_page=True)
    assert (tmp_path / "dr-supervisor.png").stat().st_size > 10_000
    context.close()

    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  timezone_id="UTC")
    page = context.new_page()
    log_in_page(page, url, "tina", PASSWORD)
    page.goto(f"{url}/dr")
    expect(page.locator("#scope")).to_have_text(f"facility {TENANT} only")
    expect(page.locator("#new-order")).to_be_hidden()
    shares = page.locator("#orders tbody tr").first.locator(".shares [data-facility]")
    expect(shares).to_have_count(1)
    assert shares.get_attribute("data-facility") == TENANT
    page.fill("#month", _this_month(room))
    page.click("#month-form button[type=submit]")
    statements = page.locator("#statements tbody tr[data-statement]")
    expect(statements).to_have_count(1, timeout=60_000)
    assert statements.get_attribute("data-statement") == TENANT
    expect(page.locator("#csv")).to_have_attribute("href",
                                                   f"/api/statements/{_this_month(room)}"
                                                   "/statements.csv")
    page.screenshot(path=str(tmp_path / "dr-tenant.png"), full_page=True)
    assert (tmp_path / "dr-tenant.png").stat().st_size > 10_000
    context.close()
