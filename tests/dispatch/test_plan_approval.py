"""Approving a plan over HTTP turns its first step into commands that real devices answer.

The plans API is served by uvicorn; the plans are made by ``PlanJob`` against the real
InfluxDB and a registry on SQLite; an operator logs in and approves; commands travel
through a real Mosquitto with the demo's own accounts and ACL (the web view's account
sends them, the simulator's answers them) to the edge's ``CommandHandler`` with
simulated assets. The battery and the genset answer; the chiller,
the well pump and the tenants' loads have no device behind them and time out.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection
from dispatch.__main__ import build_web
from dispatch.accounts.roles import Role
from dispatch.control.approval import approve
from dispatch.control.sender import CommandSender
from dispatch.planning.demand_model import STEP_MS
from dispatch.planning.forecasts import nominal_kw
from dispatch.planning.rolling import PlanJob
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.models import AssetRow, CommandRow
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.plan_views import get_plan
from dispatch.settings import DispatchSettings, PlanningSettings
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from edge.command_executors import SimulatedAssetExecutor, SimulatedBattery, SimulatedGenset
from edge.command_handler import CommandHandler, CommandTarget
from estate.commands import CommandPolicy
from estate.errors import PlanNotFound
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings
from estate.topics import DeviceId
from tests.conftest import DemoBroker, served
from tests.dispatch.registries import sample_registry
from tests.web_login import add_users, logged_in

SPEC = load_estate(SAMPLE_ESTATE)
BATTERY = DeviceId(SPEC.id, "utilities", "battery")
GENSET = DeviceId(SPEC.id, "utilities", "genset")
# A short deadline and no grace: a command nobody answers times out within seconds.
SETTINGS = PlanningSettings(time_limit_s=30, command_deadline_s=2)
BEFORE = 123.0  # the battery's setpoint before the plan: no plan asks for exactly this


@dataclass
class ControlRoom:
    url: str
    registry: Registry
    job: PlanJob
    simulated: SimulatedAssetExecutor
    sender: CommandSender
    http: httpx.Client


@pytest.fixture
def room(demo_broker: DemoBroker, influx_settings: InfluxSettings, store: InfluxV1Store,
         tmp_path: Path) -> Iterator[ControlRoom]:
    registry = sample_registry(tmp_path)
    simulated = SimulatedAssetExecutor({
        BATTERY: SimulatedBattery(max_kw=500, soc_pct=50, setpoint_kw=BEFORE),
        GENSET: SimulatedGenset(max_kw=400)})
    handler = CommandHandler([
        CommandTarget(BATTERY, CommandPolicy.from_mapping(
            {"set_battery_kw": {"kw": {"min": -500, "max": 500}}}), simulated),
        CommandTarget(GENSET, CommandPolicy.from_mapping(
            {"start": {}, "stop": {}, "set_power_kw": {"kw": {"min": 0, "max": 400}}}),
            simulated),
    ], tmp_path / "edge_commands.sqlite")
    add_users(registry, ana=Role.OPERATOR, vera=Role.VIEWER)
    # The devices' side: the demo's simulator account answers for every device.
    edge = MqttConnection(demo_broker.settings("simulator"), f"edge-{uuid.uuid4().hex[:8]}")
    edge.connect()
    handler.start(edge)
    assert edge.wait_subscribed(10), "the edge's subscriptions"
    # The web view's account sends what an operator approves.
    dispatch = MqttConnection(demo_broker.settings("web"), f"web-{uuid.uuid4().hex[:8]}")
    sender = CommandSender(dispatch, CommandStore(registry), estates=[SPEC.id],
                           actor="dispatch:test", answer_grace_s=0, sweep_interval_s=0.1)
    sender.start()
    dispatch.connect()
    assert dispatch.wait_subscribed(10), "the sender's subscription to the answers"
    app = create_app(WebContext(SPEC, store, LiveState(SPEC.id), planning=SETTINGS,
                                registry=registry, sender=sender))
    # With a sender, as in the worker: assets in auto control mode get commands at once.
    job = PlanJob(store, registry, SPEC.id, SETTINGS,
                  sender=sender, nominal_kw=nominal_kw(SPEC))
    try:
        with served(app) as url, logged_in(url, "ana") as http:
            yield ControlRoom(url, registry, job, simulated, sender, http)
    finally:
        sender.close()
        dispatch.close()
        handler.stop()
        edge.close()
        registry.close()


def _commands(room: ControlRoom, plan_id: int, timeout_s: float = 30
              ) -> list[dict[str, Any]]:
    """The plan's commands once every one is final (or as they stand at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = room.http.get(f"/api/plans/{plan_id}/commands")
        assert answer.status_code == 200
        commands: list[dict[str, Any]] = answer.json()["commands"]
        final = {"done", "rejected", "failed", "timed_out"}
        if all(c["status"] in final for c in commands) or time.monotonic() > deadline:
            return commands
        time.sleep(0.2)


def _count_commands(registry: Registry) -> int:
    with registry.reading() as session:
        count = session.scalar(select(func.count()).select_from(CommandRow))
    assert isinstance(count, int)
    return count


def test_an_approved_plan_commands_the_devices_and_each_command_ends_done_or_timed_out(
        room: ControlRoom) -> None:
    now = time.time_ns() // 1_000_000
    first = room.job.run(now_ms=now)
    newer = room.job.run(now_ms=now + STEP_MS)
    assert first is not None
    assert newer is not None
    url = room.url

    listed = room.http.get(f"{url}/api/plans").json()["plans"]
    assert [(p["id"], p["status"]) for p in listed] == [(newer.saved.id, "draft"),
                                                        (first.saved.id, "superseded")]
    for p in listed:
        assert p["cost_saved"] == pytest.approx(p["baseline_cost"] - p["cost"])
        assert p["peak_reduced_kw"] == pytest.approx(p["baseline_peak_kw"] - p["peak_kw"])

    # A superseded plan cannot be approved; neither can a plan that does not exist.
    refused = room.http.post(f"{url}/api/plans/{first.saved.id}/approve",
                         json={})
    assert refused.status_code == 409
    assert "superseded" in refused.json()["detail"]
    assert room.http.post(f"{url}/api/plans/999999/approve", json={}).status_code == 404
    # Who approves is the session's user: a name in the body is refused, never believed.
    bad = room.http.post(f"{url}/api/plans/{newer.saved.id}/approve",
                         json={"operator": "Chief Engineer"})
    assert bad.status_code == 422
    with logged_in(url, "vera") as viewer:
        assert viewer.post(f"{url}/api/plans/{newer.saved.id}/approve", json={}
                           ).status_code == 403
    assert _count_commands(room.registry) == 0

    plan_id = newer.saved.id
    detail = room.http.get(f"{url}/api/plans/{plan_id}").json()
    assert len(detail["times"]) == SETTINGS.horizon_steps
    assert detail["explanation"], "the nominal-load fallback must be explained"
    battery_kw = round(detail["setpoints"]["battery"]["values"][0], 1)

    approved = room.http.post(f"{url}/api/plans/{plan_id}/approve", json={})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["already_approved"], body["step"]) == ("approved", False, 0)
    commands = _commands(room, plan_id)
    assert sorted(c["id"] for c in commands) == sorted(body["commands"])
    by_asset: dict[str, list[dict[str, Any]]] = {}
    for c in commands:
        by_asset.setdefault(c["asset"], []).append(c)

    # The battery took the plan's first-step setpoint and said so.
    [battery] = by_asset["battery"]
    assert (battery["action"], battery["params"], battery["status"]) == (
        "set_battery_kw", {"kw": battery_kw}, "done")
    assert [a["action"] for a in battery["audit"]] == [
        "command.pending", "command.sent", "command.accepted", "command.done"]
    assert battery["audit"][0]["actor"] == "operator:ana"
    held = room.simulated.asset(BATTERY)
    assert isinstance(held, SimulatedBattery)
    assert held.setpoint_kw == battery_kw != BEFORE
    # The genset answered too: started and set, or stopped, as the plan says.
    genset_kw = detail["setpoints"]["genset"]["values"][0]
    expected = ["start", "set_power_kw"] if round(genset_kw, 1) > 0 else ["stop"]
    assert [c["action"] for c in by_asset["genset"]] == expected
    assert {c["status"] for c in by_asset["genset"]} == {"done"}
    # Nobody answers for the chiller plant or the well pump: their commands timed out.
    for asset in ("coldroom", "well"):
        [silent] = by_asset[asset]
        assert (silent["status"], silent["reason"]) == ("timed_out", "timed-out"), asset
        assert silent["audit"][-1]["action"] == "command.timed_out"
    # PV is not commanded.
    assert "metal-roof-pv" not in by_asset

    plan = room.http.get(f"{url}/api/plans/{plan_id}").json()
    assert (plan["status"], plan["approved_by"]) == ("approved", "ana")
    assert [(a["actor"], a["action"]) for a in plan["audit"]][-1] == ("operator:ana",
                                                                       "plan.approved")

    # Approving again sends the same commands: nothing new is recorded or executed.
    count = _count_commands(room.registry)
    again = room.http.post(f"{url}/api/plans/{plan_id}/approve", json={})
    assert again.status_code == 200
    assert again.json()["already_approved"] is True
    assert sorted(again.json()["commands"]) == sorted(body["commands"])
    assert _count_commands(room.registry) == count
    assert [c["status"] for c in _commands(room, plan_id)] == [c["status"] for c in commands]
    # Nor later, in another step: a repeated approval never replays old setpoints.
    later = approve(PlanStore(room.registry), room.sender, plan_id, "ana",
                    now_ms=now + 2 * STEP_MS + 60_000, deadline_s=2, estate_id=SPEC.id)
    assert (later.already_approved, sorted(later.commands)) == (True, sorted(body["commands"]))
    assert _count_commands(room.registry) == count
    # A decided plan cannot be rejected.
    rejected = room.http.post(f"{url}/api/plans/{plan_id}/reject", json={})
    assert rejected.status_code == 409


def test_a_rejected_plan_sends_nothing_and_cannot_be_approved(room: ControlRoom) -> None:
    outcome = room.job.run()
    assert outcome is not None
    plan_id = outcome.saved.id
    url = room.url
    answer = room.http.post(f"{url}/api/plans/{plan_id}/reject",
                        json={"reason": "maintenance on the genset"})
    assert answer.status_code == 200
    late = room.http.post(f"{url}/api/plans/{plan_id}/approve", json={})
    assert late.status_code == 409
    assert "rejected" in late.json()["detail"]
    assert room.http.get(f"{url}/api/plans/{plan_id}/commands").json()["commands"] == []
    plan = room.http.get(f"{url}/api/plans/{plan_id}").json()
    assert plan["audit"][-1]["detail"] == {"reason": "maintenance on the genset"}
    held = room.simulated.asset(BATTERY)
    assert isinstance(held, SimulatedBattery)
    assert held.setpoint_kw == BEFORE


def _control_mode(registry: Registry, mode: str, *assets: str) -> None:
    with registry.writing() as session:
        session.execute(update(AssetRow).where(AssetRow.id.in_(assets)).values(control_mode=mode))


def test_assets_in_auto_mode_get_their_setpoints_without_an_approval(
        room: ControlRoom) -> None:
    _control_mode(room.registry, "auto", "battery")
    now = time.time_ns() // 1_000_000
    mixed = room.job.run(now_ms=now)
    assert mixed is not None
    # Other assets still wait for an operator: the plan is a draft, only the battery moved.
    assert mixed.saved.status == "draft"
    [command] = _commands(room, mixed.saved.id)
    assert command["id"] in mixed.commands
    assert (command["asset"], command["status"]) == ("battery", "done")
    assert command["requested_by"] == f"plan:{mixed.saved.id}"
    planned_kw = round(float(
        room.http.get(f"{room.url}/api/plans/{mixed.saved.id}").json()
        ["setpoints"]["battery"]["values"][0]), 1)
    held = room.simulated.asset(BATTERY)
    assert isinstance(held, SimulatedBattery)
    assert held.setpoint_kw == planned_kw

    # Every commanded asset on auto: the plan is approved as it is made, and sent whole.
    _control_mode(room.registry, "auto", "genset", "dye-batch", "air-precharge", "coldroom",
                  "well")
    # The same horizon again (within its quarter-hour): the draft is rewritten as approved.
    automatic = room.job.run()
    assert automatic is not None
    plan = room.http.get(f"{room.url}/api/plans/{automatic.saved.id}").json()
    assert (plan["status"], plan["approved_by"]) == ("approved", "auto")
    commands = _commands(room, automatic.saved.id)
    assert {c["asset"] for c in commands} >= {"battery", "genset", "coldroom", "well"}
    assert sorted(c["id"] for c in commands) == sorted(automatic.commands)
    statuses: dict[str, set[str]] = {}
    for c in commands:
        statuses.setdefault(c["asset"], set()).add(c["status"])
    assert statuses["battery"] == statuses["genset"] == {"done"}
    assert statuses["coldroom"] == statuses["well"] == {"timed_out"}


def test_the_web_view_serves_the_plans_of_the_registry(
        demo_broker: DemoBroker, influx_settings: InfluxSettings, store: InfluxV1Store,
        tmp_path: Path) -> None:
    """``build_web`` mounts the plans API on the registry and a command sender of its own."""
    registry = sample_registry(tmp_path)
    url = registry.url
    outcome = PlanJob(store, registry, SPEC.id, SETTINGS).run()
    assert outcome is not None
    add_users(registry, vera=Role.VIEWER)
    parts = build_web(DispatchSettings(mqtt=demo_broker.settings("web"), influx=influx_settings,
                                       registry_url=url))
    try:
        assert parts.commands is not None
        with served(parts.app) as web, logged_in(web, "vera") as http:
            listed = http.get(f"{web}/api/plans", params={"limit": 5}).json()
            assert [p["id"] for p in listed["plans"]] == [outcome.saved.id]
            assert listed["plans"][0]["status"] == "draft"
            assert http.get(f"{web}/api/plans", params={"limit": 0}).status_code == 422
            assert http.get(f"{web}/api/plans/{outcome.saved.id + 1}").status_code == 404
    finally:
        parts.close()
        registry.close()


def test_approval_is_refused_for_a_revision_not_seen_or_another_estate(
        room: ControlRoom) -> None:
    now = time.time_ns() // 1_000_000
    made = room.job.run(now_ms=now)
    assert made is not None
    room.job.run(now_ms=now + 1000)  # the same quarter-hour: the draft is planned again
    plan_id = made.saved.id
    detail = room.http.get(f"{room.url}/api/plans/{plan_id}").json()
    assert detail["revision"] == 2
    stale = room.http.post(f"{room.url}/api/plans/{plan_id}/approve",
                       json={"revision": 1})
    assert stale.status_code == 409
    assert "revision 2, you saw 1" in stale.json()["detail"]
    assert _count_commands(room.registry) == 0
    with pytest.raises(PlanNotFound, match="in estate 'elsewhere'"):
        approve(PlanStore(room.registry), room.sender, plan_id, "ana", now_ms=now,
                deadline_s=2, estate_id="elsewhere")
    with pytest.raises(PlanNotFound):
        get_plan(room.registry, plan_id, "elsewhere")
    seen = room.http.post(f"{room.url}/api/plans/{plan_id}/approve",
                      json={"revision": 2})
    assert seen.status_code == 200, seen.text

