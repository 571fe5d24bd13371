"""Tariff versions (with validity dates) and periods (by hour of day and weekday) to prices.

A tariff is a sequence of versions, each valid over ``[valid_from, valid_until)`` in local
dates; a version's periods say which price applies by wall-clock hour and weekday, the
first matching period winning, and ``default_price`` (if any) covering the rest. A period
from 22:00 to 06:00 wraps past midnight. ``step_prices`` gives the price of each step from
the wall-clock time at the step's start, in the time zone of ``start`` (so a 24-hour
horizon across a daylight-saving change still follows the local peak hours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from dispatch.optimiser.problem import FloatArray
from estate.errors import ConfigError

ALL_DAYS = frozenset(range(7))


class TariffError(ConfigError):
    """A tariff that does not give exactly one price to every step."""


@dataclass(frozen=True, slots=True)
class TariffPeriod:
    name: str
    price: float
    start_hour: float  # local wall-clock, inclusive
    end_hour: float  # exclusive; at or before start_hour: the period wraps past midnight
    weekdays: frozenset[int] = ALL_DAYS  # Monday = 0


@dataclass(frozen=True, slots=True)
class TariffVersion:
    valid_from: date
    valid_until: date | None  # exclusive; None: open-ended
    periods: tuple[TariffPeriod, ...]
    default_price: float | None = None


def _overlap(a: TariffVersion, b: TariffVersion) -> bool:
    a_end, b_end = a.valid_until or date.max, b.valid_until or date.max
    return a.valid_from < b_end and b.valid_from < a_end


def _local_steps(start: datetime, steps: int, step_hours: float
                 ) -> tuple[list[date], np.ndarray, np.ndarray]:
    """Each step's local date, weekday and hour of day (fractional)."""
    dates: list[date] = []
    weekday = np.empty(steps, dtype=np.int64)
    hour = np.empty(steps)
    zone = start.tzinfo
    origin = start.astimezone(UTC) if zone is not None else start
    for k in range(steps):  # a horizon has a few hundred steps: a loop is fine here
        moment = origin + timedelta(hours=k * step_hours)
        if zone is not None:
            moment = moment.astimezone(zone)
        dates.append(moment.date())
        weekday[k] = moment.weekday()
        hour[k] = moment.hour + moment.minute / 60 + moment.second / 3600
    return dates, weekday, hour


def period_names(versions: Sequence[TariffVersion], start: datetime, steps: int,
                 step_hours: float) -> list[str]:
    """The period name of each step ("" where a version's default price applies)."""
    return _resolve(versions, start, steps, step_hours)[1]


def step_prices(versions: Sequence[TariffVersion], start: datetime, steps: int,
                step_hours: float) -> FloatArray:
    """The price of each step; raises ``TariffError`` if a step has no price."""
    return _resolve(versions, start, steps, step_hours)[0]


def _resolve(versions: Sequence[TariffVersion], start: datetime, steps: int,
             step_hours: float) -> tuple[FloatArray, list[str]]:
    for i, a in enumerate(versions):
        for b in versions[i + 1:]:
            if _overlap(a, b):
                raise TariffError(f"tariff versions from {a.valid_from} and {b.valid_from} "
                                  "overlap")
    dates, weekday, hour = _local_steps(start, steps, step_hours)
    ordinal = np.array([d.toordinal() for d in dates], dtype=np.int64)
    price = np.full(steps, np.nan)
    names = np.full(steps, "", dtype=object)
    for v in versions:
        until = (v.valid_until or date.max).toordinal()
        valid = (ordinal >= v.valid_from.toordinal()) & (ordinal < until)
        for period in v.periods:
            if period.start_hour < period.end_hour:
                in_hours = (hour >= period.start_hour) & (hour < period.end_hour)
            else:
                in_hours = (hour >= period.start_hour) | (hour < period.end_hour)
            days = np.isin(weekday, list(period.weekdays))
            hit = valid & in_hours & days & np.isnan(price)
            price[hit] = period.price
            names[hit] = period.name
        if v.default_price is not None:
            price[valid & np.isnan(price)] = v.default_price
    missing = np.flatnonzero(np.isnan(price))
    if missing.size:
        first = start + timedelta(hours=int(missing[0]) * step_hours)
        raise TariffError(f"{missing.size} steps have no tariff price, the first at "
                          f"{first.isoformat()}")
    return price, [str(n) for n in names]
