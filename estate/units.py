"""Quantities, SenML units and conversion to the canonical storage units.

Every quantity a meter may report has one canonical unit in storage (``QUANTITIES``).
A reading may arrive in any unit of the same dimension (``UNITS``); it is converted with
``canonical = value * scale + offset``. Unit names are SenML names: RFC 8428's registry,
RFC 8798's additions and its secondary units (kW, kWh, kvar, hPa...). A few names that
field devices commonly send and that no SenML registry holds (``bar``, ``kPa``, ``m3/h``,
``l/min``, ``MW``, ``MWh``, ``kJ``, ``MJ``) are accepted as documented extensions; see
docs/contract.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Final


class Kind(Enum):
    """How a quantity's values relate over time."""

    GAUGE = "gauge"  # an instantaneous value: power, flow, temperature
    COUNTER = "counter"  # a cumulative register that only grows (until reset or rollover)


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit and how to convert it to the canonical unit of its dimension."""

    name: str
    dimension: str
    scale: float
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class Quantity:
    """A physical quantity the estate measures, with its canonical unit and plausible range."""

    name: str
    unit: str
    kind: Kind
    minimum: float
    maximum: float
    label: str

    @property
    def dimension(self) -> str:
        return UNITS[self.unit].dimension


def _units(dimension: str, *pairs: tuple[str, float]) -> dict[str, Unit]:
    return {name: Unit(name, dimension, scale) for name, scale in pairs}


UNITS: Final[dict[str, Unit]] = {
    **_units("power", ("W", 1e-3), ("kW", 1.0), ("MW", 1e3)),
    **_units("energy", ("Wh", 1e-3), ("kWh", 1.0), ("MWh", 1e3), ("J", 1 / 3.6e6),
             ("kJ", 1 / 3.6e3), ("MJ", 1 / 3.6)),
    **_units("reactive_power", ("var", 1e-3), ("kvar", 1.0)),
    **_units("reactive_energy", ("varh", 1e-3), ("kvarh", 1.0)),
    **_units("apparent_power", ("VA", 1e-3), ("kVA", 1.0)),
    **_units("voltage", ("V", 1.0), ("mV", 1e-3), ("kV", 1e3)),
    **_units("current", ("A", 1.0), ("mA", 1e-3)),
    **_units("frequency", ("Hz", 1.0)),
    # State of charge and power factor are fractions of a whole ("/"); operators read
    # state of charge in percent, so both names convert within one dimension.
    **_units("ratio", ("/", 1.0), ("%", 1e-2)),
    **_units("volume", ("m3", 1.0), ("l", 1e-3)),
    **_units("flow", ("m3/h", 1.0), ("m3/s", 3600.0), ("l/s", 3.6), ("l/min", 0.06)),
    **_units("pressure", ("bar", 1.0), ("Pa", 1e-5), ("hPa", 1e-3), ("kPa", 1e-2)),
    **_units("length", ("m", 1.0), ("cm", 1e-2), ("mm", 1e-3)),
    "Cel": Unit("Cel", "temperature", 1.0),
    "K": Unit("K", "temperature", 1.0, -273.15),
}
"""Every unit name accepted on the wire, by its SenML name."""

_Q = Quantity
QUANTITIES: Final[dict[str, Quantity]] = {
    q.name: q
    for q in (
        # Power can be negative: export to the grid, a battery discharging into the estate.
        _Q("power", "kW", Kind.GAUGE, -100_000.0, 100_000.0, "Active power"),
        _Q("reactive_power", "kvar", Kind.GAUGE, -100_000.0, 100_000.0, "Reactive power"),
        _Q("apparent_power", "kVA", Kind.GAUGE, 0.0, 100_000.0, "Apparent power"),
        _Q("energy_import", "kWh", Kind.COUNTER, 0.0, 1e12, "Energy imported"),
        _Q("energy_export", "kWh", Kind.COUNTER, 0.0, 1e12, "Energy exported"),
        _Q("reactive_energy", "kvarh", Kind.COUNTER, 0.0, 1e12, "Reactive energy"),
        _Q("voltage", "V", Kind.GAUGE, 0.0, 400_000.0, "Voltage"),
        _Q("current", "A", Kind.GAUGE, 0.0, 100_000.0, "Current"),
        _Q("power_factor", "/", Kind.GAUGE, -1.0, 1.0, "Power factor"),
        _Q("frequency", "Hz", Kind.GAUGE, 40.0, 70.0, "Frequency"),
        _Q("water_volume", "m3", Kind.COUNTER, 0.0, 1e12, "Water volume"),
        _Q("water_flow", "m3/h", Kind.GAUGE, -100_000.0, 100_000.0, "Water flow"),
        _Q("gas_volume", "m3", Kind.COUNTER, 0.0, 1e12, "Gas volume"),
        _Q("gas_flow", "m3/h", Kind.GAUGE, -100_000.0, 100_000.0, "Gas flow"),
        _Q("pressure", "bar", Kind.GAUGE, -1.0, 1_000.0, "Pressure"),
        _Q("temperature", "Cel", Kind.GAUGE, -80.0, 1_500.0, "Temperature"),
        _Q("state_of_charge", "%", Kind.GAUGE, 0.0, 100.0, "State of charge"),
        _Q("tank_level", "m", Kind.GAUGE, 0.0, 1_000.0, "Tank level"),
    )
}
"""Every quantity the contract knows, by its name on the wire."""

# Channels: what may follow a quantity's name after a dot (``voltage.l1``), by family.
PHASES: Final = ("l1", "l2", "l3")
LINE_TO_LINE: Final = ("l12", "l23", "l31")
TARIFFS: Final = ("t1", "t2", "t3", "t4")  # tariff registers of an energy meter
POSITIONS: Final = ("in", "out", "supply", "return")  # where on a pipe or a circuit
SENSORS: Final = tuple(str(k) for k in range(1, 9))  # several of one quantity on a device


def _channels() -> dict[str, frozenset[str]]:
    electrical = {"power", "reactive_power", "apparent_power", "power_factor", "current",
                  "voltage", "energy_import", "energy_export", "reactive_energy"}
    channels: dict[str, frozenset[str]] = {}
    for name in QUANTITIES:
        allowed = set(SENSORS)
        if name in electrical:
            allowed |= set(PHASES)
        if name == "voltage":
            allowed |= set(LINE_TO_LINE)
        if name == "current":
            allowed.add("n")  # the neutral conductor
        if QUANTITIES[name].kind is Kind.COUNTER and name in electrical:
            allowed |= set(TARIFFS)
        if name in {"water_flow", "water_volume", "gas_flow", "gas_volume", "pressure",
                    "temperature"}:
            allowed |= set(POSITIONS)
        channels[name] = frozenset(allowed)
    return channels


CHANNELS: Final[dict[str, frozenset[str]]] = _channels()
"""The channels the contract gives each quantity (docs/contract.md section 3.1). A
quantity without a channel is always allowed; any other channel is refused
(``unknown-channel``) unless the estate file declares it for the device. A closed list
keeps the field keys of the readings, which every device shares, from growing with what
any one device sends."""


def convert(value: float, unit: str, quantity: Quantity) -> float:
    """Convert ``value`` given in ``unit`` to ``quantity``'s canonical unit.

    Raises ``KeyError`` for an unknown unit and ``ValueError`` for a unit of another
    dimension; callers turn both into a dead-letter reason.
    """
    source = UNITS[unit]
    target = UNITS[quantity.unit]
    if source.dimension != target.dimension:
        raise ValueError(
            f"unit {unit!r} measures {source.dimension}, {quantity.name} is measured in "
            f"{target.dimension} ({quantity.unit})"
        )
    if source.name == target.name:
        return value
    # Go through the dimension's base (scale 1, offset 0) so any pair converts.
    base = value * source.scale + source.offset
    return (base - target.offset) / target.scale


def is_finite_number(value: object) -> bool:
    """True for an int or float that is finite; False for bool, NaN, infinities and others."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
