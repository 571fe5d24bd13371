"""The estate simulator: deterministic, independent per meter, shaped like an estate, faulty on
request, and within the contract at 10,000 meters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from edge.faults import InjectedFault, estate_faults
from edge.scale import simulator_for, synthetic_estate
from edge.settings import EdgeSettings
from edge.signals import clear_sky, timezone_position
from edge.simulator import EstateSimulator
from estate.errors import ConfigError
from estate.model import MEASURES, SAMPLE_ESTATE, EstateSpec, load_estate
from estate.readings import Reading
from estate.senml import decode_pack, encode_readings
from estate.topics import DeviceId
from estate.units import QUANTITIES

# Wednesday 2026-07-15 00:00 in Athens (UTC+3 in summer).
SUMMER_MIDNIGHT = int(datetime(2026, 7, 14, 21, 0, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
QUARTER = 900_000


@pytest.fixture(scope="module")
def sample() -> EstateSpec:
    return load_estate(SAMPLE_ESTATE)


def run(sim: EstateSimulator, start_ms: int, steps: int, step_ms: int,
        ) -> list[list[tuple[DeviceId, list[Reading]]]]:
    return [sim.step(start_ms + k * step_ms) for k in range(steps)]


def by_meter(steps: list[list[tuple[DeviceId, list[Reading]]]],
             ) -> dict[DeviceId, list[list[Reading]]]:
    out: dict[DeviceId, list[list[Reading]]] = {}
    for step in steps:
        for device, readings in step:
            out.setdefault(device, []).append(readings)
    return out


def series(sim_steps: list[list[tuple[DeviceId, list[Reading]]]], facility: str, device: str,
           quantity: str, channel: str = "") -> list[float]:
    return [r.value for step in sim_steps for d, rs in step
            if d.facility == facility and d.device == device
            for r in rs if r.quantity == quantity and r.channel == channel]


def with_meters(spec: EstateSpec, facility: str, extra: list[dict[str, Any]],
                position: int = 0) -> EstateSpec:
    raw = spec.model_dump()
    for f in raw["facilities"]:
        if f["id"] == facility:
            f["meters"][position:position] = extra
    return EstateSpec.model_validate(raw)


# --- determinism ------------------------------------------------------------------------

def test_same_seed_and_times_give_the_same_readings(sample: EstateSpec) -> None:
    a = run(EstateSimulator(sample, seed=5), SUMMER_MIDNIGHT, 30, QUARTER)
    b = run(EstateSimulator(sample, seed=5), SUMMER_MIDNIGHT, 30, QUARTER)
    c = run(EstateSimulator(sample, seed=6), SUMMER_MIDNIGHT, 30, QUARTER)
    assert a == b
    assert a != c
    assert sum(len(rs) for step in a for _, rs in step) == 30 * sum(
        len(MEASURES[m.kind]) for _, m, _ in sample.devices())


def test_adding_or_reordering_meters_leaves_the_others_unchanged(sample: EstateSpec) -> None:
    grown = with_meters(sample, "textile", [
        {"id": "new-line", "kind": "electricity", "nominal": 200},
        {"id": "new-tank", "kind": "tank", "nominal": 10}], position=1)
    raw = grown.model_dump()
    raw["facilities"].reverse()
    reordered = EstateSpec.model_validate(raw)
    before = by_meter(run(EstateSimulator(sample, 9), SUMMER_MIDNIGHT, 12, HOUR))
    after = by_meter(run(EstateSimulator(reordered, 9), SUMMER_MIDNIGHT, 12, HOUR))
    assert set(after) - set(before) == {DeviceId("demo", "textile", "new-line"),
                                        DeviceId("demo", "textile", "new-tank")}
    for device, readings in before.items():
        assert after[device] == readings, device


def test_counters_integrate_their_flows(sample: EstateSpec) -> None:
    steps = run(EstateSimulator(sample, 2), SUMMER_MIDNIGHT, 20, QUARTER)
    for facility, device, flow_q, counter_q in [
            ("textile", "water", "water_flow", "water_volume"),
            ("textile", "gas", "gas_flow", "gas_volume"),
            ("textile", "main", "power", "energy_import"),
            ("metal", "roof-pv", "power", "energy_export"),
    ]:
        flow = np.array(series(steps, facility, device, flow_q))
        counter = np.array(series(steps, facility, device, counter_q))
        hours = QUARTER / HOUR
        np.testing.assert_allclose(np.diff(counter), np.abs(flow[1:]) * hours, atol=1e-5,
                                   err_msg=f"{facility}/{device}")
        assert (np.diff(counter) >= 0).all()


# --- the shape of an estate --------------------------------------------------------------

def test_shifts_weekdays_and_weekends(sample: EstateSpec) -> None:
    sim = EstateSimulator(sample, 1)
    # Metal works 07-17 on weekdays only; Delta Foods around the clock, every day.
    wednesday_noon = SUMMER_MIDNIGHT + 12 * HOUR
    wednesday_night = SUMMER_MIDNIGHT + 3 * HOUR
    saturday_noon = wednesday_noon + 3 * 24 * HOUR

    def power(facility: str, time_ms: int) -> float:
        return series([sim.step(time_ms)], facility, "main", "power")[0]

    metal_noon, metal_night = power("metal", wednesday_noon), power("metal", wednesday_night)
    metal_saturday = power("metal", saturday_noon)
    assert metal_noon > 5 * metal_night
    assert metal_noon > 5 * metal_saturday
    assert metal_night == pytest.approx(780 * 0.08, rel=0.3)
    foods = [power("foods", t) for t in (wednesday_noon, wednesday_night, saturday_noon)]
    assert max(foods) < 1.4 * min(foods)


def test_a_shift_across_midnight_works_at_night() -> None:
    spec = EstateSpec.model_validate({
        "id": "e", "name": "e", "timezone": "UTC", "contracted_capacity_kw": 100,
        "facilities": [{"id": "bakery", "name": "Bakery", "shift_start": 22, "shift_end": 6,
                        "weekend": True, "meters": [{"id": "main", "kind": "electricity",
                                                     "nominal": 100, "base_share": 0.1}]}]})
    sim = EstateSimulator(spec, 1)
    day = int(datetime(2026, 3, 4, tzinfo=UTC).timestamp() * 1000)
    night = [series([sim.step(day + h * HOUR)], "bakery", "main", "power")[0] for h in (1, 4, 23)]
    daytime = [series([sim.step(day + h * HOUR)], "bakery", "main", "power")[0]
               for h in (9, 12, 16)]
    assert min(night) > 5 * max(daytime)


def test_clear_sky_follows_the_sun_of_the_estates_timezone() -> None:
    lat, lon = timezone_position("Europe/Athens")
    assert lat == pytest.approx(37.97, abs=0.05)
    assert lon == pytest.approx(23.72, abs=0.05)
    june_noon = int(datetime(2026, 6, 21, 10, 0, tzinfo=UTC).timestamp() * 1000)  # 13:00 local
    december_noon = int(datetime(2026, 12, 21, 10, 0, tzinfo=UTC).timestamp() * 1000)
    assert clear_sky(june_noon, lat, lon) > 0.9
    assert 0.3 < clear_sky(december_noon, lat, lon) < 0.6
    assert clear_sky(june_noon + 12 * HOUR, lat, lon) == 0.0
    # The same clock time in Sydney is night.
    assert clear_sky(june_noon, *timezone_position("Australia/Sydney")) == 0.0


def test_pv_battery_genset_tank_and_hvac_behave(sample: EstateSpec) -> None:
    sim = EstateSimulator(sample, 4)
    week = run(sim, SUMMER_MIDNIGHT, 7 * 96, QUARTER)
    pv = np.array(series(week, "metal", "roof-pv", "power"))
    hour_of_day = (np.arange(len(pv)) % 96) / 4
    assert (pv <= 0).all(), "PV only ever delivers"
    assert (pv[(hour_of_day < 4) | (hour_of_day > 22)] == 0).all()
    assert pv[(hour_of_day > 11) & (hour_of_day < 15)].mean() < -150

    soc = np.array(series(week, "utilities", "battery", "state_of_charge"))
    battery = np.array(series(week, "utilities", "battery", "power"))
    assert ((soc >= 0) & (soc <= 100)).all()
    assert (battery[(hour_of_day >= 1) & (hour_of_day < 5) & (soc < 94)] > 0).all()
    assert (battery[(hour_of_day >= 18.25) & (hour_of_day < 22) & (soc > 11)] < 0).all()
    assert soc.max() - soc.min() > 30

    genset = np.array(series(week, "utilities", "genset", "power"))
    assert np.count_nonzero(genset) == 2, "two quarter hours of weekly test run"
    assert (genset <= 0).all()

    level = np.array(series(week, "utilities", "tower", "tank_level"))
    fill = np.array(series(week, "utilities", "tower", "state_of_charge"))
    np.testing.assert_allclose(fill, level / 5.0 * 100, atol=1e-4)
    assert ((fill >= 0) & (fill <= 100)).all()
    assert fill.max() - fill.min() > 10, "the tower drains and refills"


def test_hvac_follows_the_ambient_temperature() -> None:
    spec = EstateSpec.model_validate({
        "id": "e", "name": "e", "timezone": "Europe/Athens", "contracted_capacity_kw": 100,
        "facilities": [{"id": "store", "name": "Store", "shift_start": 0, "shift_end": 24,
                        "weekend": True, "meters": [{"id": "hvac", "kind": "hvac",
                                                     "nominal": 100, "base_share": 1.0}]}]})
    sim = EstateSimulator(spec, 1)

    def afternoons(month: int) -> float:
        days = [int(datetime(2026, month, d, 12, tzinfo=UTC).timestamp() * 1000)
                for d in range(1, 29)]
        return float(np.mean([series([sim.step(t)], "store", "hvac", "power")[0]
                              for t in days]))

    assert afternoons(7) > 2 * afternoons(4)


# --- faults -------------------------------------------------------------------------------

def _at(offset_h: float) -> datetime:
    return datetime.fromtimestamp(SUMMER_MIDNIGHT / 1000, UTC) + timedelta(hours=offset_h)


def _fault(meter: str, kind: str, start_h: float, end_h: float | None,
           magnitude: float = 0.0, facility: str = "textile") -> InjectedFault:
    return InjectedFault(facility=facility, meter=meter, kind=kind,  # type: ignore[arg-type]
                         start=_at(start_h),
                         end=None if end_h is None else _at(end_h), magnitude=magnitude)


def _pair(spec: EstateSpec, *faults: InjectedFault,
          ) -> tuple[list[list[tuple[DeviceId, list[Reading]]]],
                     list[list[tuple[DeviceId, list[Reading]]]]]:
    clean = run(EstateSimulator(spec, 3), SUMMER_MIDNIGHT, 24, HOUR)
    faulty = run(EstateSimulator(spec, 3, faults=estate_faults(spec, faults)),
                 SUMMER_MIDNIGHT, 24, HOUR)
    return clean, faulty


def test_offline_meter_sends_nothing_in_its_window(sample: EstateSpec) -> None:
    clean, faulty = _pair(sample, _fault("water", "offline", 5, 8))
    water = DeviceId("demo", "textile", "water")
    sizes = [len(rs) for step in faulty for d, rs in step if d == water]
    assert sizes == [3] * 5 + [0] * 3 + [3] * 16
    # The meter kept counting while unreachable, and the others never noticed.
    assert clean[10] == faulty[10]
    assert [s for s in clean[6] if s[0] != water] == [s for s in faulty[6] if s[0] != water]


def test_leak_raises_the_baseline_and_the_counter(sample: EstateSpec) -> None:
    clean, faulty = _pair(sample, _fault("water", "leak", 2, None, magnitude=4.0))
    flow = np.array(series(faulty, "textile", "water", "water_flow"))
    flow0 = np.array(series(clean, "textile", "water", "water_flow"))
    np.testing.assert_allclose(flow[2:] - flow0[2:], 4.0, atol=1e-5)
    np.testing.assert_allclose(flow[:2], flow0[:2])
    volume = np.array(series(faulty, "textile", "water", "water_volume"))
    volume0 = np.array(series(clean, "textile", "water", "water_volume"))
    np.testing.assert_allclose(volume - volume0, 4.0 * np.maximum(0, np.arange(24) - 1),
                               atol=1e-4)


def test_spike_stuck_reset_and_clock_skew(sample: EstateSpec) -> None:
    clean, faulty = _pair(
        sample, _fault("main", "spike", 3, 4, magnitude=8.0),
        _fault("looms", "stuck", 6, 10), _fault("gas", "counter_reset", 12.5, None),
        _fault("main", "clock_skew", 15, 17, magnitude=-90, facility="metal"))
    power = series(faulty, "textile", "main", "power")
    power0 = series(clean, "textile", "main", "power")
    assert power[3] == pytest.approx(8 * power0[3])
    assert power[:3] + power[4:] == power0[:3] + power0[4:]

    looms = by_meter(faulty)[DeviceId("demo", "textile", "looms")]
    looms0 = by_meter(clean)[DeviceId("demo", "textile", "looms")]
    frozen = [r.value for r in looms0[6]]
    for k in range(6, 10):
        assert [r.value for r in looms[k]] == frozen
        assert {r.time_ms for r in looms[k]} == {SUMMER_MIDNIGHT + k * HOUR}
    assert looms[10] == looms0[10]
    assert looms[5] == looms0[5]

    gas = series(faulty, "textile", "gas", "gas_volume")
    gas0 = series(clean, "textile", "gas", "gas_volume")
    flow = series(faulty, "textile", "gas", "gas_flow")
    assert gas[:13] == gas0[:13]
    assert gas[13] == pytest.approx(flow[13])  # from 0, one hour of flow
    assert all(b >= a for a, b in pairwise(gas[13:]))

    metal = by_meter(faulty)[DeviceId("demo", "metal", "main")]
    times = [{r.time_ms - (SUMMER_MIDNIGHT + k * HOUR) for r in rs}
             for k, rs in enumerate(metal)]
    assert times == [{0}] * 15 + [{-90_000}] * 2 + [{0}] * 7


def test_faults_load_from_the_estate_file_and_the_environment(
        sample: EstateSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sample.model_dump()
    raw["facilities"][0]["meters"][2]["faults"] = [
        {"kind": "offline", "start": "2026-07-15T01:00:00+03:00",
         "end": "2026-07-15T03:00:00+03:00"}]
    spec = EstateSpec.model_validate(raw)
    sim = EstateSimulator(spec, 1)
    step = dict(sim.step(SUMMER_MIDNIGHT + 2 * HOUR))
    assert step[DeviceId("demo", "textile", "water")] == []

    monkeypatch.setenv("EDGE_FAULTS", '[{"facility": "foods", "meter": "water", '
                       '"kind": "offline", "start": "2026-07-15T00:00:00+03:00"}]')
    settings = EdgeSettings()
    assert settings.faults[0].kind == "offline"
    step = dict(simulator_for(settings).step(SUMMER_MIDNIGHT + HOUR))
    assert step[DeviceId("demo", "foods", "water")] == []
    assert step[DeviceId("demo", "textile", "water")] != []

    with pytest.raises(ConfigError, match="nowhere/pump"):
        estate_faults(sample, [_fault("pump", "leak", 1, 2, facility="nowhere")])
    with pytest.raises(ConfigError, match="end must be after start"):
        estate_faults(sample, [_fault("water", "leak", 2, 1)])


# --- at scale -----------------------------------------------------------------------------

def test_synthetic_estate_has_exactly_the_meters_asked_for() -> None:
    spec = synthetic_estate(10_000, seed=3)
    devices = spec.devices()
    assert len(devices) == 10_000
    assert len({d for d, _, _ in devices}) == 10_000
    kinds = {m.kind for _, m, _ in devices}
    assert kinds == set(MEASURES)
    assert synthetic_estate(10_000, seed=3) == spec
    assert synthetic_estate(10_000, seed=4) != spec
    assert len(synthetic_estate(7, seed=1).devices()) == 7
    sim = EstateSimulator(spec, 3)
    step = sim.step(SUMMER_MIDNIGHT + 12 * HOUR)
    assert [d for d, _ in step] == [d for d, _, _ in devices]
    assert sum(len(rs) for _, rs in step) == sum(len(MEASURES[m.kind]) for _, m, _ in devices)


def test_every_reading_is_within_the_contract() -> None:
    """A day of a 1,500-meter estate through the SenML codec: nothing refused."""
    spec = synthetic_estate(1_500, seed=8)
    sim = EstateSimulator(spec, 8)
    start = int(datetime(2026, 1, 13, tzinfo=UTC).timestamp() * 1000)
    refused: list[str] = []
    count = 0
    for k in range(0, 24 * 4, 3):
        now = start + k * QUARTER
        for device, readings in sim.step(now):
            for r in readings:
                quantity = QUANTITIES[r.quantity]
                if not quantity.minimum <= r.value <= quantity.maximum:
                    refused.append(f"{device} {r}")
            if k % 24 == 0:
                pack = decode_pack(encode_readings(device, readings), device, now)
                refused.extend(f"{device} {x}" for x in pack.rejections)
                assert pack.readings == readings
                count += len(pack.readings)
    assert count > 10_000
    assert refused == []


# --- networks -----------------------------------------------------------------------------

def _flows(step: list[tuple[DeviceId, list[Reading]]], quantity: str) -> dict[str, float]:
    return {f"{d.facility}/{d.device}": r.value for d, rs in step for r in rs
            if r.quantity == quantity and r.channel == ""}


def _imbalance(spec: EstateSpec, step: list[tuple[DeviceId, list[Reading]]],
               meter: str) -> tuple[float, float]:
    """A balanced node's parent minus its expected reading, and the allowance."""
    node = next(b for t in spec.network_trees() for b in t.balance_nodes() if b.meter == meter)
    flows = _flows(step, node.quantity)
    if node.utility == "electricity":  # a pump on an electricity network counts its power
        flows.update(_flows(step, "power"))
    children = [flows.get(c, 0.0) for c in node.children]
    total, absolute = sum(children), sum(abs(c) for c in children)
    parent = flows[meter]
    return parent - node.expected(total, absolute), node.allowance(parent, absolute)


BALANCED = ["utilities/grid", "utilities/feeder-north", "utilities/feeder-south",
            "utilities/network", "utilities/gas-station"]


def test_parents_read_their_children_plus_losses_within_tolerance(sample: EstateSpec) -> None:
    assert sorted(b.meter for t in sample.network_trees() for b in t.balance_nodes()) == sorted(
        BALANCED)
    day = run(EstateSimulator(sample, 7), SUMMER_MIDNIGHT, 96, QUARTER)
    for meter in BALANCED:
        residuals = []
        for step in day:
            residual, allowance = _imbalance(sample, step, meter)
            assert abs(residual) < 0.25 * allowance, (meter, residual, allowance)
            residuals.append(residual)
        assert max(map(abs, residuals)) > 0, f"{meter}: losses are noisy, not exact"
    # The grid's losses are on throughput: about 1.5 % of what its children move.
    grid = np.array(series(day, "utilities", "grid", "power"))
    feeders = np.array(series(day, "utilities", "feeder-north", "power")) + np.array(
        series(day, "utilities", "feeder-south", "power"))
    assert (grid > feeders).mean() > 0.5
    # A parent's register integrates the flow it reads.
    energy = np.array(series(day, "utilities", "grid", "energy_import"))
    np.testing.assert_allclose(np.diff(energy), np.maximum(grid[1:], 0) * QUARTER / HOUR,
                               atol=1e-5)
    volume = np.array(series(day, "utilities", "network", "water_volume"))
    flow = np.array(series(day, "utilities", "network", "water_flow"))
    np.testing.assert_allclose(np.diff(volume), flow[1:] * QUARTER / HOUR, atol=1e-5)


@pytest.mark.parametrize(("facility", "meter", "quantity", "leak"), [
    ("utilities", "network", "water_flow", 3.0), ("utilities", "gas-station", "gas_flow", 12.0)])
def test_a_leak_below_a_parent_breaks_its_balance(sample: EstateSpec, facility: str,
                                                  meter: str, quantity: str,
                                                  leak: float) -> None:
    ref = f"{facility}/{meter}"
    clean, faulty = _pair(sample, _fault(meter, "leak", 4, 9, magnitude=leak,
                                         facility=facility))
    for k, step in enumerate(faulty):
        residual, allowance = _imbalance(sample, step, ref)
        if 4 <= k < 9:
            assert residual == pytest.approx(leak, abs=0.25 * allowance)
            assert residual > allowance, "the leak is outside the tolerance"
        else:
            assert abs(residual) < 0.25 * allowance
    assert series(faulty, facility, meter, quantity)[:4] == series(clean, facility, meter,
                                                                   quantity)[:4]


def test_a_leak_at_a_tenant_keeps_the_network_balanced(sample: EstateSpec) -> None:
    clean, faulty = _pair(sample, _fault("water", "leak", 2, None, magnitude=4.0))
    network = np.array(series(faulty, "utilities", "network", "water_flow"))
    network0 = np.array(series(clean, "utilities", "network", "water_flow"))
    # The tenant's extra draw passes the tower outlet too (plus its losses).
    np.testing.assert_allclose(network[2:] - network0[2:], 4.0 * 1.02, atol=0.05)
    for step in faulty:
        residual, allowance = _imbalance(sample, step, "utilities/network")
        assert abs(residual) < 0.25 * allowance


def test_a_feeder_outage_silences_every_meter_below_it(sample: EstateSpec) -> None:
    clean, faulty = _pair(sample, _fault("feeder-south", "outage", 10, 13,
                                         facility="utilities"))
    below = {DeviceId("demo", *m.split("/")) for m in next(
        t for t in sample.network_trees() if t.id == "power").subtree("utilities/feeder-south")}
    assert len(below) == 12
    for k, step in enumerate(faulty):
        silent = {d for d, rs in step if not rs}
        assert silent == (below if 10 <= k < 13 else set()), k
    # The grid no longer carries the feeder's load, and still balances.
    for k in (10, 11, 12):
        south = _flows(clean[k], "power")["utilities/feeder-south"]
        drop = _flows(clean[k], "power")["utilities/grid"] - _flows(faulty[k], "power")[
            "utilities/grid"]
        assert drop == pytest.approx(south * 1.015, rel=0.02)
        residual, allowance = _imbalance(sample, faulty[k], "utilities/grid")
        assert abs(residual) < 0.25 * allowance
    # The units drew nothing while cut off: their registers did not move.
    energy = series(faulty, "units", "u04", "energy_import")
    step13 = dict(faulty[13])[DeviceId("demo", "units", "u04")]
    register = next(r.value for r in step13 if r.quantity == "energy_import")
    power = next(r.value for r in step13 if r.quantity == "power")
    assert register == pytest.approx(energy[9] + power, abs=1e-4)  # one hour at 13:00's draw
    assert clean[14] != faulty[14]


def test_a_water_outage_dries_the_meters_below_it(sample: EstateSpec) -> None:
    _, faulty = _pair(sample, _fault("tower", "outage", 3, 5, facility="utilities"))
    for k in (3, 4):
        flows = _flows(faulty[k], "water_flow")
        pressure = _flows(faulty[k], "pressure")
        for meter in ("utilities/network", "textile/water", "foods/water", "units/water"):
            assert flows[meter] == 0.0
            assert pressure[meter] < 0.3
        assert flows["utilities/booster"] >= 0  # above the tower: unaffected
        assert all(rs for _, rs in faulty[k]), "water meters keep reporting"
    assert _flows(faulty[5], "water_flow")["textile/water"] > 0


def test_spike_stuck_and_skew_apply_to_any_meter_parents_included(sample: EstateSpec) -> None:
    clean, faulty = _pair(
        sample, _fault("grid", "spike", 2, 3, magnitude=5.0, facility="utilities"),
        _fault("feeder-north", "stuck", 4, 8, facility="utilities"),
        _fault("gas-station", "clock_skew", 6, 7, magnitude=120, facility="utilities"))
    grid, grid0 = (series(s, "utilities", "grid", "power") for s in (faulty, clean))
    assert grid[2] == pytest.approx(5 * grid0[2])
    assert grid[3:] == grid0[3:]
    north = series(faulty, "utilities", "feeder-north", "power")
    assert north[4:8] == [north[4]] * 4
    # The feeder's meter is stuck, not the feeder: the grid still sees its real load.
    assert grid[4:8] == grid0[4:8]
    station = by_meter(faulty)[DeviceId("demo", "utilities", "gas-station")]
    assert {r.time_ms for r in station[6]} == {SUMMER_MIDNIGHT + 6 * HOUR + 120_000}


def test_a_synthetic_estate_has_feeders_of_forty_tenants_and_balances() -> None:
    spec = synthetic_estate(2_000, seed=5)
    trees = {t.id: t for t in spec.network_trees()}
    assert {t.utility for t in trees.values()} == {"electricity", "water", "gas"}
    feeder = trees["power-1"]
    assert feeder.root == "utilities/feeder-1"
    assert len(feeder.descendants(feeder.root)) == 40
    start = datetime.fromtimestamp(SUMMER_MIDNIGHT / 1000, UTC) + timedelta(hours=10)
    fault = InjectedFault(facility="utilities", meter="feeder-1", kind="outage", start=start,
                          end=start + timedelta(hours=1))
    sim = EstateSimulator(spec, 5, faults=estate_faults(spec, [fault]))
    silent = {d for d, rs in sim.step(SUMMER_MIDNIGHT + 10 * HOUR) if not rs}
    assert {f"{d.facility}/{d.device}" for d in silent} == set(feeder.meters)
    assert len(silent) == 41
    step = sim.step(SUMMER_MIDNIGHT + 12 * HOUR)
    for tree in trees.values():
        for node in tree.balance_nodes():
            residual, allowance = _imbalance(spec, step, node.meter)
            assert abs(residual) < 0.25 * allowance, node.meter
