"""Tariff versions and periods to per-step prices."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.optimiser import (
    TariffError,
    TariffPeriod,
    TariffVersion,
    period_names,
    step_prices,
)

WEEKDAYS = frozenset(range(5))
SUMMER = TariffVersion(date(2026, 6, 1), date(2026, 9, 1), (
    TariffPeriod("peak", 0.30, 17, 21, WEEKDAYS),
    TariffPeriod("low", 0.08, 23, 7),
), default_price=0.15)
AUTUMN = TariffVersion(date(2026, 9, 1), None, (
    TariffPeriod("peak", 0.35, 18, 22, WEEKDAYS),
    TariffPeriod("low", 0.09, 22, 6),
    TariffPeriod("mid", 0.16, 6, 18),
    TariffPeriod("weekend evening", 0.16, 18, 22, frozenset({5, 6})),
))


def test_periods_by_hour_and_weekday() -> None:
    monday = datetime(2026, 7, 13, 0, 0)
    prices = step_prices([SUMMER], monday, 96, 0.25)

    assert prices[0] == 0.08  # 00:00, inside 23:00-07:00
    assert prices[28] == 0.15  # 07:00, no period: the default
    assert prices[68] == 0.30  # 17:00 on a Monday
    assert prices[84] == 0.15  # 21:00
    assert prices[92] == 0.08  # 23:00


def test_weekend_has_no_peak() -> None:
    saturday = datetime(2026, 7, 18, 17, 0)
    assert step_prices([SUMMER], saturday, 4, 1.0).tolist() == [0.15] * 4


def test_a_new_version_takes_over_at_its_date() -> None:
    last_evening = datetime(2026, 8, 31, 20, 0)  # a Monday
    prices = step_prices([SUMMER, AUTUMN], last_evening, 8, 1.0)
    names = period_names([SUMMER, AUTUMN], last_evening, 8, 1.0)

    assert prices.tolist() == [0.30, 0.15, 0.15, 0.08, 0.09, 0.09, 0.09, 0.09]
    assert names[:4] == ["peak", "", "", "low"]


def test_local_time_across_daylight_saving() -> None:
    """The clock goes back on 25 October 2026 in Europe: 17:00 local is 16:00 UTC after."""
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 10, 23, 12, 0, tzinfo=zone)  # a Friday
    prices = step_prices([AUTUMN], start, 24 * 4, 1.0)

    assert prices[6] == 0.35  # Friday 18:00 local
    monday_six_pm = 24 * 3 + 6 + 1  # one more hour elapsed because of the change
    assert prices[monday_six_pm] == 0.35
    assert prices[monday_six_pm - 1] == 0.16


def test_a_step_without_price_is_an_error() -> None:
    with pytest.raises(TariffError, match="no tariff price"):
        step_prices([SUMMER], datetime(2026, 5, 31, 22, 0), 4, 1.0)


def test_overlapping_versions_are_an_error() -> None:
    overlap = TariffVersion(date(2026, 8, 15), None, (), default_price=0.1)
    with pytest.raises(TariffError, match="overlap"):
        step_prices([SUMMER, overlap], datetime(2026, 8, 20), 4, 1.0)


@given(st.integers(0, 24 * 365), st.sampled_from([0.25, 0.5, 1.0]))
def test_every_step_gets_one_of_the_tariff_prices(hour: int, step: float) -> None:
    start = datetime(2026, 6, 1) + (datetime(2026, 6, 2) - datetime(2026, 6, 1)) * (hour / 24)
    prices = step_prices([SUMMER, AUTUMN], start, 16, step)

    allowed = {0.30, 0.08, 0.15, 0.35, 0.09, 0.16}
    assert set(np.round(prices, 6)) <= allowed
