"""Validation of an ``EstateProblem`` before it is built (after PyPSA's ``consistency``).

Every numeric input is checked where the problem is built, field by field: a number (not
NaN, and infinite only where infinity means "no limit"), within its physical range
(``RANGES``: capacities, bounds, prices, efficiencies), and consistent with the others
(a battery's initial and final charge within its bounds and reachable, a tank's target
within its tank, windows inside the horizon). Each finding is an ``Issue`` naming the
asset (or ``estate``) and the field.

``check_problem`` lists them all; ``validate`` logs the warnings and raises
``ProblemError`` (a ``ConfigError`` of ``estate.errors``) with every error at once, or
with the warnings too when ``strict``. Errors are inputs the model cannot mean anything
with; warnings are inputs that will solve but probably not as the caller thinks (a load
whose window is too short for its energy: the plan reports the shortfall).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

import numpy as np

from dispatch.optimiser.field_checks import FieldChecks, Issue, shown
from dispatch.optimiser.penalty import minimum_penalty
from dispatch.optimiser.problem import (
    PV,
    Asset,
    Battery,
    DeferrableLoad,
    EstateProblem,
    Genset,
    PumpTank,
    ThermalStorage,
)
from estate.errors import ConfigError

log = logging.getLogger(__name__)

# Physical ranges. Why these: each is far beyond any industrial estate (a 10 GW
# connection, a price of 100,000 per kWh in any currency) yet keeps every coefficient
# HiGHS sees within about 1e-3..1e9, where its tolerances still mean something; a value
# past them is a typo or a unit mistake (W for kW), not an estate.
MAX_KW: Final = 1e7
MAX_KWH: Final = 1e8
MAX_M3: Final = 1e8
MAX_PRICE: Final = 1e5
"""Currency per kWh (prices, fuel, degradation) or per m³ (spill)."""
MAX_DEMAND_CHARGE: Final = 1e6
"""Currency per kW of the billing period's peak."""
MAX_START_COST: Final = 1e7
MAX_COP: Final = 50.0
"""kW of cooling per kW: the best chillers reach about 10, heat pumps about 7."""
MAX_FLOW_PER_KW: Final = 1e4
"""m³/h per kW: a low-head pump moves a few tens."""
MAX_STEP_HOURS: Final = 24.0
MAX_STEPS: Final = 2_000
"""Three weeks of quarter-hours. Why bound it: the work and memory of a solve grow with
steps x assets; a horizon past this is a mistake, not a plan."""
MAX_ASSETS: Final = 10_000
MAX_TIME_LIMIT_S: Final = 86_400.0
"""A day: a plan is due every quarter-hour, a solve past a day is a mistake."""
MAX_PENALTY: Final = 1e12
"""Above this HiGHS's tolerances, relative to the largest cost, swallow every price."""


class ProblemError(ConfigError):
    """The problem cannot be optimised as given; ``issues`` lists why (asset and field)."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("invalid optimisation problem: " + "; ".join(map(str, issues)))


def validate(problem: EstateProblem, strict: bool = False) -> list[Issue]:
    """Raise on errors (and on warnings if ``strict``); log and return the warnings."""
    issues = check_problem(problem)
    errors = [i for i in issues if i.level == "error" or strict]
    if errors:
        raise ProblemError(errors)
    for issue in issues:
        log.warning("optimisation input: %s", issue)
    return issues


def check_options(time_limit_s: object, mip_rel_gap: object) -> list[Issue]:
    """The solver's options: a time limit in [0, a day] and a gap in [0, 1]."""
    c = FieldChecks()
    c.number("options", "time_limit_s", time_limit_s, 0.0, MAX_TIME_LIMIT_S)
    c.number("options", "mip_rel_gap", mip_rel_gap, 0.0, 1.0)
    return c.found


def check_problem(problem: EstateProblem) -> list[Issue]:
    c = _Checks(problem)
    c.estate()
    if c.errors:
        return c.found  # the horizon or the prices are wrong: per-asset checks would mislead
    c.names()
    for b in problem.batteries:
        c.battery(b)
    for d in problem.deferrables:
        c.deferrable(d)
    for g in problem.gensets:
        c.genset(g)
    for t in problem.thermal:
        c.thermal(t)
    for w in problem.pumps:
        c.pump(w)
    for v in problem.pv:
        c.pv(v)
    c.windows()
    if not c.errors:
        c.penalty()
    return c.found


def _assets(p: EstateProblem) -> Iterable[Asset]:
    yield from p.batteries
    yield from p.deferrables
    yield from p.gensets
    yield from p.thermal
    yield from p.pumps
    yield from p.pv


class _Checks(FieldChecks):
    """The problem's fields, asset by asset."""

    def __init__(self, problem: EstateProblem) -> None:
        super().__init__()
        self.p = problem

    # --- the estate ---

    def estate(self) -> None:
        p, e = self.p, "estate"
        f = len(p.facilities)
        if not self.number(e, "step_hours", p.step_hours, 0.0, MAX_STEP_HOURS, above=True):
            return
        try:
            base = np.asarray(p.base_load_kw, dtype=np.float64)
        except (TypeError, ValueError):
            base = np.zeros(0)
        if base.ndim != 2:
            self.error(e, "base_load_kw", f"must be an array (facilities={f}, steps), got "
                                          f"{shown(p.base_load_kw)}")
            return
        n = base.shape[1]
        if f < 1:
            self.error(e, "facilities", "there must be at least one facility")
        if not 1 <= n <= MAX_STEPS:
            self.error(e, "base_load_kw", f"the horizon must have 1 to {MAX_STEPS} steps, "
                                          f"got {n}")
            return
        if sum(1 for _ in _assets(p)) > MAX_ASSETS:
            self.error(e, "assets", f"at most {MAX_ASSETS} assets")
        self.array(e, "base_load_kw", base, (f, n), -MAX_KW, MAX_KW)
        self.array(e, "import_price", p.import_price, (n,), -MAX_PRICE, MAX_PRICE)
        self.array(e, "export_price", p.export_price, (n,), -MAX_PRICE, MAX_PRICE)
        self.number(e, "capacity_kw", p.capacity_kw, 0.0, MAX_KW, above=True)
        self.array(e, "export_limit_kw", p.export_limit_kw, (n,), 0.0, MAX_KW, scalar=True,
                   infinite=True)
        if p.facility_limit_kw is not None:
            self.array(e, "facility_limit_kw", p.facility_limit_kw, (f, n), 0.0, MAX_KW,
                       infinite=True)
        self.number(e, "demand_charge", p.demand_charge, 0.0, MAX_DEMAND_CHARGE)
        self.number(e, "prior_peak_kw", p.prior_peak_kw, 0.0, MAX_KW)
        if p.violation_penalty is not None:
            self.number(e, "violation_penalty", p.violation_penalty, 0.0, MAX_PENALTY,
                        above=True)
        if self.errors:
            return
        if np.any(base < 0):
            self.warn(e, "base_load_kw", "negative base load (net generation) on some steps")

    def names(self) -> None:
        p = self.p
        if len(set(p.facilities)) != len(p.facilities):
            self.error("estate", "facilities", "facility names repeat")
        seen: set[str] = set()
        for asset in _assets(p):
            if asset.name in seen:
                self.error(asset.name, "name", "asset name used twice")
            seen.add(asset.name)
            if asset.facility not in p.facilities:
                self.error(asset.name, "facility", f"unknown facility {asset.facility!r}")

    @property
    def steps(self) -> int:
        return self.p.steps

    # --- the assets ---

    def battery(self, b: Battery) -> None:
        s = b.name
        ok = all([
            self.number(s, "soc_min_kwh", b.soc_min_kwh, 0.0, MAX_KWH),
            self.number(s, "soc_max_kwh", b.soc_max_kwh, 0.0, MAX_KWH),
            self.number(s, "soc_initial_kwh", b.soc_initial_kwh, 0.0, MAX_KWH),
            self.number(s, "charge_kw", b.charge_kw, 0.0, MAX_KW),
            self.number(s, "discharge_kw", b.discharge_kw, 0.0, MAX_KW),
            self.number(s, "charge_efficiency", b.charge_efficiency, 0.0, 1.0, above=True),
            self.number(s, "discharge_efficiency", b.discharge_efficiency, 0.0, 1.0,
                        above=True),
            b.soc_terminal_kwh is None or self.number(s, "soc_terminal_kwh",
                                                      b.soc_terminal_kwh, 0.0, MAX_KWH),
            self.number(s, "degradation_cost", b.degradation_cost, 0.0, MAX_PRICE),
        ])
        if not ok:
            return
        if b.soc_min_kwh > b.soc_max_kwh:
            self.error(s, "soc_max_kwh", f"{b.soc_max_kwh:g} kWh is below soc_min_kwh "
                                         f"{b.soc_min_kwh:g}")
            return
        if not b.soc_min_kwh <= b.soc_initial_kwh <= b.soc_max_kwh:
            self.error(s, "soc_initial_kwh", f"initial charge {b.soc_initial_kwh:g} kWh "
                                             f"outside [{b.soc_min_kwh:g}, {b.soc_max_kwh:g}] "
                                             "(soc_min_kwh, soc_max_kwh)")
            return
        field = "soc_terminal_kwh" if b.soc_terminal_kwh is not None else "soc_initial_kwh"
        if not b.soc_min_kwh <= b.terminal_kwh <= b.soc_max_kwh:
            self.error(s, field, f"terminal charge {b.terminal_kwh:g} kWh outside "
                                 f"[{b.soc_min_kwh:g}, {b.soc_max_kwh:g}] (soc_min_kwh, "
                                 "soc_max_kwh)")
        elif (b.soc_initial_kwh + self.steps * self.p.step_hours * b.charge_kw
              * b.charge_efficiency < b.terminal_kwh - 1e-9):
            self.error(s, field, f"cannot charge from {b.soc_initial_kwh:g} to "
                                 f"{b.terminal_kwh:g} kWh within the horizon (steps x "
                                 f"step_hours at charge_kw {b.charge_kw:g} and "
                                 f"charge_efficiency {b.charge_efficiency:g})")

    def deferrable(self, d: DeferrableLoad) -> None:
        s, n = d.name, self.steps
        ok = all([
            self.number(s, "energy_kwh", d.energy_kwh, 0.0, MAX_KWH),
            self.number(s, "max_kw", d.max_kw, 0.0, MAX_KW, above=True),
            self.number(s, "min_kw", d.min_kw, 0.0, MAX_KW),
            self.integer(s, "window_start", d.window_start, 0, n - 1),
            self.integer(s, "window_end", d.window_end, 1, n),
            self.integer(s, "min_run_steps", d.min_run_steps, 1, MAX_STEPS),
            self.flag(s, "non_interruptible", d.non_interruptible),
        ])
        if not ok:
            return
        if d.min_kw > d.max_kw:
            self.error(s, "min_kw", f"{d.min_kw:g} kW is above max_kw {d.max_kw:g}")
            return
        if d.window_end <= d.window_start:
            self.error(s, "window_end", f"window [{d.window_start}, {d.window_end}) is empty "
                                        "(window_start must come before window_end)")
            return
        length = d.window_end - d.window_start
        if d.energy_kwh > d.max_kw * self.p.step_hours * length:
            self.warn(s, "energy_kwh", f"{d.energy_kwh:g} kWh cannot fit in its window at "
                                       f"{d.max_kw:g} kW: the plan will be short")
        if d.min_run_steps > length:
            self.warn(s, "min_run_steps", "minimum run longer than its window: it cannot run")
        if d.needs_binaries and d.floor_kw * d.min_run_steps * self.p.step_hours \
                > d.energy_kwh > 0:
            self.warn(s, "min_kw", "its shortest run at minimum power exceeds the energy "
                                   "needed: it will draw more than asked")

    def genset(self, g: Genset) -> None:
        s = g.name
        ok = all([
            self.number(s, "min_kw", g.min_kw, 0.0, MAX_KW),
            self.number(s, "max_kw", g.max_kw, 0.0, MAX_KW, above=True),
            self.number(s, "fuel_cost", g.fuel_cost, 0.0, MAX_PRICE),
            self.number(s, "start_cost", g.start_cost, 0.0, MAX_START_COST),
            self.integer(s, "min_up_steps", g.min_up_steps, 1, MAX_STEPS),
            self.integer(s, "min_down_steps", g.min_down_steps, 1, MAX_STEPS),
            self.integer(s, "initial_steps", g.initial_steps, 0, 10 ** 9),
            self.flag(s, "initially_on", g.initially_on),
        ])
        if ok and g.min_kw > g.max_kw:
            self.error(s, "min_kw", f"{g.min_kw:g} kW is above max_kw {g.max_kw:g}")

    def _tank(self, s: str, unit: str, low: float, high: float, initial: float,
              terminal: float | None, fields: tuple[str, str, str, str],
              top: float) -> None:
        """Bounds, start and target of a tank (``fields``: min, max, initial, terminal)."""
        f_min, f_max, f_initial, f_terminal = fields
        ok = all([
            self.number(s, f_min, low, 0.0, top),
            self.number(s, f_max, high, 0.0, top),
            self.number(s, f_initial, initial, 0.0, top),
            terminal is None or self.number(s, f_terminal, terminal, 0.0, top),
        ])
        if not ok:
            return
        if low > high:
            self.error(s, f_max, f"{high:g} {unit} is below {f_min} {low:g}")
            return
        if initial > high:
            self.error(s, f_initial, f"{initial:g} {unit} is above the tank's top ({f_max} "
                                     f"{high:g}): nothing stands above it")
            return
        if terminal is not None and not low <= terminal <= high:
            self.error(s, f_terminal, f"target {terminal:g} {unit} outside the tank's "
                                      f"[{low:g}, {high:g}] ({f_min}, {f_max})")
        if initial < low:
            self.warn(s, f_initial, "the tank starts below its minimum")

    def thermal(self, t: ThermalStorage) -> None:
        s, n = t.name, self.steps
        ok = all([
            self.number(s, "chiller_max_kw_th", t.chiller_max_kw_th, 0.0, MAX_KW),
            self.array(s, "cop", t.cop, (n,), 0.0, MAX_COP, scalar=True, above=True),
            self.array(s, "cooling_demand_kw_th", t.cooling_demand_kw_th, (n,), 0.0, MAX_KW),
            self.number(s, "loss_per_hour", t.loss_per_hour, 0.0, 1.0),
        ])
        if ok and not t.loss_per_hour * self.p.step_hours < 1:
            self.error(s, "loss_per_hour", f"{t.loss_per_hour:g} per hour loses the whole "
                                           f"tank within one step of step_hours "
                                           f"{self.p.step_hours:g}")
        self._tank(s, "kWh", t.tank_min_kwh, t.tank_max_kwh, t.tank_initial_kwh,
                   t.tank_terminal_kwh, ("tank_min_kwh", "tank_max_kwh", "tank_initial_kwh",
                                         "tank_terminal_kwh"), MAX_KWH)

    def pump(self, w: PumpTank) -> None:
        s, n = w.name, self.steps
        self.number(s, "pump_max_kw", w.pump_max_kw, 0.0, MAX_KW)
        self.number(s, "flow_per_kw", w.flow_per_kw, 0.0, MAX_FLOW_PER_KW, above=True)
        self.array(s, "water_demand_m3h", w.water_demand_m3h, (n,), 0.0, MAX_M3)
        self.flag(s, "overflow", w.overflow)
        self.number(s, "spill_cost", w.spill_cost, 0.0, MAX_PRICE)
        self._tank(s, "m³", w.tank_min_m3, w.tank_max_m3, w.tank_initial_m3,
                   w.tank_terminal_m3, ("tank_min_m3", "tank_max_m3", "tank_initial_m3",
                                        "tank_terminal_m3"), MAX_M3)

    def pv(self, v: PV) -> None:
        self.array(v.name, "forecast_kw", v.forecast_kw, (self.steps,), 0.0, MAX_KW)

    def windows(self) -> None:
        n = self.steps
        for w in self.p.dr_windows:
            ok = all([self.integer(w.name, "start", w.start, 0, n - 1),
                      self.integer(w.name, "end", w.end, 1, n),
                      self.number(w.name, "cap_kw", w.cap_kw, 0.0, MAX_KW)])
            if ok and w.end <= w.start:
                self.error(w.name, "end", f"demand-response window [{w.start}, {w.end}) is "
                                          "empty (start must come before end)")

    def penalty(self) -> None:
        p = self.p
        if p.violation_penalty is None:
            return
        least = minimum_penalty(p)
        if p.violation_penalty < least:
            self.error("estate", "violation_penalty",
                       f"{p.violation_penalty:g} does not outweigh the prices: at least "
                       f"{least:g} (see dispatch.optimiser.penalty), or leave it unset")
