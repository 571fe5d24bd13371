"""The plans' and commands' events reach the outbox in the transaction of their change:
``plan.ready`` for a draft, ``plan.approved`` (by an operator or automatically),
``command.refused`` and ``command.timed_out``, each once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.outbox import OutboxEvent, events
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.records import PlanDraft
from estate.commands import CommandRequest, CommandState
from estate.topics import DeviceId
from tests.dispatch.registries import SPEC, sample_registry

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
BATTERY = DeviceId(SPEC.id, "utilities", "battery")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    r = sample_registry(tmp_path)
    yield r
    r.close()


def _events(registry: Registry) -> list[OutboxEvent]:
    with registry.reading() as session:
        return events(session, SPEC.id)


def _draft(start: datetime, auto: bool = False) -> PlanDraft:
    return PlanDraft(
        estate_id=SPEC.id, horizon_start=start, horizon_end=start + timedelta(hours=1),
        step_minutes=15, auto=auto, solver_status="optimal", mip_gap=0.0, objective=1.0,
        cost=90.0, baseline_cost=100.0, peak_kw=900.0, baseline_peak_kw=1000.0,
        explanation="", setpoints={"battery": [0.0, 0.0, 0.0, 0.0]},
        summary={"currency": "EUR"})


def test_plan_ready_then_approved_by_an_operator_or_automatically(registry: Registry) -> None:
    plans = PlanStore(registry)
    draft = plans.save(_draft(START), "schedule", START)
    plans.save(_draft(START), "schedule", START)  # the draft rewritten: revision 2
    plans.approve_draft(draft.id, "ana", at=START)
    plans.approve_draft(draft.id, "ana", at=START)  # again: audited, no new event
    auto = plans.save(_draft(START + timedelta(hours=1), auto=True), "schedule", START)
    seen = [(e.type, e.subject_id, e.payload.get("revision"), e.payload.get("by"))
            for e in _events(registry)]
    assert seen == [("plan.ready", str(draft.id), 1, None),
                    ("plan.ready", str(draft.id), 2, None),
                    ("plan.approved", str(draft.id), 2, "ana"),
                    ("plan.approved", str(auto.id), 1, None)]


@pytest.mark.parametrize(("final", "kind"), [(CommandState.REJECTED, "command.refused"),
                                             (CommandState.FAILED, "command.refused"),
                                             (CommandState.TIMED_OUT, "command.timed_out")])
def test_a_refused_or_timed_out_command_is_an_event(registry: Registry, final: CommandState,
                                                    kind: str) -> None:
    commands = CommandStore(registry)
    request = CommandRequest("c-1", "set_power", {"kw": 50.0}, START_MS + 60_000, "operator:ana")
    assert commands.create(request, BATTERY, at_ms=START_MS, asset_id="battery")
    assert commands.move("c-1", CommandState.SENT, actor="dispatch", at_ms=START_MS)
    assert commands.move("c-1", final, actor="device", at_ms=START_MS + 1000,
                         reason="soc-too-low")
    assert not commands.move("c-1", final, actor="device", at_ms=START_MS + 2000)
    [event] = _events(registry)
    assert (event.type, event.subject_id) == (kind, "c-1")
    assert event.payload["facility"] == "utilities"
    assert event.payload["reason"] == "soc-too-low"
    assert event.payload["state"] == final.value


def test_a_command_done_is_no_event(registry: Registry) -> None:
    commands = CommandStore(registry)
    request = CommandRequest("c-2", "set_power", {"kw": 5.0}, START_MS + 60_000, "dispatch")
    commands.create(request, BATTERY, at_ms=START_MS)
    commands.move("c-2", CommandState.DONE, actor="device", at_ms=START_MS + 10)
    assert _events(registry) == []
