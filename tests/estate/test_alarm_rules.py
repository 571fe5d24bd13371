"""Alarm rules in the estate description: defaults per kind of meter, overrides by scope,
and every mistake named when the file loads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from estate.alarm_rules import DEFAULT_RULES, SEVERITIES, ThresholdRule, VoltageBandRule
from estate.errors import ConfigError
from estate.model import SAMPLE_ESTATE, EstateSpec, load_estate


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(SAMPLE_ESTATE.read_text(encoding="utf-8"))
    return raw


def _spec(sample: dict[str, Any], *rules: dict[str, Any]) -> EstateSpec:
    data = copy.deepcopy(sample)
    data["alarm_rules"] = [*data.get("alarm_rules", []), *rules]
    return EstateSpec.model_validate(data)


def _ids(spec: EstateSpec, source: str) -> dict[str, Any]:
    return {r.id: r for r in spec.rule_book().rules_of(source)}


def test_defaults_bind_by_kind_of_meter() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    book = spec.rule_book()
    meters = {m.ref for m in book.meters}
    assert len(meters) == 37
    # Every meter has a deadman and a clock check.
    for meter in meters:
        assert {"no-data", "clock-skew"} <= set(_ids(spec, meter)), meter
    assert set(_ids(spec, "textile/main")) == {"no-data", "clock-skew", "voltage-band",
                                               "power-factor", "spike", "stuck"}
    assert set(_ids(spec, "textile/water")) == {"no-data", "clock-skew", "pressure-low",
                                                "spike"}
    assert set(_ids(spec, "utilities/battery")) == {"no-data", "clock-skew", "battery-soc"}
    assert set(_ids(spec, "utilities/tower")) == {"no-data", "clock-skew", "tank-level"}
    # PV and gensets sit at zero for hours: no stuck or spike rule on them by default.
    assert set(_ids(spec, "metal/roof-pv")) == {"no-data", "clock-skew"}
    # The power factor is judged on windows, the rest as readings arrive.
    assert {b.rule.kind for b in book.window} == {"power_factor"}
    assert "power_factor" not in {b.rule.kind for b in book.stream}
    # One balance rule per balanced network node, capacity for the estate and each
    # facility with a sub-limit.
    assert sorted(b.source for b in book.balance) == [
        "utilities/feeder-north", "utilities/feeder-south", "utilities/gas-station",
        "utilities/grid", "utilities/network"]
    assert {c.source for c in book.capacity} == {
        "estate", "facility:textile", "facility:foods", "facility:metal", "facility:utilities"}
    assert all(r.severity in SEVERITIES for r in DEFAULT_RULES)


def test_the_files_rules_override_by_scope() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    coldroom = _ids(spec, "foods/coldroom-temp")
    assert coldroom["coldroom-warm"].high == 8
    assert coldroom["coldroom-warm"].severity == "critical"
    # Disabled for the shared services' temperature meters only.
    assert "stuck" not in _ids(spec, "utilities/ambient")
    assert "stuck" in _ids(spec, "textile/dyehouse-temp")
    textile = next(c for c in spec.rule_book().capacity
                   if c.source == "facility:textile" and c.rule.id == "capacity")
    assert (textile.rule.margin, textile.rule.severity) == (0.05, "high")
    foods = next(c for c in spec.rule_book().capacity
                 if c.source == "facility:foods" and c.rule.id == "capacity")
    assert (foods.rule.margin, foods.rule.severity) == (0.0, "critical")


def test_the_most_specific_rule_wins(sample: dict[str, Any]) -> None:
    spec = _spec(
        sample,
        {"id": "voltage-band", "kind": "voltage_band", "facility": "metal",
         "band_share": 0.08, "severity": "medium"},
        {"id": "voltage-band", "kind": "voltage_band", "meter": "metal/main",
         "band_share": 0.05, "severity": "critical"},
        {"id": "voltage-band", "kind": "voltage_band", "meter_kind": "hvac", "enabled": False},
        {"id": "balance", "kind": "balance", "network": "water", "for_s": 3600},
        {"id": "balance", "kind": "balance", "meter": "utilities/grid", "enabled": False})
    main = _ids(spec, "metal/main")["voltage-band"]
    assert isinstance(main, VoltageBandRule)
    assert (main.band_share, main.severity) == (0.05, "critical")
    assert _ids(spec, "metal/compressors")["voltage-band"].band_share == 0.08
    assert _ids(spec, "textile/main")["voltage-band"].band_share == 0.10
    assert "voltage-band" not in _ids(spec, "textile/hvac")
    balance = {b.source: b.rule for b in spec.rule_book().balance}
    assert balance["utilities/network"].for_s == 3600
    assert balance["utilities/gas-station"].for_s == 1800
    assert "utilities/grid" not in balance


def test_band_limits_in_the_quantitys_unit() -> None:
    rule = VoltageBandRule(kind="voltage_band", id="v")
    assert rule.band() == pytest.approx((207.0, 253.0, 2.3))
    rule2 = ThresholdRule(kind="threshold", id="t", quantity="temperature", high=8,
                          hysteresis=1)
    assert rule2.band() == (None, 8, 1)


MISTAKES = [
    ({"id": "x", "kind": "threshold", "quantity": "temperature", "facility": "nowhere",
      "high": 1}, r"no facility 'nowhere'"),
    ({"id": "x", "kind": "threshold", "quantity": "temperature", "meter": "foods/none",
      "high": 1}, r"no meter 'foods/none'"),
    ({"id": "x", "kind": "threshold", "quantity": "temperature", "meter": "foods/water",
      "high": 1}, r"none of the meters in scope measures temperature"),
    ({"id": "x", "kind": "threshold", "quantity": "pressure", "meter_kind": "gas",
      "high": 1}, r"none of the meters in scope measures pressure"),
    ({"id": "x", "kind": "threshold", "quantity": "flux", "high": 1}, r"unknown quantity"),
    ({"id": "x", "kind": "threshold", "quantity": "temperature"}, r"give high, low or both"),
    ({"id": "x", "kind": "threshold", "quantity": "temperature", "low": 5, "high": 7,
      "hysteresis": 1}, r"leave no normal band to clear into"),
    ({"id": "x", "kind": "balance", "network": "steam"}, r"no network 'steam'"),
    ({"id": "x", "kind": "capacity", "meter": "foods/main"}, r"not to meters"),
    ({"id": "no-data", "kind": "stuck", "quantity": "power"},
     r"is a default no_data rule; overriding it takes the same kind"),
    ({"id": "x", "kind": "threshold", "quantity": "temperature", "high": 1,
      "meter": "foods/coldroom-temp", "facility": "textile"}, r"not in facility 'textile'"),
    ({"id": "coldroom-warm", "kind": "threshold", "meter": "foods/coldroom-temp",
      "quantity": "temperature", "high": 9}, r"appears twice with the same scope"),
    ({"id": "coldroom-warm", "kind": "stuck", "quantity": "temperature"},
     r"id .coldroom-warm. is also a (stuck|threshold) rule; one id, one kind"),
    ({"id": "bad id", "kind": "no_data"}, r"rule id"),
    ({"id": "x", "kind": "no_data", "timeout_s": 1}, r"timeout_s"),
    ({"id": "x", "kind": "spike", "quantity": "power", "factor": 1}, r"factor"),
    ({"id": "x", "kind": "siren"}, r"kind"),
    ({"id": "x", "kind": "no_data", "severity": "urgent"}, r"severity"),
]


@pytest.mark.parametrize(("rule", "message"), MISTAKES)
def test_mistakes_in_rules_stop_the_load(tmp_path: Path, sample: dict[str, Any],
                                         rule: dict[str, Any], message: str) -> None:
    data = copy.deepcopy(sample)
    data["alarm_rules"].append(rule)
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_estate(path)
