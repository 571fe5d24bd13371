"""Approval and rejection, fast: plans saved in a real SQLite registry, commands sent
through the in-memory messaging double of our own port (tests/doubles.py). Over HTTP with
the real broker and devices answering: tests/dispatch/test_plan_approval.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.control.approval import approve, command_id, reject, setpoint_actions
from dispatch.control.sender import CommandSender
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.plan_views import get_plan
from dispatch.registry.records import PlanDraft
from estate.commands import CommandState
from estate.errors import PlanConflict, PlanNotFound
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryMessaging

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
STEP_MS = 15 * 60_000
BATTERY = DeviceId(SPEC.id, "utilities", "battery")
GENSET = DeviceId(SPEC.id, "utilities", "genset")


@dataclass
class Room:
    registry: Registry
    plans: PlanStore
    sender: CommandSender
    messaging: InMemoryMessaging
    commands: CommandStore


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Room]:
    registry = sample_registry(tmp_path)
    messaging = InMemoryMessaging()
    commands = CommandStore(registry)
    sender = CommandSender(messaging, commands, estates=[SPEC.id], actor="dispatch:test")
    sender.start()
    yield Room(registry, PlanStore(registry), sender, messaging, commands)
    sender.close()
    registry.close()


def _draft(start: datetime = START, battery: list[float] | None = None,
           genset: list[float] | None = None, auto: bool = False) -> PlanDraft:
    return PlanDraft(
        estate_id=SPEC.id, horizon_start=start, horizon_end=start + timedelta(hours=1),
        step_minutes=15, auto=auto, solver_status="optimal", mip_gap=0.0, objective=1.0,
        cost=90.0, baseline_cost=100.0, peak_kw=900.0, baseline_peak_kw=1000.0,
        explanation="", setpoints={"battery": battery or [-120.04, 50.0, 0.0, 0.0],
                                   "genset": genset or [0.0, 300.0, 300.0, 0.0],
                                   "metal-roof-pv": [10.0, 20.0, 30.0, 40.0]},
        summary={"currency": "EUR"})


def test_setpoints_become_the_actions_of_contract_v1() -> None:
    assert setpoint_actions("battery", -120.04) == [("set_battery_kw", {"kw": -120.0})]
    assert setpoint_actions("genset", 300.0) == [("start", {}), ("set_power_kw", {"kw": 300.0})]
    assert setpoint_actions("genset", 0.0) == [("stop", {})]
    assert setpoint_actions("pump_tank", 3.0) == [("start", {})]
    assert setpoint_actions("pv", 30.0) == []
    a = command_id(1, "battery", 0, "set_battery_kw", {"kw": -120.0})
    assert a == command_id(1, "battery", 0, "set_battery_kw", {"kw": -120.0})
    assert a != command_id(1, "battery", 1, "set_battery_kw", {"kw": -120.0})


def test_approval_sends_the_current_steps_commands_once(room: Room) -> None:
    saved = room.plans.save(_draft(), "schedule", START - timedelta(minutes=2))
    assert saved.status == "draft"
    # Five minutes into the first step.
    done = approve(room.plans, room.sender, saved.id, "ana", now_ms=START_MS + 300_000,
                   deadline_s=60, estate_id=SPEC.id, revision=1)
    assert (done.already_approved, done.step) == (False, 0)
    sent = [(m.topic, json.loads(m.payload)["action"], json.loads(m.payload)["params"])
            for m in room.messaging.published]
    assert sent == [
        (BATTERY.topic(Channel.COMMAND_REQUEST), "set_battery_kw", {"kw": -120.0}),
        (GENSET.topic(Channel.COMMAND_REQUEST), "stop", {}),
    ], "the PV plant takes no command"
    assert len(done.commands) == 2
    for cid in done.commands:
        record = room.commands.get(cid)
        assert record is not None
        assert record.status is CommandState.SENT
        assert record.requested_by == "operator:ana"
    # Approving again sends nothing and answers what the approval sent.
    again = approve(room.plans, room.sender, saved.id, "ana", now_ms=START_MS + STEP_MS,
                    deadline_s=60, estate_id=SPEC.id)
    assert (again.already_approved, again.step, set(again.commands)) == (
        True, 0, set(done.commands))
    assert len(room.messaging.published) == 2
    audit = [a["action"] for a in get_plan(room.registry, saved.id)["audit"]]
    assert audit == ["plan.draft", "plan.approved", "plan.approve_again"]


def test_only_the_newest_draft_seen_in_time_can_be_approved(room: Room) -> None:
    first = room.plans.save(_draft(), "schedule", START - timedelta(minutes=2))
    again = room.plans.save(_draft(battery=[1.0, 1.0, 1.0, 1.0]), "schedule",
                            START - timedelta(minutes=1))
    assert (again.id, again.revision) == (first.id, 2), "the same horizon: rewritten in place"
    with pytest.raises(PlanConflict, match="revision 2, you saw 1"):
        approve(room.plans, room.sender, first.id, "ana", now_ms=START_MS, deadline_s=60,
                revision=1)
    newer = room.plans.save(_draft(START + timedelta(minutes=15)), "schedule", START)
    with pytest.raises(PlanConflict, match=f"plan {first.id} is superseded"):
        approve(room.plans, room.sender, first.id, "ana", now_ms=START_MS, deadline_s=60)
    with pytest.raises(PlanConflict, match="too late"):
        approve(room.plans, room.sender, newer.id, "ana",
                now_ms=START_MS + 2 * STEP_MS, deadline_s=60)
    with pytest.raises(PlanNotFound, match="in estate 'elsewhere'"):
        approve(room.plans, room.sender, newer.id, "ana", now_ms=START_MS, deadline_s=60,
                estate_id="elsewhere")
    assert room.messaging.published == []


def test_a_rejected_plan_sends_nothing_and_cannot_be_approved(room: Room) -> None:
    saved = room.plans.save(_draft(), "schedule", START - timedelta(minutes=2))
    reject(room.plans, saved.id, "ana", now_ms=START_MS, reason="genset maintenance")
    with pytest.raises(PlanConflict, match="rejected"):
        approve(room.plans, room.sender, saved.id, "ana", now_ms=START_MS, deadline_s=60)
    with pytest.raises(PlanConflict, match="only a draft"):
        reject(room.plans, saved.id, "ana", now_ms=START_MS)
    assert room.messaging.published == []
    detail = get_plan(room.registry, saved.id, SPEC.id)
    assert detail["status"] == "rejected"
    assert detail["audit"][-1]["detail"] == {"reason": "genset maintenance"}


def test_a_decided_plan_is_left_alone_by_the_next_run_unless_an_event_asks(room: Room) -> None:
    saved = room.plans.save(_draft(auto=True), "schedule", START - timedelta(minutes=2))
    assert saved.status == "approved"
    kept = room.plans.save(_draft(), "schedule", START - timedelta(minutes=1))
    assert (kept.id, kept.written) == (saved.id, False)
    event = room.plans.save(_draft(), "event:asset-offline", START - timedelta(minutes=1))
    assert event.written
    assert event.id != saved.id
