"""The control room's counts in /metrics, read from a real SQLite registry at each
scrape: active alarms by severity, open incidents, those past an SLA deadline, and the
events waiting in the outbox; a registry that does not answer leaves them out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dispatch.alarms.model import AlarmTransition
from dispatch.registry.room_counts import RoomCounts, room_counts
from dispatch.registry.room_step import RoomContext, control_room_step
from dispatch.watch.metrics import RoomCollector
from estate.errors import RegistryError
from tests.dispatch.registries import SPEC, sample_registry

AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday, 10:00 in Athens: crews on shift


def _values(collector: RoomCollector) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(m.name, tuple(s.labels.values())): s.value
            for m in collector.collect() for s in m.samples}


def test_the_counts_follow_the_registry(tmp_path: Path) -> None:
    registry = sample_registry(tmp_path)
    leak = AlarmTransition("raise", "utilities/network", "balance", "balance", "high", 4.0,
                           "Network out of balance", int(AT.timestamp() * 1000))
    with registry.writing() as session:
        control_room_step(session, RoomContext.of(SPEC), [leak], AT)

    def counts(now: datetime) -> RoomCounts:
        with registry.reading() as session:
            return room_counts(session, SPEC.id, now)

    collector = RoomCollector()
    assert _values(collector) == {}  # nothing before the worker sets its source
    collector.counts = lambda: counts(AT + timedelta(minutes=5))
    values = _values(collector)
    assert values[("dispatch_alarms_active", ("high",))] == 1
    assert values[("dispatch_alarms_active", ("critical",))] == 0
    assert values[("dispatch_incidents_open", ())] == 1
    assert values[("dispatch_incidents_sla_breached", ("response",))] == 0
    # alarm.raised, incident.opened, incident.assigned: none delivered yet.
    assert values[("dispatch_outbox_events_waiting", ())] == 3
    # A day later nobody went and it is still open: both deadlines (high: 30 min, 8 h) passed.
    collector.counts = lambda: counts(AT + timedelta(days=1))
    values = _values(collector)
    assert values[("dispatch_incidents_sla_breached", ("response",))] == 1
    assert values[("dispatch_incidents_sla_breached", ("resolution",))] == 1

    def unavailable() -> RoomCounts:
        raise RegistryError("the registry is unavailable")

    collector.counts = unavailable
    assert _values(collector) == {}
    registry.close()
