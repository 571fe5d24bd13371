"""The windowed evaluator: every kind over arrays of meters, the balance of the sample
estate's networks fed by the simulator, and agreement with the streaming evaluator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.alarms.frames import (
    CapacityInputs,
    SeriesWindow,
    WindowFrame,
    WindowInputs,
    aggregate,
)
from dispatch.alarms.stream import StreamEvaluator
from dispatch.alarms.window import WindowedEvaluator
from edge.faults import InjectedFault, estate_faults
from edge.simulator import EstateSimulator
from estate.alarm_rules import CapacityRule, NoDataRule, PowerFactorRule, StuckRule, ThresholdRule
from estate.model import SAMPLE_ESTATE, load_estate
from estate.readings import Reading
from estate.rule_binding import bind_rules
from tests.dispatch.alarms.helpers import ESTATE, T0, book, reading

MIN = 60_000


def _series(mean: list[float], count: list[int] | None = None,
            spread: float = 1.0) -> SeriesWindow:
    m = np.array(mean, dtype=float)
    c = np.array(count if count is not None else [5] * len(mean), dtype=np.int64)
    m = np.where(c > 0, m, np.nan)
    return SeriesWindow(c, m, m - spread / 2, m + spread / 2)


def _inputs(end_ms: int, span: float, **series: SeriesWindow) -> WindowInputs:
    keys = {tuple(k.split("__")) if "__" in k else (k, ""): v for k, v in series.items()}
    return WindowInputs(end_ms, {span: WindowFrame(end_ms, span, keys)})  # type: ignore[misc]


def test_band_transitions_exactly() -> None:
    ev = WindowedEvaluator(book({"f/a": "temperature", "f/b": "temperature"}, ThresholdRule(
        kind="threshold", id="hot", quantity="temperature", high=30, hysteresis=2,
        for_s=60, mode="window", window_s=60)))
    seq = [([31, 25], [5, 5]), ([31, 31], [5, 5]), ([29, 31], [5, 5]), ([27, 0], [5, 0]),
           ([27, 20], [5, 5])]
    out = []
    for k, (means, count) in enumerate(seq):
        out += [(k, t.source, t.action) for t in ev.evaluate(
            _inputs(T0 + k * MIN, 60, temperature=_series(means, count)))]
    # a: out at 0 and 1 -> raised at 1 (60 s), 29 keeps it (hysteresis), 27 clears.
    # b: out at 1 and 2 -> raised at 2; no data at 3 keeps it; 20 clears at 4.
    assert out == [(1, "f/a", "raise"), (2, "f/b", "raise"), (3, "f/a", "clear"),
                   (4, "f/b", "clear")]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(min_value=20, max_value=40), min_size=1, max_size=40),
       st.sampled_from([0, 60, 180]))
def test_windowed_and_streaming_bands_agree(values: list[float], for_s: int) -> None:
    """One value per window: the windowed evaluator raises and clears exactly where the
    streaming one does."""
    rule = {"kind": "threshold", "id": "hot", "quantity": "temperature", "high": 30,
            "hysteresis": 2, "for_s": for_s}
    stream = StreamEvaluator(ESTATE, book({"f/m": "temperature"},
                                          ThresholdRule.model_validate(rule)), T0)
    window = WindowedEvaluator(book({"f/m": "temperature"}, ThresholdRule.model_validate(
        {**rule, "mode": "window", "window_s": 60})))
    a, b = [], []
    for k, v in enumerate(values):
        t = T0 + k * MIN
        a += [(k, x.action) for x in stream.feed(reading("f/m", "temperature", v, t), t)]
        b += [(k, x.action) for x in window.evaluate(
            _inputs(t, 60, temperature=_series([v])))]
    assert a == b


def test_no_data_stuck_and_power_factor() -> None:
    meters = {"f/a": "electricity", "f/b": "electricity", "f/c": "electricity"}
    ev = WindowedEvaluator(book(
        meters, NoDataRule(kind="no_data", id="nd", timeout_s=300, mode="window"),
        StuckRule(kind="stuck", id="st", quantity="power", for_s=1800, mode="window"),
        PowerFactorRule(kind="power_factor", id="pf", min_pf=0.9, for_s=0, window_s=900)),
        stuck_span_s=900)
    assert ev.needs() == {900.0: {("power", ""), ("power_factor", "")}}
    seen = np.array([T0, T0 - 400_000, T0], dtype=np.int64)
    power = SeriesWindow(np.array([10, 0, 10]), np.array([50.0, np.nan, 3.0]),
                         np.array([50.0, np.nan, 2.0]), np.array([50.0, np.nan, 4.0]))
    pf = _series([0.8, 0.8, 0.5])
    out = []
    for k in range(4):
        end = T0 + k * 15 * MIN
        frames = {900.0: WindowFrame(end, 900, {("power", ""): power,
                                                ("power_factor", ""): pf})}
        out += [(k, t.source, t.rule_id, t.action)
                for t in ev.evaluate(WindowInputs(end, frames, seen + k * 15 * MIN))]
    # a: frozen at 50 kW: two windows make 30 minutes; power factor 0.8 while drawing.
    # b: silent for 400 s; no data for its power factor. c: 3 kW is idle: pf not judged.
    assert sorted(out) == [(0, "f/a", "pf", "raise"), (0, "f/b", "nd", "raise"),
                           (1, "f/a", "st", "raise")]


def _sample_window(spec, faults, hours: float = 2.0, step_s: int = 60):  # type: ignore[no-untyped-def]
    """Simulated readings of the sample estate for ``hours`` from 10:00 local."""
    start = datetime(2026, 7, 15, 7, 0, tzinfo=UTC)
    sim = EstateSimulator(spec, 3, faults=estate_faults(spec, faults))
    t0 = int(start.timestamp() * 1000)
    readings: list[Reading] = []
    for k in range(int(hours * 3600 / step_s)):
        for _, rs in sim.step(t0 + k * step_s * 1000):
            readings.extend(rs)
    return t0, readings


def test_a_leak_breaks_the_water_balance_and_its_end_clears_it() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    book_ = spec.rule_book()
    ev = WindowedEvaluator(book_)
    start = datetime(2026, 7, 15, 7, 0, tzinfo=UTC)
    leak = InjectedFault(facility="utilities", meter="network", kind="leak",
                         start=start + timedelta(minutes=30), end=start + timedelta(minutes=75),
                         magnitude=4.0)
    t0, readings = _sample_window(spec, [leak])
    keys = ev.needs()[900.0]
    out = []
    for k in range(1, 9):
        end = t0 + k * 15 * MIN
        frame = aggregate(readings, ev.meters, end, 900, keys)
        last_seen = np.full(len(ev.meters), end, dtype=np.int64)
        out += [(k, t.source, t.rule_id, t.action) for t in ev.evaluate(
            WindowInputs(end, {900.0: frame}, last_seen)) if t.rule_id == "balance"]
    # Leaking from 07:30 to 08:15: the windows ending 07:45 and 08:00 are out (the rule's
    # 30 minutes), the window ending 08:30 is clean again.
    assert out == [(4, "utilities/network", "balance", "raise"),
                   (6, "utilities/network", "balance", "clear")]


def test_a_clean_day_of_the_sample_raises_no_balance_alarm() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    ev = WindowedEvaluator(spec.rule_book())
    t0, readings = _sample_window(spec, [], hours=4, step_s=120)
    keys = ev.needs()[900.0]
    for k in range(1, 17):
        end = t0 + k * 15 * MIN
        frame = aggregate(readings, ev.meters, end, 900, keys)
        out = ev.evaluate(WindowInputs(end, {900.0: frame},
                                       np.full(len(ev.meters), end, dtype=np.int64)))
        assert [t for t in out if t.rule_id == "balance"] == [], k


def test_gas_balance_message_names_the_node() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    ev = WindowedEvaluator(spec.rule_book())
    index = {m: i for i, m in enumerate(ev.meters)}
    n = len(ev.meters)
    flow = np.zeros(n)
    count = np.zeros(n, dtype=np.int64)
    for meter, value in [("utilities/gas-station", 140.0), ("textile/gas", 60.0),
                         ("metal/gas", 30.0), ("foods/gas", 20.0)]:
        flow[index[meter]], count[index[meter]] = value, 15
    gas = SeriesWindow(count, np.where(count > 0, flow, np.nan), flow, flow)
    out = []
    for k in range(2):
        end = T0 + k * 15 * MIN
        out += ev.evaluate(WindowInputs(end, {900.0: WindowFrame(end, 900, {
            ("gas_flow", ""): gas})}))
    assert len(out) == 1
    t = out[0]
    assert (t.source, t.rule_id, t.action, t.severity) == ("utilities/gas-station",
                                                           "balance", "raise", "high")
    assert t.value == pytest.approx(140 - 110 * 1.005)
    assert "gas: utilities/gas-station reads 29.45 m3/h more than its 3 meters below" in t.message


def test_capacity_now_and_forecast() -> None:
    ev = WindowedEvaluator(bind_rules([], [], [], ["t"], defaults=(
        CapacityRule(kind="capacity", id="cap", severity="critical"),
        CapacityRule(kind="capacity", id="cap-f", horizon_s=7200, severity="medium"))))
    times = T0 + np.arange(0, 8) * 15 * MIN
    forecast = np.array([900, 950, 1000, 1100, 990, 900, 800, 700], dtype=float)
    inputs = WindowInputs(T0, {}, capacity=CapacityInputs(
        demand_kw={"estate": 2600.0, "facility:t": 500.0},
        limit_kw={"estate": 2500.0, "facility:t": 1000.0},
        forecast={"facility:t": (times.astype(np.int64), forecast)}))
    out = {(t.source, t.rule_id): t for t in ev.evaluate(inputs)}
    assert set(out) == {("estate", "cap"), ("facility:t", "cap-f")}
    assert out[("facility:t", "cap-f")].value == 1100
    assert "above 1000 kW" in out[("facility:t", "cap-f")].message
    calmer = WindowInputs(T0 + 15 * MIN, {}, capacity=CapacityInputs(
        demand_kw={"estate": 2460.0}, limit_kw={"estate": 2500.0, "facility:t": 1000.0},
        forecast={"facility:t": (times.astype(np.int64), forecast * 0.5)}))
    # 2460 kW is inside the 2 % hysteresis (2450 kW): the estate's alarm stays.
    assert [(t.source, t.action) for t in ev.evaluate(calmer)] == [("facility:t", "clear")]


def test_frames_of_the_wrong_size_are_refused() -> None:
    ev = WindowedEvaluator(book({"f/a": "temperature"}, ThresholdRule(
        kind="threshold", id="hot", quantity="temperature", high=30, mode="window")))
    with pytest.raises(ValueError, match="2 entries for 1 meters"):
        ev.evaluate(_inputs(T0, 300, temperature=_series([1, 2])))


def test_a_node_with_a_meter_reporting_for_part_of_the_window_is_not_judged() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    ev = WindowedEvaluator(spec.rule_book())
    index = {m: i for i, m in enumerate(ev.meters)}
    n = len(ev.meters)
    flow = np.zeros(n)
    count = np.zeros(n, dtype=np.int64)
    # The station's mean covers the whole window; foods/gas came back for its last third.
    for meter, value, seen in [("utilities/gas-station", 140.0, 15), ("textile/gas", 60.0, 15),
                               ("metal/gas", 30.0, 15), ("foods/gas", 20.0, 5)]:
        flow[index[meter]], count[index[meter]] = value, seen
    gas = SeriesWindow(count, np.where(count > 0, flow, np.nan), flow, flow)
    for k in range(3):
        end = T0 + k * 15 * MIN
        assert ev.evaluate(WindowInputs(end, {900.0: WindowFrame(end, 900, {
            ("gas_flow", ""): gas})})) == []


def test_a_restarted_windowed_evaluator_clears_a_stored_balance_alarm() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    ev = WindowedEvaluator(spec.rule_book())
    assert ev.restore([("utilities/gas-station", "balance", 29.0),
                       ("utilities/gas-station", "no-such-rule", 1.0)]) == 1
    index = {m: i for i, m in enumerate(ev.meters)}
    n = len(ev.meters)
    flow, count = np.zeros(n), np.zeros(n, dtype=np.int64)
    for meter, value in [("utilities/gas-station", 110.6), ("textile/gas", 60.0),
                         ("metal/gas", 30.0), ("foods/gas", 20.0)]:
        flow[index[meter]], count[index[meter]] = value, 15
    gas = SeriesWindow(count, np.where(count > 0, flow, np.nan), flow, flow)
    out = ev.evaluate(WindowInputs(T0, {900.0: WindowFrame(T0, 900, {("gas_flow", ""): gas})}))
    assert [(t.source, t.rule_id, t.action) for t in out] == [
        ("utilities/gas-station", "balance", "clear")]
