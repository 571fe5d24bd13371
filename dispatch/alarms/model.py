"""What the evaluators say: an alarm transition (raise or clear) of one source and rule.

A **source** is what an alarm is about, as a string: a meter ``facility/meter``, a
facility ``facility:<id>`` (its capacity sub-limit) or ``estate`` (the estate's grid
connection). One source and one rule have at most one active alarm: the key of an alarm
is ``(source, rule_id)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from estate.alarm_rules import SEVERITIES, Severity

Action = Literal["raise", "clear"]
AlarmKey = tuple[str, str]  # (source, rule id)

SEVERITY_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SEVERITIES)}
"""0 for the most urgent."""

ESTATE_SOURCE: Final = "estate"
MAX_MESSAGE: Final = 300
"""Messages name device identifiers and values: bounded, as everything devices control."""


def facility_source(facility: str) -> str:
    return f"facility:{facility}"


def is_meter_source(source: str) -> bool:
    return "/" in source and ":" not in source


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def fmt(value: float | None) -> str:
    """A value for a message: four significant digits, or a dash."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """An alarm raised or cleared by an evaluator at ``at_ms`` (the reading's time, or the
    cycle's end for windowed rules and the tick's time for a deadman)."""

    action: Action
    source: str
    rule_id: str
    rule_kind: str
    severity: Severity
    value: float | None
    message: str
    at_ms: int

    @property
    def key(self) -> AlarmKey:
        return (self.source, self.rule_id)
