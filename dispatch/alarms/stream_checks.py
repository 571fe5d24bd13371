"""The streaming evaluator's checks: one small state per source and rule, updated by each
reading in a few microseconds. A band (threshold, battery, tank) with hysteresis and a
wait, the phases of a voltage band, a rate of change, a stuck value, a spike against a
running mean, and the clock skew of a device's timestamps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from dispatch.alarms.model import Action, AlarmTransition, cut, fmt
from estate.alarm_rules import ClockSkewRule, Severity, SpikeRule

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

HIGH, LOW = 1, -1


@dataclass(frozen=True, slots=True)
class Meta:
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


class BandCheck:
    """A value kept within ``[low, high]``: raised after ``for_ms`` outside, cleared when
    back inside by ``hysteresis``."""

    __slots__ = ("active", "for_ms", "high", "hyst", "last_t", "low", "meta", "side",
                 "since", "unit", "what")

    def __init__(self, meta: Meta, low: float | None, high: float | None, hyst: float,
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
        self.side = LOW if value is not None and value < self.low else HIGH

    def update(self, value: float, t: int) -> AlarmTransition | None:
        if t < self.last_t:
            return None
        self.last_t = t
        if self.active:
            back = (value < self.high - self.hyst if self.side == HIGH
                    else value > self.low + self.hyst)
            if back:
                self.active = False
                self.side = 0
                return self.meta.transition(
                    "clear", value, f"{self.what} back to {fmt(value)} {self.unit}", t)
            return None
        side = HIGH if value > self.high else LOW if value < self.low else 0
        if side == 0:
            self.since = None
            return None
        if self.since is None or side != self.side:
            self.since, self.side = t, side
        if t - self.since < self.for_ms:
            return None
        self.active, self.since = True, None
        limit = self.high if side == HIGH else self.low
        held = f" for {self.for_ms / 1000:g} s" if self.for_ms else ""
        return self.meta.transition(
            "raise", value, f"{self.what} {fmt(value)} {self.unit} "
            f"{'above' if side == HIGH else 'below'} {fmt(limit)}{held}", t)


class PhasesCheck:
    """A band over several channels (the phases of a voltage): one alarm, raised when any
    phase is out, cleared when every phase is back."""

    __slots__ = ("bands", "meta", "restored")

    def __init__(self, meta: Meta, low: float | None, high: float | None, hyst: float,
                 for_s: float) -> None:
        self.meta = meta
        self.bands = {c: BandCheck(meta, low, high, hyst, for_s, "voltage", "V")
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
            band.side = LOW if value < band.low + band.hyst else HIGH
        was = any(b.active for b in self.bands.values())
        band = self.bands[channel]
        transition = band.update(value, t)
        now = any(b.active for b in self.bands.values())
        if transition is None or was == now:
            return None
        label = f" ({channel})" if channel else ""
        return self.meta.transition(transition.action, value,
                                    transition.message.split(": ", 1)[-1] + label, t)


class RateCheck:
    __slots__ = ("band", "last_t", "last_v")

    def __init__(self, meta: Meta, max_per_min: float, for_s: float, unit: str) -> None:
        self.band = BandCheck(meta, None, max_per_min, RATE_HYSTERESIS * max_per_min, for_s,
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


class StuckCheck:
    __slots__ = ("active", "for_ms", "last_t", "meta", "ref", "restored", "since",
                 "tolerance", "unit")

    def __init__(self, meta: Meta, for_s: float, tolerance: float, unit: str) -> None:
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


class SpikeCheck:
    __slots__ = ("active", "alpha", "clear_ms", "factor", "last_spike", "last_t", "mad",
                 "mean", "meta", "min_change", "min_share", "n", "unit", "warmup")

    def __init__(self, meta: Meta, rule: SpikeRule, unit: str) -> None:
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


class SkewCheck:
    __slots__ = ("active", "for_ms", "max_ms", "meta", "onset", "since")

    def __init__(self, meta: Meta, rule: ClockSkewRule) -> None:
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


Check = BandCheck | PhasesCheck | RateCheck | StuckCheck | SpikeCheck
