"""Every constraint, rechecked from a returned plan's schedule alone; and the physics.

Independent of the builder: it recomputes state-of-charge and tank dynamics, bounds,
energy windows, runs and minimum up/down times from the schedule, step by step, and the
objective from the prices (with the violation penalty derived here from the rule
docs/optimiser.md states, not from the optimiser's code). Limits that may be broken
(capacity, export, tenants, demand response, tank minimums and targets, deferrable
energy) must be broken exactly where the plan says, by the amount it says.

``physical`` checks what no plan may do however its limits fare: a battery charging and
discharging in the same step, the estate importing and exporting in the same step, a tank
above its top (or spilling while not full), a load "on" without drawing, a
non-interruptible load in more than one block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dispatch.optimiser import EstateProblem, Plan, Schedule

ATOL = 1e-4  # kW, kWh or m³: HiGHS's feasibility tolerance scaled to estate-sized numbers
REPORTED = 1e-3  # the smallest excess the optimiser reports (its documented tolerance)


def runs(flags: np.ndarray) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of True."""
    start = None
    for t, flag in enumerate(flags):
        if flag and start is None:
            start = t
        if not flag and start is not None:
            yield start, t - 1
            start = None
    if start is not None:
        yield start, len(flags) - 1


def penalty(p: EstateProblem) -> float:
    """The violation penalty by docs/optimiser.md: 100 x the most a unit of slack is worth."""
    if p.violation_penalty is not None:
        return float(p.violation_penalty)
    dt = p.step_hours
    price = max(float(np.abs(p.import_price).max()), float(np.abs(p.export_price).max()))
    worth = [1.0, price, p.demand_charge / dt]
    worth += [g.fuel_cost for g in p.gensets]
    worth += [g.start_cost / (dt * g.max_kw) for g in p.gensets]
    worth += [2 * b.degradation_cost / (b.charge_efficiency * b.discharge_efficiency)
              for b in p.batteries]
    worth += [price / w.flow_per_kw for w in p.pumps] + [w.spill_cost for w in p.pumps]
    worth += [price / float(np.min(c.cop)) for c in p.thermal]
    return 100.0 * max(worth)


class Checker:
    def __init__(self, problem: EstateProblem, plan: Plan) -> None:
        self.p, self.plan, self.s = problem, plan, plan.schedule
        self.errors: list[str] = []
        self.excess: dict[tuple[str, str], np.ndarray] = {}
        self.penalty = 0.0

    def fail(self, message: str) -> None:
        self.errors.append(message)

    def close(self, what: str, got: float, want: float, tol: float = ATOL) -> None:
        if abs(got - want) > tol * max(1.0, abs(want)):
            self.fail(f"{what}: {got!r} != {want!r}")

    def within(self, what: str, values: np.ndarray, low: float | np.ndarray,
               high: float | np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        bad = (values < np.asarray(low) - ATOL) | (values > np.asarray(high) + ATOL)
        if bad.any():
            t = int(np.flatnonzero(bad.ravel())[0])
            self.fail(f"{what}: {values.ravel()[t]} outside [{low}, {high}] at {t}")

    def run(self) -> list[str]:
        self.draws()
        self.batteries()
        self.deferrables()
        self.gensets()
        self.tanks()
        self.limits()
        self.reported()
        self.objective()
        return self.errors

    def draws(self) -> None:
        p, s, n = self.p, self.s, self.p.steps
        expected = {f: np.array(p.base_load_kw[i], dtype=float) for i, f in enumerate(p.facilities)}
        for i, b in enumerate(p.batteries):
            expected[b.facility] += s.battery_charge[i] - s.battery_discharge[i]
        for i, d in enumerate(p.deferrables):
            expected[d.facility] += s.deferrable_power[i]
        for i, g in enumerate(p.gensets):
            expected[g.facility] -= s.genset_power[i]
        for i, c in enumerate(p.thermal):
            cop = np.broadcast_to(np.asarray(c.cop, dtype=float), (n,))
            for t in range(n):
                self.close(f"{c.name} chiller power {t}", s.chiller_power[i, t],
                           s.chiller_cooling[i, t] / cop[t])
            expected[c.facility] += s.chiller_cooling[i] / cop
        for i, w in enumerate(p.pumps):
            expected[w.facility] += s.pump_power[i]
        for i, v in enumerate(p.pv):
            self.within(f"{v.name} output", s.pv_power[i], 0.0, np.asarray(v.forecast_kw))
            expected[v.facility] -= s.pv_power[i]
        for i, f in enumerate(p.facilities):
            for t in range(n):
                self.close(f"facility {f} import {t}", s.facility_import[i, t], expected[f][t])
        self.within("grid import", s.grid_import, 0.0, np.inf)
        self.within("grid export", s.grid_export, 0.0, np.inf)
        for t in range(n):
            self.close(f"balance {t}", s.grid_import[t] - s.grid_export[t],
                       sum(expected[f][t] for f in p.facilities))

    def batteries(self) -> None:
        p, s, dt = self.p, self.s, self.p.step_hours
        for i, b in enumerate(p.batteries):
            self.within(f"{b.name} charge", s.battery_charge[i], 0.0, b.charge_kw)
            self.within(f"{b.name} discharge", s.battery_discharge[i], 0.0, b.discharge_kw)
            self.within(f"{b.name} soc", s.battery_soc[i], b.soc_min_kwh, b.soc_max_kwh)
            soc = b.soc_initial_kwh
            for t in range(p.steps):
                soc += dt * (b.charge_efficiency * s.battery_charge[i, t]
                             - s.battery_discharge[i, t] / b.discharge_efficiency)
                self.close(f"{b.name} soc {t}", s.battery_soc[i, t], soc)
            if s.battery_soc[i, -1] < b.terminal_kwh - ATOL:
                self.fail(f"{b.name} ends at {s.battery_soc[i, -1]} < {b.terminal_kwh}")

    def deferrables(self) -> None:
        p, s, dt = self.p, self.s, self.p.step_hours
        for i, d in enumerate(p.deferrables):
            power = s.deferrable_power[i]
            self.within(f"{d.name} power", power, 0.0, d.max_kw)
            outside = np.ones(p.steps, dtype=bool)
            outside[d.window_start:d.window_end] = False
            if np.abs(power[outside]).max(initial=0.0) > ATOL:
                self.fail(f"{d.name} draws outside its window")
            self.excess[("deferrable_energy", d.name)] = np.array(
                [d.energy_kwh - dt * power.sum()])
            self.penalty += max(d.energy_kwh - dt * power.sum(), 0.0)
            if not d.needs_binaries:
                continue
            on = s.deferrable_on[i]
            floor = max(d.min_kw, 0.01 * d.max_kw)  # docs: "at least 1% of max_kw while on"
            for t in range(p.steps):
                if power[t] > ATOL and not on[t]:
                    self.fail(f"{d.name} draws {power[t]} while off at {t}")
                if on[t] and power[t] < floor - ATOL:
                    self.fail(f"{d.name} below its minimum at {t}")
            found = list(runs(on))
            if d.non_interruptible and len(found) > 1:
                self.fail(f"{d.name} runs {len(found)} times")
            for a, b in found:
                if b - a + 1 < d.min_run_steps:
                    self.fail(f"{d.name} runs {b - a + 1} steps < {d.min_run_steps}")

    def gensets(self) -> None:
        p, s = self.p, self.s
        for i, g in enumerate(p.gensets):
            on, power = s.genset_on[i], s.genset_power[i]
            for t in range(p.steps):
                if on[t]:
                    self.within(f"{g.name} output {t}", power[t], g.min_kw, g.max_kw)
                elif abs(power[t]) > ATOL:
                    self.fail(f"{g.name} produces {power[t]} while off at {t}")
            # runs, counting the time served in the initial state before the horizon
            state, since = g.initially_on, -g.initial_steps
            for t in range(p.steps + 1):
                now = bool(on[t]) if t < p.steps else None
                if now is None or now != state:
                    length = t - since
                    need = g.min_up_steps if state else g.min_down_steps
                    if now is not None and length < need:
                        self.fail(f"{g.name} {'on' if state else 'off'} {length} steps < {need}"
                                  f" (ending at {t})")
                    if now is not None:
                        state, since = now, t

    def tanks(self) -> None:
        p, s, dt = self.p, self.s, self.p.step_hours
        for i, c in enumerate(p.thermal):
            self.within(f"{c.name} cooling", s.chiller_cooling[i], 0.0, c.chiller_max_kw_th)
            level = c.tank_initial_kwh
            for t in range(p.steps):
                level = ((1 - c.loss_per_hour * dt) * level
                         + dt * (s.chiller_cooling[i, t] - c.cooling_demand_kw_th[t]))
                self.close(f"{c.name} level {t}", s.tank_level[i, t], level)
            self.tank("tank", c.name, s.tank_level[i], c.tank_min_kwh, c.tank_max_kwh,
                      c.terminal_kwh)
        for i, w in enumerate(p.pumps):
            self.within(f"{w.name} pump", s.pump_power[i], 0.0, w.pump_max_kw)
            self.within(f"{w.name} spill", s.water_spill[i], 0.0, np.inf if w.overflow else 0.0)
            level = w.tank_initial_m3
            for t in range(p.steps):
                level += dt * (w.flow_per_kw * s.pump_power[i, t] - w.water_demand_m3h[t])
                level -= s.water_spill[i, t]
                self.close(f"{w.name} level {t}", s.water_level[i, t], level)
            self.tank("water", w.name, s.water_level[i], w.tank_min_m3, w.tank_max_m3,
                      w.terminal_m3)

    def tank(self, kind: str, name: str, level: np.ndarray, low: float, high: float,
             target: float) -> None:
        dt = self.p.step_hours
        self.within(f"{name} level", level, -np.inf, high)  # the top is a hard limit
        self.excess[(f"{kind}_min", name)] = low - level
        self.excess[(f"{kind}_terminal", name)] = np.array([target - level[-1]])
        self.penalty += dt * np.maximum(low - level, 0).sum()
        self.penalty += max(target - level[-1], 0.0)

    def limits(self) -> None:
        p, s, dt = self.p, self.s, self.p.step_hours

        def add(key: tuple[str, str], excess: np.ndarray) -> None:
            self.excess[key] = excess
            self.penalty += dt * float(np.maximum(excess, 0.0).sum())

        add(("capacity", "estate"), s.grid_import - p.capacity_kw)
        add(("export_limit", "estate"), s.grid_export - p.export_limit())
        limits = p.facility_limits()
        for i, f in enumerate(p.facilities):
            add(("facility_limit", f), s.facility_import[i] - limits[i])
        for w in p.dr_windows:
            excess = np.full(p.steps, -np.inf)
            excess[w.start:w.end] = s.grid_import[w.start:w.end] - w.cap_kw
            add(("demand_response", w.name), excess)

    def reported(self) -> None:
        """Each excess above the reporting tolerance is reported, and nothing else is."""
        claimed = {(v.limit, v.subject, v.first_step, v.last_step): v for v in self.plan.violations}
        expected = set()
        for (limit, subject), excess in self.excess.items():
            if limit == "deferrable_energy" or limit.endswith("terminal"):
                if excess[0] > REPORTED:
                    load = next((d for d in self.p.deferrables if d.name == subject), None)
                    first, last = ((load.window_start, load.window_end - 1) if load
                                   else (self.p.steps - 1, self.p.steps - 1))
                    expected.add((limit, subject, first, last))
                    got = claimed.get((limit, subject, first, last))
                    if got is not None:
                        self.close(f"reported {limit} {subject}", got.amount, float(excess[0]))
                continue
            for a, b in runs(excess > REPORTED):
                expected.add((limit, subject, a, b))
                got = claimed.get((limit, subject, a, b))
                if got is not None:
                    self.close(f"reported {limit} {subject}", got.amount,
                               float(excess[a:b + 1].max()))
        for key in expected - set(claimed):
            self.fail(f"not reported: {key}")
        for key in set(claimed) - expected:
            self.fail(f"reported but not broken: {key}")

    def objective(self) -> None:
        p, s, dt = self.p, self.s, self.p.step_hours
        cost = dt * float(np.dot(p.import_price, s.grid_import) - np.dot(p.export_price,
                                                                         s.grid_export))
        cost += p.demand_charge * max(float(s.grid_import.max()) - p.prior_peak_kw, 0.0)
        for i, b in enumerate(p.batteries):
            cost += b.degradation_cost * dt * float((s.battery_charge[i]
                                                     + s.battery_discharge[i]).sum())
        for i, g in enumerate(p.gensets):
            cost += g.fuel_cost * dt * float(s.genset_power[i].sum())
            before = g.initially_on
            for t in range(p.steps):
                if s.genset_on[i, t] and not before:
                    cost += g.start_cost
                before = bool(s.genset_on[i, t])
        for i, w in enumerate(p.pumps):
            cost += w.spill_cost * float(s.water_spill[i].sum())
        self.close("cost", self.plan.cost, cost, 1e-6)
        total = cost + penalty(p) * self.penalty
        self.close("objective", self.plan.objective, total, 1e-6)


def check(problem: EstateProblem, plan: Plan) -> list[str]:
    return Checker(problem, plan).run()


def physical(problem: EstateProblem, s: Schedule) -> list[str]:
    """What no schedule may do, whatever its limits (see the module docstring)."""
    p, errors = problem, []
    both = np.minimum(s.battery_charge, s.battery_discharge)
    for i, t in zip(*np.nonzero(both > ATOL), strict=True):
        errors.append(f"{p.batteries[i].name} charges {s.battery_charge[i, t]:.4g} and "
                      f"discharges {s.battery_discharge[i, t]:.4g} kW at {t}")
    for t in np.flatnonzero(np.minimum(s.grid_import, s.grid_export) > ATOL):
        errors.append(f"imports {s.grid_import[t]:.4g} and exports {s.grid_export[t]:.4g} kW "
                      f"at {t}")
    for i, c in enumerate(p.thermal):
        for t in np.flatnonzero(s.tank_level[i] > c.tank_max_kwh + ATOL):
            errors.append(f"{c.name} holds {s.tank_level[i, t]:.6g} kWh above its top "
                          f"{c.tank_max_kwh} at {t}")
    for i, w in enumerate(p.pumps):
        for t in np.flatnonzero(s.water_level[i] > w.tank_max_m3 + ATOL):
            errors.append(f"{w.name} holds {s.water_level[i, t]:.6g} m³ above its top "
                          f"{w.tank_max_m3} at {t}")
        for t in np.flatnonzero(s.water_spill[i] > ATOL):
            if not w.overflow:
                errors.append(f"{w.name} spills at {t} without an overflow")
            elif s.water_level[i, t] < w.tank_max_m3 - ATOL:
                errors.append(f"{w.name} spills at {t} while not full")
    for i, d in enumerate(p.deferrables):
        drawing = s.deferrable_power[i] > ATOL
        if d.needs_binaries and (drawing != s.deferrable_on[i]).any():
            t = int(np.flatnonzero(drawing != s.deferrable_on[i])[0])
            errors.append(f"{d.name} on/off record disagrees with its power at {t}")
        if d.non_interruptible and len(list(runs(drawing))) > 1:
            errors.append(f"{d.name} draws in {len(list(runs(drawing)))} blocks")
    return errors
