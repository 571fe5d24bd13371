"""From alarms to incidents: one incident per flood group, one per urgent alarm, alarms
joining the incident already open, and nothing for the desk's alarms."""

from __future__ import annotations

from datetime import UTC, datetime

from dispatch.incidents.model import open_incident
from dispatch.incidents.triage import AlarmView, AttachAlarms, OpenIncident, Site, triage
from estate.model import SAMPLE_ESTATE, load_estate

SPEC = load_estate(SAMPLE_ESTATE)
SITE = Site.of(SPEC)
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
POWER = next(t for t in SITE.trees if t.id == "power")


def _alarm(source: str, rule: str = "no-data", kind: str = "no_data",
           severity: str = "high", id: str | None = None) -> AlarmView:
    return AlarmView(id or f"{source}#{rule}", source, rule, kind, severity,  # type: ignore[arg-type]
                     f"{rule} at {source}")


def test_a_feeder_outage_opens_one_incident_naming_the_feeder() -> None:
    alarms = [_alarm(m) for m in POWER.subtree("utilities/feeder-south")]
    actions = triage(alarms, [], SITE)
    assert len(actions) == 1
    action = actions[0]
    assert isinstance(action, OpenIncident)
    assert (action.origin, action.cause, action.skill, action.severity, action.facility) == (
        "group:power:utilities/feeder-south", "utilities/feeder-south", "electrical", "high",
        "utilities")
    assert action.position == (60, 60)
    assert len(action.alarms) == 12
    assert action.title.startswith("Feeder south: 11 of the 11 meters below it affected")


def test_alarms_that_join_an_open_group_are_attached() -> None:
    first = [_alarm(m) for m in POWER.subtree("utilities/feeder-south")[:-2]]
    opened = triage(first, [], SITE)[0]
    assert isinstance(opened, OpenIncident)
    incident = open_incident("9", "demo", opened.title, opened.severity, opened.origin,
                             opened.skill, opened.position, NOW, "telemetry",
                             alarms=opened.alarms)
    everything = [_alarm(m) for m in POWER.subtree("utilities/feeder-south")]
    actions = triage(everything, [incident], SITE)
    assert actions == [AttachAlarms("9", frozenset({("units/u09", "no-data"),
                                                    ("units/u10", "no-data")}))]
    assert triage(first, [incident], SITE) == []  # nothing new


def test_single_alarms_by_severity_and_kind() -> None:
    leak = _alarm("utilities/network", "balance", "balance", "high", id="41")
    cold = _alarm("foods/coldroom-temp", "coldroom-warm", "threshold", "critical", id="42")
    silent = _alarm("textile/gas", id="43")
    medium = _alarm("metal/main", "spike", "spike", "medium", id="44")
    capacity = _alarm("estate", "capacity", "capacity", "critical", id="45")
    skew = _alarm("foods/water", "clock-skew", "clock_skew", "critical", id="46")
    actions = triage([leak, cold, silent, medium, capacity, skew], [], SITE)
    got = {a.origin: (a.skill, a.severity, a.facility) for a in actions
           if isinstance(a, OpenIncident)}
    assert got == {"alarm:41": ("water", "high", "utilities"),
                   "alarm:42": ("hvac", "critical", "foods"),
                   "alarm:43": ("metering", "high", "textile")}


def test_an_alarm_already_in_an_incident_opens_nothing_more() -> None:
    leak = _alarm("utilities/gas-station", "balance", "balance", id="7")
    incident = open_incident("1", "demo", "gas leak", "high", "alarm:7", "gas", (0, 0), NOW,
                             "telemetry", alarms=[leak.key])
    assert triage([leak], [incident], SITE) == []
    # Closed, the same alarm (a new one, a new id) opens a new incident.
    again = _alarm("utilities/gas-station", "balance", "balance", id="8")
    assert [a.origin for a in triage([again], [], SITE)] == ["alarm:8"]  # type: ignore[union-attr]
