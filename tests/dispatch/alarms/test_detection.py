"""The default rules against the simulated sample estate: faults the simulator injects are
each detected on the right meter, and a clean morning raises nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch.alarms.model import AlarmTransition
from dispatch.alarms.stream import StreamEvaluator
from edge.faults import InjectedFault, estate_faults
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate

SPEC = load_estate(SAMPLE_ESTATE)
START = datetime(2026, 7, 15, 5, 0, tzinfo=UTC)  # 08:00 in Athens, a Wednesday
STEP_S = 5


def _run(faults: list[InjectedFault], minutes: int) -> list[AlarmTransition]:
    sim = EstateSimulator(SPEC, 3, faults=estate_faults(SPEC, faults))
    t0 = int(START.timestamp() * 1000)
    ev = StreamEvaluator(SPEC.id, SPEC.rule_book(), t0)
    out: list[AlarmTransition] = []
    for k in range(minutes * 60 // STEP_S):
        now = t0 + k * STEP_S * 1000
        for _, readings in sim.step(now):
            # Readings reach the evaluator a little after they are taken.
            out += ev.feed_pack(readings, now + 250)
        out += ev.tick(now + 250)
    return out


def _at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def test_a_clean_morning_raises_nothing() -> None:
    assert _run([], 90) == []


def test_spike_stuck_and_clock_skew_are_each_detected() -> None:
    faults = [
        InjectedFault(facility="textile", meter="main", kind="spike", start=_at(10),
                      end=_at(10) + timedelta(seconds=STEP_S)),
        InjectedFault(facility="metal", meter="compressors", kind="stuck", start=_at(5),
                      end=_at(75)),
        InjectedFault(facility="foods", meter="water", kind="clock_skew", start=_at(20),
                      end=_at(40), magnitude=-90),
        InjectedFault(facility="units", meter="water", kind="spike", start=_at(30),
                      end=_at(30) + timedelta(seconds=STEP_S), magnitude=8),
    ]
    out = _run(faults, 90)
    seen = [(t.source, t.rule_id, t.action,
             round((t.at_ms / 1000 - START.timestamp()) / 60, 1)) for t in out]
    assert seen == [
        ("textile/main", "spike", "raise", 10.0),
        ("textile/main", "spike", "clear", 11.0),
        ("foods/water", "clock-skew", "raise", 21.0),
        ("units/water", "spike", "raise", 30.0),
        ("units/water", "spike", "clear", 31.0),
        ("foods/water", "clock-skew", "clear", 40.0),
        ("metal/compressors", "stuck", "raise", 65.0),
        ("metal/compressors", "stuck", "clear", 75.0),
    ]
