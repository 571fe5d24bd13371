"""The same problem written independently with PuLP, one Python object per variable.

Nothing here comes from the optimiser's builder: it reads the problem's dataclasses and
writes the model the textbook way, so agreeing objectives mean both got the model right.
Its physics is spelt out without the optimiser's shortcuts: a direction binary for every
battery and for the grid connection in every step (the optimiser has the grid's only where
export pays more than import), a hard top on every tank, spill at the top only through an
overflow. The benchmark uses it to time PuLP's build of the same model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pulp
from pulp.apis.coin_api import pulp_cbc_path

from dispatch.optimiser import EstateProblem
from tests.dispatch.optimiser.checker import penalty


@dataclass
class Twin:
    model: pulp.LpProblem
    build_s: float


def build(p: EstateProblem) -> Twin:
    began = time.perf_counter()
    T, dt, pen = range(p.steps), p.step_hours, penalty(p)
    prob = pulp.LpProblem("estate", pulp.LpMinimize)
    cost: list[pulp.LpAffineExpression] = []
    imp = [prob.add_variable(f"imp_{t}", lowBound=0) for t in T]
    exp = [prob.add_variable(f"exp_{t}", lowBound=0) for t in T]
    cost += [dt * float(p.import_price[t]) * imp[t] - dt * float(p.export_price[t]) * exp[t]
             for t in T]
    draw: dict[str, list[list[pulp.LpAffineExpression]]] = {f: [[] for _ in T]
                                                            for f in p.facilities}

    for b in p.batteries:
        ch = [prob.add_variable(f"{b.name}_ch_{t}", 0, b.charge_kw) for t in T]
        dis = [prob.add_variable(f"{b.name}_dis_{t}", 0, b.discharge_kw) for t in T]
        soc = [prob.add_variable(f"{b.name}_soc_{t}", b.soc_min_kwh, b.soc_max_kwh) for t in T]
        charging = [prob.add_variable(f"{b.name}_charging_{t}", cat="Binary") for t in T]
        for t in T:
            prob += ch[t] <= b.charge_kw * charging[t]
            prob += dis[t] <= b.discharge_kw * (1 - charging[t])
            before = soc[t - 1] if t else b.soc_initial_kwh
            prob += soc[t] == before + dt * (b.charge_efficiency * ch[t]
                                             - dis[t] / b.discharge_efficiency)
            draw[b.facility][t] += [ch[t], -1 * dis[t]]
            cost.append(b.degradation_cost * dt * (ch[t] + dis[t]))
        prob += soc[-1] >= b.terminal_kwh

    for d in p.deferrables:
        win = range(d.window_start, d.window_end)
        load = {t: prob.add_variable(f"{d.name}_p_{t}", 0, d.max_kw) for t in win}
        short = prob.add_variable(f"{d.name}_short", lowBound=0)
        prob += dt * pulp.lpSum(load.values()) + short >= d.energy_kwh
        cost.append(pen * short)
        for t in win:
            draw[d.facility][t].append(load[t])
        if d.needs_binaries:
            run = {t: prob.add_variable(f"{d.name}_on_{t}", cat="Binary") for t in win}
            # a run starts at t when on[t] and not on[t-1]; it must fit in the window
            st = {t: prob.add_variable(f"{d.name}_st_{t}", 0, 1) for t in win}
            floor = max(d.min_kw, 0.01 * d.max_kw)  # "on" draws at least 1% of max_kw
            for t in win:
                prob += st[t] >= run[t] - run.get(t - 1, 0)
                if t > d.window_end - d.min_run_steps:
                    prob += st[t] == 0
                prob += load[t] >= floor * run[t]
                prob += load[t] <= d.max_kw * run[t]
                prob += pulp.lpSum(st[k] for k in win if t - d.min_run_steps < k <= t) <= run[t]
            if d.non_interruptible:
                prob += pulp.lpSum(st.values()) <= 1

    for g in p.gensets:
        on = [prob.add_variable(f"{g.name}_on_{t}", cat="Binary") for t in T]
        pw = [prob.add_variable(f"{g.name}_p_{t}", 0, g.max_kw) for t in T]
        up = [prob.add_variable(f"{g.name}_up_{t}", 0, 1) for t in T]
        dn = [prob.add_variable(f"{g.name}_dn_{t}", 0, 1) for t in T]
        for t in T:
            prev = on[t - 1] if t else int(g.initially_on)
            prob += on[t] - prev == up[t] - dn[t]
            prob += pw[t] >= g.min_kw * on[t]
            prob += pw[t] <= g.max_kw * on[t]
            prob += pulp.lpSum(up[k] for k in T if t - g.min_up_steps < k <= t) <= on[t]
            prob += pulp.lpSum(dn[k] for k in T if t - g.min_down_steps < k <= t) <= 1 - on[t]
            if g.initially_on and t < g.min_up_steps - g.initial_steps:
                prob += on[t] == 1
            if not g.initially_on and t < g.min_down_steps - g.initial_steps:
                prob += on[t] == 0
            draw[g.facility][t].append(-1 * pw[t])
            cost.append(g.fuel_cost * dt * pw[t] + g.start_cost * up[t])

    def tank(name: str, level: list[pulp.LpVariable], low: float, high: float,
             target: float) -> None:
        nonlocal prob
        for t in T:
            under = prob.add_variable(f"{name}_under_{t}", lowBound=0)
            prob += level[t] + under >= low
            prob += level[t] <= high
            cost.append(pen * dt * under)
        short = prob.add_variable(f"{name}_end_short", lowBound=0)
        prob += level[-1] + short >= target
        cost.append(pen * short)

    for c in p.thermal:
        cop = np.broadcast_to(np.asarray(c.cop, dtype=float), (p.steps,))
        q = [prob.add_variable(f"{c.name}_q_{t}", 0, c.chiller_max_kw_th) for t in T]
        level = [prob.add_variable(f"{c.name}_lvl_{t}") for t in T]
        for t in T:
            before = level[t - 1] if t else c.tank_initial_kwh
            prob += level[t] == (1 - c.loss_per_hour * dt) * before + dt * (
                q[t] - float(c.cooling_demand_kw_th[t]))
            draw[c.facility][t].append((1 / float(cop[t])) * q[t])
        tank(c.name, level, c.tank_min_kwh, c.tank_max_kwh, c.terminal_kwh)

    for w in p.pumps:
        pw = [prob.add_variable(f"{w.name}_p_{t}", 0, w.pump_max_kw) for t in T]
        level = [prob.add_variable(f"{w.name}_lvl_{t}") for t in T]
        for t in T:
            before = level[t - 1] if t else w.tank_initial_m3
            inflow = dt * (w.flow_per_kw * pw[t] - float(w.water_demand_m3h[t]))
            if w.overflow:
                spill = prob.add_variable(f"{w.name}_spill_{t}", lowBound=0)
                cost.append(w.spill_cost * spill)
                inflow = inflow - spill
            prob += level[t] == before + inflow
            draw[w.facility][t].append(pw[t])
        tank(w.name, level, w.tank_min_m3, w.tank_max_m3, w.terminal_m3)

    for v in p.pv:
        for t in T:
            used = prob.add_variable(f"{v.name}_p_{t}", 0, float(v.forecast_kw[t]))
            draw[v.facility][t].append(-1 * used)

    base = np.asarray(p.base_load_kw, dtype=float)
    limits = p.facility_limits()
    export_limit = p.export_limit()
    big = big_m(p)
    for t in T:
        total = [x for f in p.facilities for x in draw[f][t]]
        prob += imp[t] - exp[t] == float(base[:, t].sum()) + pulp.lpSum(total)
        importing = prob.add_variable(f"importing_{t}", cat="Binary")
        prob += imp[t] <= big * importing
        prob += exp[t] <= big * (1 - importing)
        over = prob.add_variable(f"cap_over_{t}", lowBound=0)
        prob += imp[t] <= p.capacity_kw + over
        cost.append(pen * dt * over)
        if np.isfinite(export_limit[t]):
            over_exp = prob.add_variable(f"exp_over_{t}", lowBound=0)
            prob += exp[t] <= float(export_limit[t]) + over_exp
            cost.append(pen * dt * over_exp)
        for i, f in enumerate(p.facilities):
            if np.isfinite(limits[i, t]):
                over_f = prob.add_variable(f"fac_over_{i}_{t}", lowBound=0)
                prob += float(base[i, t]) + pulp.lpSum(draw[f][t]) <= limits[i, t] + over_f
                cost.append(pen * dt * over_f)
    for k, order in enumerate(p.dr_windows):
        for t in range(order.start, order.end):
            over_dr = prob.add_variable(f"dr_over_{k}_{t}", lowBound=0)
            prob += imp[t] <= order.cap_kw + over_dr
            cost.append(pen * dt * over_dr)
    if p.demand_charge:
        peak = prob.add_variable("peak", lowBound=p.prior_peak_kw)
        for t in T:
            prob += peak >= imp[t]
        cost.append(p.demand_charge * (peak - p.prior_peak_kw))
    prob += pulp.lpSum(cost)
    return Twin(prob, time.perf_counter() - began)


def big_m(p: EstateProblem) -> float:
    """More than the estate can import or export in any step: all its base load and every
    asset at full output one way or the other."""
    base = float(np.abs(np.asarray(p.base_load_kw)).sum(axis=0).max())
    assets = sum(b.charge_kw + b.discharge_kw for b in p.batteries)
    assets += sum(d.max_kw for d in p.deferrables) + sum(g.max_kw for g in p.gensets)
    assets += sum(c.chiller_max_kw_th / float(np.min(c.cop)) for c in p.thermal)
    assets += sum(w.pump_max_kw for w in p.pumps)
    assets += sum(float(np.max(v.forecast_kw)) for v in p.pv)
    return base + assets + 1.0


def solve(p: EstateProblem, time_limit_s: float = 60.0, gap: float = 0.0) -> tuple[str, float]:
    """(status, objective) from CBC."""
    twin = build(p)
    # the CBC binary bundled with PuLP, through the solver class PuLP 4 keeps
    solver = pulp.COIN_CMD(path=pulp_cbc_path, msg=False, timeLimit=time_limit_s, gapRel=gap)
    twin.model.solve(solver)
    return pulp.LpStatus[twin.model.status], float(pulp.value(twin.model.objective))
