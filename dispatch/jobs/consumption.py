"""What a cumulative register counted per window, from its readings in time order.

Pure arithmetic: the rollup job feeds it the readings it queried and writes the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from estate.counters import StepKind, classify


@dataclass(slots=True)
class Consumption:
    """What a register counted in one window, and what happened to it there."""

    value: float = 0.0
    resets: int = 0
    rollovers: int = 0
    backwards: int = 0

    def fields(self) -> dict[str, float | int]:
        return {"value": self.value, "resets": self.resets, "rollovers": self.rollovers,
                "backwards": self.backwards}


def consumption_by_window(previous: float | None, readings: Iterable[tuple[int, float]],
                          window_ms: int) -> tuple[dict[int, Consumption], float | None]:
    """Consumption per window (by window start) of one register's readings, in time order.

    Each reading is judged against the one before it (``previous`` for the first) with
    ``estate.counters.classify``, and the step belongs to the window of the later reading:
    an increase or a rollover counts its delta; a reset counts nothing (the meter restarted,
    what it measured before is unknown) and is counted; a reading that went backwards
    counts nothing, is counted, and is passed over: the next reading is judged against the
    one before it, as ingest's ``CounterGuard`` does. Every window with a reading gets an
    entry, even with nothing consumed. Returns the entries and the value to carry into the
    next call, so a long series can be fed in pieces.
    """
    windows: dict[int, Consumption] = {}
    for t_ms, value in readings:
        window = windows.setdefault(t_ms - t_ms % window_ms, Consumption())
        if previous is None:
            previous = value
            continue
        step = classify(previous, value)
        if step.kind is StepKind.BACKWARDS:
            window.backwards += 1
            continue
        if step.kind is StepKind.RESET:
            window.resets += 1
        else:
            if step.kind is StepKind.ROLLOVER:
                window.rollovers += 1
            window.value += step.delta or 0.0
        previous = value
    return windows, previous
