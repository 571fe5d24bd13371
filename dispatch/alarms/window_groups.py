"""The windowed evaluator's per-meter rule groups: the rows (meters) of one rule id and
kind with their parameters as arrays, and their state (active, side, since when) as
arrays too, so a cycle is a few numpy operations per group whatever the number of meters.
Bands (threshold, voltage, battery, tank), no data, stuck and power factor; network
balance and capacity are in ``dispatch.alarms.window_network``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from dispatch.alarms.frames import Bools, Ints, SeriesKey, SeriesWindow, WindowFrame, WindowInputs
from dispatch.alarms.model import Action, AlarmTransition, cut, fmt
from estate.alarm_rules import (
    AlarmRuleSpec,
    BandRule,
    NoDataRule,
    PowerFactorRule,
    StuckRule,
    VoltageBandRule,
)
from estate.units import QUANTITIES

VOLTAGE_CHANNELS: Final = ("", "l1", "l2", "l3")
NEVER: Final = -1


@dataclass(frozen=True, slots=True)
class Meta:
    source: str
    rule_id: str
    kind: str
    severity: str
    name: str


def meta_of(source: str, rule: AlarmRuleSpec) -> Meta:
    return Meta(source, rule.id, rule.kind, rule.severity, rule.name)


def transition(meta: Meta, action: Action, value: float | None, message: str,
                at_ms: int) -> AlarmTransition:
    return AlarmTransition(action, meta.source, meta.rule_id, meta.kind,
                           meta.severity,  # type: ignore[arg-type]
                           value, cut(f"{meta.name}: {message}" if meta.name else message),
                           at_ms)


class RowState:
    """Active, side (1 above, -1 below) and since-when per row."""

    def __init__(self, n: int) -> None:
        self.active = np.zeros(n, dtype=bool)
        self.side = np.zeros(n, dtype=np.int8)
        self.since = np.full(n, NEVER, dtype=np.int64)

    def step(self, side_now: npt.NDArray[np.int8], back: Bools, valid: Bools, t: int,
             for_ms: Ints) -> tuple[Ints, Ints]:
        """Rows raised and rows cleared at ``t``: ``side_now`` is where each row is now
        (0 inside), ``back`` whether an active row has come back inside by its hysteresis."""
        active = self.active
        waiting = ~active & valid
        out = waiting & (side_now != 0)
        self.since[waiting & (side_now == 0)] = NEVER
        fresh = out & ((self.since == NEVER) | (self.side != side_now))
        self.since[fresh] = t
        self.side[fresh] = side_now[fresh]
        raised = out & (t - self.since >= for_ms)
        cleared = active & valid & back
        self.active[raised] = True
        self.since[raised] = NEVER
        self.active[cleared] = False
        self.side[cleared] = 0
        return np.flatnonzero(raised), np.flatnonzero(cleared)


def series_of(frame: WindowFrame | None, key: SeriesKey, n: int) -> SeriesWindow:
    if frame is None:
        return SeriesWindow.empty(n)
    found = frame.series.get(key)
    return found if found is not None else SeriesWindow.empty(n)


class Group:
    """The rows (meters) of one rule id and kind, with their parameters as arrays."""

    span_s: float = 0.0
    metas: list[Meta]
    state: RowState

    def needs(self) -> set[SeriesKey]:
        return set()

    def side_of(self, row: int, value: float | None) -> int:
        """The side a stored alarm's value is out on (1 above, -1 below)."""
        return 1

    def evaluate(self, inputs: WindowInputs, n: int) -> list[AlarmTransition]:
        raise NotImplementedError


class BandGroup(Group):
    def __init__(self, rows: list[int], metas: list[Meta], rules: Sequence[BandRule]) -> None:
        self.rows = np.array(rows, dtype=np.intp)
        self.metas = metas
        first = rules[0]
        self.span_s = float(first.window_s)
        self.quantity: str = first.quantity
        self.channels: tuple[str, ...] = (
            VOLTAGE_CHANNELS if isinstance(first, VoltageBandRule)
            else (getattr(first, "channel", ""),))
        bands = [r.band() for r in rules]
        self.low = np.array([-np.inf if b[0] is None else b[0] for b in bands])
        self.high = np.array([np.inf if b[1] is None else b[1] for b in bands])
        self.hyst = np.array([b[2] for b in bands])
        self.for_ms = np.array([r.for_s * 1000 for r in rules], dtype=np.int64)
        self.state = RowState(len(rows))
        self.unit = QUANTITIES[self.quantity].unit
        self.what = QUANTITIES[self.quantity].label.lower()

    def needs(self) -> set[SeriesKey]:
        return {(self.quantity, c) for c in self.channels}

    def side_of(self, row: int, value: float | None) -> int:
        return -1 if value is not None and value < self.low[row] else 1

    def evaluate(self, inputs: WindowInputs, n: int) -> list[AlarmTransition]:
        frame = inputs.frames.get(self.span_s)
        centre = np.where(np.isfinite(self.low) & np.isfinite(self.high),
                          (self.low + self.high) / 2, np.where(np.isfinite(self.low),
                                                               self.low, self.high))
        value = np.full(len(self.rows), np.nan)
        for channel in self.channels:
            mean = series_of(frame, (self.quantity, channel), n).mean[self.rows]
            # The phase farthest from the band's middle speaks for the meter.
            worse = np.isfinite(mean) & ~(np.abs(value - centre) >= np.abs(mean - centre))
            value = np.where(worse, mean, value)
        valid = np.isfinite(value)
        side = np.where(value > self.high, 1, np.where(value < self.low, -1, 0)).astype(np.int8)
        back = np.where(self.state.side == 1, value < self.high - self.hyst,
                        value > self.low + self.hyst)
        raised, cleared = self.state.step(side, back, valid, inputs.end_ms, self.for_ms)
        out = []
        for i in raised.tolist():
            above = bool(self.state.side[i] == 1)
            limit = self.high[i] if above else self.low[i]
            out.append(transition(self.metas[i], "raise", float(value[i]),
                                   f"{self.what} {fmt(value[i])} {self.unit} (mean of "
                                   f"{self.span_s:g} s) {'above' if above else 'below'} "
                                   f"{fmt(limit)}", inputs.end_ms))
        out += [transition(self.metas[i], "clear", float(value[i]),
                            f"{self.what} back to {fmt(value[i])} {self.unit}", inputs.end_ms)
                for i in cleared.tolist()]
        return out


class NoDataGroup(Group):
    def __init__(self, rows: list[int], metas: list[Meta], rules: list[NoDataRule]) -> None:
        self.rows = np.array(rows, dtype=np.intp)
        self.metas = metas
        self.timeout = np.array([r.timeout_s * 1000 for r in rules], dtype=np.int64)
        self.state = RowState(len(rows))
        self.zero = np.zeros(len(rows), dtype=np.int64)

    def evaluate(self, inputs: WindowInputs, n: int) -> list[AlarmTransition]:
        if inputs.last_seen_ms is None:
            return []
        quiet = inputs.end_ms - inputs.last_seen_ms[self.rows]
        silent = quiet > self.timeout
        valid = np.ones(len(self.rows), dtype=bool)
        raised, cleared = self.state.step(silent.astype(np.int8), ~silent, valid,
                                          inputs.end_ms, self.zero)
        out = [transition(self.metas[i], "raise", quiet[i] / 1000,
                           f"nothing for {quiet[i] / 1000:.0f} s", inputs.end_ms)
               for i in raised.tolist()]
        out += [transition(self.metas[i], "clear", None, "reporting again", inputs.end_ms)
                for i in cleared.tolist()]
        return out


class StuckGroup(Group):
    def __init__(self, rows: list[int], metas: list[Meta], rules: list[StuckRule],
                 span_s: float) -> None:
        self.rows = np.array(rows, dtype=np.intp)
        self.metas = metas
        self.span_s = span_s
        self.key = (rules[0].quantity, rules[0].channel)
        self.tolerance = np.array([r.tolerance for r in rules])
        # The first window of a frozen run is already frozen for its whole span.
        self.for_ms = np.array([max(0.0, r.for_s - span_s) * 1000 for r in rules],
                               dtype=np.int64)
        self.state = RowState(len(rows))
        self.unit = QUANTITIES[self.key[0]].unit

    def needs(self) -> set[SeriesKey]:
        return {self.key}

    def evaluate(self, inputs: WindowInputs, n: int) -> list[AlarmTransition]:
        series = series_of(inputs.frames.get(self.span_s), self.key, n)
        count = series.count[self.rows]
        spread = series.maximum[self.rows] - series.minimum[self.rows]
        valid = count >= 2
        frozen = valid & (spread <= self.tolerance)
        raised, cleared = self.state.step(frozen.astype(np.int8), ~frozen, valid,
                                          inputs.end_ms, self.for_ms)
        last = series.mean[self.rows]
        out = [transition(self.metas[i], "raise", float(last[i]),
                           f"{fmt(last[i])} {self.unit} unchanged for at least "
                           f"{(self.for_ms[i] / 1000 + self.span_s):g} s", inputs.end_ms)
               for i in raised.tolist()]
        out += [transition(self.metas[i], "clear", float(last[i]), "moving again",
                            inputs.end_ms) for i in cleared.tolist()]
        return out


class PowerFactorGroup(Group):
    def __init__(self, rows: list[int], metas: list[Meta], rules: list[PowerFactorRule],
                 ) -> None:
        self.rows = np.array(rows, dtype=np.intp)
        self.metas = metas
        self.span_s = rules[0].window_s
        self.min_pf = np.array([r.min_pf for r in rules])
        self.hyst = np.array([r.hysteresis for r in rules])
        self.min_kw = np.array([r.min_power_kw for r in rules])
        self.for_ms = np.array([r.for_s * 1000 for r in rules], dtype=np.int64)
        self.state = RowState(len(rows))

    def needs(self) -> set[SeriesKey]:
        return {("power_factor", ""), ("power", "")}

    def side_of(self, row: int, value: float | None) -> int:
        return -1

    def evaluate(self, inputs: WindowInputs, n: int) -> list[AlarmTransition]:
        frame = inputs.frames.get(self.span_s)
        pf = np.abs(series_of(frame, ("power_factor", ""), n).mean[self.rows])
        power = np.abs(series_of(frame, ("power", ""), n).mean[self.rows])
        valid = np.isfinite(pf) & (power >= self.min_kw)
        low = (pf < self.min_pf).astype(np.int8)
        raised, cleared = self.state.step(-low, pf > self.min_pf + self.hyst, valid,
                                          inputs.end_ms, self.for_ms)
        out = [transition(self.metas[i], "raise", float(pf[i]),
                           f"power factor {pf[i]:.2f} (mean of {self.span_s:g} s) below "
                           f"{self.min_pf[i]:.2f}", inputs.end_ms) for i in raised.tolist()]
        out += [transition(self.metas[i], "clear", float(pf[i]),
                            f"power factor back to {pf[i]:.2f}", inputs.end_ms)
                for i in cleared.tolist()]
        return out


