"""The admins' webhook routes over a real local receiver: add a subscription (a refused
target answered 422 with its reason), an event delivered and seen in the log with its
attempt, redelivered and received again with the same webhook-id; other roles refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from dispatch.registry.webhook_store import WebhookStore
from dispatch.settings import WebSettings
from dispatch.webhooks.deliverer import Deliverer
from dispatch.webhooks.manage import add_subscription
from tests.conftest import served
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import (
    PASSWORD,
    WebRoom,
    web_room,
)
from tests.dispatch.webhooks.receiver import Receiver
from tests.dispatch.webhooks.support import FAST, raise_alarms, wait_for
from tests.web_login import log_in_page

pytestmark = pytest.mark.servers

ROUTES = [("GET", "/webhooks"), ("GET", "/api/webhooks"), ("POST", "/api/webhooks"),
          ("POST", "/api/webhooks/1/disable"), ("POST", "/api/webhooks/1/enable"),
          ("POST", "/api/webhooks/1/rotate-secret"), ("GET", "/api/webhooks/deliveries"),
          ("POST", "/api/webhooks/deliveries/1/redeliver")]


@pytest.fixture
def hooks_room(tmp_path: Path) -> Iterator[WebRoom]:
    with web_room(tmp_path, webhooks=FAST) as made:
        yield made


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def _call(client: Any, method: str, path: str) -> Any:
    return client.request(method, path, json={} if method == "POST" else None)


def test_only_an_admin_reaches_the_webhook_routes(hooks_room: WebRoom) -> None:
    anonymous = hooks_room.client()
    assert {p: _call(anonymous, m, p).status_code for m, p in ROUTES} == {
        p: 401 for _, p in ROUTES}
    for username in ("vera", "ana", "sam", "toni"):
        client = hooks_room.login(username)
        assert {p: _call(client, m, p).status_code for m, p in ROUTES} == {
            p: 403 for _, p in ROUTES}, username


def test_a_loopback_target_is_refused_with_its_reason(tmp_path: Path) -> None:
    with web_room(tmp_path) as strict:
        answer = strict.login("root").post("/api/webhooks",
                                           json={"url": "http://127.0.0.1:9/hook"})
    assert answer.status_code == 422
    assert "target refused" in answer.json()["detail"]
    assert "loopback" in answer.json()["detail"]


def test_add_deliver_log_redeliver_same_id(hooks_room: WebRoom, receiver: Receiver) -> None:
    admin = hooks_room.login("root")
    answer = admin.post("/api/webhooks", json={
        "url": receiver.url + "/hook", "name": "control", "filter": {"types": ["alarm.*"]}})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    receiver.secrets["/hook"] = [made["secret"]]
    listed = admin.get("/api/webhooks").json()["subscriptions"]
    assert [s["id"] for s in listed] == [made["id"]]
    assert "secret" not in listed[0]
    assert made["secret"] not in str(listed)

    deliverer = Deliverer(hooks_room.registry, FAST, "test")
    try:
        raise_alarms(hooks_room.registry, 1, 1)
        wait_for(lambda: len(receiver.arrivals("/hook")) == 1, 10.0, "the first delivery",
                 step=deliverer.run_once)
        log = admin.get("/api/webhooks/deliveries").json()["deliveries"]
        assert len(log) == 1
        assert log[0]["state"] == "delivered"
        assert [(a["outcome"], a["status_code"]) for a in log[0]["attempt_log"]] == [
            ("delivered", 204)]
        assert log[0]["attempt_log"][0]["latency_ms"] >= 0

        again = admin.post(f"/api/webhooks/deliveries/{log[0]['id']}/redeliver")
        assert again.status_code == 200
        assert again.json()["state"] == "pending"
        wait_for(lambda: len(receiver.arrivals("/hook")) == 2, 10.0, "the redelivery",
                 step=deliverer.run_once)
        first, second = receiver.arrivals("/hook")
        assert first == second == log[0]["message_id"]
        attempts = admin.get("/api/webhooks/deliveries").json()["deliveries"][0]["attempt_log"]
        assert len(attempts) == 2

    finally:
        deliverer.stop()

    assert admin.post(f"/api/webhooks/{made['id']}/disable").json()["enabled"] is False
    assert admin.post(f"/api/webhooks/{made['id']}/enable").json()["enabled"] is True
    rotated = admin.post(f"/api/webhooks/{made['id']}/rotate-secret").json()
    assert rotated["secret"] != made["secret"]
    assert rotated["previous_secret_until"]
    assert admin.post("/api/webhooks/deliveries/99999/redeliver").status_code == 404


@pytest.mark.browser
def test_an_admin_redelivers_from_the_page_in_chromium(
        tmp_path: Path, receiver: Receiver, browser: Browser) -> None:
    with web_room(tmp_path, WebSettings(allowed_hosts=["127.0.0.1"]), FAST) as room, \
            served(room.app) as url:
        _, secret = add_subscription(WebhookStore(room.registry), FAST, estate_id=SPEC.id,
                                     name="control", url=receiver.url + "/p",
                                     event_filter={})
        receiver.secrets["/p"] = [secret]
        raise_alarms(room.registry, 1, 1)
        deliverer = Deliverer(room.registry, FAST, "test")
        deliverer.start()
        try:
            wait_for(lambda: len(receiver.arrivals("/p")) == 1, 10.0, "the delivery")
            page = browser.new_context(viewport={"width": 1400, "height": 800}).new_page()
            log_in_page(page, url, "root", PASSWORD)
            page.goto(f"{url}/webhooks")
            row = page.locator("#deliveries tr[data-delivery]")
            expect(row).to_have_count(1)
            expect(row.locator(".attempt")).to_have_count(1)
            expect(row).to_contain_text("delivered")
            row.locator("[data-redeliver]").click()
            expect(page.locator("#result")).to_contain_text("queued again")
            wait_for(lambda: len(receiver.arrivals("/p")) == 2, 10.0, "the redelivery")
            expect(row.locator(".attempt")).to_have_count(2, timeout=10_000)
            page.screenshot(path=str(tmp_path / "webhooks-admin.png"), full_page=True)
        finally:
            deliverer.stop()
        first, second = receiver.arrivals("/p")
        assert first == second

