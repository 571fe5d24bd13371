"""The estate description: the sample loads, and mistakes stop start-up with a clear message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from estate.errors import ConfigError, EstateError
from estate.model import MEASURES, SAMPLE_ESTATE, EstateSpec, load_estate
from estate.topics import DeviceId, validate_identifier
from estate.units import CHANNELS, QUANTITIES


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(SAMPLE_ESTATE.read_text(encoding="utf-8"))
    return raw


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_sample_estate_loads() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    assert isinstance(spec, EstateSpec)
    assert spec.id == "demo"
    assert [f.id for f in spec.facilities] == ["textile", "foods", "metal", "utilities", "units"]
    assert spec.contracted_capacity_kw == 2500
    assert spec.timezone == "Europe/Athens"
    devices = spec.devices()
    assert len(devices) == 37
    assert devices[0][0] == DeviceId("demo", "textile", "main")
    assert {m.kind for _, m, _ in devices} == set(MEASURES)


def test_sample_ships_with_the_package() -> None:
    assert SAMPLE_ESTATE.is_file()
    assert SAMPLE_ESTATE.parent.name == "samples"


def test_the_same_meter_id_may_appear_in_different_facilities() -> None:
    spec = load_estate(SAMPLE_ESTATE)
    mains = [d for d, m, _ in spec.devices() if m.id == "main"]
    assert len(mains) == 3
    assert len(set(mains)) == 3


@pytest.mark.parametrize(("kind", "measures"), sorted(MEASURES.items()))
def test_what_each_kind_measures_is_in_the_contract(
        kind: str, measures: tuple[tuple[str, str], ...]) -> None:
    assert measures, kind
    for quantity, channel in measures:
        assert quantity in QUANTITIES
        if channel:
            validate_identifier(channel, "channel")
            assert channel in CHANNELS[quantity], "the simulator sends only contract channels"


def test_a_meter_may_have_channels_of_its_own(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    data["facilities"][0]["meters"][4]["channels"] = {"temperature": ["bath-1", "supply"]}
    spec = load_estate(write(tmp_path, data))
    # Only what the contract lacks is extra.
    assert spec.extra_fields() == {DeviceId("demo", "textile", "dyehouse-temp"):
                                   frozenset({"temperature.bath-1"})}
    assert load_estate(SAMPLE_ESTATE).extra_fields() == {}


@pytest.mark.parametrize(("channels", "message"), [
    ({"humidity": ["a"]}, "'humidity' is not a quantity"),
    ({"temperature": ["bath 1"]}, "channel 'bath 1' of temperature"),
    ({"temperature": ["x" * 65]}, "is not 1-64"),
])
def test_channels_of_a_meter_are_checked(tmp_path: Path, sample: dict[str, Any],
                                         channels: dict[str, list[str]], message: str) -> None:
    data = copy.deepcopy(sample)
    data["facilities"][0]["meters"][4]["channels"] = channels
    with pytest.raises(ConfigError, match=message):
        load_estate(write(tmp_path, data))


def test_duplicate_meter_id_names_meter_and_facility(tmp_path: Path,
                                                     sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    meters = data["facilities"][2]["meters"]
    meters.append({**meters[0], "name": "Second incomer"})
    with pytest.raises(ConfigError, match=r"meter 'main' appears twice in facility 'metal'"):
        load_estate(write(tmp_path, data))


def test_duplicate_facility_id_is_refused(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    extra = {"id": "metal", "name": "Another metal works",
             "meters": [{"id": "press", "kind": "electricity", "nominal": 100}]}
    data["facilities"].append(extra)
    with pytest.raises(ConfigError, match="facility 'metal' appears twice"):
        load_estate(write(tmp_path, data))


@pytest.mark.parametrize("meter", ["press", "main"])
def test_duplicate_facility_message_names_the_facility(tmp_path: Path, sample: dict[str, Any],
                                                       meter: str) -> None:
    data = copy.deepcopy(sample)
    data["facilities"].append({"id": "metal", "name": "Another metal works",
                               "meters": [{"id": meter, "kind": "gas", "nominal": 10}]})
    with pytest.raises(ConfigError) as info:
        load_estate(write(tmp_path, data))
    assert "facility 'metal'" in str(info.value)
    assert "meter" not in str(info.value)


def test_unknown_kind_is_named(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    data["facilities"][0]["meters"][1]["kind"] = "steam"
    with pytest.raises(ConfigError) as info:
        load_estate(write(tmp_path, data))
    message = str(info.value)
    assert "facilities.0.meters.1.kind" in message
    assert "steam" in message
    assert "electricity" in message


BAD_IDENTIFIERS = pytest.mark.parametrize(("where", "value", "expected"), [
    (("id",), "demo estate", "estate id"),
    (("facilities", 1, "id"), "foods/2", "facility id"),
    (("facilities", 1, "meters", 0, "id"), "main:1", "meter id"),
])


def _with(sample: dict[str, Any], where: tuple[Any, ...], value: str) -> dict[str, Any]:
    data = copy.deepcopy(sample)
    target = data
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return data


@BAD_IDENTIFIERS
def test_invalid_identifiers_are_named(tmp_path: Path, sample: dict[str, Any],
                                       where: tuple[Any, ...], value: str, expected: str) -> None:
    with pytest.raises(EstateError) as info:
        load_estate(write(tmp_path, _with(sample, where, value)))
    assert expected in str(info.value)
    assert repr(value) in str(info.value)


@BAD_IDENTIFIERS
def test_invalid_identifiers_are_config_errors(tmp_path: Path, sample: dict[str, Any],
                                               where: tuple[Any, ...], value: str,
                                               expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_estate(write(tmp_path, _with(sample, where, value)))


def test_a_misspelt_key_is_refused(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    data["facilities"][0]["meters"][0]["nominall"] = 620
    with pytest.raises(ConfigError, match="nominall"):
        load_estate(write(tmp_path, data))


@pytest.mark.parametrize(("field", "value"), [("base_share", 1.5), ("nominal", 200_000),
                                              ("nominal", -150)])
def test_meter_values_out_of_bounds_are_refused(tmp_path: Path, sample: dict[str, Any],
                                                field: str, value: float) -> None:
    data = copy.deepcopy(sample)
    data["facilities"][0]["meters"][0][field] = value
    with pytest.raises(ConfigError, match=field):
        load_estate(write(tmp_path, data))


def test_non_positive_capacity_is_refused(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    data["contracted_capacity_kw"] = 0
    with pytest.raises(ConfigError, match="contracted_capacity_kw"):
        load_estate(write(tmp_path, data))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read estate file"):
        load_estate(tmp_path / "absent.yaml")


def test_broken_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text("id: demo\nfacilities: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read estate file"):
        load_estate(path)


def test_empty_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid"):
        load_estate(path)
