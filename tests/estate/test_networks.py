"""Utility networks in the estate description: the sample's trees, and every mistake named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from estate.errors import ConfigError
from estate.model import SAMPLE_ESTATE, load_estate
from estate.networks import FLOW_QUANTITY, NetworkSpec, build_tree


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(SAMPLE_ESTATE.read_text(encoding="utf-8"))
    return raw


def _load(tmp_path: Path, data: dict[str, Any]) -> Any:
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_estate(path)


def _network(data: dict[str, Any], network: str) -> dict[str, Any]:
    return next(n for n in data["networks"] if n["id"] == network)


def test_the_sample_has_a_network_per_utility() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    trees = {t.id: t for t in spec.network_trees()}
    assert {t.utility for t in trees.values()} == {"electricity", "water", "gas"}
    power = trees["power"]
    assert power.root == "utilities/grid"
    assert power.children["utilities/grid"][:2] == ("utilities/feeder-north",
                                                    "utilities/feeder-south")
    south = power.descendants("utilities/feeder-south")
    assert len(south) == 11  # a feeder outage silences a whole group of meters
    assert power.ancestors("units/u07") == ["utilities/feeder-south", "utilities/grid"]
    assert power.depth("utilities/grid") == 0
    assert set(power.meters) == {"utilities/grid", *power.descendants("utilities/grid")}
    # Bottom-up: every parent after the parents below it.
    order = list(power.bottom_up())
    assert order.index("utilities/feeder-south") < order.index("utilities/grid")

    water = trees["water"]
    assert water.ancestors("foods/water") == ["utilities/network", "utilities/tower",
                                              "utilities/booster"]
    # The tower stores water: no balance across it, nor across the pump that fills it.
    assert [b.meter for b in water.balance_nodes()] == ["utilities/network"]
    assert [b.meter for b in trees["gas"].balance_nodes()] == ["utilities/gas-station"]
    node = water.balance_nodes()[0]
    assert node.quantity == FLOW_QUANTITY["water"] == "water_flow"
    assert node.children == ("textile/water", "foods/water", "units/water")
    assert node.losses == 0.02
    assert node.tolerance == 0.05


def test_balance_expectation_and_allowance() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    grid = next(b for t in spec.network_trees() for b in t.balance_nodes()
                if b.meter == "utilities/grid")
    # Losses apply to the throughput: a discharging battery does not reduce them.
    assert grid.expected(900.0, 1100.0) == pytest.approx(900 + 0.015 * 1100)
    assert grid.allowance(1000.0, 1100.0) == pytest.approx(0.03 * 1100)
    assert grid.allowance(10.0, 20.0) == 5.0  # the absolute floor at rest


MISTAKES = [
    (lambda d: _network(d, "water")["nodes"][2]["feeds"].append("textile/nowhere"),
     r"no meter 'textile/nowhere' in the estate"),
    (lambda d: _network(d, "gas")["nodes"][0]["feeds"].append("textile/water"),
     r"'textile/water' is a water meter, which has no place in a gas network"),
    (lambda d: _network(d, "power")["nodes"].append(
        {"meter": "textile/main", "feeds": ["textile/looms"]}) or None,
     None),  # a tenant incomer above its own sub-meter is allowed
    (lambda d: _network(d, "power")["nodes"].append(
        {"meter": "utilities/battery", "feeds": ["textile/looms"]}),
     r"'utilities/battery' \(battery\) cannot feed other meters"),
    (lambda d: _network(d, "power")["nodes"][1]["feeds"].append("metal/main"),
     r"'metal/main' is fed by both 'utilities/feeder-north' and 'utilities/feeder-south'"),
    (lambda d: _network(d, "power")["nodes"].append(
        {"meter": "textile/main", "feeds": ["utilities/grid"]}),
     r"the meters feed each other in a cycle"),
    (lambda d: _network(d, "power")["nodes"].append(
        {"meter": "textile/looms", "feeds": ["textile/hvac"]}),
     r"more than one root \(textile/looms, utilities/grid\)"),
    (lambda d: _network(d, "gas")["nodes"][0]["feeds"].append("metal/gas"),
     r"'utilities/gas-station' feeds the same meter twice"),
    (lambda d: _network(d, "gas")["nodes"][0].update(meter="textile/gas"),
     r"'textile/gas' feeds itself"),
    (lambda d: d["networks"].append({**_network(d, "gas"), "id": "gas-2"}),
     r"meter 'utilities/gas-station' is in gas networks 'gas' and 'gas-2'"),
    (lambda d: d["networks"].append(_network(d, "gas")), r"network 'gas' appears twice"),
    (lambda d: _network(d, "gas")["nodes"][0].update(feeds=[]), r"feeds"),
    (lambda d: _network(d, "gas")["nodes"][0].update(meter="gas-station"),
     r"must be written facility/meter"),
    (lambda d: _network(d, "gas").update(utility="steam"), r"utility"),
    (lambda d: _network(d, "gas")["nodes"][0].update(losses=0.9), r"losses"),
]


@pytest.mark.parametrize(("change", "message"), MISTAKES)
def test_mistakes_in_networks_stop_the_load(tmp_path: Path, sample: dict[str, Any],
                                            change: Any, message: str | None) -> None:
    data = copy.deepcopy(sample)
    change(data)
    if message is None:
        _load(tmp_path, data)
        return
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, data)


def test_a_cycle_below_the_root_is_named() -> None:
    spec = NetworkSpec.model_validate({"id": "n", "utility": "gas", "nodes": [
        {"meter": "a/root", "feeds": ["a/x"]},
        {"meter": "a/y", "feeds": ["a/z"]},
        {"meter": "a/z", "feeds": ["a/y"]}]})
    kinds = dict.fromkeys(("a/root", "a/x", "a/y", "a/z"), "gas")
    with pytest.raises(ValueError, match=r"a/y, a/z are not below the root 'a/root'"):
        build_tree(spec, kinds)


def test_a_meter_may_stand_in_one_network_per_utility(sample: dict[str, Any]) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    # The booster pump draws power on feeder north and lifts water into the tower.
    holding = [t.id for t in spec.network_trees() if "utilities/booster" in t]
    assert holding == ["power", "water"]
