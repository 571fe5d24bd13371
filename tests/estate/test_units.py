"""Quantities, units and conversion to the canonical storage units."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estate.units import QUANTITIES, UNITS, Kind, Quantity, Unit, convert, is_finite_number

Q = QUANTITIES


@pytest.mark.parametrize(("value", "unit", "quantity", "expected"), [
    (148_250, "W", "power", 148.25),
    (0.25, "MW", "power", 250.0),
    (412.5, "kW", "power", 412.5),
    (98_765_432, "Wh", "energy_import", 98_765.432),
    (12.5, "MWh", "energy_export", 12_500.0),
    (3_600_000, "J", "energy_import", 1.0),
    (36_000, "kJ", "energy_import", 10.0),
    (36, "MJ", "energy_import", 10.0),
    (-42_500, "var", "reactive_power", -42.5),
    (2_500_000, "varh", "reactive_energy", 2_500.0),
    (154_200, "VA", "apparent_power", 154.2),
    (0.4, "kV", "voltage", 400.0),
    (230_100, "mV", "voltage", 230.1),
    (1_250, "mA", "current", 1.25),
    (50.02, "Hz", "frequency", 50.02),
    (300.15, "K", "temperature", 27.0),
    (0.0, "K", "temperature", -273.15),
    (21.5, "Cel", "temperature", 21.5),
    (1, "m3/s", "water_flow", 3_600.0),
    (2.5, "l/s", "water_flow", 9.0),
    (150, "l/min", "gas_flow", 9.0),
    (9.0, "m3/h", "gas_flow", 9.0),
    (1_250_500, "l", "water_volume", 1_250.5),
    (250_000, "Pa", "pressure", 2.5),
    (1_050, "hPa", "pressure", 1.05),
    (420, "kPa", "pressure", 4.2),
    (325, "cm", "tank_level", 3.25),
    (1_500, "mm", "tank_level", 1.5),
    # state_of_charge is stored in percent; power_factor as a plain ratio.
    (0.875, "/", "state_of_charge", 87.5),
    (87.25, "%", "state_of_charge", 87.25),
    (95, "%", "power_factor", 0.95),
    (0.97, "/", "power_factor", 0.97),
])
def test_conversion_table(value: float, unit: str, quantity: str, expected: float) -> None:
    assert convert(value, unit, Q[quantity]) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_same_unit_is_returned_untouched() -> None:
    value = 0.1 + 0.2  # not representable exactly: any arithmetic would show
    assert convert(value, "kW", Q["power"]) is value


@pytest.mark.parametrize(("unit", "quantity"), [
    ("kWh", "power"), ("kW", "energy_import"), ("V", "current"), ("Cel", "pressure"),
    ("%", "temperature"), ("m3", "water_flow"), ("m3/h", "water_volume"), ("var", "power"),
    ("VA", "reactive_power"), ("m", "water_volume"), ("Hz", "power_factor"),
])
def test_wrong_dimension_raises_value_error(unit: str, quantity: str) -> None:
    with pytest.raises(ValueError, match=quantity) as info:
        convert(1.0, unit, Q[quantity])
    assert repr(unit) in str(info.value)


def test_unknown_unit_raises_key_error() -> None:
    with pytest.raises(KeyError):
        convert(1.0, "hp", Q["power"])


@pytest.mark.parametrize("quantity", sorted(QUANTITIES))
def test_every_quantity_has_a_canonical_unit_in_the_table(quantity: str) -> None:
    q = Q[quantity]
    assert q.name == quantity
    assert q.unit in UNITS
    assert q.dimension == UNITS[q.unit].dimension
    assert q.minimum < q.maximum
    assert q.label


def test_each_dimension_has_one_base_unit() -> None:
    # Conversion goes through the unit of scale 1 and offset 0 of each dimension.
    dimensions = {u.dimension for u in UNITS.values()}
    for dimension in dimensions:
        bases = [u.name for u in UNITS.values()
                 if u.dimension == dimension and u.scale == 1.0 and u.offset == 0.0]
        assert len(bases) == 1, (dimension, bases)


def test_unit_names_are_their_keys() -> None:
    assert all(name == unit.name for name, unit in UNITS.items())


def test_counters_are_cumulative_quantities() -> None:
    counters = {q.name for q in QUANTITIES.values() if q.kind is Kind.COUNTER}
    assert counters == {"energy_import", "energy_export", "reactive_energy", "water_volume",
                        "gas_volume"}
    assert all(Q[name].minimum == 0.0 for name in counters)


def test_signed_gauges_allow_export_and_reverse_flow() -> None:
    for name in ("power", "reactive_power", "water_flow", "gas_flow"):
        assert Q[name].minimum < 0 < Q[name].maximum


@pytest.mark.parametrize(("value", "expected"), [
    (1, True), (1.5, True), (-0.0, True), (2**70, True), (math.nan, False),
    (math.inf, False), (-math.inf, False), (True, False), (False, False), ("1", False),
    (None, False),
])
def test_is_finite_number(value: object, expected: bool) -> None:
    assert is_finite_number(value) is expected


def test_is_finite_number_answers_for_huge_integers() -> None:
    assert isinstance(is_finite_number(10**400), bool)


PAIRS = [(u, q) for u in UNITS.values() for q in QUANTITIES.values()
         if u.dimension == q.dimension]


def test_every_unit_serves_some_quantity() -> None:
    assert {u.name for u, _ in PAIRS} == set(UNITS)


@given(st.sampled_from(PAIRS), st.floats(-1e12, 1e12, allow_nan=False))
def test_to_canonical_and_back_is_the_identity(pair: tuple[Unit, Quantity],
                                               value: float) -> None:
    unit, quantity = pair
    target = UNITS[quantity.unit]
    canonical = convert(value, unit.name, quantity)
    back = ((canonical * target.scale + target.offset) - unit.offset) / unit.scale
    # An offset (K -> Cel) costs absolute precision near zero, hence the absolute term.
    tolerance = 1e-9 * max(1.0, abs(unit.offset), abs(target.offset))
    assert math.isclose(back, value, rel_tol=1e-9, abs_tol=tolerance)


@given(st.sampled_from(PAIRS), st.floats(-1e9, 1e9, allow_nan=False),
       st.floats(-1e9, 1e9, allow_nan=False))
def test_conversion_preserves_order(pair: tuple[Unit, Quantity], a: float, b: float) -> None:
    unit, quantity = pair
    low, high = sorted((a, b))
    assert convert(low, unit.name, quantity) <= convert(high, unit.name, quantity)
