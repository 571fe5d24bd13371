"""The pure arithmetic of demand response: split, baselines, settlement, allocation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from dispatch.dr.allocation import AllocationTerms, allocation_keys
from dispatch.dr.baselines import QUARTER_MS, BaselineMethod, high_x_of_y
from dispatch.dr.orders import Programme
from dispatch.dr.settlement import settle_tenant
from dispatch.dr.split import Participant, SplitPolicy, split_order


def _flat(kw: float, steps: int = 4) -> np.ndarray:
    return np.full(steps, kw)


def test_split_is_pro_rata_to_baseline_when_nobody_is_capped() -> None:
    result = split_order(_flat(300), [Participant("a", _flat(1000)), Participant("b", _flat(500))],
                         SplitPolicy(fairness=0))
    shares = result.by_facility()
    assert shares["a"].kw == pytest.approx(_flat(200))
    assert shares["b"].kw == pytest.approx(_flat(100))
    assert result.unassigned_kw == pytest.approx(_flat(0))


def test_critical_loads_are_never_asked_and_caps_pass_the_rest_on() -> None:
    result = split_order(_flat(600), [
        Participant("hospital", _flat(1000), priority="critical"),
        Participant("small", _flat(500), flexible_kw=50),
        Participant("big", _flat(1000))], SplitPolicy(fairness=0))
    shares = result.by_facility()
    assert shares["hospital"].kw == pytest.approx(_flat(0))
    assert shares["small"].kw == pytest.approx(_flat(50))
    assert shares["small"].capped.all()
    assert shares["big"].kw == pytest.approx(_flat(550))
    assert result.unassigned_kw == pytest.approx(_flat(0))


def test_what_nobody_can_take_is_unassigned() -> None:
    result = split_order(_flat(400), [Participant("a", _flat(300), flexible_kw=100),
                                      Participant("b", _flat(300), flexible_kw=150)])
    assert result.unassigned_kw == pytest.approx(_flat(150))
    assert all(s.capped.all() for s in result.shares)


def test_a_tenant_curtailed_more_this_season_is_asked_less() -> None:
    fresh = [Participant("a", _flat(500)), Participant("b", _flat(500))]
    tired = [Participant("a", _flat(500), season_kwh=900), Participant("b", _flat(500),
                                                                        season_kwh=100)]
    even = split_order(_flat(200), fresh).by_facility()
    fair = split_order(_flat(200), tired).by_facility()
    assert even["a"].kw == pytest.approx(even["b"].kw)
    assert fair["a"].kw.sum() < fair["b"].kw.sum()
    assert (fair["a"].kw + fair["b"].kw) == pytest.approx(_flat(200))


def _history(days: int, start: datetime, level: dict[date, float]) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    times = np.arange(int(start.timestamp() * 1000), int(start.timestamp() * 1000)
                      + days * 86_400_000, QUARTER_MS, dtype=np.int64)
    values = np.array([level.get(datetime.fromtimestamp(t / 1000, UTC).date(), 100.0)
                       for t in times])
    return times, values


def test_high_x_of_y_takes_the_highest_like_days_and_skips_event_days() -> None:
    event = datetime(2026, 7, 15, 17, tzinfo=UTC)  # a Wednesday
    first = datetime(2026, 6, 1, tzinfo=UTC)
    levels = {date(2026, 7, 14): 400.0, date(2026, 7, 13): 300.0, date(2026, 7, 10): 900.0,
              date(2026, 7, 12): 5000.0}  # a Sunday: not a like day
    times, values = _history(45, first, levels)
    window = (int(event.timestamp() * 1000), int((event + timedelta(hours=1)).timestamp()
                                                  * 1000))
    plain = high_x_of_y(times, values, *window, "UTC",
                        BaselineMethod(x=2, y=5, adjustment="none"))
    assert plain.values_kw == pytest.approx(np.full(4, 650.0))  # 900 and 400
    assert plain.days == (date(2026, 7, 10), date(2026, 7, 14))
    skipped = high_x_of_y(times, values, *window, "UTC", BaselineMethod(
        x=2, y=5, adjustment="none", exclude=frozenset({date(2026, 7, 10)})))
    assert skipped.values_kw == pytest.approx(np.full(4, 350.0))  # 400 and 300
    assert skipped.record()["excluded_days"] == ["2026-07-10"]


def test_same_day_adjustment_is_capped() -> None:
    event = datetime(2026, 7, 15, 17, tzinfo=UTC)
    times, values = _history(45, datetime(2026, 6, 1, tzinfo=UTC), {date(2026, 7, 15): 200.0})
    window = (int(event.timestamp() * 1000), int(event.timestamp() * 1000) + 4 * QUARTER_MS)
    inside = (times >= window[0]) & (times < window[1])
    values[inside] = np.nan  # the window itself is not metered yet
    adjusted = high_x_of_y(times, values, *window, "UTC", BaselineMethod(
        x=4, y=10, adjustment="additive", adjustment_cap=0.2))
    assert adjusted.adjustment_kw == pytest.approx(20.0)  # +100 capped at 20 % of 100
    assert adjusted.values_kw == pytest.approx(np.full(4, 120.0))


def test_settlement_pays_what_was_delivered_and_charges_what_was_not() -> None:
    programme = Programme("summer", payment_per_kwh=0.5, penalty_per_kwh=1.0)
    good = settle_tenant("a", programme, 0.25, _flat(100), _flat(500), _flat(390))
    assert good.delivered_kwh == pytest.approx(110)
    assert good.payment == pytest.approx(50)  # capped at the 100 kWh asked
    assert not good.fell_short
    short = settle_tenant("b", programme, 0.25, _flat(100), _flat(500), _flat(460))
    assert short.delivered_kwh == pytest.approx(40)
    assert short.penalty == pytest.approx(60)
    assert short.fell_short
    unmetered = settle_tenant("c", programme, 0.25, _flat(100), _flat(500), np.full(4, np.nan))
    assert unmetered.missing_steps == 4
    assert unmetered.fell_short


def test_allocation_keys_follow_each_contracts_rule_and_add_up_to_one() -> None:
    keys = allocation_keys(["a", "b", "c"], {"c": AllocationTerms("fixed", 5.0)},
                           peak_kw=np.array([300.0, 100.0, 0.0]),
                           energy_kwh=np.array([1.0, 1.0, 1.0]))
    assert keys.sum() == pytest.approx(1.0)
    assert keys[0] == pytest.approx(3 * keys[1])
    assert keys[2] > 0  # c pays by its fixed weight though it drew nothing at the peak
