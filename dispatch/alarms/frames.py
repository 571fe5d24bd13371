"""What the windowed evaluator is handed each cycle: per window length, a frame of
aggregates (count, mean, minimum, maximum) per quantity and channel and meter, the latest
arrivals, and the capacity inputs; ``aggregate`` computes a frame from raw readings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from estate.readings import Reading

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
SeriesKey = tuple[str, str]  # (quantity, channel)


@dataclass(frozen=True, slots=True)
class SeriesWindow:
    """One quantity's aggregates over a window, one entry per meter of the frame."""

    count: Ints
    mean: Floats
    minimum: Floats
    maximum: Floats

    @staticmethod
    def empty(n: int) -> SeriesWindow:
        nan = np.full(n, np.nan)
        return SeriesWindow(np.zeros(n, dtype=np.int64), nan, nan.copy(), nan.copy())


@dataclass(frozen=True, slots=True)
class WindowFrame:
    """Aggregates over ``[end_ms - span_s, end_ms)`` of the series ``needs()`` asked for."""

    end_ms: int
    span_s: float
    series: Mapping[SeriesKey, SeriesWindow]


@dataclass(frozen=True, slots=True)
class CapacityInputs:
    """Per capacity source (``estate``, ``facility:<id>``): the mean import over the rule's
    window (kW), the limit in force (kW), and the forecast from now (times, kW)."""

    demand_kw: Mapping[str, float] = field(default_factory=dict)
    limit_kw: Mapping[str, float] = field(default_factory=dict)
    forecast: Mapping[str, tuple[Ints, Floats]] = field(default_factory=dict)


ForecastReader = Callable[[Mapping[str, float], int], Mapping[str, tuple[Ints, Floats]]]
"""The stored forecast for the capacity rules that look ahead: given each source's
horizon (s) and the window's end (ms), each source's forecast steps (times in ms, kW) in
``[end, end + horizon)``; a source without a stored forecast is left out."""


@dataclass(frozen=True, slots=True)
class WindowInputs:
    end_ms: int
    frames: Mapping[float, WindowFrame]
    # Arrival time of each meter's latest reading (ms), for no-data rules.
    last_seen_ms: Ints | None = None
    capacity: CapacityInputs | None = None


def aggregate(readings: Iterable[Reading], meters: Sequence[str], end_ms: int, span_s: float,
              keys: Iterable[SeriesKey]) -> WindowFrame:
    """A frame from raw readings in ``[end_ms - span_s, end_ms)``: what a store's window
    aggregates give, computed here for replays, tests and benchmarks."""
    index = {ref: i for i, ref in enumerate(meters)}
    wanted = set(keys)
    start = end_ms - span_s * 1000
    n = len(meters)
    values: dict[SeriesKey, tuple[list[int], list[float]]] = {k: ([], []) for k in wanted}
    for r in readings:
        key = (r.quantity, r.channel)
        if key not in wanted or not start <= r.time_ms < end_ms:
            continue
        i = index.get(f"{r.facility}/{r.device}")
        if i is not None:
            values[key][0].append(i)
            values[key][1].append(r.value)
    series = {}
    for key, (rows, vals) in values.items():
        at = np.array(rows, dtype=np.intp)
        v = np.array(vals, dtype=np.float64)
        count = np.bincount(at, minlength=n).astype(np.int64)
        total = np.bincount(at, weights=v, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        low = np.full(n, np.inf)
        high = np.full(n, -np.inf)
        np.minimum.at(low, at, v)
        np.maximum.at(high, at, v)
        empty = count == 0
        low[empty] = np.nan
        high[empty] = np.nan
        series[key] = SeriesWindow(count, mean, low, high)
    return WindowFrame(end_ms, span_s, series)
