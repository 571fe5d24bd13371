"""The settlement of one event: each tenant's delivered reduction against its baseline,
compared with what it was asked for, and the money the programme's rules give it.

    delivered (kWh) = sum over the window of (baseline - metered) x step hours, at least 0
    payment         = payment_per_kwh x min(delivered, requested)
    penalty         = penalty_per_kwh x max(requested - delivered, 0)

A tenant "fell short" when it delivered less than it was asked, by more than
``SHORT_TOLERANCE`` of the request (meters and baselines are not exact to the kWh).

Pure: numbers in, numbers out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from dispatch.dr.orders import Programme

FloatArray = npt.NDArray[np.float64]

SHORT_TOLERANCE: Final = 0.02
"""2 % of the request: a revenue meter's class 1-2 accuracy, so a tenant is never called
short for what the meter cannot tell apart."""


@dataclass(frozen=True, slots=True)
class TenantSettlement:
    facility: str
    baseline_kwh: float
    metered_kwh: float
    requested_kwh: float
    delivered_kwh: float
    payment: float
    penalty: float
    missing_steps: int
    """Window steps without a metered value: counted as no reduction."""

    @property
    def net(self) -> float:
        return self.payment - self.penalty

    @property
    def short_kwh(self) -> float:
        return max(self.requested_kwh - self.delivered_kwh, 0.0)

    @property
    def fell_short(self) -> bool:
        return self.short_kwh > SHORT_TOLERANCE * self.requested_kwh + 1e-9


def settle_tenant(facility: str, programme: Programme, step_hours: float,
                  requested_kw: FloatArray, baseline_kw: FloatArray,
                  metered_kw: FloatArray) -> TenantSettlement:
    """One tenant's settlement; a step it was not metered in counts as its baseline."""
    missing = ~np.isfinite(metered_kw)
    baseline = np.nan_to_num(np.asarray(baseline_kw, dtype=np.float64))
    metered = np.where(missing, baseline, metered_kw)
    requested = float(np.nan_to_num(requested_kw).sum() * step_hours)
    delivered = max(float((baseline - metered).sum() * step_hours), 0.0)
    return TenantSettlement(
        facility, float(baseline.sum() * step_hours), float(metered.sum() * step_hours),
        requested, delivered,
        programme.payment_per_kwh * min(delivered, requested),
        programme.penalty_per_kwh * max(requested - delivered, 0.0), int(missing.sum()))


def settle(programme: Programme, step_hours: float, requested: Mapping[str, FloatArray],
           baselines: Mapping[str, FloatArray], metered: Mapping[str, FloatArray],
           ) -> list[TenantSettlement]:
    """Every tenant of ``requested``'s settlement, in its order."""
    return [settle_tenant(f, programme, step_hours, kw, baselines[f],
                          metered.get(f, np.full(kw.size, np.nan)))
            for f, kw in requested.items()]
