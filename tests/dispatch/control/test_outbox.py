"""Commands as an outbox, fast: an approval writes its commands in its own transaction, and a
sender delivers them from the registry, in their order, once, whoever crashed in between.
A real SQLite registry file and the in-memory messaging double of our own port; the same
with the web view's process killed after the commit, against the real Mosquitto and
devices: tests/dispatch/test_failover.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dispatch.control import approval
from dispatch.control.approval import approve, decide_step
from dispatch.control.sender import CommandSender
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.models import CommandRow, PlanRow
from dispatch.registry.outbox import events
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.records import CommandableAsset, PlanDraft, PlanSetpoints, StepCommands
from estate.commands import CommandResponse, CommandState, ResponseStatus
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryMessaging

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
CLAIM_S = 10.0
BATTERY = DeviceId(SPEC.id, "utilities", "battery")
GENSET = DeviceId(SPEC.id, "utilities", "genset")


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Room:
    registry: Registry
    plans: PlanStore
    commands: CommandStore
    plan_id: int


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Room]:
    registry = sample_registry(tmp_path)
    plans = PlanStore(registry)
    draft = PlanDraft(
        estate_id=SPEC.id, horizon_start=START, horizon_end=START + timedelta(hours=1),
        step_minutes=15, auto=False, solver_status="optimal", mip_gap=0.0, objective=1.0,
        cost=90.0, baseline_cost=100.0, peak_kw=900.0, baseline_peak_kw=1000.0,
        explanation="", setpoints={"battery": [-120.0, 0.0, 0.0, 0.0],
                                   "genset": [300.0, 300.0, 0.0, 0.0],
                                   "metal-roof-pv": [10.0, 20.0, 30.0, 40.0]},
        summary={"currency": "EUR"})
    saved = plans.save(draft, "schedule", START - timedelta(minutes=2))
    yield Room(registry, plans, CommandStore(registry), saved.id)
    registry.close()


def _sender(room: Room, messaging: InMemoryMessaging, clock: Clock) -> CommandSender:
    # Not started: no sweeper thread, so each test says when delivery runs.
    return CommandSender(messaging, room.commands, estates=[SPEC.id], actor="dispatch:test",
                         claim_s=CLAIM_S, clock=clock)


class Crash(Exception):
    """The process dies here."""


def _crash_after_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(name: str) -> None:
        if name == "approval-committed":
            raise Crash(name)

    monkeypatch.setattr(approval, "fault_point", crash)


def _rows(room: Room) -> list[CommandRow]:
    with room.registry.reading() as session:
        return list(session.scalars(select(CommandRow).where(CommandRow.plan_id == room.plan_id)
                                    .order_by(CommandRow.position)))


def _sent(messaging: InMemoryMessaging) -> list[tuple[str, str]]:
    return [(m.topic, json.loads(m.payload)["action"]) for m in messaging.published]


def test_a_crash_after_the_approvals_commit_loses_no_command(
        room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    now = START_MS + 60_000
    first = InMemoryMessaging()
    crashed = _sender(room, first, Clock(now))
    _crash_after_commit(monkeypatch)
    with pytest.raises(Crash):
        approve(room.plans, crashed, room.plan_id, "ana", now_ms=now, deadline_s=120,
                estate_id=SPEC.id)
    # Committed together: the approval and its commands, pending, in their order.
    rows = _rows(room)
    assert [(r.asset_id, r.action, r.position, r.status) for r in rows] == [
        ("battery", "set_battery_kw", 0, "pending"), ("genset", "start", 1, "pending"),
        ("genset", "set_power_kw", 2, "pending")]
    assert {r.claimed_by for r in rows} == {crashed.identity}
    assert first.published == []
    with room.registry.reading() as session:
        plan = session.get(PlanRow, room.plan_id)
        assert plan is not None
        assert plan.status == "approved"

    # The view restarts: a sender of its own, which leaves the dead one's claim alone ...
    clock = Clock(now + 1_000)
    messaging = InMemoryMessaging()
    restarted = _sender(room, messaging, clock)
    assert restarted.deliver() == []
    # ... until it expires, then delivers every command of the step, in order, once.
    clock.now = now + round(CLAIM_S * 1000) + 1
    delivered = restarted.deliver()
    assert delivered == [r.id for r in rows]
    assert _sent(messaging) == [(BATTERY.topic(Channel.COMMAND_REQUEST), "set_battery_kw"),
                                (GENSET.topic(Channel.COMMAND_REQUEST), "start"),
                                (GENSET.topic(Channel.COMMAND_REQUEST), "set_power_kw")]
    assert [m.correlation_data for m in messaging.published] == [r.id.encode() for r in rows]
    assert {room.commands.get(r.id).status for r in rows} == {CommandState.SENT}  # type: ignore[union-attr]
    assert restarted.deliver() == []
    # Approving again sends nothing new and answers the approval's commands.
    monkeypatch.undo()
    again = approve(room.plans, restarted, room.plan_id, "ana", now_ms=clock.now,
                    deadline_s=120, estate_id=SPEC.id)
    assert (again.already_approved, again.step, again.commands) == (
        True, 0, tuple(r.id for r in rows))
    assert len(messaging.published) == 3
    assert first.published == []


def test_an_approval_delivers_its_own_commands_at_once(room: Room) -> None:
    messaging = InMemoryMessaging()
    sender = _sender(room, messaging, Clock(START_MS))
    done = approve(room.plans, sender, room.plan_id, "ana", now_ms=START_MS, deadline_s=120,
                   estate_id=SPEC.id)
    assert [m.correlation_data for m in messaging.published] == [
        c.encode() for c in done.commands]
    assert [a for _, a in _sent(messaging)] == ["set_battery_kw", "start", "set_power_kw"]
    assert sender.deliver() == []


def test_two_senders_after_a_crash_deliver_each_command_once(
        room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_after_commit(monkeypatch)
    with pytest.raises(Crash):
        approve(room.plans, _sender(room, InMemoryMessaging(), Clock(START_MS)), room.plan_id,
                "ana", now_ms=START_MS, deadline_s=120)
    later = Clock(START_MS + round(CLAIM_S * 1000) + 1)
    doubles = [InMemoryMessaging() for _ in range(4)]
    senders = [_sender(room, m, later) for m in doubles]
    barrier = threading.Barrier(len(senders))
    delivered: list[list[str]] = []

    def race(sender: CommandSender) -> None:
        barrier.wait()
        delivered.append(sender.deliver())

    threads = [threading.Thread(target=race, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    published = [m.correlation_data for d in doubles for m in d.published]
    assert sorted(published) == sorted(r.id.encode() for r in _rows(room))
    assert sum(1 for d in delivered if d) == 1, "one sender claims the whole decision"


def test_a_decision_that_fails_writes_neither_the_approval_nor_any_command(room: Room) -> None:
    def broken(plan: PlanSetpoints, assets: Mapping[str, CommandableAsset],
               status: str) -> StepCommands:
        decided = decide_step(now_ms=START_MS, deadline_s=120)(plan, assets, status)
        assert decided.commands
        raise RuntimeError("the process fails half way through the decision")

    with pytest.raises(RuntimeError):
        room.plans.approve_draft(room.plan_id, "ana", at=START, commands=broken)
    assert _rows(room) == []
    with room.registry.reading() as session:
        plan = session.get(PlanRow, room.plan_id)
        assert plan is not None
        assert plan.status == "draft"
        assert session.scalar(select(func.count()).select_from(CommandRow)) == 0


def test_a_refused_command_is_an_outbox_event(room: Room) -> None:
    messaging = InMemoryMessaging()
    sender = _sender(room, messaging, Clock(START_MS))
    sender.start()
    try:
        done = approve(room.plans, sender, room.plan_id, "ana", now_ms=START_MS,
                       deadline_s=120, estate_id=SPEC.id)
        battery, start, _ = done.commands
        for command_id, device, status in ((battery, BATTERY, ResponseStatus.ACCEPTED),
                                           (battery, BATTERY, ResponseStatus.DONE),
                                           (start, GENSET, ResponseStatus.REJECTED)):
            messaging.inject(device.topic(Channel.COMMAND_RESPONSE),
                             CommandResponse(command_id, status, "invalid-state"
                                             if status is ResponseStatus.REJECTED else "",
                                             at_ms=START_MS).encode(),
                             correlation_data=command_id.encode())
    finally:
        sender.close()
    with room.registry.reading() as session:
        seen = [(e.type, e.subject_id, e.payload["state"]) for e in events(session, SPEC.id)
                if e.subject_type == "command"]
    assert seen == [("command.refused", start, "rejected")], "a command done is no event"
    assert len(seen) == len(set(seen)), "each move once"
