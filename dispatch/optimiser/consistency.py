"""Validation of an ``EstateProblem`` before it is built (after PyPSA's ``consistency``).

``check_problem`` lists every issue found; ``validate`` logs the warnings and raises
``ProblemError`` (a ``ConfigError``) with all the errors at once, or with the warnings too
when ``strict``. Errors are inputs the model cannot mean anything with (wrong shapes, a
battery that cannot reach its terminal charge); warnings are inputs that will solve but
probably not as the caller thinks (a load whose window is too short for its energy, which
the plan will report as a shortfall).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from dispatch.optimiser.problem import Asset, EstateProblem
from estate.errors import ConfigError

log = logging.getLogger(__name__)

PENALTY_MARGIN = 100.0
"""The violation penalty should exceed every price, fuel and degradation cost by this
factor. Why 100: below it, breaking a limit for one step could pay for itself."""


@dataclass(frozen=True, slots=True)
class Issue:
    level: Literal["error", "warning"]
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


class ProblemError(ConfigError):
    """The problem cannot be optimised as given; ``issues`` lists why."""

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


def check_problem(problem: EstateProblem) -> list[Issue]:
    found: list[Issue] = []
    found += _estate(problem)
    if any(i.level == "error" for i in found):
        return found  # shapes are wrong: per-asset checks would only repeat it
    found += _names(problem)
    found += _batteries(problem)
    found += _deferrables(problem)
    found += _gensets(problem)
    found += _tanks(problem)
    found += _windows(problem)
    found += _penalty(problem)
    return found


def _err(subject: str, message: str) -> Issue:
    return Issue("error", subject, message)


def _warn(subject: str, message: str) -> Issue:
    return Issue("warning", subject, message)


def _shape(value: npt.ArrayLike, shape: tuple[int, ...]) -> bool:
    return np.shape(value) == shape or (shape != () and np.shape(value) == ())


def _estate(p: EstateProblem) -> list[Issue]:
    out: list[Issue] = []
    n, f = p.steps, len(p.facilities)
    if not p.step_hours > 0:
        out.append(_err("estate", f"step_hours must be positive, got {p.step_hours}"))
    if n < 1:
        out.append(_err("estate", "the horizon has no steps"))
    if np.ndim(p.base_load_kw) != 2 or np.shape(p.base_load_kw)[0] != f:
        out.append(_err("estate", f"base_load_kw must be (facilities={f}, steps), "
                                  f"got {np.shape(p.base_load_kw)}"))
    elif not np.isfinite(p.base_load_kw).all():
        out.append(_err("estate", "base_load_kw has values that are not finite"))
    for name in ("import_price", "export_price"):
        value = getattr(p, name)
        if np.shape(value) != (n,) or not np.isfinite(value).all():
            out.append(_err("estate", f"{name} must be {n} finite values (one per step)"))
    if not (np.isfinite(p.capacity_kw) and p.capacity_kw > 0):
        out.append(_err("estate", f"capacity_kw must be positive and finite, "
                                  f"got {p.capacity_kw}"))
    if not _shape(p.export_limit_kw, (n,)) or np.any(np.asarray(p.export_limit_kw) < 0):
        out.append(_err("estate", "export_limit_kw must be >= 0, one value or one per step"))
    if p.facility_limit_kw is not None and (np.shape(p.facility_limit_kw) != (f, n)
                                            or np.any(np.asarray(p.facility_limit_kw) < 0)):
        out.append(_err("estate", f"facility_limit_kw must be (facilities={f}, steps={n}) "
                                  "values >= 0 (inf for no limit)"))
    if p.demand_charge < 0 or p.prior_peak_kw < 0:
        out.append(_err("estate", "demand_charge and prior_peak_kw must be >= 0"))
    if out:
        return out
    if np.any(np.asarray(p.export_price) > np.asarray(p.import_price)):
        out.append(_warn("estate", "export pays more than import on some steps: the plan may "
                                   "import and export at once up to the limits"))
    if np.any(np.asarray(p.base_load_kw) < 0):
        out.append(_warn("estate", "negative base load (net generation) on some steps"))
    return out


def _assets(p: EstateProblem) -> Iterable[Asset]:
    yield from p.batteries
    yield from p.deferrables
    yield from p.gensets
    yield from p.thermal
    yield from p.pumps
    yield from p.pv


def _names(p: EstateProblem) -> list[Issue]:
    out: list[Issue] = []
    if len(set(p.facilities)) != len(p.facilities):
        out.append(_err("estate", "facility names repeat"))
    seen: set[str] = set()
    for asset in _assets(p):
        if asset.name in seen:
            out.append(_err(asset.name, "asset name used twice"))
        seen.add(asset.name)
        if asset.facility not in p.facilities:
            out.append(_err(asset.name, f"unknown facility {asset.facility!r}"))
    for unit in p.pv:
        if not _shape(unit.forecast_kw, (p.steps,)) or np.any(np.asarray(unit.forecast_kw) < 0):
            out.append(_err(unit.name, f"forecast_kw must be {p.steps} values >= 0"))
    return out


def _batteries(p: EstateProblem) -> list[Issue]:
    out: list[Issue] = []
    hours = p.steps * p.step_hours
    for b in p.batteries:
        if not (0 < b.charge_efficiency <= 1 and 0 < b.discharge_efficiency <= 1):
            out.append(_err(b.name, "efficiencies must be in (0, 1]"))
            continue
        if b.charge_kw < 0 or b.discharge_kw < 0:
            out.append(_err(b.name, "power limits must be >= 0"))
        if not b.soc_min_kwh <= b.soc_initial_kwh <= b.soc_max_kwh:
            out.append(_err(b.name, f"initial charge {b.soc_initial_kwh} kWh outside "
                                    f"[{b.soc_min_kwh}, {b.soc_max_kwh}]"))
        elif not b.soc_min_kwh <= b.terminal_kwh <= b.soc_max_kwh:
            out.append(_err(b.name, f"terminal charge {b.terminal_kwh} kWh outside "
                                    f"[{b.soc_min_kwh}, {b.soc_max_kwh}]"))
        elif b.soc_initial_kwh + hours * b.charge_kw * b.charge_efficiency < b.terminal_kwh:
            out.append(_err(b.name, f"cannot charge from {b.soc_initial_kwh} to "
                                    f"{b.terminal_kwh} kWh within the horizon"))
        if b.degradation_cost < 0:
            out.append(_warn(b.name, "negative degradation cost rewards cycling"))
    return out


def _deferrables(p: EstateProblem) -> list[Issue]:
    out: list[Issue] = []
    for d in p.deferrables:
        if not 0 <= d.window_start < d.window_end <= p.steps:
            out.append(_err(d.name, f"window [{d.window_start}, {d.window_end}) is not inside "
                                    f"[0, {p.steps})"))
            continue
        if not 0 <= d.min_kw <= d.max_kw or d.max_kw <= 0 or d.energy_kwh < 0:
            out.append(_err(d.name, "need 0 <= min_kw <= max_kw, max_kw > 0, energy >= 0"))
            continue
        if d.min_run_steps < 1:
            out.append(_err(d.name, "min_run_steps must be at least 1"))
            continue
        length = d.window_end - d.window_start
        if d.energy_kwh > d.max_kw * p.step_hours * length:
            out.append(_warn(d.name, f"{d.energy_kwh} kWh cannot fit in its window at "
                                     f"{d.max_kw} kW: the plan will be short"))
        if d.min_run_steps > length:
            out.append(_warn(d.name, "minimum run longer than its window: it cannot run"))
        if d.needs_binaries and d.min_kw * d.min_run_steps * p.step_hours > d.energy_kwh > 0:
            out.append(_warn(d.name, "its shortest run at minimum power exceeds the energy "
                                     "needed: it will draw more than asked"))
    return out


def _gensets(p: EstateProblem) -> list[Issue]:
    out: list[Issue] = []
    for g in p.gensets:
        if not 0 <= g.min_kw <= g.max_kw:
            out.append(_err(g.name, "need 0 <= min_kw <= max_kw"))
        if g.min_up_steps < 1 or g.min_down_steps < 1 or g.initial_steps < 0:
            out.append(_err(g.name, "min up/down steps must be >= 1, initial_steps >= 0"))
        if g.fuel_cost < 0 or g.start_cost < 0:
            out.append(_warn(g.name, "negative fuel or start cost rewards running"))
    return out


def _tanks(p: EstateProblem) -> list[Issue]:
    out: list[Issue] = []
    n = p.steps
    for t in p.thermal:
        if np.any(np.asarray(t.cop) <= 0) or not _shape(t.cop, (n,)):
            out.append(_err(t.name, f"cop must be > 0, one value or {n}"))
        if not _shape(t.cooling_demand_kw_th, (n,)) or np.any(
                np.asarray(t.cooling_demand_kw_th) < 0):
            out.append(_err(t.name, f"cooling_demand_kw_th must be {n} values >= 0"))
        if t.tank_min_kwh > t.tank_max_kwh or t.chiller_max_kw_th < 0:
            out.append(_err(t.name, "need tank_min <= tank_max and chiller_max >= 0"))
        if not 0 <= t.loss_per_hour * p.step_hours < 1:
            out.append(_err(t.name, "loss_per_hour * step_hours must be in [0, 1)"))
        if not t.tank_min_kwh <= t.tank_initial_kwh <= t.tank_max_kwh:
            out.append(_warn(t.name, "the tank starts outside its bounds"))
    for w in p.pumps:
        if w.flow_per_kw <= 0 or w.pump_max_kw < 0:
            out.append(_err(w.name, "need flow_per_kw > 0 and pump_max_kw >= 0"))
        if not _shape(w.water_demand_m3h, (n,)) or np.any(np.asarray(w.water_demand_m3h) < 0):
            out.append(_err(w.name, f"water_demand_m3h must be {n} values >= 0"))
        if w.tank_min_m3 > w.tank_max_m3:
            out.append(_err(w.name, "need tank_min_m3 <= tank_max_m3"))
        if not w.tank_min_m3 <= w.tank_initial_m3 <= w.tank_max_m3:
            out.append(_warn(w.name, "the tank starts outside its bounds"))
    return out


def _windows(p: EstateProblem) -> list[Issue]:
    out: list[Issue] = []
    for w in p.dr_windows:
        if not 0 <= w.start < w.end <= p.steps or w.cap_kw < 0:
            out.append(_err(w.name, f"demand-response window [{w.start}, {w.end}) must lie in "
                                    f"[0, {p.steps}) with a cap >= 0"))
    return out


def _penalty(p: EstateProblem) -> list[Issue]:
    prices = [float(np.max(np.abs(p.import_price))), float(np.max(np.abs(p.export_price))),
              p.demand_charge / max(p.step_hours, 1e-9)]
    prices += [g.fuel_cost for g in p.gensets] + [b.degradation_cost for b in p.batteries]
    if p.violation_penalty < PENALTY_MARGIN * max(prices):
        return [_warn("estate", f"violation_penalty {p.violation_penalty} is not far above the "
                                f"largest price {max(prices)}: limits may be broken for profit")]
    return []
