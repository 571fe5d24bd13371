"""Commands end to end: CommandSender -> real Mosquitto -> edge CommandHandler -> answers.

The broker is the demo's (its accounts and ACL, the ``demo_broker`` fixture): the sender
logs in as the dispatch worker, the devices' side as the simulator.

The registry is a real SQLite file migrated by Alembic; each round trip must leave the
sequence of states, with its reason, in ``audit_log``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from adapters.mqtt import MqttConnection
from dispatch.control.sender import CommandSender
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry, make_engine, upgrade
from dispatch.registry.models import AuditRow, CommandRow
from edge.command_executors import SimulatedAssetExecutor, SimulatedBattery, SimulatedGenset
from edge.command_handler import CommandHandler, CommandTarget
from estate.commands import CommandPolicy, CommandResponse, CommandState, ResponseStatus
from estate.topics import Channel, DeviceId
from tests.conftest import DemoBroker


@dataclass
class Room:
    sender: CommandSender
    store: CommandStore
    engine: Engine
    battery: DeviceId
    genset: DeviceId
    ghost: DeviceId  # nobody answers for it
    simulated: SimulatedAssetExecutor
    dispatch: MqttConnection


@pytest.fixture
def room(demo_broker: DemoBroker, tmp_path: Path) -> Iterator[Room]:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    upgrade(engine)
    store = CommandStore(Registry(engine))
    estate = "demo"  # the estate whose accounts the demo broker has
    battery = DeviceId(estate, "shared", "battery")
    genset = DeviceId(estate, "shared", "genset")
    ghost = DeviceId(estate, "textile", "ghost")
    simulated = SimulatedAssetExecutor({battery: SimulatedBattery(max_kw=200, soc_pct=60),
                                        genset: SimulatedGenset(max_kw=400)})
    handler = CommandHandler([
        CommandTarget(battery, CommandPolicy.from_mapping(
            {"set_battery_kw": {"kw": {"min": -200, "max": 200}}}), simulated),
        CommandTarget(genset, CommandPolicy.from_mapping({"start": {}, "stop": {}}), simulated),
    ], tmp_path / "edge_commands.sqlite")
    edge = MqttConnection(demo_broker.settings("simulator"), f"edge-{uuid.uuid4().hex[:8]}")
    edge.connect()
    handler.start(edge)
    assert edge.wait_subscribed(10), "the edge's subscriptions"
    # No grace: a command times out at its deadline, so the test need not wait longer.
    dispatch = MqttConnection(demo_broker.settings("dispatch"), f"dispatch-{uuid.uuid4().hex[:8]}")
    sender = CommandSender(dispatch, store, estates=[estate], actor="dispatch:test",
                           answer_grace_s=0, sweep_interval_s=0.1)
    sender.start()
    dispatch.connect()
    assert dispatch.wait_subscribed(10), "the sender's subscription to the answers"
    room = Room(sender, store, engine, battery, genset, ghost, simulated, dispatch)
    try:
        yield room
    finally:
        room.sender.close()  # a test may have replaced (and closed) the first one
        dispatch.close()
        handler.stop()
        edge.close()
        engine.dispose()


def _trail(room: Room, command_id: str) -> list[tuple[str, str, str | None]]:
    """(action, actor, reason) of each audit row of the command, oldest first."""
    return [(row.action, row.actor, row.detail.get("reason"))
            for row in room.store.audit(command_id)]


def _audit_count(room: Room, command_id: str) -> int:
    with room.engine.connect() as connection:
        count = connection.scalar(select(func.count()).select_from(AuditRow)
                                  .where(AuditRow.subject_id == command_id))
    assert isinstance(count, int)
    return count


def test_accepted_then_done_is_audited_step_by_step(room: Room) -> None:
    command_id = room.sender.send(room.battery, "set_battery_kw", {"kw": -75},
                                  requested_by="operator:ana", timeout_s=30,
                                  asset_id="estate-battery")
    record = room.sender.wait(command_id, 20)
    assert record is not None
    assert record.status is CommandState.DONE
    assert (record.reason, record.asset_id, record.requested_by) == (None, "estate-battery",
                                                                     "operator:ana")
    assert record.sent_at is not None
    assert record.answered_at is not None
    assert record.created_at <= record.sent_at <= record.answered_at
    battery = room.simulated.asset(room.battery)
    assert isinstance(battery, SimulatedBattery)
    assert battery.setpoint_kw == -75
    device = f"device:{room.battery.estate}/shared/battery"
    assert _trail(room, command_id) == [
        ("command.pending", "operator:ana", None),
        ("command.sent", "dispatch:test", None),
        ("command.accepted", device, None),
        ("command.done", device, None),
    ]
    pending = room.store.audit(command_id)[0].detail
    assert pending["params"] == {"kw": -75}
    assert pending["device"] == f"{room.battery.estate}/shared/battery"


def test_rejected_with_a_reason_is_audited(room: Room) -> None:
    command_id = room.sender.send(room.battery, "set_battery_kw", {"kw": 300},
                                  requested_by="plan:17", timeout_s=30)
    record = room.sender.wait(command_id, 20)
    assert record is not None
    assert record.status is CommandState.REJECTED
    assert record.reason == "out-of-range"
    assert record.detail == "kw=300 is above the maximum 200"
    trail = _trail(room, command_id)
    assert [action for action, _, _ in trail] == ["command.pending", "command.sent",
                                                  "command.rejected"]
    assert trail[-1][2] == "out-of-range"
    assert room.store.audit(command_id)[-1].detail["detail"] == "kw=300 is above the maximum 200"
    battery = room.simulated.asset(room.battery)
    assert isinstance(battery, SimulatedBattery)
    assert battery.setpoint_kw == 0


def test_a_command_nobody_answers_times_out_and_is_audited(room: Room) -> None:
    started = time.time_ns() // 1_000_000
    command_id = room.sender.send(room.ghost, "start", requested_by="operator:ana",
                                  timeout_s=0.3)
    # The sender's own sweeper thread must time it out; the test only waits.
    record = room.sender.wait(command_id, 20)
    assert record is not None
    assert record.status is CommandState.TIMED_OUT
    assert record.reason == "timed-out"
    assert record.detail is not None
    assert "last state sent" in record.detail
    assert record.answered_at is None
    trail = _trail(room, command_id)
    assert trail == [("command.pending", "operator:ana", None),
                     ("command.sent", "dispatch:test", None),
                     ("command.timed_out", "dispatch:test", "timed-out")]
    timed_out_at = room.store.audit(command_id)[-1].at.timestamp() * 1000
    assert timed_out_at >= started + 300, "not before the deadline"


def test_an_expired_command_is_rejected_by_the_device_and_not_executed(
        room: Room, demo_broker: DemoBroker) -> None:
    # A sender with a grace, so that the device's "expired" arrives before any time-out.
    room.sender.close()
    room.dispatch.close()
    room.dispatch = MqttConnection(demo_broker.settings("dispatch"),
                                   f"dispatch-{uuid.uuid4().hex[:8]}")
    room.sender = CommandSender(room.dispatch, room.store, estates=[room.genset.estate],
                                actor="dispatch:test", answer_grace_s=30)
    room.sender.start()
    room.dispatch.connect()
    assert room.dispatch.wait_subscribed(10)
    command_id = room.sender.send(room.genset, "start", requested_by="operator:ana",
                                  deadline_ms=time.time_ns() // 1_000_000 - 1_000)
    record = room.sender.wait(command_id, 20)
    assert record is not None
    assert (record.status, record.reason) == (CommandState.REJECTED, "expired")
    assert record.detail is not None
    assert record.detail.startswith("the deadline passed")
    genset = room.simulated.asset(room.genset)
    assert isinstance(genset, SimulatedGenset)
    assert not genset.running
    assert [(a, r) for a, _, r in _trail(room, command_id)] == [
        ("command.pending", None), ("command.sent", None), ("command.rejected", "expired")]


def test_sweep_times_out_only_past_the_deadline(room: Room) -> None:
    now = time.time_ns() // 1_000_000
    deadline = now + 3_600_000
    command_id = room.sender.send(room.ghost, "stop", requested_by="operator:ana",
                                  deadline_ms=deadline)
    assert room.sender.sweep(now) == []
    assert room.sender.sweep(deadline) == []
    assert room.sender.get(command_id).status is CommandState.SENT  # type: ignore[union-attr]
    assert room.sender.sweep(deadline + 1) == [command_id]
    assert room.sender.sweep(deadline + 2) == [], "a final state is never moved again"
    assert [a for a, _, _ in _trail(room, command_id)].count("command.timed_out") == 1


def test_a_late_answer_is_audited_but_changes_nothing(room: Room,
                                                      demo_broker: DemoBroker) -> None:
    command_id = room.sender.send(room.ghost, "start", requested_by="operator:ana",
                                  timeout_s=0.2)
    record = room.sender.wait(command_id, 20)
    assert record is not None
    assert record.status is CommandState.TIMED_OUT
    device = MqttConnection(demo_broker.settings("simulator"), f"ghost-{uuid.uuid4().hex[:8]}")
    device.connect()
    try:
        now = time.time_ns() // 1_000_000
        # Another device claiming the command is ignored outright.
        other = DeviceId(room.ghost.estate, "textile", "other")
        assert device.respond(
            other.topic(Channel.COMMAND_RESPONSE),
            CommandResponse(command_id, ResponseStatus.DONE, at_ms=now).encode(),
            correlation_data=command_id.encode()).wait(5)
        assert device.respond(
            room.ghost.topic(Channel.COMMAND_RESPONSE),
            CommandResponse(command_id, ResponseStatus.DONE, at_ms=now).encode(),
            correlation_data=command_id.encode()).wait(5)
        deadline = time.monotonic() + 15
        while _audit_count(room, command_id) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        device.close()
    trail = _trail(room, command_id)
    assert [a for a, _, _ in trail] == ["command.pending", "command.sent", "command.timed_out",
                                        "command.late_answer"]
    assert trail[-1][1] == f"device:{room.ghost.estate}/textile/ghost"
    assert room.store.audit(command_id)[-1].detail["answer"] == "done"
    assert room.sender.get(command_id).status is CommandState.TIMED_OUT  # type: ignore[union-attr]


def test_sending_a_known_id_again_does_not_repeat_a_final_command(room: Room) -> None:
    command_id = str(uuid.uuid4())
    sent = room.sender.send(room.genset, "start", requested_by="plan:3", timeout_s=30,
                            command_id=command_id)
    assert sent == command_id
    record = room.sender.wait(command_id, 20)
    assert record is not None
    assert record.status is CommandState.DONE
    rows = _audit_count(room, command_id)
    assert room.sender.send(room.genset, "start", requested_by="plan:3",
                            command_id=command_id) == command_id
    assert _audit_count(room, command_id) == rows
    with room.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(CommandRow)
                                 .where(CommandRow.id == command_id)) == 1


def test_an_answer_held_up_by_the_registry_stalls_nothing_else(
        room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer is recorded off the network thread: while its registry write waits (SQLite
    waits up to 30 s for a lock), the sender's connection still takes the broker's
    acknowledgements, so another command is recorded as sent meanwhile."""
    entered, release = threading.Event(), threading.Event()
    threads: list[str] = []
    move = room.store.move

    def held_up(command_id: str, to: CommandState, **kwargs: Any) -> bool:
        if to is not CommandState.SENT:
            threads.append(threading.current_thread().name)
            entered.set()
            release.wait(30)
        return move(command_id, to, **kwargs)

    monkeypatch.setattr(room.store, "move", held_up)
    first = room.sender.send(room.battery, "set_battery_kw", {"kw": 20},
                             requested_by="operator:ana", timeout_s=60)
    try:
        assert entered.wait(20), "the device's first answer reached the sender"
        second = room.sender.send(room.genset, "start", requested_by="operator:ana",
                                  timeout_s=60, wait=True)
        record = room.store.get(second)
        assert record is not None
        assert record.status is CommandState.SENT, "its PUBACK came while an answer waited"
    finally:
        release.set()
    done = room.sender.wait(first, 20)
    assert done is not None
    assert done.status is CommandState.DONE
    assert threads
    assert not any(name.startswith("paho-mqtt-client-") for name in threads), threads
