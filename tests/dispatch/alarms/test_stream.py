"""The streaming evaluator: each kind raises and clears when it should, hysteresis keeps a
value hovering at a limit from flapping, and memory does not grow with what devices send."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.alarms.stream import StreamEvaluator
from estate.alarm_rules import (
    BatterySocRule,
    ClockSkewRule,
    NoDataRule,
    RateOfChangeRule,
    SpikeRule,
    StuckRule,
    TankLevelRule,
    ThresholdRule,
    VoltageBandRule,
)
from tests.dispatch.alarms.helpers import ESTATE, T0, book, reading

S = 1000


def _threshold(**kw: object) -> ThresholdRule:
    params: dict[str, object] = {"kind": "threshold", "id": "hot", "quantity": "temperature",
                                 "high": 30.0, "hysteresis": 2.0, "severity": "high"}
    params.update(kw)
    return ThresholdRule.model_validate(params)


def _evaluator(*rules: object, kind: str = "temperature") -> StreamEvaluator:
    return StreamEvaluator(ESTATE, book({"f/m": kind}, *rules), T0)


def _feed(ev: StreamEvaluator, quantity: str, values: list[float], step_s: float = 1,
          channel: str = "") -> list[tuple[int, str, float | None]]:
    out = []
    for k, v in enumerate(values):
        t = T0 + int(k * step_s * S)
        for tr in ev.feed(reading("f/m", quantity, v, t, channel), t):
            out.append((k, tr.action, tr.value))
    return out


def test_threshold_raises_after_its_duration_and_clears_below_the_hysteresis() -> None:
    ev = _evaluator(_threshold(for_s=3))
    values = [25, 31, 31, 31, 31, 29, 28.5, 27.9, 31, 25]
    assert _feed(ev, "temperature", values) == [(4, "raise", 31), (7, "clear", 27.9)]


def test_a_short_excursion_is_not_an_alarm() -> None:
    ev = _evaluator(_threshold(for_s=5))
    assert _feed(ev, "temperature", [31, 31, 31, 29, 31, 31, 31, 31, 25]) == []


def test_low_limit_and_transition_fields() -> None:
    ev = _evaluator(ThresholdRule(kind="threshold", id="cold", quantity="temperature",
                                  low=2.0, hysteresis=0.5, severity="critical",
                                  name="Cold room"))
    transitions = ev.feed(reading("f/m", "temperature", 1.0, T0), T0)
    assert len(transitions) == 1
    t = transitions[0]
    assert (t.action, t.source, t.rule_id, t.rule_kind, t.severity, t.value, t.at_ms) == (
        "raise", "f/m", "cold", "threshold", "critical", 1.0, T0)
    assert t.message == "Cold room: temperature 1 Cel below 2"
    assert t.key == ("f/m", "cold")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=28.0, max_value=30.0), min_size=1, max_size=60))
def test_values_inside_the_hysteresis_band_never_flap(values: list[float]) -> None:
    """Once raised, values in [high - hysteresis, high] keep the alarm; before, values at
    or below the limit never raise it."""
    ev = _evaluator(_threshold())
    assert _feed(ev, "temperature", values) == []
    ev.feed(reading("f/m", "temperature", 35.0, T0 + 100 * S), T0 + 100 * S)
    later = [(k, a) for k, a, _ in _feed(ev, "temperature", [35.0, *values], step_s=1)]
    assert later == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=60.0), min_size=1, max_size=80))
def test_raises_and_clears_alternate(values: list[float]) -> None:
    ev = _evaluator(_threshold(for_s=2))
    actions = [a for _, a, _ in _feed(ev, "temperature", values)]
    assert all(a != b for a, b in pairwise(actions))
    assert not actions or actions[0] == "raise"


def test_voltage_band_watches_every_phase_as_one_alarm() -> None:
    ev = _evaluator(VoltageBandRule(kind="voltage_band", id="v", for_s=0),
                    kind="electricity")
    t = T0
    events = []
    for channel, value in [("l1", 230), ("l2", 260), ("l3", 255), ("l2", 240), ("l3", 251),
                           ("l3", 249)]:
        t += S
        events += [(tr.action, tr.message) for tr in
                   ev.feed(reading("f/m", "voltage", value, t, channel), t)]
    assert events == [("raise", "voltage 260 V above 253 (l2)"),
                      ("clear", "voltage back to 249 V (l3)")]


def test_battery_and_tank_bands_use_state_of_charge() -> None:
    ev = StreamEvaluator(ESTATE, book(
        {"f/b": "battery", "f/t": "tank"},
        BatterySocRule(kind="battery_soc", id="soc", for_s=0),
        TankLevelRule(kind="tank_level", id="level", for_s=0)), T0)
    out = ev.feed_pack([reading("f/b", "state_of_charge", 10, T0),
                        reading("f/t", "state_of_charge", 97, T0)], T0)
    assert {(t.source, t.rule_id, t.action) for t in out} == {
        ("f/b", "soc", "raise"), ("f/t", "level", "raise")}


def test_rate_of_change() -> None:
    ev = _evaluator(RateOfChangeRule(kind="rate_of_change", id="r", quantity="temperature",
                                     max_per_min=6.0))
    # 1 °C a second is 60 °C a minute.
    events = _feed(ev, "temperature", [20, 20.05, 21.05, 21.1, 21.12])
    assert [(k, a) for k, a, _ in events] == [(2, "raise"), (3, "clear")]
    assert [v for _, _, v in events] == pytest.approx([60.0, 3.0])


def test_stuck_value() -> None:
    ev = _evaluator(StuckRule(kind="stuck", id="s", quantity="temperature", for_s=60,
                              tolerance=0.01), kind="temperature")
    values = [20.0] * 70 + [20.005, 20.5]
    assert _feed(ev, "temperature", values) == [(60, "raise", 20.0), (71, "clear", 20.5)]


def test_spike_raises_once_and_clears_when_readings_are_normal_again() -> None:
    ev = _evaluator(SpikeRule(kind="spike", id="sp", quantity="power", clear_after_s=10,
                              min_change=5), kind="electricity")
    base = [100.0 + (k % 3) for k in range(30)]
    values = [*base, 1000.0, 101.0, 900.0, *[100.0] * 20]
    events = _feed(ev, "power", values)
    assert events == [(30, "raise", 1000.0), (42, "clear", 100.0)]


def test_spike_follows_a_lasting_change_of_level() -> None:
    ev = _evaluator(SpikeRule(kind="spike", id="sp", quantity="power", clear_after_s=5,
                              min_change=5), kind="electricity")
    events = _feed(ev, "power", [100.0] * 20 + [300.0] * 200)
    assert events[0] == (20, "raise", 300.0)
    assert events[-1][1] == "clear"
    assert len(events) == 2


def test_clock_skew_but_not_a_replayed_backlog() -> None:
    ev = _evaluator(ClockSkewRule(kind="clock_skew", id="c", max_skew_s=30, for_s=60))
    arrivals = []
    # A backlog of an hour replayed in 120 s: timestamps catch up with arrival.
    for k in range(120):
        arrival = T0 + k * S
        stamp = T0 - 3600 * S + k * 30 * S
        arrivals += ev.feed(reading("f/m", "temperature", 20, stamp), arrival)
    assert arrivals == []
    # A clock 90 s behind, reporting every 5 s.
    skewed = []
    for k in range(40):
        arrival = T0 + 200 * S + k * 5 * S
        skewed += [(k, t.action) for t in
                   ev.feed(reading("f/m", "temperature", 20, arrival - 90 * S), arrival)]
    assert skewed == [(12, "raise")]
    back = ev.feed(reading("f/m", "temperature", 20, T0 + 500 * S), T0 + 500 * S + 200)
    assert [t.action for t in back] == ["clear"]


def test_deadman_raises_on_tick_and_clears_on_the_next_reading() -> None:
    ev = StreamEvaluator(ESTATE, book({"f/a": "gas", "f/b": "gas"},
                                      NoDataRule(kind="no_data", id="nd", timeout_s=60)), T0)
    assert ev.tick(T0 + 30 * S) == []
    ev.feed(reading("f/a", "gas_flow", 1, T0 + 40 * S), T0 + 40 * S)
    raised = ev.tick(T0 + 61 * S)
    assert [(t.source, t.action) for t in raised] == [("f/b", "raise")]
    assert ev.tick(T0 + 62 * S) == []  # once
    assert ev.silent() == ["f/b"]
    assert [(t.source, t.action) for t in ev.tick(T0 + 101 * S)] == [("f/a", "raise")]
    cleared = ev.feed(reading("f/b", "gas_volume", 5, T0 + 102 * S), T0 + 102 * S)
    assert [(t.source, t.action, t.message) for t in cleared] == [
        ("f/b", "clear", "reporting again")]


def test_unknown_devices_and_quantities_cost_nothing_to_remember() -> None:
    ev = _evaluator(_threshold(), NoDataRule(kind="no_data", id="nd"))
    routes = len(ev._routes)
    for k in range(2000):
        t = T0 + k
        ev.feed_pack([reading(f"f/intruder-{k}", "temperature", 99, t),
                      reading("f/m", "power", 1, t, channel=f"c{k}"),
                      reading("nowhere/m", "temperature", 99, t)._replace(estate="other")], t)
    assert len(ev._routes) == routes
    assert ev.sources == 1
    assert ev.counts.unknown_source == 4000
    assert ev.counts.unwatched == 2000
    assert ev.counts.readings == 6000


def test_out_of_order_and_non_finite_readings_are_ignored() -> None:
    ev = _evaluator(_threshold())
    assert ev.feed(reading("f/m", "temperature", 35, T0 + 10 * S), T0 + 10 * S)
    # An older reading does not clear what a newer one raised.
    assert ev.feed(reading("f/m", "temperature", 20, T0 + 5 * S), T0 + 11 * S) == []
    assert ev.feed(reading("f/m", "temperature", float("nan"), T0 + 12 * S), T0 + 12 * S) == []
    assert [t.action for t in ev.feed(reading("f/m", "temperature", 20, T0 + 13 * S),
                                      T0 + 13 * S)] == ["clear"]


def test_a_restarted_evaluator_clears_what_the_registry_holds_active() -> None:
    rules = (_threshold(), NoDataRule(kind="no_data", id="nd", timeout_s=60),
             StuckRule(kind="stuck", id="st", quantity="temperature", for_s=60),
             ClockSkewRule(kind="clock_skew", id="sk"))
    t = T0 + 1000 * S
    ev = _evaluator(*rules)
    assert ev.restore([("f/m", "hot", 35.0), ("f/m", "nd", None), ("f/m", "st", 20.0),
                       ("f/m", "sk", 90.0), ("f/other", "hot", 1.0)]) == 4
    # Still hot (no second raise); reporting again, on time, moving: those three clear.
    assert sorted((x.rule_id, x.action) for x in ev.feed(
        reading("f/m", "temperature", 35.0, t), t)) == [
        ("nd", "clear"), ("sk", "clear"), ("st", "clear")]
    # 29 is inside the hysteresis: still hot; 27 is back.
    assert ev.feed(reading("f/m", "temperature", 29.0, t + S), t + S) == []
    assert [(x.rule_id, x.action) for x in ev.feed(
        reading("f/m", "temperature", 27.0, t + 2 * S), t + 2 * S)] == [("hot", "clear")]
    # A stuck alarm restored without its value waits for the value to move.
    again = _evaluator(*rules)
    again.restore([("f/m", "st", None)])
    assert again.feed(reading("f/m", "temperature", 20.0, t), t) == []
    assert again.feed(reading("f/m", "temperature", 20.0, t + S), t + S) == []
    assert [x.action for x in again.feed(reading("f/m", "temperature", 21.0, t + 2 * S),
                                         t + 2 * S)] == ["clear"]


def test_a_restored_voltage_alarm_clears_when_the_phases_are_back() -> None:
    ev = _evaluator(VoltageBandRule(kind="voltage_band", id="v", for_s=0), kind="electricity")
    ev.restore([("f/m", "v", 260.0)])
    t = T0 + S
    assert ev.feed(reading("f/m", "voltage", 262, t, "l2"), t) == []
    assert [x.action for x in ev.feed(reading("f/m", "voltage", 231, t + S, "l2"),
                                      t + S)] == ["clear"]
