"""The fair split of a demand-response order among the tenants.

The estate must shed ``requested_kw`` in each step of the window. Each tenant takes a share
in proportion to its weight, where

    weight = its baseline in the window (pro rata: who draws more, sheds more)
           x its priority class's factor (``critical`` loads 0: never asked;
             ``standard`` 1; ``flexible`` tenants, paid to be first, 1.5)
           x its season factor: 1 / (1 + fairness x (its share of the season's
             curtailment so far / its share of the baseline - 1)), within [0.25, 4],
             so a tenant curtailed more than its size this season is asked less now
             and one curtailed less is asked more;

and never more than it agreed it can shed (its contract's ``flexible_kw``) or than its
baseline. What a capped tenant cannot take is shared again among the others, in the same
proportions (water-filling), step by step. What nobody can take is ``unassigned``: the
plan has to find it in the shared assets, or it is a shortfall.

Pure: numbers in, numbers out. docs/demand-response.md has the policy in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PRIORITY_CLASSES: Final = ("critical", "standard", "flexible")
FAIRNESS_BOUNDS: Final = (0.25, 4.0)
"""The season factor stays within these: fairness evens out the burden over a season, it
does not exempt a tenant entirely or load one with four times its size."""
_EPS: Final = 1e-9


@dataclass(frozen=True, slots=True)
class SplitPolicy:
    class_factors: Mapping[str, float] = field(default_factory=lambda: {
        "critical": 0.0, "standard": 1.0, "flexible": 1.5})
    fairness: float = 0.5
    """0: pro rata to baseline only; 1: a tenant's past share weighs fully against it."""

    def describe(self) -> dict[str, object]:
        return {"rule": "pro rata to baseline x priority class x season fairness",
                "class_factors": dict(self.class_factors), "fairness": self.fairness}


@dataclass(frozen=True, slots=True, eq=False)
class Participant:
    """A tenant as the split sees it."""

    facility: str
    baseline_kw: FloatArray
    priority: str = "standard"
    flexible_kw: float = float("inf")
    season_kwh: float = 0.0
    """What it was asked to shed in this season's earlier events."""


@dataclass(frozen=True, slots=True, eq=False)
class Share:
    facility: str
    kw: FloatArray
    weight: float
    season_factor: float
    capped: npt.NDArray[np.bool_]
    """Steps where it took all it can (its ``flexible_kw`` or its whole baseline)."""


@dataclass(frozen=True, slots=True, eq=False)
class Split:
    shares: tuple[Share, ...]
    unassigned_kw: FloatArray
    policy: SplitPolicy

    def by_facility(self) -> dict[str, Share]:
        return {s.facility: s for s in self.shares}


def season_factors(participants: Sequence[Participant], fairness: float) -> FloatArray:
    """Each tenant's season factor (see the module's docstring)."""
    size = np.array([max(float(np.nanmean(p.baseline_kw)) if p.baseline_kw.size else 0.0,
                         0.0) for p in participants])
    past = np.array([max(p.season_kwh, 0.0) for p in participants])
    if past.sum() <= _EPS or size.sum() <= _EPS:
        return np.ones(len(participants))
    ratio = (past / past.sum()) / np.maximum(size / size.sum(), _EPS)
    factor = 1.0 / (1.0 + fairness * (ratio - 1.0))
    factor = np.where(1.0 + fairness * (ratio - 1.0) <= _EPS, FAIRNESS_BOUNDS[1], factor)
    return np.clip(factor, *FAIRNESS_BOUNDS)


def split_order(requested_kw: FloatArray, participants: Sequence[Participant],
                policy: SplitPolicy | None = None) -> Split:
    """Share ``requested_kw`` (kW per step) among ``participants``."""
    policy = policy or SplitPolicy()
    requested = np.maximum(np.nan_to_num(np.asarray(requested_kw, dtype=np.float64)), 0.0)
    steps, n = requested.size, len(participants)
    if n == 0:
        return Split((), requested.copy(), policy)
    base = np.array([np.maximum(np.nan_to_num(p.baseline_kw), 0.0) for p in participants])
    room = np.minimum(base, np.array([[max(p.flexible_kw, 0.0)] for p in participants]))
    factors = season_factors(participants, policy.fairness)
    classes = np.array([policy.class_factors.get(p.priority, 1.0) for p in participants])
    weights = base.mean(axis=1) * classes * factors
    shares = np.zeros((n, steps))
    for t in range(steps):
        shares[:, t] = _water_fill(requested[t], weights, room[:, t])
    unassigned = np.maximum(requested - shares.sum(axis=0), 0.0)
    capped = (shares >= room - 1e-6) & (room > 0) | ((room <= 0) & (requested > 0))
    return Split(tuple(Share(p.facility, shares[i], float(weights[i]), float(factors[i]),
                             capped[i]) for i, p in enumerate(participants)),
                 unassigned, policy)


def _water_fill(amount: float, weights: FloatArray, room: FloatArray) -> FloatArray:
    """``amount`` shared in proportion to ``weights``, none above its ``room``."""
    out = np.zeros(weights.size)
    open_ = (weights > _EPS) & (room > _EPS)
    left = amount
    while left > _EPS and open_.any():
        share = left * weights * open_ / weights[open_].sum()
        full = open_ & (out + share >= room)
        if not full.any():
            out += share
            break
        # The tenants that reach their room take it and leave; the rest share again.
        left -= float((room[full] - out[full]).sum())
        out[full] = room[full]
        open_ &= ~full
    return out
