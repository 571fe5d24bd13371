"""The windowed evaluator's estate-wide groups: a network node's balance against the
meters below it (children summed by a sparse matrix) and the capacity of the estate or a
facility, now or forecast."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from scipy import sparse

from dispatch.alarms.frames import SeriesKey, WindowInputs
from dispatch.alarms.model import AlarmTransition, fmt
from dispatch.alarms.window_groups import Group, RowState, meta_of, series_of, transition
from estate.rule_binding import BoundBalance, BoundCapacity
from estate.units import QUANTITIES

# A balance alarm clears once the residual is back under this share of its allowance: a
# leak at the edge of the tolerance must not raise and clear every other window.
BALANCE_CLEAR_SHARE: Final = 0.8
# A node is judged only when each of its meters reported at least this share as often as
# the others in the window: a mean over part of the window (a meter back from an outage,
# a gateway catching up) does not compare with a mean over all of it.
BALANCE_COVERAGE: Final = 0.9


class BalanceGroup(Group):
    """Balance rules of one quantity and window: children summed by a sparse matrix."""

    def __init__(self, bound: list[BoundBalance], index: Mapping[str, int], n: int) -> None:
        nodes = [b.node for b in bound]
        self.metas = [meta_of(b.source, b.rule) for b in bound]
        self.nodes = nodes
        self.span_s = bound[0].rule.window_s
        self.quantity = nodes[0].quantity
        self.parents = np.array([index[node.meter] for node in nodes], dtype=np.intp)
        cols = [index[c] for node in nodes for c in node.children]
        rows = [k for k, node in enumerate(nodes) for _ in node.children]
        self.children = sparse.csr_matrix(
            (np.ones(len(cols)), (rows, cols)), shape=(len(nodes), n))
        self.pair_node = np.array(rows, dtype=np.intp)
        self.pair_child = np.array(cols, dtype=np.intp)
        self.losses = np.array([node.losses for node in nodes])
        self.tolerance = np.array([node.tolerance for node in nodes])
        self.tolerance_abs = np.array([node.tolerance_abs for node in nodes])
        # The first window out of balance counts as the start of the wait.
        self.for_ms = np.array([max(0.0, b.rule.for_s - self.span_s) * 1000 for b in bound],
                               dtype=np.int64)
        self.state = RowState(len(nodes))
        self.unit = QUANTITIES[self.quantity].unit

    def needs(self) -> set[SeriesKey]:
        return {(self.quantity, "")}

    def side_of(self, row: int, value: float | None) -> int:
        return -1 if value is not None and value < 0 else 1

    def evaluate(self, inputs: WindowInputs, n: int) -> list[AlarmTransition]:
        series = series_of(inputs.frames.get(self.span_s), (self.quantity, ""), n)
        count = series.count
        mean = np.where(count > 0, series.mean, 0.0)
        parent = mean[self.parents]
        total = self.children @ mean
        absolute = self.children @ np.abs(mean)
        # Unknown when the parent or any child sent nothing or reported for only part of
        # the window (BALANCE_COVERAGE): a silent meter is the deadman's alarm, not a leak.
        child_n = count[self.pair_child]
        parent_n = count[self.parents][self.pair_node]
        short = (child_n < BALANCE_COVERAGE * parent_n) | (parent_n < BALANCE_COVERAGE
                                                           * child_n) | (child_n == 0)
        valid = (count[self.parents] > 0) & (
            np.bincount(self.pair_node, weights=short, minlength=len(self.nodes)) == 0)
        residual = parent - (total + self.losses * absolute)
        allowance = np.maximum(self.tolerance_abs,
                               self.tolerance * np.maximum(np.abs(parent), absolute))
        side = np.where(residual > allowance, 1,
                        np.where(residual < -allowance, -1, 0)).astype(np.int8)
        back = np.abs(residual) < BALANCE_CLEAR_SHARE * allowance
        raised, cleared = self.state.step(side, back, valid, inputs.end_ms, self.for_ms)
        out = []
        for i in raised.tolist():
            node = self.nodes[i]
            if residual[i] > 0:
                what = (f"{node.meter} reads {fmt(residual[i])} {self.unit} more than its "
                        f"{len(node.children)} meters below and their losses explain "
                        "(leak, theft or an unmetered draw)")
            else:
                what = (f"the {len(node.children)} meters below {node.meter} read "
                        f"{fmt(-residual[i])} {self.unit} more than it does (a meter fault)")
            out.append(transition(self.metas[i], "raise", float(residual[i]),
                                   f"{node.network}: {what}; tolerance {fmt(allowance[i])}",
                                   inputs.end_ms))
        out += [transition(self.metas[i], "clear", float(residual[i]),
                            f"{self.nodes[i].network}: balanced again (residual "
                            f"{fmt(residual[i])} {self.unit})", inputs.end_ms)
                for i in cleared.tolist()]
        return out


class CapacityGroup(Group):
    """Capacity rules: a handful of scopes, evaluated one by one."""

    def __init__(self, bound: Sequence[BoundCapacity]) -> None:
        self.bound = list(bound)
        self.metas = [meta_of(b.source, b.rule) for b in bound]
        self.state = RowState(len(bound))

    def evaluate(self, inputs: WindowInputs, n: int) -> list[AlarmTransition]:
        capacity = inputs.capacity
        if capacity is None:
            return []
        k = len(self.bound)
        value = np.full(k, np.nan)
        limit = np.full(k, np.nan)
        when: list[int | None] = [None] * k
        for i, b in enumerate(self.bound):
            lim = capacity.limit_kw.get(b.source)
            if lim is None:
                continue
            limit[i] = lim * (1 - b.rule.margin)
            if b.rule.horizon_s > 0:
                forecast = capacity.forecast.get(b.source)
                if forecast is None:
                    continue
                times, values = forecast
                ahead = (times >= inputs.end_ms) & (times < inputs.end_ms
                                                    + b.rule.horizon_s * 1000)
                if not ahead.any():
                    continue
                j = int(np.argmax(np.where(ahead, values, -np.inf)))
                value[i], when[i] = float(values[j]), int(times[j])
            else:
                demand = capacity.demand_kw.get(b.source)
                if demand is not None:
                    value[i] = demand
        hyst = np.array([b.rule.hysteresis for b in self.bound]) * limit
        for_ms = np.array([b.rule.for_s * 1000 for b in self.bound], dtype=np.int64)
        valid = np.isfinite(value) & np.isfinite(limit)
        over = (value > limit).astype(np.int8)
        raised, cleared = self.state.step(over, value < limit - hyst, valid, inputs.end_ms,
                                          for_ms)
        out = []
        for i in raised.tolist():
            b = self.bound[i]
            scope = "the estate" if b.facility is None else f"facility {b.facility}"
            if when[i] is not None:
                text = (f"forecast import of {scope} {fmt(value[i])} kW at "
                        f"{clock(when[i])} UTC, above {fmt(limit[i])} kW")
            else:
                text = (f"import of {scope} {fmt(value[i])} kW (mean of "
                        f"{b.rule.window_s:g} s) above {fmt(limit[i])} kW")
            out.append(transition(self.metas[i], "raise", float(value[i]), text,
                                   inputs.end_ms))
        out += [transition(self.metas[i], "clear", float(value[i]),
                            f"import back to {fmt(value[i])} kW", inputs.end_ms)
                for i in cleared.tolist()]
        return out


def clock(ms: int | None) -> str:
    if ms is None:
        return "–"
    minutes = (ms // 60_000) % 1440
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


