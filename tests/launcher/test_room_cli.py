"""``estate alarms``, ``estate incidents`` and ``estate shift`` against a real SQLite
registry: each step is stored with the operator's name and time, its event in the outbox;
refusals are messages with a non-zero exit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatch.alarms.model import AlarmTransition
from dispatch.registry import alarm_board, incident_desk, outbox, shift_log
from dispatch.registry.db import Registry
from dispatch.registry.room_step import RoomContext, control_room_step
from launcher.cli import app
from tests.dispatch.registries import SPEC, sample_registry

runner = CliRunner()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    registry = sample_registry(tmp_path)
    monkeypatch.setenv("DISPATCH_REGISTRY_URL", registry.url)
    now = datetime.now(UTC)
    leak = AlarmTransition("raise", "utilities/network", "balance", "balance", "high", 4.2,
                           "Network out of balance: water", int(now.timestamp() * 1000))
    with registry.writing() as session:
        control_room_step(session, RoomContext.of(SPEC), [leak], now)
    return registry


def _events(registry: Registry) -> list[str]:
    with registry.reading() as session:
        return [e.type for e in outbox.events(session, SPEC.id)]


def test_an_operator_lists_acknowledges_and_shelves_an_alarm(registry: Registry) -> None:
    listed = runner.invoke(app, ["alarms", "list"])
    assert listed.exit_code == 0, listed.output
    assert "utilities/network  balance" in listed.output
    alarm_id = int(listed.output.split()[0])
    acked = runner.invoke(app, ["alarms", "ack", str(alarm_id), "--by", "maria"])
    assert acked.exit_code == 0, acked.output
    shelved = runner.invoke(app, ["alarms", "shelve", str(alarm_id), "--by", "maria",
                                  "--reason", "crew on it", "--minutes", "30"])
    assert shelved.exit_code == 0, shelved.output
    with registry.reading() as session:
        alarm = alarm_board.get_alarm(session, alarm_id).alarm
        steps = [(s.action, s.by) for s in alarm_board.alarm_steps(session, alarm_id)]
    assert alarm.state == "shelved"
    assert alarm.acknowledged_by == "maria"
    assert ("acknowledged", "maria") in steps
    assert ("shelved", "maria") in steps
    assert _events(registry)[-2:] == ["alarm.acknowledged", "alarm.shelved"]
    # Longer than a day is refused, with the reason; an unknown id is another exit.
    refused = runner.invoke(app, ["alarms", "shelve", str(alarm_id), "--by", "maria",
                                  "--reason", "x", "--minutes", "3000"])
    assert refused.exit_code == 1
    assert runner.invoke(app, ["alarms", "ack", "9999", "--by", "maria"]).exit_code == 2


def test_an_operator_reassigns_and_closes_an_incident(registry: Registry) -> None:
    listed = runner.invoke(app, ["incidents", "list"])
    assert listed.exit_code == 0, listed.output
    assert "Network out of balance" in listed.output
    incident_id = int(listed.output.split()[0])
    moved = runner.invoke(app, ["incidents", "assign", str(incident_id), "gas-on-call",
                                "--by", "maria"])
    assert moved.exit_code == 0, moved.output
    assert "crew gas-on-call" in moved.output
    no_reason = runner.invoke(app, ["incidents", "close", str(incident_id), "--by", "maria",
                                    "--reason", ""])
    assert no_reason.exit_code == 1
    closed = runner.invoke(app, ["incidents", "close", str(incident_id), "--by", "maria",
                                 "--reason", "valve shut, leak repaired"])
    assert closed.exit_code == 0, closed.output
    with registry.reading() as session:
        incident = incident_desk.get_incident(session, incident_id)
    assert (incident.status, incident.closed_by, incident.close_reason) == (
        "closed", "maria", "valve shut, leak repaired")
    assert _events(registry)[-2:] == ["incident.assigned", "incident.closed"]


def test_the_shift_log_and_the_handover_keep_both_names(registry: Registry) -> None:
    wrote = runner.invoke(app, ["shift", "log", "--by", "maria", "--kind", "open_item",
                                "--text", "call the water utility about pressure"])
    assert wrote.exit_code == 0, wrote.output
    assert "call the water utility" in runner.invoke(app, ["shift", "log"]).output
    prepared = runner.invoke(app, ["shift", "handover", "--by", "maria", "--to", "nikos"])
    assert prepared.exit_code == 0, prepared.output
    assert "1 log entries, 1 active alarms, 1 open incidents" in prepared.output
    with registry.reading() as session:
        waiting = shift_log.pending_handover(session, SPEC.id)
    assert waiting is not None
    wrong = runner.invoke(app, ["shift", "handover", "--accept", waiting.id, "--by", "maria"])
    assert wrong.exit_code == 1  # only the incoming operator accepts
    accepted = runner.invoke(app, ["shift", "handover", "--accept", waiting.id,
                                   "--by", "nikos"])
    assert accepted.exit_code == 0, accepted.output
    assert "accepted by nikos" in accepted.output
    assert _events(registry)[-2:] == ["handover.prepared", "handover.accepted"]
