"""Orders as the rolling plan takes them, and the plan's shortfall explained by tenant.

``active_orders`` reads the orders opted into and split that overlap a horizon, with each
tenant's share per step. ``shortfall`` says, for each step where the planned import is
still above the order's cap, how short the estate is and on whose account: each tenant's
fair share (pro rata to its weight, as if nobody had a limit) less what the plan has it
shed, scaled so that the tenants' parts add up to the step's shortfall. A tenant at its
agreed limit is short by what the others could not take from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from dispatch.dr.metered import QUARTER_MS
from dispatch.dr.orders import Order
from dispatch.dr.records import order_of
from dispatch.registry import dr_book
from dispatch.registry.db import Registry

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class PlannedOrder:
    order: Order
    times_ms: npt.NDArray[np.int64]
    requested_kw: FloatArray
    shares: dict[str, FloatArray]
    fair: dict[str, FloatArray]

    def cap_kw(self, baseline_kw: FloatArray) -> FloatArray:
        """The estate's import cap per step of the order's window."""
        if self.order.kind == "cap":
            return np.full(self.times_ms.size, self.order.kw)
        return np.maximum(np.nan_to_num(baseline_kw) - self.order.kw, 0.0)


def active_orders(registry: Registry, estate_id: str, start: datetime,
                  end: datetime) -> list[PlannedOrder]:
    """Orders opted into and split that overlap ``[start, end)``."""
    out = []
    with registry.reading() as session:
        for record in dr_book.orders(session, estate_id, overlapping=(start, end),
                                     statuses=("split",)):
            if record.opt != "in":
                continue
            order = order_of(record)
            parts = dr_book.participations(session, order.id)
            times = np.arange(order.start_ms, order.end_ms, QUARTER_MS, dtype=np.int64)
            requested = np.asarray(record.detail.get("requested_kw") or np.zeros(times.size),
                                   dtype=np.float64)
            weights = np.array([p.weight for p in parts])
            total = weights.sum()
            shares = {p.facility_id: np.asarray(p.requested_kw, dtype=np.float64)
                      for p in parts}
            fair = {p.facility_id: requested * (p.weight / total if total > 0 else 0.0)
                    for p in parts}
            out.append(PlannedOrder(order, times, requested, shares, fair))
    return out


@dataclass(frozen=True, slots=True)
class StepShortfall:
    time_ms: int
    short_kw: float
    by_tenant: dict[str, float]


def shortfall(planned: PlannedOrder, import_kw: FloatArray, cap_kw: FloatArray,
              shed_kw: dict[str, FloatArray]) -> list[StepShortfall]:
    """Steps of the order's window where ``import_kw`` (the plan's, per window step) is
    above ``cap_kw``, each with the tenants' parts of the shortfall."""
    out = []
    excess = np.nan_to_num(import_kw) - cap_kw
    facilities = list(planned.fair)
    for t in np.flatnonzero(excess > 0.5):  # half a kW: the solver's tolerance, not a miss
        gaps = np.array([max(planned.fair[f][t] - shed_kw.get(f, np.zeros(excess.size))[t],
                             0.0) for f in facilities])
        if gaps.sum() <= 0:
            gaps = np.array([planned.fair[f][t] for f in facilities])
        parts = gaps / gaps.sum() * excess[t] if gaps.sum() > 0 else np.zeros(len(facilities))
        out.append(StepShortfall(int(planned.times_ms[t]), float(excess[t]),
                                 {f: round(float(v), 1) for f, v in zip(facilities, parts,
                                                                        strict=True) if v > 0.05}))
    return out


def describe(order: Order, steps: Sequence[StepShortfall], labels: dict[str, str],
             timezone: Any) -> str:
    """The shortfall in words, for the plan's notes."""
    if not steps:
        return f"order {order.id}: the plan keeps the cap in every step"
    worst = max(steps, key=lambda s: s.short_kw)
    when = datetime.fromtimestamp(worst.time_ms / 1000, timezone).strftime("%H:%M")
    tenants = ", ".join(f"{labels.get(f, f)} {kw:,.0f} kW" for f, kw in
                        sorted(worst.by_tenant.items(), key=lambda kv: -kv[1]))
    return (f"order {order.id}: the plan is short of the cap in {len(steps)} steps, at most "
            f"{worst.short_kw:,.0f} kW at {when}, on account of {tenants or 'no tenant'}")
