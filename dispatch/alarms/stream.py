"""Rules evaluated as readings arrive: one decoded reading at a time, a few microseconds each.

``StreamEvaluator(estate, book, start_ms)`` takes the rule book's streaming rules
(``estate.rule_binding.RuleBook.stream``) and keeps one small state per source and rule,
made when it is built: readings from devices the estate does not describe, or of
quantities no rule watches, cost one dictionary lookup and are counted, never stored. So
its memory is fixed by the estate, whatever devices send.

- ``feed(reading, received_ms)`` / ``feed_pack(readings, received_ms)``: the transitions
  the readings cause. Times in rules (``for_s``, rates) are the readings' own times, so a
  replayed backlog is judged as it happened; a reading older than the last one a state has
  seen is ignored by that state. ``received_ms`` is the arrival time, for the clock check
  and the deadman.
- ``tick(now_ms)``: the deadman (``no_data``): sources silent for their timeout are raised
  at ``now_ms``; any reading from a source clears its deadman. Call it about once a second.

Kinds: threshold, voltage band (every phase; raised when one is out, cleared when all are
back), battery charge and tank level (bands on ``state_of_charge``), rate of change, stuck
value, spike, clock skew and no data. The windowed kinds are in ``dispatch.alarms.window``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from dispatch.alarms.model import Action, AlarmTransition, cut, fmt
from estate.alarm_rules import (
    AlarmRuleSpec,
    BatterySocRule,
    ClockSkewRule,
    NoDataRule,
    RateOfChangeRule,
    Severity,
    SpikeRule,
    StuckRule,
    TankLevelRule,
    ThresholdRule,
    VoltageBandRule,
)
from estate.readings import Reading
from estate.rule_binding import RuleBook
from estate.units import QUANTITIES

# A rate alarm clears once the rate is this share below its limit: readings jitter, and a
# rate hovering at the limit must not raise and clear on alternate readings.
RATE_HYSTERESIS: Final = 0.1
# A clock alarm clears once the skew is back under this share of its limit.
SKEW_CLEAR_SHARE: Final = 0.8
# After a gap this long the running mean of a spike rule no longer describes the present
# (a meter back from an outage, a shift that started meanwhile): it starts learning again.
SPIKE_RESET_GAP_MS: Final = 15 * 60_000
# Phases a voltage band watches: a device sending other channels cannot grow the state.
VOLTAGE_CHANNELS: Final = ("", "l1", "l2", "l3")

_HIGH, _LOW = 1, -1


@dataclass(frozen=True, slots=True)
class _Meta:
    """What every transition of one bound rule repeats."""

    source: str
    rule_id: str
    kind: str
    severity: Severity
    name: str

    def transition(self, action: Action, value: float | None, message: str,
                   at_ms: int) -> AlarmTransition:
        return AlarmTransition(action, self.source, self.rule_id, self.kind, self.severity,
                               value, cut(f"{self.name}: {message}" if self.name else message),
                               at_ms)


class _Band:
    """A value kept within ``[low, high]``: raised after ``for_ms`` outside, cleared when
    back inside by ``hysteresis``."""

    __slots__ = ("active", "for_ms", "high", "hyst", "last_t", "low", "meta", "side",
                 "since", "unit", "what")

    def __init__(self, meta: _Meta, low: float | None, high: float | None, hyst: float,
                 for_s: float, what: str, unit: str) -> None:
        self.meta = meta
        self.low = -math.inf if low is None else low
        self.high = math.inf if high is None else high
        self.hyst = hyst
        self.for_ms = for_s * 1000
        self.what = what
        self.unit = unit
        self.active = False
        self.side = 0
        self.since: int | None = None
        self.last_t = -(1 << 62)

    def on(self, channel: str, value: float, t: int) -> AlarmTransition | None:
        return self.update(value, t)

    def restore(self, value: float | None) -> None:
        self.active = True
        self.side = _LOW if value is not None and value < self.low else _HIGH

    def update(self, value: float, t: int) -> AlarmTransition | None:
        if t < self.last_t:
            return None
        self.last_t = t
        if self.active:
            back = (value < self.high - self.hyst if self.side == _HIGH
                    else value > self.low + self.hyst)
            if back:
                self.active = False
                self.side = 0
                return self.meta.transition(
                    "clear", value, f"{self.what} back to {fmt(value)} {self.unit}", t)
            return None
        side = _HIGH if value > self.high else _LOW if value < self.low else 0
        if side == 0:
            self.since = None
            return None
        if self.since is None or side != self.side:
            self.since, self.side = t, side
        if t - self.since < self.for_ms:
            return None
        self.active, self.since = True, None
        limit = self.high if side == _HIGH else self.low
        held = f" for {self.for_ms / 1000:g} s" if self.for_ms else ""
        return self.meta.transition(
            "raise", value, f"{self.what} {fmt(value)} {self.unit} "
            f"{'above' if side == _HIGH else 'below'} {fmt(limit)}{held}", t)


class _Phases:
    """A band over several channels (the phases of a voltage): one alarm, raised when any
    phase is out, cleared when every phase is back."""

    __slots__ = ("bands", "meta", "restored")

    def __init__(self, meta: _Meta, low: float | None, high: float | None, hyst: float,
                 for_s: float) -> None:
        self.meta = meta
        self.bands = {c: _Band(meta, low, high, hyst, for_s, "voltage", "V")
                      for c in VOLTAGE_CHANNELS}
        self.restored = False

    def restore(self, value: float | None) -> None:
        # Which phase was out is not stored: the first phase seen decides.
        self.restored = True

    def on(self, channel: str, value: float, t: int) -> AlarmTransition | None:
        if self.restored:
            self.restored = False
            band = self.bands[channel]
            band.active = True
            band.side = _LOW if value < band.low + band.hyst else _HIGH
        was = any(b.active for b in self.bands.values())
        band = self.bands[channel]
        transition = band.update(value, t)
        now = any(b.active for b in self.bands.values())
        if transition is None or was == now:
            return None
        label = f" ({channel})" if channel else ""
        return self.meta.transition(transition.action, value,
                                    transition.message.split(": ", 1)[-1] + label, t)


class _Rate:
    __slots__ = ("band", "last_t", "last_v")

    def __init__(self, meta: _Meta, max_per_min: float, for_s: float, unit: str) -> None:
        self.band = _Band(meta, None, max_per_min, RATE_HYSTERESIS * max_per_min, for_s,
                          "rate of change", f"{unit}/min")
        self.last_v = math.nan
        self.last_t = -(1 << 62)

    def restore(self, value: float | None) -> None:
        self.band.restore(value)

    def on(self, channel: str, value: float, t: int) -> AlarmTransition | None:
        if t <= self.last_t:
            return None
        previous, since = self.last_v, self.last_t
        self.last_v, self.last_t = value, t
        if math.isnan(previous):
            return None
        return self.band.update(abs(value - previous) / ((t - since) / 60_000), t)


class _Stuck:
    __slots__ = ("active", "for_ms", "last_t", "meta", "ref", "restored", "since",
                 "tolerance", "unit")

    def __init__(self, meta: _Meta, for_s: float, tolerance: float, unit: str) -> None:
        self.meta = meta
        self.for_ms = for_s * 1000
        self.tolerance = tolerance
        self.unit = unit
        self.ref = math.nan
        self.since = 0
        self.last_t = -(1 << 62)
        self.active = False
        self.restored = False

    def restore(self, value: float | None) -> None:
        # The value it was stuck at, if stored; else the first value seen again.
        self.active, self.restored = True, value is None
        if value is not None:
            self.ref = value

    def on(self, channel: str, value: float, t: int) -> AlarmTransition | None:
        if t < self.last_t:
            return None
        self.last_t = t
        if self.restored:
            self.restored = False
            self.ref, self.since = value, t
            return None
        if math.isnan(self.ref) or abs(value - self.ref) > self.tolerance:
            self.ref, self.since = value, t
            if self.active:
                self.active = False
                return self.meta.transition("clear", value, f"moving again ({fmt(value)} "
                                                            f"{self.unit})", t)
            return None
        if not self.active and t - self.since >= self.for_ms:
            self.active = True
            return self.meta.transition(
                "raise", value, f"{fmt(value)} {self.unit} unchanged for "
                f"{(t - self.since) / 1000:g} s", t)
        return None


class _Spike:
    __slots__ = ("active", "alpha", "clear_ms", "factor", "last_spike", "last_t", "mad",
                 "mean", "meta", "min_change", "min_share", "n", "unit", "warmup")

    def __init__(self, meta: _Meta, rule: SpikeRule, unit: str) -> None:
        self.meta = meta
        self.alpha = 2 / (rule.span + 1)
        self.factor = rule.factor
        self.min_share = rule.min_share
        self.min_change = rule.min_change
        self.warmup = rule.warmup
        self.clear_ms = rule.clear_after_s * 1000
        self.unit = unit
        self.n = 0
        self.mean = 0.0
        self.mad = 0.0
        self.last_t = -(1 << 62)
        self.last_spike = 0
        self.active = False

    def restore(self, value: float | None) -> None:
        # Cleared after ``clear_after_s`` of normal readings from the first one seen.
        self.active = True
        self.last_spike = 1 << 62

    def on(self, channel: str, value: float, t: int) -> AlarmTransition | None:
        if t <= self.last_t:
            return None
        if self.active and self.last_spike == 1 << 62:
            self.last_spike = t
        if t - self.last_t > SPIKE_RESET_GAP_MS:
            self.n = 0
        self.last_t = t
        if self.n == 0:
            self.n, self.mean, self.mad = 1, value, 0.0
            return None
        deviation = value - self.mean
        limit = max(self.factor * self.mad, self.min_share * abs(self.mean), self.min_change)
        spike = self.n >= self.warmup and abs(deviation) > limit
        # A spike moves the running mean by at most the limit: one wild value does not
        # poison it, a lasting change of level is still followed.
        step = max(-limit, min(limit, deviation)) if spike else deviation
        self.mean += self.alpha * step
        self.mad += self.alpha * (abs(step) - self.mad)
        self.n += 1
        if spike:
            self.last_spike = t
            if not self.active:
                self.active = True
                return self.meta.transition(
                    "raise", value, f"{fmt(value)} {self.unit} against a running mean of "
                    f"{fmt(self.mean - self.alpha * step)}", t)
            return None
        if self.active and t - self.last_spike >= self.clear_ms:
            self.active = False
            return self.meta.transition("clear", value,
                                        f"normal again ({fmt(value)} {self.unit})", t)
        return None


class _Skew:
    __slots__ = ("active", "for_ms", "max_ms", "meta", "onset", "since")

    def __init__(self, meta: _Meta, rule: ClockSkewRule) -> None:
        self.meta = meta
        self.max_ms = rule.max_skew_s * 1000
        self.for_ms = rule.for_s * 1000
        self.since: int | None = None
        self.onset = 0
        self.active = False

    def restore(self, value: float | None) -> None:
        self.active = True

    def update(self, time_ms: int, received_ms: int) -> AlarmTransition | None:
        skew = time_ms - received_ms
        if self.active:
            if abs(skew) < SKEW_CLEAR_SHARE * self.max_ms:
                self.active = False
                return self.meta.transition("clear", skew / 1000,
                                            f"clock within {skew / 1000:+.0f} s", received_ms)
            return None
        # A skewed clock stays off by about the same amount; a replayed backlog's skew
        # shrinks as it catches up: it restarts the wait and never raises.
        if abs(skew) <= self.max_ms:
            self.since = None
            return None
        if self.since is None or abs(skew - self.onset) > self.max_ms / 2:
            self.since, self.onset = received_ms, skew
            return None
        if received_ms - self.since < self.for_ms:
            return None
        self.active, self.since = True, None
        return self.meta.transition("raise", skew / 1000,
                                    f"timestamps {skew / 1000:+.0f} s off their arrival",
                                    received_ms)


_Check = _Band | _Phases | _Rate | _Stuck | _Spike


@dataclass
class StreamCounts:
    readings: int = 0
    unknown_source: int = 0
    unwatched: int = 0


class StreamEvaluator:
    """The streaming rules of one estate (see the module's docstring)."""

    def __init__(self, estate: str, book: RuleBook, start_ms: int) -> None:
        self.estate = estate
        self.counts = StreamCounts()
        self._routes: dict[tuple[str, str, str, str], list[_Check]] = {}
        self._skews: dict[tuple[str, str], _Skew] = {}
        self._index: dict[tuple[str, str], int] = {}
        self._names = [m.ref for m in book.meters]
        for i, meter in enumerate(book.meters):
            self._index[(meter.facility, meter.meter)] = i
        n = len(self._names)
        self._last_seen = np.full(n, start_ms, dtype=np.int64)
        self._timeout = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        self._dead = np.zeros(n, dtype=bool)
        self._deadman: dict[int, _Meta] = {}
        self._checks: dict[tuple[str, str], _Check | _Skew | int] = {}
        for bound in book.stream:
            self._bind(bound.source, bound.rule)

    @property
    def sources(self) -> int:
        return len(self._names)

    def _add(self, facility: str, device: str, quantity: str, channel: str,
             check: _Check) -> None:
        self._routes.setdefault((facility, device, quantity, channel), []).append(check)
        self._checks[(f"{facility}/{device}", check.meta.rule_id
                      if not isinstance(check, _Rate) else check.band.meta.rule_id)] = check

    def _bind(self, source: str, rule: AlarmRuleSpec) -> None:
        facility, device = source.split("/", 1)
        meta = _Meta(source, rule.id, rule.kind, rule.severity, rule.name)
        if isinstance(rule, NoDataRule):
            i = self._index[(facility, device)]
            self._timeout[i] = int(rule.timeout_s * 1000)
            self._deadman[i] = meta
            self._checks[(source, rule.id)] = i
        elif isinstance(rule, ClockSkewRule):
            skew = _Skew(meta, rule)
            self._skews[(facility, device)] = skew
            self._checks[(source, rule.id)] = skew
        elif isinstance(rule, VoltageBandRule):
            low, high, hyst = rule.band()
            phases = _Phases(meta, low, high, hyst, rule.for_s)
            for channel in VOLTAGE_CHANNELS:
                self._add(facility, device, "voltage", channel, phases)
        elif isinstance(rule, ThresholdRule | BatterySocRule | TankLevelRule):
            low, high, hyst = rule.band()
            quantity = rule.quantity
            channel = getattr(rule, "channel", "")
            what = QUANTITIES[quantity].label.lower()
            self._add(facility, device, quantity, channel,
                      _Band(meta, low, high, hyst, rule.for_s, what,
                            QUANTITIES[quantity].unit))
        elif isinstance(rule, RateOfChangeRule):
            self._add(facility, device, rule.quantity, rule.channel,
                      _Rate(meta, rule.max_per_min, rule.for_s, QUANTITIES[rule.quantity].unit))
        elif isinstance(rule, StuckRule):
            self._add(facility, device, rule.quantity, rule.channel,
                      _Stuck(meta, rule.for_s, rule.tolerance, QUANTITIES[rule.quantity].unit))
        elif isinstance(rule, SpikeRule):
            self._add(facility, device, rule.quantity, rule.channel,
                      _Spike(meta, rule, QUANTITIES[rule.quantity].unit))
        else:
            raise ValueError(f"rule {rule.id} ({rule.kind}) is not a streaming rule")

    def feed(self, reading: Reading, received_ms: int) -> list[AlarmTransition]:
        """The transitions one reading causes."""
        return self.feed_pack((reading,), received_ms)

    def feed_pack(self, readings: Sequence[Reading], received_ms: int,
                  ) -> list[AlarmTransition]:
        """The transitions a pack of readings (one message) causes."""
        out: list[AlarmTransition] = []
        seen: set[tuple[str, str]] = set()
        routes = self._routes
        for r in readings:
            self.counts.readings += 1
            if r.estate != self.estate:
                self.counts.unknown_source += 1
                continue
            source = (r.facility, r.device)
            if source not in seen:
                seen.add(source)
                if not self._seen(source, received_ms, out):
                    self.counts.unknown_source += 1
                    continue
                skew = self._skews.get(source)
                if skew is not None:
                    t = skew.update(r.time_ms, received_ms)
                    if t is not None:
                        out.append(t)
            elif source not in self._index:
                self.counts.unknown_source += 1
                continue
            checks = routes.get((r.facility, r.device, r.quantity, r.channel))
            if checks is None:
                self.counts.unwatched += 1
                continue
            value = r.value
            if not math.isfinite(value):
                continue
            for check in checks:
                t = check.on(r.channel, value, r.time_ms)
                if t is not None:
                    out.append(t)
        return out

    def _seen(self, source: tuple[str, str], received_ms: int,
              out: list[AlarmTransition]) -> bool:
        i = self._index.get(source)
        if i is None:
            return False
        if received_ms > self._last_seen[i]:
            self._last_seen[i] = received_ms
        if self._dead[i]:
            self._dead[i] = False
            meta = self._deadman[i]
            out.append(meta.transition("clear", None, "reporting again", received_ms))
        return True

    def tick(self, now_ms: int) -> list[AlarmTransition]:
        """Deadman: raise ``no_data`` for every source silent beyond its timeout."""
        silent = np.flatnonzero(~self._dead & (now_ms - self._last_seen > self._timeout))
        out = []
        for i in silent.tolist():
            self._dead[i] = True
            meta = self._deadman[i]
            quiet = (now_ms - int(self._last_seen[i])) / 1000
            out.append(meta.transition("raise", quiet, f"nothing for {quiet:.0f} s", now_ms))
        return out

    def restore(self, active: Iterable[tuple[str, str, float | None]]) -> int:
        """Mark the alarms the registry holds active ((source, rule id, value) each), so
        that a restarted evaluator clears them when their condition ends instead of never
        knowing they were raised. Unknown ones are skipped; the number restored."""
        restored = 0
        for source, rule_id, value in active:
            check = self._checks.get((source, rule_id))
            if check is None:
                continue
            if isinstance(check, int):
                self._dead[check] = True
            else:
                check.restore(value)
            restored += 1
        return restored

    def silent(self) -> list[str]:
        """Sources whose deadman is raised."""
        return [self._names[i] for i in np.flatnonzero(self._dead).tolist()]


def feed_all(evaluator: StreamEvaluator, packs: Iterable[tuple[Sequence[Reading], int]],
             ) -> list[AlarmTransition]:
    """Every transition of a sequence of (pack, received_ms): a helper for replays."""
    out: list[AlarmTransition] = []
    for readings, received in packs:
        out.extend(evaluator.feed_pack(readings, received))
    return out
