"""An incident's life, the rule for closing it, and its SLA clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.incidents.model import (
    IncidentStateError,
    arrive,
    assign,
    attach_alarms,
    close,
    close_resolved,
    note,
    open_incident,
    sla_status,
    unassign,
)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
LEAK = ("utilities/network", "balance")


def _incident(severity: str = "high", alarms: tuple[tuple[str, str], ...] = (LEAK,),
              id: str = "1"):  # type: ignore[no-untyped-def]
    return open_incident(id, "demo", "Water network out of balance", severity,  # type: ignore[arg-type]
                         "alarm:7", "water", (60, 60), NOW, "telemetry", alarms=alarms)


def test_life_of_an_incident_with_who_and_when() -> None:
    incident = _incident()
    assert (incident.status, incident.respond_by - NOW, incident.resolve_by - NOW) == (
        "open", timedelta(minutes=30), timedelta(hours=8))
    incident = assign(incident, "pipes", "planner", NOW + MIN)
    incident = assign(incident, "gas-on-call", "maria", NOW + 2 * MIN, pinned=True)
    incident = arrive(incident, "pipes-lead", NOW + 20 * MIN)
    incident = note(incident, "maria", NOW + 25 * MIN, "valve 3 replaced")
    incident = close(incident, "telemetry", NOW + 40 * MIN, active_alarms=[])
    assert incident.status == "closed"
    assert [(s.action, s.by, s.note) for s in incident.steps] == [
        ("opened", "telemetry", ""), ("assigned", "planner", "to pipes"),
        ("reassigned", "maria", "to gas-on-call (pinned)"),
        ("on-site", "pipes-lead", "crew gas-on-call"), ("note", "maria", "valve 3 replaced"),
        ("closed", "telemetry", "the alarms cleared")]
    status = sla_status(incident, NOW + 10 * timedelta(hours=1))
    assert (status.respond_left_s, status.response_breached) == (600.0, False)
    assert status.resolve_left_s == pytest.approx(8 * 3600 - 40 * 60)


def test_telemetry_closes_only_when_every_alarm_cleared() -> None:
    incident = attach_alarms(_incident(), [("textile/water", "pressure-low")], NOW)
    assert len(incident.alarms) == 2
    with pytest.raises(IncidentStateError, match="only when all its alarms have cleared"):
        close(incident, "telemetry", NOW, active_alarms=[LEAK])
    assert close_resolved([incident], [("textile/water", "pressure-low")], NOW) == []
    closed = close_resolved([incident], [("other/meter", "no-data")], NOW + MIN)
    assert [(i.status, i.closed_by) for i in closed] == [("closed", "telemetry")]


def test_an_operator_closes_with_a_reason() -> None:
    incident = _incident()
    with pytest.raises(IncidentStateError, match=r"needs a reason \(1 of its alarms"):
        close(incident, "maria", NOW, active_alarms=[LEAK])
    closed = close(incident, "maria", NOW, "meter replaced; the alarm follows the old one",
                   active_alarms=[LEAK])
    assert (closed.closed_by, closed.close_reason) == (
        "maria", "meter replaced; the alarm follows the old one")
    without_alarms = _incident(alarms=())
    with pytest.raises(IncidentStateError, match="telemetry closes"):
        close(without_alarms, "telemetry", NOW)


@pytest.mark.parametrize(("step", "message"), [
    (lambda i: arrive(i, "x", NOW), "cannot be marked on site"),
    (lambda i: unassign(i, "x", NOW), "cannot be unassigned"),
    (lambda i: assign(arrive(assign(i, "c", "p", NOW), "c", NOW), "d", "p", NOW),
     "is on_site: it cannot be assigned"),
    (lambda i: close(close(i, "m", NOW, "r"), "m", NOW, "r"), "is closed"),
    (lambda i: attach_alarms(close(i, "m", NOW, "r"), [LEAK], NOW), "cannot be given alarms"),
    (lambda i: note(i, "m", NOW, " "), "needs text"),
    (lambda i: assign(i, "c", " ", NOW), "name of who"),
])
def test_steps_the_status_refuses(step: object, message: str) -> None:
    with pytest.raises(IncidentStateError, match=message):
        step(_incident())  # type: ignore[operator]


def test_sla_clock_while_open_and_breaches() -> None:
    incident = _incident("critical")
    status = sla_status(incident, NOW + 10 * MIN)
    assert (status.respond_left_s, status.response_breached) == (300.0, False)
    late = sla_status(incident, NOW + 20 * MIN)
    assert (late.respond_left_s, late.response_breached) == (-300.0, True)
    # The alarm cleared on its own within the response time: nobody was late.
    gone = close(incident, "telemetry", NOW + 5 * MIN, active_alarms=[])
    assert not sla_status(gone, NOW + 5 * timedelta(hours=1)).response_breached
    overdue = sla_status(incident, NOW + 5 * timedelta(hours=1))
    assert overdue.resolution_breached


def test_unassign_and_reassign_back_to_open() -> None:
    incident = unassign(assign(_incident(), "pipes", "planner", NOW), "maria", NOW + MIN)
    assert (incident.status, incident.crew, incident.pinned) == ("open", None, False)
    assert assign(incident, "x", "p", NOW, pinned=False).steps[-1].action == "assigned"
