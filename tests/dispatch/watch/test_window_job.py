"""The windowed rules' job through the store port (in memory) and a real SQLite registry:
the simulator's water leak, written as ingest writes it, raises one balance alarm, opens
an incident the fitters are assigned to, and both close when the leak stops; the job
judges each window step once; the fitters never reported on site, the response deadline
missed is told once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dispatch.registry import outbox
from dispatch.registry.room_step import RoomContext
from dispatch.settings import AlarmSettings
from dispatch.watch.window_job import WindowJob
from edge.faults import InjectedFault, estate_faults
from edge.simulator import EstateSimulator
from estate.lineprotocol import readings_lines
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryTimeSeriesStore

START = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # a Monday, 09:00 in Athens
STEP_S = 60


def test_a_leak_in_the_store_raises_one_balance_alarm_and_an_incident_that_closes(
        tmp_path: Path) -> None:
    registry = sample_registry(tmp_path)
    store = InMemoryTimeSeriesStore()
    leak = InjectedFault(facility="utilities", meter="network", kind="leak",
                         start=START + timedelta(minutes=30),
                         end=START + timedelta(minutes=105), magnitude=4.0)
    sim = EstateSimulator(SPEC, 11, faults=estate_faults(SPEC, [leak]))
    job = WindowJob(SPEC, store, registry, RoomContext.of(SPEC),
                    AlarmSettings(window_every_s=STEP_S, window_grace_s=5))
    t0 = int(START.timestamp() * 1000)
    judged = 0
    for k in range(int(2.5 * 3600 / STEP_S) + 1):
        now_ms = t0 + k * STEP_S * 1000
        store.write_lines(readings_lines(r for _, rs in sim.step(now_ms) for r in rs))
        if job(now_ms + 10_000) is not None:
            judged += 1
        assert job(now_ms + 20_000) is None  # the same step is judged once
    assert judged == int(2.5 * 3600 / STEP_S) + 1
    with registry.reading() as session:
        events = outbox.events(session, SPEC.id)
    balance = [(e.type, e.payload["source"]) for e in events
               if e.payload.get("rule_id") == "balance"]
    assert balance == [("alarm.raised", "utilities/network"),
                       ("alarm.cleared", "utilities/network")]
    # Nothing else raised on a clean estate (power factor, capacity, stuck on windows).
    assert {e.payload["rule_id"] for e in events if e.type == "alarm.raised"} == {"balance"}
    incidents = [e for e in events if e.subject_type == "incident"]
    # Nobody marks the fitters on site, so the response deadline passes: told once.
    assert [e.type for e in incidents] == ["incident.opened", "incident.assigned",
                                           "incident.sla_breached", "incident.closed"]
    assert incidents[0].payload["skill"] == "water"
    assert incidents[1].payload["crew"] == "pipes"
    assert incidents[2].payload["sla"] == "response"
    late = incidents[2].created_at - incidents[0].created_at
    assert incidents[0].payload["severity"] == "high"  # on site within 30 min
    assert timedelta(minutes=30) <= late <= timedelta(minutes=30, seconds=STEP_S)
    assert incidents[3].payload["closed_by"] == "telemetry"
    registry.close()
