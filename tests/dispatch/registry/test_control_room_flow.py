"""The control room's logic from simulated readings to crews and events, on SQLite and
PostgreSQL: what the worker's cycle does, without the broker and the time-series store
(those are wired in the end-to-end tests).

Each cycle: windowed rules on the last window's aggregates -> transitions recorded ->
triage (incidents opened or grown) -> incidents whose alarms cleared closed -> crews
planned and assigned. Streaming rules feed the same board between cycles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dispatch.alarms.frames import WindowInputs, aggregate
from dispatch.alarms.model import AlarmTransition
from dispatch.alarms.stream import StreamEvaluator
from dispatch.alarms.window import WindowedEvaluator
from dispatch.incidents.assignment import plan_assignments
from dispatch.incidents.triage import AlarmView, Site, triage
from dispatch.registry import alarm_board, crew_roster, incident_desk, outbox
from dispatch.registry.db import session_factory, upgrade
from dispatch.registry.loader import load_into_registry
from edge.faults import InjectedFault, estate_faults
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate
from estate.readings import Reading

SPEC = load_estate(SAMPLE_ESTATE)
TZ = ZoneInfo(SPEC.timezone)
START = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # a Monday, 09:00 in Athens
STEP_S = 60
WINDOW_MS = 15 * 60_000


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        load_into_registry(session, SPEC, now=START)
    return factory


def _cycle(sessions: sessionmaker[Session], transitions: list[AlarmTransition],
           now: datetime) -> None:
    site = Site.of(SPEC)
    with sessions.begin() as session:
        alarm_board.record_transitions(session, SPEC.id, transitions)
        alarm_board.expire_shelves(session, SPEC.id, now)
        active = [AlarmView(str(r.id), r.alarm.source, r.alarm.rule_id, r.alarm.rule_kind,
                            r.alarm.severity, r.alarm.message)
                  for r in alarm_board.active_alarms(session, SPEC.id)]
        incident_desk.apply_triage(session, SPEC.id, triage(
            active, incident_desk.open_incidents(session, SPEC.id), site), now)
        incident_desk.close_resolved_incidents(session, SPEC.id, now)
        plan = plan_assignments(incident_desk.open_incidents(session, SPEC.id),
                                crew_roster.crews(session, SPEC.id), now, TZ)
        incident_desk.apply_assignment_plan(session, SPEC.id, plan, now)


def _run(sessions: sessionmaker[Session], faults: list[InjectedFault], hours: float) -> None:
    sim = EstateSimulator(SPEC, 11, faults=estate_faults(SPEC, faults))
    t0 = int(START.timestamp() * 1000)
    stream = StreamEvaluator(SPEC.id, SPEC.rule_book(), t0)
    window = WindowedEvaluator(SPEC.rule_book())
    keys = window.needs()[900.0]
    last_seen = np.full(len(window.meters), t0, dtype=np.int64)
    index = {m: i for i, m in enumerate(window.meters)}
    readings: list[Reading] = []
    pending: list[AlarmTransition] = []
    for k in range(int(hours * 3600 / STEP_S) + 1):
        now_ms = t0 + k * STEP_S * 1000
        for device, rs in sim.step(now_ms):
            if rs:
                last_seen[index[f"{device.facility}/{device.device}"]] = now_ms
            readings.extend(rs)
            pending += stream.feed_pack(rs, now_ms + 500)
        pending += stream.tick(now_ms + 500)
        if k and now_ms % WINDOW_MS == 0:
            frame = aggregate(readings, window.meters, now_ms, 900, keys)
            pending += window.evaluate(WindowInputs(now_ms, {900.0: frame}, last_seen))
            readings = [r for r in readings if r.time_ms >= now_ms - WINDOW_MS]
            _cycle(sessions, pending, datetime.fromtimestamp(now_ms / 1000, UTC))
            pending = []


def _events(sessions: sessionmaker[Session]) -> list[outbox.OutboxEvent]:
    with sessions() as session:
        return outbox.events(session, SPEC.id)


@pytest.mark.parametrize(("meter", "utility", "crew", "magnitude"), [
    ("network", "water", "pipes", 4.0), ("gas-station", "gas", "pipes", 15.0)])
def test_a_leak_opens_an_incident_a_crew_goes_and_it_closes_when_the_leak_stops(
        sessions: sessionmaker[Session], meter: str, utility: str, crew: str,
        magnitude: float) -> None:
    leak = InjectedFault(facility="utilities", meter=meter, kind="leak",
                         start=START + timedelta(minutes=30),
                         end=START + timedelta(minutes=105), magnitude=magnitude)
    _run(sessions, [leak], hours=2.5)
    events = _events(sessions)
    balance = [e for e in events if e.payload.get("rule_id") == "balance"]
    assert [(e.type, e.payload["source"]) for e in balance] == [
        ("alarm.raised", f"utilities/{meter}"), ("alarm.cleared", f"utilities/{meter}")]
    assert balance[0].payload["message"].startswith(f"Network out of balance (leak, theft or "
                                                    f"meter fault): {utility}: utilities/"
                                                    f"{meter} reads")
    # Nobody reports the crew on site: the response deadline missed is told as the
    # incident closes (this cycle does not look for breaches before).
    incident_events = [e for e in events if e.subject_type == "incident"]
    assert [e.type for e in incident_events] == ["incident.opened", "incident.assigned",
                                                 "incident.sla_breached", "incident.closed"]
    opened, assigned, breached, closed = incident_events
    assert opened.payload["skill"] == utility
    assert assigned.payload["crew"] == crew
    assert breached.payload["sla"] == "response"
    assert closed.payload["closed_by"] == "telemetry"
    # The order others hear it in: alarm, incident, crew, alarm cleared, incident closed.
    order = [e.type for e in events if e in balance or e in incident_events]
    assert order == ["alarm.raised", "incident.opened", "incident.assigned", "alarm.cleared",
                     "incident.sla_breached", "incident.closed"]
    # Nothing else was raised on a clean network.
    assert {e.payload.get("rule_id") for e in events if e.type == "alarm.raised"} == {
        "balance"}


def test_a_feeder_outage_opens_one_incident_naming_the_feeder(
        sessions: sessionmaker[Session]) -> None:
    outage = InjectedFault(facility="utilities", meter="feeder-south", kind="outage",
                           start=START + timedelta(minutes=20),
                           end=START + timedelta(minutes=70))
    _run(sessions, [outage], hours=1.75)
    events = _events(sessions)
    raised = [e for e in events if e.type == "alarm.raised"]
    assert {e.payload["rule_id"] for e in raised} >= {"no-data"}
    assert len([e for e in raised if e.payload["rule_id"] == "no-data"]) == 12
    incident_events = [e for e in events if e.subject_type == "incident"]
    assert [e.type for e in incident_events] == ["incident.opened", "incident.assigned",
                                                 "incident.sla_breached", "incident.closed"]
    opened = incident_events[0]
    assert opened.payload["origin"] == "group:power:utilities/feeder-south"
    assert opened.payload["cause"] == "utilities/feeder-south"
    assert len(opened.payload["alarms"]) == 12
    assert opened.payload["title"].startswith("Feeder south: 11 of the 11 meters below it")
    assert incident_events[1].payload["crew"] == "electric-day"
