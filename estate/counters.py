"""Cumulative registers (energy, water and gas volume) and the consumption between readings.

A register only grows, except when it wraps around (rollover: an 8-digit index passes
99,999,999 and starts again at 0) or the meter is replaced or reset (it restarts near
zero). Anything else that goes down is a bad reading. ``classify`` decides which, from the
previous and the new value alone, so ingest (per worker) and the consumption job (from the
store) judge alike.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Final

# A register that drops to at most this share of its rollover modulus was most likely
# wrapped around, if the previous value was within the same share of the top.
ROLLOVER_MARGIN: Final = 0.1
# A register that restarts below this share of its previous value was reset or replaced.
RESET_SHARE: Final = 0.01


class StepKind(Enum):
    FIRST = "first"  # nothing to compare with
    INCREASE = "increase"  # includes no change
    ROLLOVER = "rollover"
    RESET = "reset"
    BACKWARDS = "backwards"  # a bad reading
    LATE = "late"  # older than what was already seen: cannot be judged here


@dataclass(frozen=True, slots=True)
class CounterStep:
    kind: StepKind
    # Consumption since the previous reading, in the register's unit; None when unknown
    # (first reading, reset, backwards, late).
    delta: float | None
    previous: float | None = None


def rollover_modulus(previous: float) -> float:
    """The decade a register of this size wraps at: 10^digits of its integer part."""
    digits = max(1, len(str(int(previous)))) if previous >= 1 else 1
    return float(10**digits)


def classify(previous: float, value: float) -> CounterStep:
    """How a register got from ``previous`` to ``value`` (the later reading)."""
    if value >= previous:
        return CounterStep(StepKind.INCREASE, value - previous, previous)
    modulus = rollover_modulus(previous)
    if previous >= modulus * (1 - ROLLOVER_MARGIN) and value <= modulus * ROLLOVER_MARGIN:
        return CounterStep(StepKind.ROLLOVER, modulus - previous + value, previous)
    if value <= previous * RESET_SHARE:
        return CounterStep(StepKind.RESET, None, previous)
    return CounterStep(StepKind.BACKWARDS, None, previous)


CounterKey = tuple[str, str, str, str, str]


class CounterGuard:
    """Remembers the last register value per meter and judges each new one.

    Bounded: beyond ``max_keys`` meters the least recently seen is forgotten (its next
    reading is then a FIRST again). With several ingest workers each sees a subsequence of a
    meter's readings, which is still non-decreasing if the meter is sound; redelivered
    older readings are LATE and are not judged.
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self._last: OrderedDict[CounterKey, tuple[int, float]] = OrderedDict()
        self._max_keys = max_keys

    def check(self, key: CounterKey, time_ms: int, value: float) -> CounterStep:
        last = self._last.get(key)
        if last is not None and time_ms <= last[0]:
            return CounterStep(StepKind.LATE, None, last[1])
        step = CounterStep(StepKind.FIRST, None) if last is None else classify(last[1], value)
        if step.kind is not StepKind.BACKWARDS:
            self._last[key] = (time_ms, value)
            self._last.move_to_end(key)
            if len(self._last) > self._max_keys:
                self._last.popitem(last=False)
        return step
