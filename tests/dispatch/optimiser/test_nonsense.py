"""Random estates of every asset kind, with NaN, infinities, negative, huge, fractional and
inconsistent values in any numeric field: each is either refused with a ``ProblemError``
naming the asset and the field, or planned within the solve's wall-clock bound, and that
plan keeps every constraint and the physics.

Small horizons (4-8 steps) and a bounded number of examples keep it to seconds.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dispatch.optimiser import (
    PV,
    Battery,
    DeferrableLoad,
    DemandResponseWindow,
    EstateProblem,
    Genset,
    ProblemError,
    PumpTank,
    SolveOptions,
    ThermalStorage,
    optimise,
)
from tests.dispatch.optimiser.checker import check, physical

OPTIONS = SolveOptions(time_limit_s=10.0)
FACILITIES = ("acme", "bolt")
KINDS = ("batteries", "deferrables", "gensets", "thermal", "pumps", "pv", "dr_windows")


def estate(seed: int, steps: int, step_hours: float) -> EstateProblem:
    """A sound estate with one or two assets of every kind."""
    rng = np.random.default_rng(seed)

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    def fac() -> str:
        return FACILITIES[int(rng.integers(2))]

    def count() -> range:
        return range(int(rng.integers(1, 3)))

    batteries = tuple(Battery(f"bat{i}", fac(), 5.0, u(50, 100), u(10, 40), u(10, 40),
                              u(10, 40), u(0.85, 1.0), u(0.85, 1.0),
                              degradation_cost=u(0, 0.05)) for i in count())
    deferrables = []
    for i in count():
        first = int(rng.integers(0, steps - 2))
        end = int(rng.integers(first + 1, steps + 1))
        top = u(5, 30)
        binary = bool(rng.integers(2))
        deferrables.append(DeferrableLoad(
            f"load{i}", fac(), u(0.1, 0.8) * top * step_hours * (end - first), top, first, end,
            min_kw=u(0, 0.4) * top if binary else 0.0,
            min_run_steps=int(rng.integers(1, 3)) if binary else 1,
            non_interruptible=binary and bool(rng.integers(2))))
    gensets = tuple(Genset(f"gen{i}", fac(), u(5, 15), u(20, 50), u(0.1, 0.4), u(0, 5),
                           int(rng.integers(1, 3)), int(rng.integers(1, 3)),
                           bool(rng.integers(2)), int(rng.integers(0, 3))) for i in count())
    thermal = tuple(ThermalStorage(f"chill{i}", fac(), u(20, 50), u(2.5, 4.5),
                                   rng.uniform(5, 30, steps), 10.0, u(60, 120), u(10, 60),
                                   loss_per_hour=u(0, 0.05)) for i in count())
    pumps = tuple(PumpTank(f"pump{i}", fac(), u(5, 15), u(1, 4), rng.uniform(2, 30, steps), 5.0,
                           u(40, 80), u(5, 40), overflow=bool(rng.integers(2)),
                           spill_cost=u(0, 0.5)) for i in count())
    pv = tuple(PV(f"pv{i}", fac(), rng.uniform(0, 60, steps)) for i in count())
    windows = tuple(DemandResponseWindow(0, int(rng.integers(1, steps + 1)), u(50, 200),
                                         f"order{i}") for i in count())
    limits = np.full((2, steps), np.inf)
    limits[1] = u(60, 150)
    return EstateProblem(
        start=datetime(2026, 7, 14, 22, 0), step_hours=step_hours, facilities=FACILITIES,
        base_load_kw=rng.uniform(-20, 90, (2, steps)), import_price=rng.uniform(-0.1, 0.4, steps),
        export_price=rng.uniform(-0.05, 0.3, steps), capacity_kw=u(100, 300),
        export_limit_kw=u(20, 80), demand_charge=u(0, 8), prior_peak_kw=u(0, 100),
        facility_limit_kw=limits, dr_windows=windows, batteries=batteries,
        deferrables=tuple(deferrables), gensets=gensets, thermal=thermal, pumps=pumps, pv=pv)


def numeric_fields(p: EstateProblem) -> list[tuple[str, int | None, str]]:
    """(kind or "estate", index, field) of every numeric field of ``p``."""
    out: list[tuple[str, int | None, str]] = [
        ("estate", None, f) for f in ("step_hours", "base_load_kw", "import_price",
                                      "export_price", "capacity_kw", "export_limit_kw",
                                      "demand_charge", "prior_peak_kw", "facility_limit_kw",
                                      "violation_penalty")]
    for kind in KINDS:
        for i, item in enumerate(getattr(p, kind)):
            out += [(kind, i, f.name) for f in dataclasses.fields(item)
                    if f.name not in ("name", "facility")]
    return out


BAD = st.sampled_from([math.nan, math.inf, -math.inf, -50.0, 1e15, 0.0, 2.5, "inconsistent"])


def corrupt(value: Any, bad: Any, rng: np.random.Generator) -> Any:
    """``value`` with ``bad`` in it: the whole value, or one entry of an array."""
    if bad == "inconsistent":  # far enough past any partner field to cross it
        bad = (2 * float(np.max(value)) + 100.0) if value is not None else 100.0
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            bad = int(bad)
    if isinstance(value, np.ndarray):
        out = np.array(value, dtype=float, copy=True)
        out.flat[int(rng.integers(out.size))] = bad
        return out
    return bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(4, 8),
       step_hours=st.sampled_from([0.25, 1.0]), data=st.data())
def test_nonsense_is_refused_by_name_and_the_rest_is_planned_within_the_bound(
        seed: int, steps: int, step_hours: float, data: st.DataObject) -> None:
    problem = estate(seed, steps, step_hours)
    named: tuple[str, str] | None = None
    if data.draw(st.booleans(), label="corrupt"):
        kind, index, field = data.draw(st.sampled_from(numeric_fields(problem)), label="field")
        bad = data.draw(BAD, label="value")
        rng = np.random.default_rng(seed)
        if kind == "estate":
            value = corrupt(getattr(problem, field), bad, rng)
            problem = dataclasses.replace(problem, **{field: value})
            named = ("estate", field)
        else:
            items = list(getattr(problem, kind))
            item = items[index]  # type: ignore[index]
            items[index] = dataclasses.replace(  # type: ignore[index]
                item, **{field: corrupt(getattr(item, field), bad, rng)})
            problem = dataclasses.replace(problem, **{kind: tuple(items)})
            named = (item.name, field)
    try:
        plan, refused = optimise(problem, OPTIONS), ""
    except ProblemError as error:
        plan, refused = None, str(error)
    event("refused" if plan is None else "planned")
    if plan is None:
        assert named is not None, f"a sound estate was refused: {refused}"
        assert f"{named[0]} " in refused, (named, refused)
        assert named[1] in refused, (named, refused)
        return
    event(f"status {plan.status}")
    assert plan.timings.solve_s <= plan.timings.bound_s
    assert check(problem, plan) == []
    assert physical(problem, plan.schedule) == []
    assert physical(problem, plan.baseline_schedule) == []
