"""Checks of one input field at a time, each finding an ``Issue`` naming the subject (an
asset, ``estate``, ``options`` or a window) and the field: a number in its range (not NaN,
infinite only where that means "no limit"), an array of the right shape, a whole number,
a flag. ``dispatch.optimiser.consistency`` applies them to a whole problem."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True, slots=True)
class Issue:
    level: Literal["error", "warning"]
    subject: str
    """The asset's name, ``estate`` for the estate's own fields, or a window's name."""
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject} {self.field}: {self.message}"


def shown(value: object) -> str:
    """A value in a message: short, whatever it is."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FieldChecks:
    """Collects issues; each check returns whether the value is usable further on."""

    def __init__(self) -> None:
        self.found: list[Issue] = []

    @property
    def errors(self) -> bool:
        return any(i.level == "error" for i in self.found)

    def error(self, subject: str, field: str, message: str) -> bool:
        self.found.append(Issue("error", subject, field, message))
        return False

    def warn(self, subject: str, field: str, message: str) -> None:
        self.found.append(Issue("warning", subject, field, message))

    # --- building blocks ---

    def number(self, subject: str, field: str, value: object, low: float, high: float, *,
               above: bool = False, infinite: bool = False) -> bool:
        """A real number in ``[low, high]`` (``(low, high]`` if ``above``); ``+inf`` too
        when ``infinite`` (a limit that is not there)."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer
                                                     | np.floating):
            return self.error(subject, field, f"must be a number, got {shown(value)}")
        x = float(value)
        if math.isnan(x):
            return self.error(subject, field, "must be a number, got NaN")
        if math.isinf(x) and not (infinite and x > 0):
            return self.error(subject, field, f"must be finite, got {x}")
        if math.isinf(x):
            return True
        if x < low or (above and x == low) or x > high:
            bracket = "(" if above else "["
            return self.error(subject, field, f"must be in {bracket}{low:g}, {high:g}], got "
                                              f"{x:g}")
        return True

    def array(self, subject: str, field: str, value: object, shape: tuple[int, ...],
              low: float, high: float, *, scalar: bool = False, above: bool = False,
              infinite: bool = False) -> bool:
        """An array of ``shape`` (or one number if ``scalar``) with every value in range."""
        try:
            x = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return self.error(subject, field, f"must be numbers, got {shown(value)}")
        if not (x.shape == shape or (scalar and x.shape == ())):
            want = f"one value or {shape}" if scalar else f"shape {shape}"
            return self.error(subject, field, f"must have {want}, got shape {x.shape}")
        if np.isnan(x).any():
            return self.error(subject, field, f"has {int(np.isnan(x).sum())} NaN values")
        bad_inf = np.isinf(x) & ~((x > 0) & infinite)
        if bad_inf.any():
            return self.error(subject, field, f"has {int(bad_inf.sum())} infinite values")
        finite = x[np.isfinite(x)]
        if finite.size and (finite.min() < low or finite.max() > high
                            or (above and finite.min() == low)):
            bracket = "(" if above else "["
            return self.error(subject, field, f"must be in {bracket}{low:g}, {high:g}], got "
                                              f"{finite.min():g}..{finite.max():g}")
        return True

    def integer(self, subject: str, field: str, value: object, low: int, high: int) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            return self.error(subject, field, f"must be a whole number, got {shown(value)}")
        if not low <= int(value) <= high:
            return self.error(subject, field, f"must be in [{low}, {high}], got {value}")
        return True

    def flag(self, subject: str, field: str, value: object) -> bool:
        if not isinstance(value, bool | np.bool_):
            return self.error(subject, field, f"must be true or false, got {shown(value)}")
        return True
