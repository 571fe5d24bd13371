"""The pages' routes and what their layout, plan and command log ask of the API, in
process on a real SQLite registry: who is offered and served which page, the preview of
an approval against what the approval sends, and the command and audit log."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from dispatch.registry.plan_store import PlanStore
from dispatch.web.pages import PAGES, Page, served
from estate.ports import InboundMessage
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import OTHER_FACILITY, TENANT_FACILITY, WebRoom
from tests.dispatch.web.test_access import _draft, _plan

ESTATE_PAGES = ["Overview", "Plans", "Commands"]


def _titles(room: WebRoom, username: str) -> list[str]:
    layout = room.login(username).get("/api/layout").json()
    assert layout["estate"] == {"id": SPEC.id, "name": SPEC.name, "timezone": SPEC.timezone}
    assert layout["user"]["username"] == username
    assert layout["csrf_token"]
    return [p["title"] for p in layout["pages"]]


def test_the_navigation_offers_each_user_the_pages_it_may_open(room: WebRoom) -> None:
    viewer = _titles(room, "vera")
    assert viewer[:3] == ESTATE_PAGES
    assert "Demand response" in viewer
    assert "Webhooks" not in viewer
    assert "Webhooks" in _titles(room, "root")
    tenant = _titles(room, "tina")
    assert tenant[0] == "Overview"
    assert not set(tenant) & {"Plans", "Commands", "Webhooks"}
    assert room.client().get("/api/layout").status_code == 401


def test_the_strip_reads_the_feed_stale_until_it_brings_a_value(room: WebRoom) -> None:
    viewer = room.login("vera")
    # The in-memory broker is connected, but nothing came: stale, with no age.
    assert viewer.get("/api/feed").json() == {"connected": True, "age_s": None,
                                              "stale": True}
    meter = SPEC.facilities[0].meters[0]
    topic = DeviceId(SPEC.id, SPEC.facilities[0].id, meter.id).topic(Channel.STATUS)
    room.live.handle(InboundMessage(topic, b'{"state":"online"}', 0, True, 0))
    fed = viewer.get("/api/feed").json()
    assert fed["stale"] is False
    assert 0 <= fed["age_s"] < 5
    assert room.client().get("/api/feed").status_code == 401


def test_every_page_checks_the_role_and_the_facility(room: WebRoom) -> None:
    viewer, tenant, admin = room.login("vera"), room.login("tina"), room.login("root")
    for page in PAGES:
        if not served(page):
            continue
        answer = viewer.get(page.path)
        assert answer.status_code == (403 if page.title == "Webhooks" else 200), page
        assert 'id="layout"' in answer.text or answer.status_code == 403, page
        assert '<script src="/static/layout.js">' in admin.get(page.path).text, page
    for path in ("/plans", "/commands"):
        refused = tenant.get(path)
        assert refused.status_code == 403, path
        assert TENANT_FACILITY in refused.json()["detail"]
    assert tenant.get(f"/facility/{TENANT_FACILITY}").status_code == 200
    assert tenant.get(f"/facility/{OTHER_FACILITY}").status_code == 403
    assert viewer.get("/facility/nowhere").status_code == 404
    assert not served(Page("/nothing", "nothing.html", "Nothing"))


def test_the_preview_names_what_the_approval_sends(room: WebRoom) -> None:
    plan_id = _plan(room)
    operator = room.login("ana")
    preview = operator.get(f"/api/plans/{plan_id}/preview").json()
    assert preview["step"] == 0
    assert preview["step_end"] > preview["step_start"]
    named = [(c["asset"], c["action"], c["params"]) for c in preview["commands"]]
    # The battery at its first-step setpoint, and the genset (0 kW) stopped.
    assert ("battery", "set_battery_kw", {"kw": -120.0}) in named
    assert ("genset", "stop", {}) in named
    assert {c["asset"]: c["setpoint_kw"] for c in preview["commands"]} == {
        "battery": -120.0, "genset": 0.0}
    approved = operator.post(f"/api/plans/{plan_id}/approve", json={"revision": 1}).json()
    assert approved["step"] == preview["step"]
    sent = operator.get(f"/api/plans/{plan_id}/commands").json()["commands"]
    assert sorted((c["asset"], c["action"], c["params"]) for c in sent) == sorted(named)
    assert operator.get("/api/plans/999999/preview").status_code == 404
    assert room.login("tina").get(f"/api/plans/{plan_id}/preview").status_code == 403


def test_the_command_log_names_who_decided_and_each_command_with_its_trail(
        room: WebRoom) -> None:
    operator = room.login("ana")
    approved_id = _plan(room)
    assert operator.post(f"/api/plans/{approved_id}/approve", json={}).status_code == 200
    later = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)
    rejected_id = PlanStore(room.registry).save(_draft(later), "schedule", later).id
    assert operator.post(f"/api/plans/{rejected_id}/reject",
                         json={"reason": "genset on maintenance"}).status_code == 200
    log = room.login("vera").get("/api/commands").json()
    assert [(d["plan"], d["action"], d["actor"]) for d in log["decisions"]] == [
        (rejected_id, "plan.rejected", "operator:ana"),
        (approved_id, "plan.approved", "operator:ana")]
    assert log["decisions"][0]["detail"] == {"reason": "genset on maintenance"}
    commands = log["commands"]
    assert {c["asset"] for c in commands} == {"battery", "genset"}
    for c in commands:
        assert c["plan"] == approved_id
        assert c["requested_by"] == "operator:ana"
        assert c["audit"][0]["action"] == "command.pending"
        assert c["status"] in {"pending", "sent"}  # no device answers the in-memory broker
    assert room.login("vera").get("/api/commands", params={"status": "done"}
                                  ).json()["commands"] == []
    viewer = room.login("vera")
    assert viewer.get("/api/commands", params={"status": "lost"}).status_code == 422
    assert viewer.get("/api/commands", params={"limit": 501}).status_code == 422
    assert len(viewer.get("/api/commands", params={"limit": 1}).json()["commands"]) == 1
    assert room.login("tina").get("/api/commands").status_code == 403


def test_a_facility_sees_what_the_newest_plan_asks_of_its_own_assets(room: WebRoom) -> None:
    tenant = room.login("tina")
    path = f"/api/facilities/{TENANT_FACILITY}/plan"
    assert tenant.get(path).json() == {"facility": TENANT_FACILITY, "plan": None,
                                       "status": None, "times": [], "assets": []}
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    draft = _draft(start)
    own = next(a for a in SPEC.assets if a.facility == TENANT_FACILITY)
    shared = next(a for a in SPEC.assets if a.facility is None)
    draft = replace(draft, setpoints={own.id: [10.0, 0.0, 0.0, 5.0],
                                      shared.id: [1.0, 2.0, 3.0, 4.0]})
    plan_id = PlanStore(room.registry).save(draft, "schedule", start).id
    seen = tenant.get(path).json()
    assert (seen["plan"], seen["status"], len(seen["times"])) == (plan_id, "draft", 4)
    assert [(a["id"], a["values"]) for a in seen["assets"]] == [(own.id, [10.0, 0.0, 0.0, 5.0])]
    assert tenant.get(f"/api/facilities/{OTHER_FACILITY}/plan").status_code == 403
    viewer = room.login("vera")
    assert viewer.get(f"/api/facilities/{OTHER_FACILITY}/plan").json()["plan"] == plan_id
    assert viewer.get("/api/facilities/nowhere/plan").status_code == 404
    assert viewer.get("/api/facilities/no%20such/plan").status_code == 422
