"""A tenant's monthly statement, from quarter-hour metered data and the estate's rules.

Lines, each with the quantity, rate and source it came from:

- electricity by tariff period: the tenant's incomers' energy in each period x its price;
- water and gas: the month's volume x the estate's price per m³;
- its share of the demand charge (the estate's highest quarter-hour import of the month x
  the charge per kW) and of the contracted-capacity penalty (that peak above the
  contracted capacity x the penalty per kW), both by the tenant's draw in that
  quarter-hour (coincident peak);
- its share of the shared assets' running cost (their net draw at the tariff, the
  genset's fuel), by its contract's allocation rule (``dispatch.dr.allocation``); what
  they saved on the peak and the penalty is a memo line: it is already in the smaller
  demand charge and penalty above;
- its demand-response settlements of the month (a payment is a credit);
- the total.

The estate's own bill from the same meters (``EstateBill``) is what the statements add up
to. Vectorised over tenants and steps (numpy): 200 tenants over a month of quarter-hours is
an array of 600,000 values a quantity (bench/settlement.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from dispatch.dr.allocation import AllocationTerms, allocation_keys

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MEMO: Final = "memo"


@dataclass(frozen=True, slots=True, eq=False)
class MonthUsage:
    """Metered quantities per tenant and quarter-hour of a month (NaN: not metered)."""

    month: str
    times_ms: IntArray
    step_hours: float
    electricity_kw: Mapping[str, FloatArray]
    water_m3: Mapping[str, FloatArray]
    gas_m3: Mapping[str, FloatArray]
    shared_kw: FloatArray
    sources: Mapping[str, str] = field(default_factory=dict)
    """Per tenant (and ``_shared``), which meters and series its figures came from."""


@dataclass(frozen=True, slots=True, eq=False)
class BillingRules:
    currency: str
    tariff: str
    period_names: Sequence[str]
    """The tariff period of each step."""
    energy_price: FloatArray
    demand_charge_per_kw: float
    capacity_kw: float
    capacity_penalty_per_kw: float
    water_price_per_m3: float
    gas_price_per_m3: float
    shared_running_cost: float
    allocation: Mapping[str, AllocationTerms] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Line:
    section: str
    label: str
    quantity: float
    unit: str
    rate: float | None
    amount: float
    source: str


@dataclass(frozen=True, slots=True)
class Statement:
    facility: str
    name: str
    month: str
    currency: str
    lines: tuple[Line, ...]

    @property
    def total(self) -> float:
        return float(sum(line.amount for line in self.lines if line.section != MEMO))


@dataclass(frozen=True, slots=True)
class EstateBill:
    """The estate's month from the same meters: what the statements must add up to."""

    energy: float
    demand_charge: float
    capacity_penalty: float
    water: float
    gas: float
    shared_running: float
    demand_response: float
    peak_kw: float
    peak_ms: int

    @property
    def total(self) -> float:
        return (self.energy + self.demand_charge + self.capacity_penalty + self.water
                + self.gas + self.shared_running - self.demand_response)


def _matrix(facilities: Sequence[str], data: Mapping[str, FloatArray], steps: int) -> FloatArray:
    out = np.zeros((len(facilities), steps))
    for i, f in enumerate(facilities):
        if f in data:
            out[i] = np.nan_to_num(np.asarray(data[f], dtype=np.float64))
    return out


def _fractions(values: FloatArray) -> FloatArray:
    values = np.maximum(values, 0.0)
    total = values.sum()
    return values / total if total > 0 else np.full(values.size, 1.0 / max(values.size, 1))


@dataclass(frozen=True, slots=True, eq=False)
class _Estate:
    """The month's arrays, computed once for every tenant."""

    power: FloatArray  # (tenants, steps) kW
    water: FloatArray
    gas: FloatArray
    periods: tuple[tuple[str, npt.NDArray[np.bool_]], ...]
    peak_step: int
    peak_kw: float
    peak_without_shared_kw: float


def _estate(usage: MonthUsage, rules: BillingRules, facilities: Sequence[str]) -> _Estate:
    steps = usage.times_ms.size
    power = _matrix(facilities, usage.electricity_kw, steps)
    demand = power.sum(axis=0) + np.nan_to_num(usage.shared_kw)
    names = np.asarray(rules.period_names, dtype=object)
    periods = tuple((str(p), names == p) for p in dict.fromkeys(rules.period_names))
    peak_step = int(np.argmax(demand)) if steps else 0
    return _Estate(power, _matrix(facilities, usage.water_m3, steps),
                   _matrix(facilities, usage.gas_m3, steps), periods, peak_step,
                   float(max(demand.max(initial=0.0), 0.0)),
                   float(max(power.sum(axis=0).max(initial=0.0), 0.0)))


def estate_bill(usage: MonthUsage, rules: BillingRules, facilities: Sequence[str],
                dr_net: Mapping[str, float] | None = None) -> EstateBill:
    """The estate's bill from the tenants' and the shared assets' meters."""
    e = _estate(usage, rules, facilities)
    h, price = usage.step_hours, rules.energy_price
    shared = float((np.nan_to_num(usage.shared_kw) * price).sum() * h)
    return EstateBill(
        float((e.power * price).sum() * h) + shared, e.peak_kw * rules.demand_charge_per_kw,
        max(e.peak_kw - rules.capacity_kw, 0.0) * rules.capacity_penalty_per_kw,
        float(e.water.sum() * rules.water_price_per_m3),
        float(e.gas.sum() * rules.gas_price_per_m3), rules.shared_running_cost,
        float(sum((dr_net or {}).values())), e.peak_kw,
        int(usage.times_ms[e.peak_step]) if usage.times_ms.size else 0)


def monthly_statements(usage: MonthUsage, rules: BillingRules, names: Mapping[str, str],
                       dr_net: Mapping[str, float] | None = None) -> list[Statement]:
    """One statement per tenant of ``names`` (facility id -> name), in that order."""
    facilities = list(names)
    e = _estate(usage, rules, facilities)
    h, price, dr_net = usage.step_hours, rules.energy_price, dr_net or {}
    by_period = [(name, (e.power[:, mask] * h).sum(axis=1),
                  (e.power[:, mask] * price[mask]).sum(axis=1) * h, float(price[mask].mean()))
                 for name, mask in e.periods if mask.any()]
    coincident = _fractions(e.power[:, e.peak_step]) if facilities else np.zeros(0)
    energy_kwh = e.power.sum(axis=1) * h
    keys = allocation_keys(facilities, rules.allocation, e.power[:, e.peak_step], energy_kwh)
    shared_total = (float((np.nan_to_num(usage.shared_kw) * price).sum() * h)
                    + rules.shared_running_cost)
    excess = max(e.peak_kw - rules.capacity_kw, 0.0)
    saved = ((e.peak_without_shared_kw - e.peak_kw) * rules.demand_charge_per_kw
             + (max(e.peak_without_shared_kw - rules.capacity_kw, 0.0) - excess)
             * rules.capacity_penalty_per_kw)
    peak_at = (datetime.fromtimestamp(int(usage.times_ms[e.peak_step]) / 1000, UTC).isoformat()
               if usage.times_ms.size else "-")
    peak_source = f"estate peak {e.peak_kw:,.1f} kW in the quarter-hour from {peak_at}"
    out = []
    for i, f in enumerate(facilities):
        source = usage.sources.get(f, "")
        lines = [Line("electricity", f"energy, {name} period", float(kwh[i]), "kWh", rate,
                      float(cost[i]), f"{source}; tariff {rules.tariff}, period {name}")
                 for name, kwh, cost, rate in by_period]
        lines += [
            Line("water", "water", float(e.water[i].sum()), "m3", rules.water_price_per_m3,
                 float(e.water[i].sum() * rules.water_price_per_m3), source),
            Line("gas", "gas", float(e.gas[i].sum()), "m3", rules.gas_price_per_m3,
                 float(e.gas[i].sum() * rules.gas_price_per_m3), source),
            Line("demand", "share of the demand charge", float(coincident[i]), "share",
                 e.peak_kw * rules.demand_charge_per_kw,
                 float(coincident[i] * e.peak_kw * rules.demand_charge_per_kw),
                 f"{peak_source}; coincident draw {e.power[i, e.peak_step]:,.1f} kW"),
            Line("demand", "share of the contracted-capacity penalty", float(coincident[i]),
                 "share", excess * rules.capacity_penalty_per_kw,
                 float(coincident[i] * excess * rules.capacity_penalty_per_kw),
                 f"{peak_source}; contracted {rules.capacity_kw:,.0f} kW"),
            Line("shared", "share of the shared assets' running cost", float(keys[i]),
                 "share", shared_total, float(keys[i] * shared_total),
                 f"rule {rules.allocation.get(f, AllocationTerms()).rule}; "
                 f"{usage.sources.get('_shared', '')}"),
            Line(MEMO, "shared assets' saving on peak and penalty (included above)",
                 float(keys[i]), "share", saved, float(keys[i] * saved), "same rule"),
            Line("demand response", "demand-response settlements", 0.0, "", None,
                 -float(dr_net.get(f, 0.0)), "registry: dr_participations of the month"),
        ]
        out.append(Statement(f, names[f], usage.month, rules.currency, tuple(lines)))
    return out
