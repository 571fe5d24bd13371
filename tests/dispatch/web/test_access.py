"""Who may call what: anonymous requests, each role, a tenant's account, and requests a
browser would make for another site. The routes are enumerated from the app itself, so a
route added later is checked without anyone remembering to."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from dispatch.registry.accounts import ApiTokenRow, UserRow
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.records import PlanDraft
from dispatch.web.app import api_routes, unguarded_routes
from dispatch.web.auth import PUBLIC_ROUTES
from estate.ports import InboundMessage
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import (
    ORIGIN,
    OTHER_FACILITY,
    PASSWORD,
    TENANT_FACILITY,
    WebRoom,
)

# A value for every path parameter of the app; a route with a new one fails here until
# it is given one, so it cannot escape the enumeration.
PATH_VALUES = {"plan_id": "1", "username": "vera", "token_id": "1",
               "name": "swagger-ui.css", "order_id": "1", "month": "2026-11",
               "facility_id": TENANT_FACILITY, "subscription_id": "1",
               "delivery_id": "1", "alarm_id": "1", "incident_id": "1", "entry_id": "1",
               "handover_id": "1", "crew_id": "pipes"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(room: WebRoom) -> list[tuple[str, str]]:
    found = []
    for method, template, _ in api_routes(room.app):
        names = re.findall(r"{(\w+)}", template)
        missing = [n for n in names if n not in PATH_VALUES]
        assert not missing, f"{template}: give PATH_VALUES a value for {missing}"
        path = re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], template)
        if method != "HEAD":
            found.append((method, path))
    return found


def _call(client: Any, method: str, path: str) -> Any:
    return client.request(method, path, json={} if method in UNSAFE else None)


def _draft(start: datetime) -> PlanDraft:
    return PlanDraft(
        estate_id=SPEC.id, horizon_start=start, horizon_end=start + timedelta(hours=1),
        step_minutes=15, auto=False, solver_status="optimal", mip_gap=0.0, objective=1.0,
        cost=90.0, baseline_cost=100.0, peak_kw=900.0, baseline_peak_kw=1000.0,
        explanation="", setpoints={"battery": [-120.0, 50.0, 0.0, 0.0],
                                   "genset": [0.0, 300.0, 300.0, 0.0]},
        summary={"currency": "EUR"})


def _plan(room: WebRoom) -> int:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    return PlanStore(room.registry).save(_draft(start), "schedule", start).id


def test_every_route_asks_for_a_role_or_is_listed_public(room: WebRoom) -> None:
    assert unguarded_routes(room.app) == []
    routes = _routes(room)
    assert len(routes) >= 20, routes
    assert {r for r in routes if r in PUBLIC_ROUTES} == set(PUBLIC_ROUTES)


def test_anonymous_gets_401_everywhere_but_the_public_routes(room: WebRoom) -> None:
    client = room.client()
    refused = []
    for method, path in _routes(room):
        if (method, path) in PUBLIC_ROUTES:
            continue
        status = _call(client, method, path).status_code
        if status != 401:
            refused.append((method, path, status))
    assert refused == []
    assert client.get("/login").status_code == 200
    assert client.get("/api/health").status_code in {200, 503}
    assert client.get("/static/login.js").status_code == 200
    # A browser asking for the page is led to the login.
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 401
    assert 'url=/login' in page.text


def test_a_viewer_reads_everything_and_changes_nothing(room: WebRoom) -> None:
    plan_id = _plan(room)
    viewer = room.login("vera")
    for method, path in _routes(room):
        if (method, path) in PUBLIC_ROUTES or method not in UNSAFE:
            continue
        if path == "/api/session":
            continue  # logging itself out is the one change a viewer may make
        answer = viewer.request(method, path.replace("/1/", f"/{plan_id}/"), json={})
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
    assert viewer.get(f"/api/plans/{plan_id}").json()["status"] == "draft"
    assert viewer.get("/api/estate").status_code == 200
    assert room.messaging.published == []


def test_the_approver_in_the_audit_log_is_the_session_user_never_the_body(
        room: WebRoom) -> None:
    plan_id = _plan(room)
    operator = room.login("ana")
    forged = operator.post(f"/api/plans/{plan_id}/approve", json={"operator": "Chief"})
    assert forged.status_code == 422
    assert "Chief" not in forged.text, "the refused input is not echoed"
    approved = operator.post(f"/api/plans/{plan_id}/approve", json={"revision": 1})
    assert approved.status_code == 200, approved.text
    plan = operator.get(f"/api/plans/{plan_id}").json()
    assert plan["approved_by"] == "ana"
    assert plan["audit"][-1]["actor"] == "operator:ana"
    assert room.messaging.published, "the approval sent its commands"


def test_a_tenant_sees_its_facility_only(room: WebRoom) -> None:
    tenant = room.login("tina")
    facilities = [f["id"] for f in tenant.get("/api/estate").json()["facilities"]]
    assert facilities == [TENANT_FACILITY]
    window = {"start": "2026-11-26T00:00:00Z", "end": "2026-11-26T01:00:00Z"}
    assert tenant.get("/api/readings", params=window).status_code == 200
    other = tenant.get("/api/readings", params=window | {"facility": OTHER_FACILITY})
    assert other.status_code == 403
    assert TENANT_FACILITY in other.json()["detail"]
    assert tenant.get("/api/forecast", params=window).json()["facility"] == TENANT_FACILITY
    assert tenant.get("/api/forecast", params=window | {"facility": OTHER_FACILITY}
                      ).status_code == 403
    for path in ("/api/plans", "/api/plans/1", "/api/plans/1/commands"):
        assert tenant.get(path).status_code == 403, path
    # A tenant's operator cannot move the estate's shared assets either.
    plan_id = _plan(room)
    assert room.login("toni").post(f"/api/plans/{plan_id}/approve", json={}
                                   ).status_code == 403
    # Live values: only the tenant's meters.
    for facility in (TENANT_FACILITY, OTHER_FACILITY):
        meter = next(f for f in SPEC.facilities if f.id == facility).meters[0]
        topic = DeviceId(SPEC.id, facility, meter.id).topic(Channel.STATUS)
        room.live.handle(InboundMessage(topic, b'{"state":"online"}', 0, True, 0))
    status = tenant.get("/api/live").json()["status"]
    assert {s["facility"] for s in status} == {TENANT_FACILITY}
    assert len(room.login("vera").get("/api/live").json()["status"]) == 2


def test_forged_origin_missing_csrf_and_foreign_host_are_refused(room: WebRoom) -> None:
    plan_id = _plan(room)
    operator = room.login("ana")
    path = f"/api/plans/{plan_id}/reject"
    forged = operator.post(path, json={}, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403
    assert "cross-origin" in forged.json()["detail"]
    assert operator.post(path, json={}, headers={"Origin": "null"}).status_code == 403
    assert operator.post(path, json={}, headers={"Sec-Fetch-Site": "cross-site"}
                         ).status_code == 403
    no_token = operator.post(path, json={}, headers={"X-CSRF-Token": ""})
    assert no_token.status_code == 403
    assert "CSRF" in no_token.json()["detail"]
    assert operator.post(path, json={}, headers={"X-CSRF-Token": "guess"}).status_code == 403
    foreign = operator.get("/api/estate", headers={"Host": "rebound.example"})
    assert foreign.status_code == 400
    # A login from another site is refused too (before any password is checked).
    assert room.client().post("/api/session", json={"username": "ana", "password": PASSWORD},
                              headers={"Origin": "http://evil.example"}).status_code == 403
    assert operator.get(f"/api/plans/{plan_id}").json()["status"] == "draft"
    # With all of it right, the same request passes.
    assert operator.post(path, json={"reason": "test"}).status_code == 200


def test_security_headers_on_every_answer(room: WebRoom) -> None:
    client = room.client()
    for path in ("/login", "/api/health", "/api/estate", "/static/app.js"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src 'self';" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"


def test_session_cookie_logout_and_a_disabled_user(room: WebRoom) -> None:
    client = room.client()
    answer = client.post("/api/session", json={"username": "vera", "password": PASSWORD})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" not in cookie, "plain HTTP by default; cookie_secure for TLS"
    csrf = answer.json()["csrf_token"]
    assert client.get("/api/session").json()["user"]["username"] == "vera"
    assert client.delete("/api/session", headers={"X-CSRF-Token": csrf,
                                                  "Origin": ORIGIN}).status_code == 200
    assert client.get("/api/session").status_code == 401
    assert room.client().post("/api/session", json={"username": "vera",
                                                    "password": "wrong password"}
                              ).status_code == 401
    # An admin disables a user: its session ends at once.
    viewer = room.login("vera")
    admin = room.login("root")
    assert admin.patch("/api/users/vera", json={"disabled": True}).status_code == 200
    assert viewer.get("/api/estate").status_code == 401
    assert room.client().post("/api/session", json={"username": "vera",
                                                    "password": PASSWORD}
                              ).status_code == 401


def test_admin_manages_users_and_tokens_shown_once_and_hashed_at_rest(
        room: WebRoom) -> None:
    admin = room.login("root")
    made = admin.post("/api/users", json={"username": "mo", "password": "a long password",
                                          "role": "viewer", "facility": TENANT_FACILITY})
    assert made.status_code == 201, made.text
    assert admin.post("/api/users", json={"username": "mo", "password": "a long password",
                                          "role": "viewer"}).status_code == 409
    assert admin.post("/api/users", json={"username": "x", "password": "short",
                                          "role": "viewer"}).status_code == 422
    assert admin.post("/api/users", json={"username": "y", "password": "a long password",
                                          "role": "viewer", "facility": "nowhere"}
                      ).status_code == 422
    assert admin.patch("/api/users/mo", json={"role": "operator", "unbind": True}
                       ).json() == {"username": "mo", "role": "operator", "facility": None,
                                    "disabled": False}
    token = admin.post("/api/users/mo/tokens", json={"name": "scada"}).json()
    secret = token["token"]
    listed = admin.get("/api/users/mo/tokens").json()["tokens"]
    assert [t["name"] for t in listed] == ["scada"]
    assert secret not in str(listed), "a token is shown once, when made"
    with room.registry.reading() as session:
        stored = [r.token_hash for r in session.scalars(select(ApiTokenRow))]
        hashes = [r.password_hash for r in session.scalars(select(UserRow))]
    assert secret not in stored
    assert all(h.startswith("$argon2id$") for h in hashes)
    machine = room.client(headers={"Authorization": f"Bearer {secret}"})
    assert machine.get("/api/session").json()["user"]["username"] == "mo"
    assert machine.get("/api/plans").status_code == 200
    # A bearer token needs no CSRF token (a browser never sends one by itself).
    assert machine.post("/api/plans/999/reject", json={}).status_code == 404
    assert admin.delete(f"/api/tokens/{token['id']}").json()["revoked"] is True
    assert machine.get("/api/plans").status_code == 401
    # The password is reset: the old one stops working.
    assert admin.post("/api/users/mo/password", json={"password": "another long one"}
                      ).status_code == 200
    assert room.client().post("/api/session", json={"username": "mo",
                                                    "password": "a long password"}
                              ).status_code == 401
    room.login("mo", "another long one")
    # The last admin cannot demote or disable itself.
    assert admin.patch("/api/users/root", json={"role": "viewer"}).status_code == 409
    assert admin.get("/api/users").status_code == 200
