"""Flood grouping: a feeder or tank outage becomes one group naming it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.alarms.grouping import GroupedAlarm, group_alarms
from dispatch.alarms.stream import StreamEvaluator
from edge.faults import InjectedFault, estate_faults
from edge.scale import synthetic_estate
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate

SPEC = load_estate(SAMPLE_ESTATE)
TREES = SPEC.network_trees()
POWER = next(t for t in TREES if t.id == "power")


def _no_data(*meters: str) -> list[GroupedAlarm]:
    return [GroupedAlarm(m, "no-data", "no_data") for m in meters]


def test_a_silent_feeder_is_one_group_naming_it() -> None:
    below = POWER.subtree("utilities/feeder-south")
    grouping = group_alarms(TREES, [*_no_data(*below),
                                    GroupedAlarm("textile/hvac", "spike", "spike"),
                                    GroupedAlarm("estate", "capacity", "capacity")])
    assert len(grouping.groups) == 1
    group = grouping.groups[0]
    assert (group.network, group.cause, group.affected, group.below) == (
        "power", "utilities/feeder-south", 11, 11)
    assert len(group.members) == 12
    assert group.key == "group:power:utilities/feeder-south"
    assert "11 of the 11 meters below it affected on the electricity network (no data 12)" in \
        group.describe()
    assert {a.source for a in grouping.ungrouped} == {"textile/hvac", "estate"}


def test_a_few_alarms_under_a_feeder_stay_alarms() -> None:
    grouping = group_alarms(TREES, _no_data("units/u01", "units/u02"))
    assert grouping.groups == ()
    assert len(grouping.ungrouped) == 2
    # Eight of eleven is under four fifths.
    grouping = group_alarms(TREES, _no_data(*[f"units/u0{i}" for i in range(1, 9)]))
    assert grouping.groups == ()


def test_the_highest_covering_node_is_the_cause() -> None:
    everything = POWER.descendants("utilities/grid")
    grouping = group_alarms(TREES, _no_data(*everything))
    assert [g.cause for g in grouping.groups] == ["utilities/grid"]
    # The feeder's own meter reporting while all below are silent: still the feeder.
    grouping = group_alarms(TREES, _no_data(*POWER.descendants("utilities/feeder-south")))
    assert [g.cause for g in grouping.groups] == ["utilities/feeder-south"]


def test_a_tank_outage_upsets_the_water_network_below_it() -> None:
    below = ["utilities/network", "textile/water", "foods/water", "units/water"]
    grouping = group_alarms(TREES, [GroupedAlarm(m, "pressure-low", "threshold")
                                    for m in below])
    assert [(g.network, g.cause) for g in grouping.groups] == [("water", "utilities/tower")]


def test_a_meter_in_two_networks_is_grouped_once() -> None:
    alarms = _no_data(*POWER.descendants("utilities/feeder-north"))
    water = ["utilities/tower", "utilities/network", "textile/water", "foods/water",
             "units/water"]
    alarms += _no_data(*water)
    grouping = group_alarms(TREES, alarms)
    members = [a.key for g in grouping.groups for a in g.members]
    assert len(members) == len(set(members))
    assert {g.cause for g in grouping.groups} == {"utilities/feeder-north",
                                                  "utilities/booster"}


@settings(max_examples=100, deadline=None)
@given(st.sets(st.sampled_from(sorted({m for t in TREES for m in t.meters})), max_size=30))
def test_every_alarm_is_grouped_once_or_left_alone(meters: set[str]) -> None:
    alarms = _no_data(*meters)
    grouping = group_alarms(TREES, alarms)
    seen = [a.key for g in grouping.groups for a in g.members] + [
        a.key for a in grouping.ungrouped]
    assert sorted(seen) == sorted(a.key for a in alarms)
    for group in grouping.groups:
        tree = next(t for t in TREES if t.id == group.network)
        assert {a.source for a in group.members} <= set(tree.subtree(group.cause))


def test_a_simulated_feeder_outage_of_forty_meters_is_one_group() -> None:
    spec = synthetic_estate(2_000, seed=5)
    start = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)
    fault = InjectedFault(facility="utilities", meter="feeder-1", kind="outage",
                          start=start + timedelta(minutes=2), end=start + timedelta(hours=1))
    sim = EstateSimulator(spec, 5, faults=estate_faults(spec, [fault]))
    t0 = int(start.timestamp() * 1000)
    ev = StreamEvaluator(spec.id, spec.rule_book(), t0)
    active: dict[tuple[str, str], GroupedAlarm] = {}
    for k in range(0, 12 * 60 // 10 + 1):  # ten minutes of 10-second steps
        now = t0 + k * 10_000
        transitions = []
        for _, readings in sim.step(now):
            transitions += ev.feed_pack(readings, now + 300)
        transitions += ev.tick(now + 300)
        for t in transitions:
            if t.action == "raise":
                active[t.key] = GroupedAlarm(t.source, t.rule_id, t.rule_kind)
            else:
                active.pop(t.key, None)
    no_data = [a for a in active.values() if a.rule_kind == "no_data"]
    assert len(no_data) == 41
    grouping = group_alarms(spec.network_trees(), active.values())
    causes = [(g.cause, len(g.members)) for g in grouping.groups]
    assert causes == [("utilities/feeder-1", 41)]
