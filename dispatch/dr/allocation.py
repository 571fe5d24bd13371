"""Who pays for the shared assets, and who gets what they save.

The estate's battery, genset and well serve everyone; their running cost (the energy they
draw at the tariff, the genset's fuel) and what they save (peak reduction, arbitrage,
avoided capacity penalties: all of it already inside the estate's bill) are shared by a
rule. Each tenant's contract names its rule; the estate's default applies to the rest:

- ``peak``: by the tenant's draw at the estate's peak quarter-hour of the month
  (coincident peak: who makes the peak the battery shaves);
- ``energy``: by the tenant's electricity over the month;
- ``equal``: the same for every tenant;
- ``fixed``: by the weight written in the contract (``allocation_weight``).

Each rule gives every tenant a key (its fraction under that rule); a tenant's key is the
one its own rule gives it, and the keys are then scaled to add up to one, so the whole
amount is always allocated, whatever mix of rules the contracts hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

ALLOCATION_RULES: Final = ("peak", "energy", "equal", "fixed")
DEFAULT_RULE: Final = "peak"


@dataclass(frozen=True, slots=True)
class AllocationTerms:
    """A tenant's contract term for the shared assets."""

    rule: str = DEFAULT_RULE
    weight: float = 1.0


def _fractions(values: FloatArray) -> FloatArray:
    values = np.maximum(np.nan_to_num(values), 0.0)
    total = values.sum()
    return values / total if total > 0 else np.full(values.size, 1.0 / max(values.size, 1))


def allocation_keys(facilities: Sequence[str], terms: Mapping[str, AllocationTerms],
                    peak_kw: FloatArray, energy_kwh: FloatArray) -> FloatArray:
    """Each tenant's fraction of the shared assets' cost and savings (adds up to one)."""
    n = len(facilities)
    if n == 0:
        return np.zeros(0)
    chosen = [terms.get(f, AllocationTerms()) for f in facilities]
    by_rule = {"peak": _fractions(peak_kw), "energy": _fractions(energy_kwh),
               "equal": np.full(n, 1.0 / n),
               "fixed": _fractions(np.array([t.weight for t in chosen]))}
    keys = np.array([by_rule[t.rule if t.rule in by_rule else DEFAULT_RULE][i]
                     for i, t in enumerate(chosen)])
    return _fractions(keys)
