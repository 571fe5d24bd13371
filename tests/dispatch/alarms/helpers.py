"""Small estates and readings for the alarm tests."""

from __future__ import annotations

from typing import Any

from estate.model import MEASURES
from estate.readings import Reading
from estate.rule_binding import MeterInfo, RuleBook, bind_rules

ESTATE = "e"
T0 = 1_784_000_000_000  # ms, any aligned instant


def book(meters: dict[str, str], *rules: Any, defaults: tuple[Any, ...] = ()) -> RuleBook:
    """A rule book over ``meters`` (ref -> kind) with only the given rules."""
    infos = [MeterInfo(*ref.split("/", 1), kind, frozenset(MEASURES[kind]))
             for ref, kind in meters.items()]
    return bind_rules(infos, list(rules), [], defaults=defaults)


def reading(ref: str, quantity: str, value: float, t: int, channel: str = "") -> Reading:
    facility, device = ref.split("/", 1)
    return Reading(ESTATE, facility, device, quantity, channel, value, t)
