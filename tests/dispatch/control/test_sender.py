"""The command sender's logic, fast: through the in-memory messaging double of our own port
(tests/doubles.py) and a real SQLite registry file. The MQTT path end to end is
tests/dispatch/test_commands.py, against the real Mosquitto."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatch.control.sender import CommandSender
from dispatch.registry.command_store import CommandStore
from estate.commands import CommandResponse, CommandState, ResponseStatus
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import sample_registry
from tests.doubles import InMemoryMessaging

NOW = 1_795_000_000_000
BATTERY = DeviceId("demo", "shared", "battery")
SAME = "6f1d4f5e-7b52-4d0c-9a57-3f0d1c2b8e61"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def command_store(tmp_path: Path) -> Iterator[CommandStore]:
    registry = sample_registry(tmp_path)
    yield CommandStore(registry)
    registry.close()


def _sender(messaging: InMemoryMessaging, command_store: CommandStore, clock: Clock,
            ) -> CommandSender:
    sender = CommandSender(messaging, command_store, estates=["demo"], actor="dispatch:test",
                           answer_grace_s=5, clock=clock)
    sender.start()
    return sender


def _answer(messaging: InMemoryMessaging, device: DeviceId, command_id: str,
            status: ResponseStatus, reason: str = "") -> int:
    return messaging.inject(device.topic(Channel.COMMAND_RESPONSE),
                            CommandResponse(command_id, status, reason, at_ms=NOW).encode(),
                            correlation_data=command_id.encode())


def test_a_command_is_a_request_with_its_answer_topic_and_id(command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(), Clock()
    sender = _sender(messaging, command_store, clock)
    command_id = sender.send(BATTERY, "set_battery_kw", {"kw": -50}, requested_by="operator:ana",
                             timeout_s=60)
    [request] = messaging.published
    assert request.topic == BATTERY.topic(Channel.COMMAND_REQUEST)
    assert request.response_topic == BATTERY.topic(Channel.COMMAND_RESPONSE)
    assert request.correlation_data == command_id.encode()
    assert messaging.subscriptions() == ["estate/v1/demo/+/+/cmd/res"]
    record = command_store.get(command_id)
    assert record is not None
    assert record.status is CommandState.SENT
    assert record.deadline_at.timestamp() * 1000 == NOW + 60_000
    sender.close()


def test_answers_move_the_command_on_off_the_callers_thread(command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(), Clock()
    sender = _sender(messaging, command_store, clock)
    command_id = sender.send(BATTERY, "set_battery_kw", {"kw": 10}, requested_by="plan:1")
    assert _answer(messaging, BATTERY, command_id, ResponseStatus.ACCEPTED) == 1
    assert _answer(messaging, BATTERY, command_id, ResponseStatus.DONE) == 1
    assert [a.action for a in command_store.audit(command_id)] == [
        "command.pending", "command.sent", "command.accepted", "command.done"]
    assert threading.current_thread().name not in messaging.handler_threads
    sender.close()


def test_answers_from_another_device_or_for_another_id_change_nothing(
        command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(), Clock()
    sender = _sender(messaging, command_store, clock)
    command_id = sender.send(BATTERY, "start", requested_by="plan:1")
    _answer(messaging, DeviceId("demo", "shared", "genset"), command_id, ResponseStatus.DONE)
    messaging.inject(BATTERY.topic(Channel.COMMAND_RESPONSE),
                     CommandResponse("other-id", ResponseStatus.DONE, at_ms=NOW).encode(),
                     correlation_data=command_id.encode())
    messaging.inject(BATTERY.topic(Channel.COMMAND_RESPONSE), b"not json")
    record = command_store.get(command_id)
    assert record is not None
    assert record.status is CommandState.SENT
    sender.close()


def test_while_the_broker_is_away_a_command_stays_pending_until_acknowledged(
        command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(acknowledge=False), Clock()
    sender = CommandSender(messaging, command_store, estates=["demo"], actor="dispatch:test",
                           sweep_interval_s=0.01, clock=clock)
    sender.start()
    command_id = sender.send(BATTERY, "stop", requested_by="plan:1", wait=False)
    assert command_store.get(command_id).status is CommandState.PENDING  # type: ignore[union-attr]
    messaging.deliveries[0].acknowledge()
    record = sender.wait(command_id, 0)
    for _ in range(500):  # the sweeper records it within a few of its 10 ms rounds
        record = command_store.get(command_id)
        if record is not None and record.status is CommandState.SENT:
            break
        threading.Event().wait(0.01)
    assert record is not None
    assert record.status is CommandState.SENT
    sender.close()


def test_no_final_answer_by_deadline_and_grace_is_a_time_out_and_a_late_one_is_noted(
        command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(), Clock()
    sender = _sender(messaging, command_store, clock)
    command_id = sender.send(BATTERY, "start", requested_by="plan:1", timeout_s=10)
    assert sender.sweep(NOW + 10_000 + 5_000) == []
    assert sender.sweep(NOW + 10_000 + 5_001) == [command_id]
    _answer(messaging, BATTERY, command_id, ResponseStatus.DONE)
    record = command_store.get(command_id)
    assert record is not None
    assert record.status is CommandState.TIMED_OUT
    assert [a.action for a in command_store.audit(command_id)][-2:] == ["command.timed_out",
                                                               "command.late_answer"]
    sender.close()


def test_sending_an_open_command_again_publishes_it_with_its_recorded_deadline(
        command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(acknowledge=False), Clock()
    sender = _sender(messaging, command_store, clock)
    sender.send(BATTERY, "stop", requested_by="plan:1", command_id=SAME, timeout_s=30,
                wait=False)
    clock.now += 20_000
    sender.send(BATTERY, "stop", requested_by="plan:1", command_id=SAME, timeout_s=30,
                wait=False)
    first, again = messaging.published
    assert first.payload == again.payload, "same command, same deadline"
    assert [a.action for a in command_store.audit(SAME)] == ["command.pending"]
    sender.close()


def test_a_command_the_broker_refuses_is_refused_at_once_never_sent(
        command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(), Clock()
    refused = "the broker refused it: Not authorized"
    messaging.refuse[BATTERY.topic(Channel.COMMAND_REQUEST)] = refused
    sender = _sender(messaging, command_store, clock)
    try:
        command_id = sender.send(BATTERY, "set_battery_kw", {"kw": 10},
                                 requested_by="operator:ana")
        record = command_store.get(command_id)
        assert record is not None
        assert (record.status, record.reason) == (CommandState.REFUSED, "broker-refused")
        assert record.detail == "the broker refused it: Not authorized"
        assert [(a.detail.get("from"), a.detail.get("to")) for a in command_store.audit(command_id)
                if a.action != "command.pending"] == [("pending", "refused")]
        report = sender.refusals.report()
        assert report["ok"] is False
        assert report["refused"] == 1
        assert report["last_refused"] == {"command_id": command_id,
                                          "reason": "the broker refused it: Not authorized",
                                          "at_ms": NOW}
        # A later command the broker takes clears the alarm; the count stays.
        del messaging.refuse[BATTERY.topic(Channel.COMMAND_REQUEST)]
        taken = sender.send(BATTERY, "set_battery_kw", {"kw": 20}, requested_by="operator:ana")
        assert command_store.get(taken).status is CommandState.SENT  # type: ignore[union-attr]
        assert sender.refusals.report()["ok"] is True
        assert sender.refusals.report()["refused"] == 1
    finally:
        sender.close()


def test_a_refusal_after_sending_without_waiting_is_recorded_by_the_sweeper(
        command_store: CommandStore) -> None:
    messaging, clock = InMemoryMessaging(acknowledge=False), Clock()
    sender = _sender(messaging, command_store, clock)
    try:
        command_id = sender.send(BATTERY, "set_battery_kw", {"kw": 10},
                                 requested_by="operator:ana", wait=False)
        assert command_store.get(command_id).status is CommandState.PENDING  # type: ignore[union-attr]
        messaging.deliveries[-1].refuse("the broker cut the connection on it: Not authorized")
        record = sender.wait(command_id, 10)  # the sweeper's next round, a second at most
        assert record is not None
        assert record.status is CommandState.REFUSED
        assert "cut the connection" in (record.detail or "")
    finally:
        sender.close()
