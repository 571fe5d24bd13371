"""The control room's routes (alarms, incidents and crews, the shift log and handover)
against the real registry on SQLite and on PostgreSQL, fed by the worker's own step: the
board sorted by severity then age, each operator's step under the session's name (never
the body's), bad input refused with a reason, lists paged, a tenant's account confined to
its facility, and an SLA breach shown on its incident."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.registry import incident_desk, outbox
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import TENANT_FACILITY, WebRoom
from tests.dispatch.web.control_room import (
    OTHER_METER,
    TENANT_METER,
    room_on,
    step,
    transition,
)

NOW = datetime.now(UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def croom(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebRoom]:
    url = (f"sqlite:///{tmp_path / 'registry.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    with room_on(url) as made:
        yield made


def _raise_three(room: WebRoom) -> None:
    step(room.registry, [
        transition("raise", OTHER_METER, "no-data", NOW - timedelta(minutes=30), "medium"),
        transition("raise", TENANT_METER, "no-data", NOW - timedelta(minutes=20), "high"),
        transition("raise", "estate", "capacity", NOW - timedelta(minutes=10), "critical",
                   "capacity"),
        transition("raise", OTHER_METER, "stuck", NOW - timedelta(minutes=40), "high",
                   "stuck")])


def _id(room: WebRoom, source: str, rule: str) -> int:
    board = room.login("vera").get("/api/alarms").json()["alarms"]
    return next(a["id"] for a in board if (a["source"], a["rule_id"]) == (source, rule))


def test_the_board_is_sorted_and_an_operator_acknowledges_shelves_and_comments(
        croom: WebRoom) -> None:
    _raise_three(croom)
    viewer = croom.login("vera")
    board = viewer.get("/api/alarms").json()
    assert [(a["severity"], a["source"]) for a in board["alarms"]] == [
        ("critical", "estate"), ("high", OTHER_METER), ("high", TENANT_METER),
        ("medium", OTHER_METER)]
    assert board["timezone"] == "Europe/Athens"
    first = viewer.get("/api/alarms", params={"limit": 1}).json()
    assert (len(first["alarms"]), first["total"], first["next_offset"]) == (1, 4, 1)
    assert viewer.get("/api/alarms", params={"limit": 0}).status_code == 422
    assert viewer.get("/api/alarms", params={"limit": 10_000}).status_code == 422

    operator = croom.login("ana")
    alarm = _id(croom, TENANT_METER, "no-data")
    forged = operator.post(f"/api/alarms/{alarm}/acknowledge", json={"by": "Chief"})
    assert forged.status_code == 422
    assert "Chief" not in forged.text
    acked = operator.post(f"/api/alarms/{alarm}/acknowledge", json={"note": "on it"})
    assert acked.status_code == 200, acked.text
    assert (acked.json()["state"], acked.json()["acknowledged_by"]) == ("acknowledged", "ana")
    for bad in ({"minutes": 0, "reason": "x"}, {"minutes": 2000, "reason": "x"},
                {"minutes": 30}, {"minutes": 30, "reason": "   "}):
        refused = operator.post(f"/api/alarms/{alarm}/shelve", json=bad)
        assert refused.status_code == 422, bad
        assert refused.json()["detail"][0]["loc"][-1] in {"minutes", "reason"}
    shelved = operator.post(f"/api/alarms/{alarm}/shelve",
                            json={"minutes": 30, "reason": "meter swap"}).json()
    assert (shelved["state"], shelved["shelved_by"]) == ("shelved", "ana")
    until = datetime.fromisoformat(shelved["shelved_until"])
    assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)
    assert [a["id"] for a in viewer.get("/api/alarms", params={"state": "shelved"}
                                        ).json()["alarms"]] == [alarm]
    noted = operator.post(f"/api/alarms/{alarm}/comment", json={"text": "fitter called"})
    assert [(s["action"], s["by"]) for s in noted.json()["steps"]][-3:] == [
        ("acknowledged", "ana"), ("shelved", "ana"), ("comment", "ana")]
    assert operator.post(f"/api/alarms/{alarm}/comment", json={"text": ""}
                         ).status_code == 422
    back = operator.post(f"/api/alarms/{alarm}/unshelve").json()
    assert back["state"] == "acknowledged"
    assert operator.post("/api/alarms/999999/acknowledge", json={}).status_code == 404
    assert viewer.post(f"/api/alarms/{alarm}/acknowledge", json={}).status_code == 403
    with croom.registry.reading() as session:
        types = [e.type for e in outbox.events(session, SPEC.id)
                 if e.subject_id == str(alarm)]
    assert "alarm.acknowledged" in types
    assert "alarm.shelved" in types


def test_a_tenant_sees_and_moves_its_own_facility_only(croom: WebRoom) -> None:
    _raise_three(croom)
    tenant = croom.login("tina")
    board = tenant.get("/api/alarms").json()
    assert [a["source"] for a in board["alarms"]] == [TENANT_METER]
    assert board["facility"] == TENANT_FACILITY
    other = _id(croom, OTHER_METER, "no-data")
    estate = _id(croom, "estate", "capacity")
    assert tenant.get(f"/api/alarms/{other}").status_code == 403
    toni = croom.login("toni")
    for alarm in (other, estate):
        assert toni.post(f"/api/alarms/{alarm}/acknowledge", json={}).status_code == 403
    own = _id(croom, TENANT_METER, "no-data")
    assert toni.post(f"/api/alarms/{own}/acknowledge", json={}).json()["acknowledged_by"] \
        == "toni"
    incidents = tenant.get("/api/incidents").json()["incidents"]
    assert incidents, "triage opened the tenant's incident"
    assert {i["facility"] for i in incidents} == {TENANT_FACILITY}
    made = toni.post("/api/incidents", json={"key": "tenant-key-1", "title": "leak",
                                             "severity": "low", "skill": "water"})
    assert made.json()["facility"] == TENANT_FACILITY
    assert toni.post("/api/incidents", json={"key": "tenant-key-2", "title": "leak",
                                             "severity": "low", "skill": "water",
                                             "facility": "foods"}).status_code == 403
    for path in ("/api/shift/log", "/api/shift/handover"):
        assert tenant.get(path).status_code == 403, path
    assert toni.post("/api/shift/log", json={"text": "x"}).status_code == 403


def test_incidents_are_opened_assigned_reassigned_and_closed_with_a_reason(
        croom: WebRoom) -> None:
    operator = croom.login("ana")
    body = {"key": "form-0001", "title": "Smell of gas at the metal works",
            "severity": "high", "skill": "gas", "facility": "metal", "note": "caller: guard"}
    made = operator.post("/api/incidents", json=body)
    assert made.status_code == 201, made.text
    again = operator.post("/api/incidents", json=body)
    assert again.json()["id"] == made.json()["id"], "a form sent twice opens one"
    incident = made.json()["id"]
    assert made.json()["opened_by"] == "ana"
    for bad, status in (({**body, "key": "form-0002", "skill": "welding"}, 422),
                        ({**body, "key": "form-0003", "facility": "nowhere"}, 422),
                        ({**body, "key": "form-0004", "severity": "dire"}, 422),
                        ({**body, "key": "x"}, 422), ({**body, "opened_by": "Chief"}, 422)):
        answer = operator.post("/api/incidents", json=bad)
        assert answer.status_code == status, (bad, answer.text)
        assert answer.json()["detail"]
    assigned = operator.post(f"/api/incidents/{incident}/assign", json={"crew": "gas-on-call"})
    assert (assigned.json()["status"], assigned.json()["crew"], assigned.json()["pinned"]) \
        == ("assigned", "gas-on-call", True)
    moved = operator.post(f"/api/incidents/{incident}/assign", json={"crew": "pipes"}).json()
    assert moved["crew"] == "pipes"
    assert [(s["action"], s["by"]) for s in moved["steps"]] == [
        ("opened", "ana"), ("assigned", "ana"), ("reassigned", "ana")]
    assert operator.post(f"/api/incidents/{incident}/assign", json={"crew": "nobody"}
                         ).status_code == 404
    crews = {c["id"]: c for c in operator.get("/api/crews").json()["crews"]}
    assert crews["pipes"]["load"] == 1
    assert crews["pipes"]["skills"] == ["gas", "metering", "water"]
    assert crews["pipes"]["shifts"]
    assert crews["pipes"]["position"]
    arrived = operator.post(f"/api/incidents/{incident}/on-site").json()
    assert (arrived["status"], arrived["on_site_at"] is not None) == ("on_site", True)
    down = operator.post("/api/crews/gas-on-call/availability", json={"available": False})
    gas = next(c for c in down.json()["crews"] if c["id"] == "gas-on-call")
    assert (gas["available"], gas["on_shift"]) == (False, False)
    assert operator.post("/api/crews/nobody/availability", json={"available": True}
                         ).status_code == 404
    assert croom.login("toni").post("/api/crews/pipes/availability",
                                    json={"available": False}).status_code == 403
    assert operator.post(f"/api/incidents/{incident}/close", json={"reason": ""}
                         ).status_code == 422
    closed = operator.post(f"/api/incidents/{incident}/close",
                           json={"reason": "valve shut, no leak found"}).json()
    assert (closed["status"], closed["closed_by"], closed["close_reason"]) == (
        "closed", "ana", "valve shut, no leak found")
    refused = operator.post(f"/api/incidents/{incident}/assign", json={"crew": "pipes"})
    assert refused.status_code == 409
    assert "closed" in refused.json()["detail"]
    assert operator.get("/api/incidents").json()["incidents"] == []
    assert croom.login("vera").post(f"/api/incidents/{incident}/close",
                                    json={"reason": "x"}).status_code == 403


def test_an_sla_breach_is_shown_on_its_incident(croom: WebRoom) -> None:
    with croom.registry.writing() as session:
        late = incident_desk.open_incident_by_operator(
            session, SPEC.id, "late-one", "Feeder tripped", "critical",
            "electrical", "ana", NOW - timedelta(minutes=20), facility="utilities")
    assert step(croom.registry, []).sla_breaches == 1
    listed = croom.login("vera").get("/api/incidents").json()["incidents"]
    shown = next(i for i in listed if i["id"] == int(late.id))
    assert shown["sla"]["response_breached"] is True
    assert [b["sla"] for b in shown["sla_breaches"]] == ["response"]


def test_the_shift_log_and_a_handover_the_incoming_operator_acknowledges(
        croom: WebRoom) -> None:
    _raise_three(croom)
    ana, sam = croom.login("ana"), croom.login("sam")
    entry = ana.post("/api/shift/log", json={"kind": "open_item", "text": "check pump 2",
                                             "key": "entry-0001"})
    assert entry.status_code == 201, entry.text
    assert entry.json()["by"] == "ana"
    assert entry.json()["open"] is True
    assert ana.post("/api/shift/log", json={"kind": "gossip", "text": "x"}).status_code == 422
    assert ana.post("/api/shift/log", json={"text": "x", "by": "sam"}).status_code == 422
    log = croom.login("vera").get("/api/shift/log").json()
    assert [e["text"] for e in log["entries"]] == ["check pump 2"]
    assert ana.post("/api/shift/handover", json={"incoming": "nobody"}).status_code == 422
    assert ana.post("/api/shift/handover", json={"incoming": "vera"}).status_code == 422
    made = ana.post("/api/shift/handover", json={"incoming": "sam", "note": "quiet night"})
    assert made.status_code == 201, made.text
    handover = made.json()
    assert (handover["outgoing"], handover["incoming"]) == ("ana", "sam")
    keys = [a["key"] for a in handover["alarms"]] + [i["key"] for i in handover["incidents"]]
    assert len(handover["alarms"]) == 4
    assert handover["incidents"]
    assert [e["text"] for e in handover["entries"]] == ["check pump 2"]
    path = f"/api/shift/handover/{handover['id']}/accept"
    assert ana.post(path, json={"acknowledged": keys}).status_code == 409, "not for ana"
    partly = sam.post(path, json={"acknowledged": keys[:-1]})
    assert partly.status_code == 409
    assert "1 not acknowledged" in partly.json()["detail"]
    accepted = sam.post(path, json={"acknowledged": keys})
    assert accepted.status_code == 200, accepted.text
    done = accepted.json()
    assert done["accepted"]
    assert done["accepted_at"] >= done["prepared_at"]
    assert all(x["acknowledged"] for x in done["alarms"] + done["incidents"])
    state = sam.get("/api/shift/handover").json()
    assert state["waiting"] is None
    assert state["recent"][0] | {"prepared_at": None, "accepted_at": None} == {
        "id": handover["id"], "outgoing": "ana", "incoming": "sam", "prepared_at": None,
        "accepted_at": None, "items": len(keys), "acknowledged": len(keys)}
    item = entry.json()["id"]
    resolved = sam.post(f"/api/shift/log/{item}/resolve").json()
    assert (resolved["open"], resolved["resolved_by"]) == (False, "sam")
