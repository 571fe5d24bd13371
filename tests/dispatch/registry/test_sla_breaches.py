"""SLA breaches on SQLite and PostgreSQL: the control-room step tells
``incident.sla_breached`` once per incident and deadline, in its own transaction's outbox;
an incident closed late between two steps tells its breach as it closes; one on time tells
nothing. The worker's path: the windowed rules' job past a deadline tells it too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dispatch.registry import incident_desk, outbox
from dispatch.registry.db import session_factory, upgrade
from dispatch.registry.loader import load_into_registry
from dispatch.registry.room_step import RoomContext, control_room_step
from dispatch.registry.sla_breaches import sla_breaches
from dispatch.settings import AlarmSettings
from dispatch.watch.window_job import WindowJob
from estate.model import SAMPLE_ESTATE, load_estate
from tests.dispatch.registries import sample_registry
from tests.doubles import InMemoryTimeSeriesStore

SPEC = load_estate(SAMPLE_ESTATE)
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday, 10:00 in Athens
MIN = timedelta(minutes=1)
ROOM = RoomContext.of(SPEC)


def _sessions(engine: Engine) -> sessionmaker[Session]:
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        load_into_registry(session, SPEC, now=T0)
    return factory


def _open(sessions: sessionmaker[Session], key: str, severity: str) -> int:
    with sessions.begin() as session:
        return int(incident_desk.open_incident_by_operator(
            session, SPEC.id, key, f"{severity} fault", severity, "electrical", "ana", T0,
            facility="foods").id)


def _breaches(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(e.subject_id, e.payload["sla"]) for e in outbox.events(session, SPEC.id)
                if e.type == "incident.sla_breached"]


def _step(sessions: sessionmaker[Session], at: datetime) -> int:
    with sessions.begin() as session:
        return control_room_step(session, ROOM, [], at).sla_breaches


def test_each_deadline_is_told_once_when_the_step_sees_it_missed(engine: Engine) -> None:
    sessions = _sessions(engine)
    critical = _open(sessions, "k1", "critical")  # on site in 15 min, closed in 4 h
    low = _open(sessions, "k2", "low")  # 8 h, 72 h
    assert _step(sessions, T0 + 14 * MIN) == 0
    assert _breaches(sessions) == []
    assert _step(sessions, T0 + 16 * MIN) == 1
    assert _step(sessions, T0 + 17 * MIN) == 0, "told once"
    assert _breaches(sessions) == [(str(critical), "response")]
    assert _step(sessions, T0 + 4 * 60 * MIN + MIN) == 1
    assert _breaches(sessions) == [(str(critical), "response"), (str(critical), "resolution")]
    with sessions() as session:
        told = sla_breaches(session, SPEC.id, [str(critical), str(low)])
        event = next(e for e in outbox.events(session, SPEC.id)
                     if e.type == "incident.sla_breached")
    assert [b.deadline for b in told[str(critical)]] == ["response", "resolution"]
    assert told[str(critical)][0].due == T0 + 15 * MIN
    assert told[str(critical)][0].seen_at == T0 + 16 * MIN
    assert told[str(low)] == []
    assert (event.subject_type, event.payload["facility"], event.payload["severity"]) == (
        "incident", "foods", "critical")


def test_an_incident_closed_late_between_steps_tells_its_breach_as_it_closes(
        engine: Engine) -> None:
    sessions = _sessions(engine)
    late = _open(sessions, "k1", "critical")
    on_time = _open(sessions, "k2", "critical")
    with sessions.begin() as session:
        incident_desk.close_incident(session, on_time, "ana", T0 + 10 * MIN, "a false alarm")
        incident_desk.close_incident(session, late, "ana", T0 + 20 * MIN, "fixed by phone")
    assert _breaches(sessions) == [(str(late), "response")]
    assert _step(sessions, T0 + 5 * 60 * MIN) == 0, "closed incidents are not watched"


def test_the_worker_job_tells_a_breach(tmp_path: Path) -> None:
    registry = sample_registry(tmp_path)
    with registry.writing() as session:
        incident = incident_desk.open_incident_by_operator(
            session, SPEC.id, "k", "a tripped feeder", "critical", "electrical", "ana", T0)
    job = WindowJob(SPEC, InMemoryTimeSeriesStore(), registry, ROOM,
                    AlarmSettings(window_every_s=60, window_grace_s=5))
    outcome = job(int((T0 + 16 * MIN).timestamp() * 1000))
    assert outcome is not None
    assert outcome.sla_breaches == 1
    with registry.reading() as session:
        events = [e for e in outbox.events(session, SPEC.id)
                  if e.type == "incident.sla_breached"]
    assert [(e.subject_id, e.payload["sla"]) for e in events] == [(incident.id, "response")]
    registry.close()
