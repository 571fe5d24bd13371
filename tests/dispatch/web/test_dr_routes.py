"""Demand response and statements through the web view, in process: the real app on a real
SQLite registry of the sample estate with 17 days of simulated history in the in-memory
store (``tests.doubles``). Who may do what, each tenant's share, the plan's shortfall, the
settlement, and each tenant's statement (its own only), as CSV and PDF too. The same routes
run against PostgreSQL and InfluxDB in ``test_dr_pages``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dispatch.registry import dr_book
from dispatch.registry.db import Registry
from dispatch.web.dr_orders import shortfall
from tests.dispatch.dr.flow import at, prepared, quarter
from tests.dispatch.web.dr_room import NOW, DrRoom, dr_room
from tests.doubles import InMemoryTimeSeriesStore


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory,
         simulated_history: InMemoryTimeSeriesStore) -> Iterator[DrRoom]:
    """One estate for the module: each test looks at the orders it makes itself."""
    path = tmp_path_factory.mktemp("dr_routes") / "r.db"
    estate = prepared(simulated_history.copy(), Registry(f"sqlite:///{path}"), NOW,
                      simulated=True)
    with dr_room(estate) as made:
        yield made


def _order(start_ms: int, kw: float = 400.0) -> dict[str, object]:
    return {"kind": "cut", "kw": kw, "start": at(start_ms).isoformat(),
            "end": at(start_ms + 4 * 900_000).isoformat(), "payment_per_kwh": 0.4,
            "penalty_per_kwh": 0.6, "programme": "summer"}


START = quarter(NOW) - 5 * 3_600_000


def _count(room: DrRoom) -> int:
    with room.registry.reading() as session:
        return len(dr_book.orders(session, room.spec.id))


def test_anonymous_viewer_and_operator_are_refused_the_changes(room: DrRoom) -> None:
    before = _count(room)
    assert room.client().get("/api/dr/orders").status_code == 401
    assert room.client().post("/api/dr/orders", json=_order(START)).status_code == 401
    assert room.client().get("/api/statements/2026-06").status_code == 401
    for username in ("vera", "ana", "toni"):
        client = room.login(username)
        refused = client.post("/api/dr/orders", json=_order(START))
        assert refused.status_code == 403, (username, refused.text)
        assert "supervisor" in refused.json()["detail"]
        for path, body in (("/api/dr/orders/1/opt", {"opt": "out"}),
                           ("/api/dr/orders/1/settle", None)):
            assert client.post(path, json=body).status_code == 403, (username, path)
    assert _count(room) == before


def test_a_supervisor_enters_opts_and_settles_an_order_with_the_tenants_shares(
        room: DrRoom) -> None:
    supervisor = room.login("sam")
    made = supervisor.post("/api/dr/orders", json=_order(START))
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["status"] == "split"
    assert order["created_by"] == "operator:sam"
    shares = {p["facility"]: p["requested_kwh"] for p in order["parts"]}
    assert set(shares) == {f.id for f in room.spec.facilities}
    assert sum(shares.values()) == pytest.approx(400.0, abs=0.5)  # 400 kW for an hour
    assert shares["foods"] == 0  # critical: asked nothing
    assert order["shortfall"]["unassigned_kw_max"] is not None
    listed = supervisor.get("/api/dr/orders").json()["orders"]
    assert listed[0]["id"] == order["id"], "the newest first"
    assert {s["facility"] for s in listed[0]["shares"]} == set(shares)
    # The window has ended: settled per tenant.
    settled = supervisor.post(f"/api/dr/orders/{order['id']}/settle")
    assert settled.status_code == 200, settled.text
    parts = settled.json()["parts"]
    assert all(p["settlement"] is not None for p in parts)
    assert settled.json()["status"] == "settled"
    again = supervisor.post(f"/api/dr/orders/{order['id']}/settle")
    assert again.status_code == 422
    assert "only a split order" in again.json()["detail"]
    late = supervisor.post(f"/api/dr/orders/{order['id']}/opt", json={"opt": "out"})
    assert late.status_code == 422
    assert "too late" in late.json()["detail"]


def test_bad_orders_are_refused_with_a_reason(room: DrRoom) -> None:
    supervisor = room.login("sam")
    off_step = _order(START) | {"start": at(START + 60_000).isoformat()}
    answer = supervisor.post("/api/dr/orders", json=off_step)
    assert answer.status_code == 422
    assert "15-minute step" in answer.json()["detail"]
    backwards = _order(START) | {"end": at(START - 900_000).isoformat()}
    assert "must end after" in supervisor.post("/api/dr/orders", json=backwards
                                               ).json()["detail"]
    naive = _order(START) | {"start": "2026-07-01T10:00:00"}
    assert supervisor.post("/api/dr/orders", json=naive).status_code == 422
    assert supervisor.post("/api/dr/orders", json=_order(START) | {"kind": "boost"}
                           ).status_code == 422
    assert supervisor.post("/api/dr/orders", json=_order(START, kw=-5)).status_code == 422
    assert supervisor.get("/api/dr/orders/999").status_code == 404
    assert supervisor.post("/api/dr/orders/999/opt", json={"opt": "in"}).status_code == 404
    assert supervisor.post("/api/dr/orders/999/opt", json={"opt": "maybe"}).status_code == 422
    assert supervisor.get("/api/statements/2026-13").status_code == 422
    assert supervisor.get("/api/statements/june").status_code == 422
    # Months no stored reading can fall in (found by the schema fuzzer as a 503).
    for month in ("0001-01", "9999-12"):
        far = supervisor.get(f"/api/statements/{month}")
        assert far.status_code == 422, far.text
        assert "YYYY-MM" in far.text
        assert supervisor.get(f"/api/statements/{month}/statements.csv").status_code == 422


def test_an_order_opted_out_and_in_again(room: DrRoom) -> None:
    supervisor = room.login("sam")
    pending = supervisor.post("/api/dr/orders", json=_order(START) | {"opt": "pending"})
    assert pending.status_code == 201
    assert pending.json()["status"] == "received"
    assert pending.json()["parts"] == []
    order_id = pending.json()["id"]
    out = supervisor.post(f"/api/dr/orders/{order_id}/opt", json={"opt": "out"})
    assert (out.json()["opt"], out.json()["decided_by"]) == ("out", "operator:sam")
    assert supervisor.post(f"/api/dr/orders/{order_id}/opt", json={"opt": "in"}
                           ).json()["opt"] == "in"


def test_a_tenant_sees_its_own_share_and_statement_only(room: DrRoom) -> None:
    room.login("sam").post("/api/dr/orders", json=_order(START))
    tenant = room.login("tina")
    own = room.tenant
    listed = tenant.get("/api/dr/orders").json()
    assert listed["facility"] == own
    assert [s["facility"] for s in listed["orders"][0]["shares"]] == [own]
    detail = tenant.get(f"/api/dr/orders/{listed['orders'][0]['id']}").json()
    assert [p["facility"] for p in detail["parts"]] == [own]
    assert detail["shortfall"]["unassigned_kw_max"] is None
    assert tenant.post(f"/api/dr/orders/{detail['id']}/opt", json={"opt": "out"}
                       ).status_code == 403
    month = tenant.get("/api/statements/2026-06")
    assert month.status_code == 200, month.text
    assert [s["facility"] for s in month.json()["statements"]] == [own]
    assert month.json()["estate_bill"] is None
    assert tenant.get(f"/api/statements/2026-06/{room.other}").status_code == 403
    assert tenant.get("/api/statements/2026-06", params={"facility": room.other}
                      ).status_code == 403
    assert tenant.get(f"/api/statements/2026-06/{own}").json()["facility"] == own
    csv = tenant.get("/api/statements/2026-06/statements.csv")
    assert csv.status_code == 200
    assert {row.split(",")[0] for row in csv.text.splitlines()[1:]} == {own}
    pdf = tenant.get("/api/statements/2026-06/statements.pdf")
    assert pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"].endswith(f"statements-2026-06-{own}.pdf")


def test_the_estate_sees_every_statement_adding_up_to_its_bill(room: DrRoom) -> None:
    viewer = room.login("vera")
    month = viewer.get("/api/statements/2026-06").json()
    facilities = {s["facility"] for s in month["statements"]}
    assert facilities == {f.id for f in room.spec.facilities}
    assert all(s["total"] > 0 for s in month["statements"])
    assert month["tenants_total"] == pytest.approx(month["estate_bill"]["total"], rel=0.005)
    csv = viewer.get(month["files"]["csv"]).text
    assert {row.split(",")[0] for row in csv.splitlines()[1:]} == facilities
    one = viewer.get(f"/api/statements/2026-06/{room.other}").json()
    assert one["facility"] == room.other
    assert viewer.get("/api/statements/2026-06/nowhere").status_code == 404
    assert viewer.get("/dr", headers={"Accept": "text/html"}).status_code == 200


def test_the_plansshortfall_by_tenant_and_a_tenants_part_of_it() -> None:
    detail = {"unassigned_kw": [0.0, 12.5], "plan": {
        "short_steps": [{"time_ms": NOW, "short_kw": 30.0,
                         "by_tenant": {"textile": 20.0, "metal": 10.0}},
                        {"time_ms": NOW + 900_000, "short_kw": 5.0,
                         "by_tenant": {"metal": 5.0}}],
        "setpoints": {"textile": {"chiller": 40.0}, "metal": {"furnace": 0.0}}}}
    estate = shortfall(detail, None)
    assert (estate["planned"], estate["short_kw_max"], estate["unassigned_kw_max"]) == (
        True, 30.0, 12.5)
    assert len(estate["steps"]) == 2
    tenant = shortfall(detail, "textile")
    assert tenant["steps"] == [{"time": at(NOW).isoformat(), "short_kw": 20.0,
                                "by_tenant": {"textile": 20.0}}]
    assert tenant["unassigned_kw_max"] is None
    assert tenant["setpoints"] == {"textile": {"chiller": 40.0}}
    assert shortfall({}, None)["planned"] is False
