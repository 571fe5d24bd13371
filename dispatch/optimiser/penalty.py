"""The price of a broken limit, derived from the problem's own prices.

Every limit that can be broken in practice (contracted capacity, export limit, tenant
limits, demand-response caps, tank minimums and targets, deferrable energy) has a slack
priced at the violation penalty per unit: per kW·h for power limits, per kWh for energy,
per m³ for water, per kWh of cooling for chilled water. For a limit to be broken only
when nothing the optimiser controls avoids it, one unit of slack must cost more than
anything one unit of it could earn or save. ``value_per_unit`` lists those worths, each
as currency per unit of slack:

- import and export prices (their largest magnitude): a kW·h more or less exchanged;
- the demand charge over one step (``demand_charge / step_hours``): a kW off the peak
  for the one step that sets it;
- fuel costs, and twice the largest degradation cost over a round trip's efficiency (a
  kWh cycled through a battery);
- start costs spread over one step of the unit at full output;
- for water, the electricity one m³ takes (the largest price over ``flow_per_kw``) and
  the spill cost; for cooling, the largest price over the lowest COP.

The penalty is ``PENALTY_MARGIN`` times the largest (at least 1): a problem may ask for a
higher one (``EstateProblem.violation_penalty``), never a lower one (validation refuses it).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from dispatch.optimiser.problem import EstateProblem

PENALTY_MARGIN: Final = 100.0
"""The penalty is this many times the largest worth of a unit of slack. Why 100: a limit
then costs two orders of magnitude more to break than any price could pay back, while the
objective's coefficients stay within HiGHS's comfortable range (about 1e-3 to 1e7 here);
a margin of 1e4 or more made its tolerances, relative to the largest cost, swallow the
prices themselves."""
_FLOOR: Final = 1.0
"""The smallest worth assumed (currency per unit): with every price at zero the penalty is
still ``PENALTY_MARGIN``, so a slack is never free."""


def value_per_unit(problem: EstateProblem) -> dict[str, float]:
    """What one unit of slack could be worth at most, by what sets it (see module doc)."""
    p, dt = problem, problem.step_hours
    price = float(max(np.max(np.abs(p.import_price), initial=0.0),
                      np.max(np.abs(p.export_price), initial=0.0)))
    worth = {"energy prices": price, "demand charge": abs(p.demand_charge) / dt}
    if p.gensets:
        worth["fuel cost"] = max(abs(g.fuel_cost) for g in p.gensets)
        worth["start cost"] = max(abs(g.start_cost) / (dt * g.max_kw) if g.max_kw > 0
                                  else 0.0 for g in p.gensets)
    if p.batteries:
        worth["degradation cost"] = max(
            2 * abs(b.degradation_cost) / (b.charge_efficiency * b.discharge_efficiency)
            for b in p.batteries)
    if p.pumps:
        worth["pumping"] = max(price / w.flow_per_kw for w in p.pumps)
        worth["spill cost"] = max(abs(w.spill_cost) for w in p.pumps)
    if p.thermal:
        worth["cooling"] = max(price / float(np.min(np.asarray(c.cop, dtype=np.float64)))
                               for c in p.thermal)
    return worth


def minimum_penalty(problem: EstateProblem) -> float:
    """The least penalty that outweighs every price of ``problem``."""
    return PENALTY_MARGIN * max(_FLOOR, *value_per_unit(problem).values())


def violation_penalty(problem: EstateProblem) -> float:
    """The penalty the model uses: the problem's own if it asks for one, else derived."""
    if problem.violation_penalty is not None:
        return float(problem.violation_penalty)
    return minimum_penalty(problem)
