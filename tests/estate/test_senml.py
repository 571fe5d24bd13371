"""The SenML codec: every rejection reason, partial packs, round trips and properties."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import estate.senml
import estate.senml_names
from estate.readings import DecodedPack, Reading
from estate.senml import (
    DEFAULT_LIMITS,
    RELATIVE_TIME_LIMIT,
    Limits,
    decode_pack,
    encode_readings,
)
from estate.topics import DeviceId
from estate.units import CHANNELS, QUANTITIES
from tests.hostile import long_base_name_pack

DEVICE = DeviceId("demo", "textile", "main")
BN = DEVICE.base_name
NOW_MS = 1_700_000_000_000
NOW_S = NOW_MS // 1000


def decode(records: Any, limits: Limits = DEFAULT_LIMITS) -> DecodedPack:
    return decode_pack(json.dumps(records).encode(), DEVICE, NOW_MS, limits)


def reasons(records: Any) -> list[str]:
    return [r.reason for r in decode(records).rejections]


def good(**extra: Any) -> dict[str, Any]:
    return {"n": "power", "u": "kW", "v": 41.5, **extra}


# One minimal pack per reason the decoder can give; the reason is expected last.
CASES: dict[str, list[Any]] = {
    "record-not-object": [good(), ["power", 1]],
    "empty-record": [good(), {}],
    "unsupported-version": [good(bver=11)],
    "bad-field-type": [{"bn": 7, **good()}],
    "bad-time": [good(bt="yesterday")],
    "non-finite": [good(bv="NaN")],
    "must-understand-field": [good(crit_=True)],
    "invalid-base-context": [good(bu=3), good(t=1)],
    "identity-mismatch": [good(bn="demo:foods:main:")],
    "unknown-quantity": [{"n": "humidity", "u": "/", "v": 0.4}],
    "bad-name": [{"n": "voltage.l/1", "u": "V", "v": 230}],
    "unknown-channel": [{"n": "voltage.zone-7", "u": "V", "v": 230}],
    "unsupported-value-type": [{"n": "power", "vs": "high"}],
    "missing-value": [{"n": "power", "u": "kW"}],
    "not-a-number": [good(v="41.5")],
    "missing-unit": [{"n": "power", "v": 41.5}],
    "unknown-unit": [good(u="hp")],
    "wrong-unit": [good(u="kWh")],
    "out-of-range": [{"n": "frequency", "u": "Hz", "v": 500}],
    "future-time": [good(bt=NOW_S + 301)],
    "too-old": [good(bt=NOW_S - 31 * 86_400)],
    "duplicate-record": [good(bt=NOW_S), good(v=42.0)],
}
WHOLE_MESSAGE = {"payload-too-large", "malformed-json", "not-a-pack", "empty-pack",
                 "too-many-records", "nothing-to-store"}


def _reasons_in_source() -> set[str]:
    source = "".join(Path(module.__file__).read_text(encoding="utf-8")
                     for module in (estate.senml, estate.senml_names))
    patterns = (r'Rejection\(\s*"([a-z-]+)"', r'_whole\(\s*"([a-z-]+)"',
                r'return \(?"([a-z-]+)",')
    return {m for p in patterns for m in re.findall(p, source)}


def test_every_reason_in_the_decoder_is_tested_here() -> None:
    assert _reasons_in_source() == set(CASES) | WHOLE_MESSAGE


@pytest.mark.parametrize("reason", sorted(CASES))
def test_record_reason(reason: str) -> None:
    decoded = decode(CASES[reason])
    assert decoded.rejections, reason
    last = decoded.rejections[-1]
    assert last.reason == reason
    assert last.record == len(CASES[reason]) - 1
    assert last.detail


@pytest.mark.parametrize(
    ("payload", "limits", "reason"),
    [
        (b"[" + b" " * 100 + b"]", Limits(max_payload_bytes=64), "payload-too-large"),
        (b'[{"n": "power",', DEFAULT_LIMITS, "malformed-json"),
        (b"\xff\xfe[]", DEFAULT_LIMITS, "malformed-json"),
        (b'[{"n":"power","u":"kW","v":NaN', DEFAULT_LIMITS, "malformed-json"),
        (b"[" * 5000 + b"]" * 5000, DEFAULT_LIMITS, "malformed-json"),
        (b'{"n":"power","u":"kW","v":1}', DEFAULT_LIMITS, "not-a-pack"),
        (b'"power"', DEFAULT_LIMITS, "not-a-pack"),
        (b"[]", DEFAULT_LIMITS, "empty-pack"),
        (orjson.dumps([good(t=k) for k in range(4)]), Limits(max_records=3), "too-many-records"),
        (orjson.dumps([{"bn": BN, "bt": NOW_S}, {"bu": "kW"}]), DEFAULT_LIMITS,
         "nothing-to-store"),
        (b'[{"name":"power","unit":"W","value":5}]', DEFAULT_LIMITS, "nothing-to-store"),
    ],
)
def test_whole_message_reasons(payload: bytes, limits: Limits, reason: str) -> None:
    decoded = decode_pack(payload, DEVICE, NOW_MS, limits)
    assert decoded.readings == []
    assert [(r.reason, r.record) for r in decoded.rejections] == [(reason, None)]


def test_non_json_number_literals_are_refused_per_record() -> None:
    # NaN, Infinity and 1e999 are not JSON, but firmware built on Python's json writes them;
    # the rest of such a pack is still read.
    payload = (b'[{"bn":"demo:textile:main:","n":"power","u":"kW","v":NaN},'
               b'{"n":"voltage.l1","u":"V","v":-Infinity},'
               b'{"n":"current.l1","u":"A","v":1e999},'
               b'{"n":"frequency","u":"Hz","v":50.0}]')
    decoded = decode_pack(payload, DEVICE, NOW_MS)
    assert [(r.quantity, r.value) for r in decoded.readings] == [("frequency", 50.0)]
    assert [(r.reason, r.record) for r in decoded.rejections] == [
        ("non-finite", 0), ("non-finite", 1), ("non-finite", 2)]


def test_nan_base_time_is_a_bad_time() -> None:
    payload = b'[{"bt":NaN,"n":"power","u":"kW","v":1}]'
    assert [r.reason for r in decode_pack(payload, DEVICE, NOW_MS).rejections] == ["bad-time"]


def test_huge_integer_beside_a_nan_is_refused_not_raised() -> None:
    payload = (b'[{"n":"power","u":"kW","v":NaN},{"n":"energy_import","u":"kWh","v":1'
               + b"0" * 400 + b"}]")
    decoded = decode_pack(payload, DEVICE, NOW_MS)
    assert [r.reason for r in decoded.rejections] == ["non-finite", "non-finite"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_only_utf8_json_is_accepted(encoding: str) -> None:
    payload = '[{"n":"frequency","u":"Hz","v":50}]'.encode(encoding)
    assert [r.reason for r in decode_pack(payload, DEVICE, NOW_MS).rejections] == [
        "malformed-json"]


def test_limits_are_inclusive() -> None:
    payload = orjson.dumps([good(t=k) for k in range(3)])
    decoded = decode_pack(payload, DEVICE, NOW_MS,
                          Limits(max_payload_bytes=len(payload), max_records=3))
    assert len(decoded.readings) == 3
    assert decoded.rejections == []


def test_good_records_are_kept_beside_bad_ones() -> None:
    decoded = decode([
        {"bn": BN, "bt": NOW_S - 10, "n": "power", "u": "kW", "v": 100.0},
        {"n": "power", "u": "hp", "v": 1.0, "t": 1},
        "not a record",
        {"n": "voltage.l1", "u": "V", "v": 230.0},
        {"n": "frequency", "u": "Hz", "v": 5000},
        {"n": "current.l1", "u": "mA", "v": 1500},
    ])
    assert [(r.quantity, r.channel, r.value) for r in decoded.readings] == [
        ("power", "", 100.0), ("voltage", "l1", 230.0), ("current", "l1", 1.5)]
    assert [(r.reason, r.record) for r in decoded.rejections] == [
        ("unknown-unit", 1), ("record-not-object", 2), ("out-of-range", 4)]


def test_base_fields_apply_to_later_records_until_restated() -> None:
    decoded = decode([
        {"bn": BN, "bt": NOW_S - 60, "bu": "W", "bv": 1000, "n": "power", "v": 500},
        {"n": "power", "v": -250, "t": 30},
        {"bu": "kW", "bv": 0},
        {"n": "power", "v": 7.5, "t": 60},
    ])
    assert decoded.rejections == []
    assert [(r.value, r.time_ms) for r in decoded.readings] == [
        (1.5, NOW_MS - 60_000), (0.75, NOW_MS - 30_000), (7.5, NOW_MS)]


def test_name_may_be_split_between_bn_and_n() -> None:
    decoded = decode([{"bn": "demo:", "n": "textile:main:voltage.l2", "u": "V", "v": 231.0}])
    assert decoded.rejections == []
    assert (decoded.readings[0].quantity, decoded.readings[0].channel) == ("voltage", "l2")


def test_identity_is_the_topic_not_the_payload() -> None:
    other = DeviceId("demo", "foods", "main")
    payload = json.dumps([good(bn=other.base_name)]).encode()
    assert [r.reason for r in decode_pack(payload, DEVICE, NOW_MS).rejections] == [
        "identity-mismatch"]
    readings = decode_pack(payload, other, NOW_MS).readings
    assert [(r.estate, r.facility, r.device) for r in readings] == [("demo", "foods", "main")]


def test_a_bad_base_field_refuses_the_rest_of_the_pack() -> None:
    decoded = decode([good(bn=BN), {"bt": "soon"}, good(t=1), good(t=2)])
    assert len(decoded.readings) == 1
    assert [(r.reason, r.record) for r in decoded.rejections] == [
        ("bad-time", 1), ("invalid-base-context", 2), ("invalid-base-context", 3)]


@pytest.mark.parametrize(("field", "value"), [("bver", 10), ("bver", 5), ("ut", 60),
                                              ("x-vendor", {"a": 1}), ("bs", 3)])
def test_understood_or_ignorable_fields_are_accepted(field: str, value: Any) -> None:
    decoded = decode([good(**{field: value})])
    assert decoded.rejections == []
    assert len(decoded.readings) == 1


@pytest.mark.parametrize(("bad", "reason"), [
    ({"bt": True}, "bad-time"), ({"t": "5"}, "bad-time"), ({"t": None}, "bad-time"),
    ({"bu": None}, "bad-field-type"), ({"n": 5}, "bad-field-type"), ({"bver": "10"},
                                                                       "unsupported-version"),
    ({"v": True}, "not-a-number"), ({"v": None}, "not-a-number"), ({"v": [1]}, "not-a-number"),
    ({"u": 3}, "unknown-unit"), ({"bv": None}, "non-finite"),
])
def test_field_types_are_checked(bad: dict[str, Any], reason: str) -> None:
    assert reasons([good(**bad)]) == [reason]


def test_value_overflowing_in_conversion_is_non_finite() -> None:
    assert reasons([{"n": "energy_import", "u": "MWh", "v": 1.7e308}]) == ["non-finite"]


def test_base_value_is_added_before_conversion() -> None:
    decoded = decode([{"bv": 1000, "n": "power", "u": "W", "v": 250}])
    assert decoded.readings[0].value == pytest.approx(1.25, rel=1e-12)


@pytest.mark.parametrize(("seconds", "expected_ms"), [
    (0, NOW_MS),
    (-90, NOW_MS - 90_000),
    (12.5, NOW_MS + 12_500),
    (0.0015, NOW_MS + 2),  # rounded to the millisecond
    (NOW_S, NOW_MS),
    (NOW_S - 0.25, NOW_MS - 250),
])
def test_times(seconds: float, expected_ms: int) -> None:
    decoded = decode([good(bt=seconds)])
    assert decoded.rejections == []
    assert decoded.readings[0].time_ms == expected_ms


def test_time_is_bt_plus_t() -> None:
    decoded = decode([good(bt=NOW_S - 100, t=40)])
    assert decoded.readings[0].time_ms == NOW_MS - 60_000


def test_relative_time_limit_is_2_to_the_28() -> None:
    # Just below: relative, so 8.5 years in the future. At the limit: absolute, 1978.
    assert reasons([good(bt=RELATIVE_TIME_LIMIT - 1)]) == ["future-time"]
    assert reasons([good(bt=RELATIVE_TIME_LIMIT)]) == ["too-old"]


def test_clock_limits_are_inclusive() -> None:
    limits = DEFAULT_LIMITS
    edge_future = (NOW_MS + limits.max_future_ms) / 1000
    edge_past = (NOW_MS - limits.max_age_ms) / 1000
    assert reasons([good(bt=edge_future)]) == []
    assert reasons([good(bt=edge_past)]) == []
    assert reasons([good(bt=edge_future + 0.001)]) == ["future-time"]
    assert reasons([good(bt=edge_past - 0.001)]) == ["too-old"]


def test_duplicate_keeps_the_first() -> None:
    decoded = decode([good(bt=NOW_S, v=1.0), good(v=2.0), good(v=3.0, n="power.l1")])
    assert [(r.channel, r.value) for r in decoded.readings] == [("", 1.0), ("l1", 3.0)]
    assert [(r.reason, r.record) for r in decoded.rejections] == [("duplicate-record", 1)]


def test_same_quantity_at_different_times_is_not_a_duplicate() -> None:
    decoded = decode([good(bt=NOW_S - 2), good(t=1), good(t=2)])
    assert decoded.rejections == []
    assert [r.time_ms for r in decoded.readings] == [NOW_MS - 2000, NOW_MS - 1000, NOW_MS]


def test_record_of_base_fields_only_is_context_not_a_reading() -> None:
    decoded = decode([{"bn": BN, "bt": NOW_S, "bu": "kW"}, {"n": "power", "v": 3.0}])
    assert decoded.rejections == []
    assert [(r.quantity, r.value, r.time_ms) for r in decoded.readings] == [
        ("power", 3.0, NOW_MS)]


@pytest.mark.parametrize(("name", "unit"), [
    ("voltage.l1", "V"), ("voltage.l31", "V"), ("current.n", "A"), ("temperature.supply", "Cel"),
    ("energy_import.t2", "kWh"), ("water_flow.in", "m3/h"), ("tank_level.3", "m"),
    ("power.8", "W")])
def test_channels_of_the_contract(name: str, unit: str) -> None:
    decoded = decode([{"n": name, "u": unit, "v": 230}])
    assert decoded.rejections == []
    assert [f"{r.quantity}.{r.channel}" for r in decoded.readings] == [name]


@pytest.mark.parametrize("name", ["voltage.L1", "voltage.n", "power.supply_air", "power.zone-7",
                                  "frequency.l1", "voltage." + "x" * 64, "power.9", "power.0"])
def test_other_well_formed_channels_are_refused(name: str) -> None:
    assert reasons([{"n": name, "u": "V" if "voltage" in name else "kW", "v": 1}]) == [
        "unknown-channel"]


def test_the_estate_file_may_give_a_device_channels_of_its_own() -> None:
    payload = orjson.dumps([{"bn": BN, "bt": NOW_S, "n": "temperature.bath-1", "u": "Cel",
                             "v": 61.5}, {"n": "temperature.bath-2", "u": "K", "v": 340.0}])
    assert [r.reason for r in decode_pack(payload, DEVICE, NOW_MS).rejections] == [
        "unknown-channel", "unknown-channel"]
    decoded = decode_pack(payload, DEVICE, NOW_MS,
                          extra_fields=frozenset({"temperature.bath-1", "temperature.bath-2"}))
    assert decoded.rejections == []
    assert [(r.channel, r.value) for r in decoded.readings] == [
        ("bath-1", 61.5), ("bath-2", pytest.approx(66.85))]


@pytest.mark.parametrize("channel", ["l 1", "l1.a", "x" * 65, "é", "l1;drop", "a,b", "a=b"])
def test_invalid_channels(channel: str) -> None:
    assert reasons([{"n": f"voltage.{channel}", "u": "V", "v": 230}]) == ["bad-name"]


def test_a_name_that_begins_with_a_colon_names_no_identity() -> None:
    # docs/contract.md section 2.6: without bn, ":power" has the prefix ":", which is not
    # the topic's identity.
    assert reasons([{"n": ":power", "u": "kW", "v": 1}]) == ["identity-mismatch"]
    assert reasons([{"bn": BN, "n": ":power", "u": "kW", "v": 1}]) == ["identity-mismatch"]
    assert reasons([{"n": BN + "power", "u": "kW", "v": 1}]) == []


# ---------------------------------------------------------------------------------------------
# Bounded work: what a hostile device sends costs in proportion to its payload, and the text
# of a refusal does not repeat it.

def test_a_long_base_name_is_not_repeated_in_each_refusal() -> None:
    # A 255 KB pack: a 100,000-character base name, then 3,999 records it applies to.
    payload = long_base_name_pack("x" * 99_992 + ":evil:m:", bt=NOW_S)
    assert 250_000 < len(payload) <= DEFAULT_LIMITS.max_payload_bytes
    decoded = decode_pack(payload, DEVICE, NOW_MS)
    assert decoded.readings == []
    assert {r.reason for r in decoded.rejections} == {"identity-mismatch"}
    assert len(decoded.rejections) == 4000
    assert max(len(r.detail) for r in decoded.rejections) < 400
    assert sum(len(r.detail) for r in decoded.rejections) < 4000 * 400


@pytest.mark.parametrize("bn", ["", BN, "volt", BN + "voltage."])
@pytest.mark.parametrize("tail", ["x" * 100_000, "age.l1" + "x" * 100_000, "power" * 20_000])
def test_a_long_local_name_is_refused_as_a_short_one_would_be(bn: str, tail: str) -> None:
    record = {"bn": bn, "n": tail, "u": "V", "v": 1.0}
    rejection, = decode([record]).rejections
    # The same reason as the general resolution gives, with a detail of bounded length.
    local = (bn + tail).rsplit(":", 1)[-1]
    expected = estate.senml_names.resolve_local(local)[0]
    assert rejection.reason == expected
    assert len(rejection.detail) < 300


def test_long_names_are_not_cached() -> None:
    # A device sending endless distinct long names must not grow the name cache: only
    # names that can be valid are kept there.
    for k in range(300):
        decode([{"n": f"{k:06d}" + "q" * 250_000, "u": "kW", "v": 1.0}])
        decode([{"n": f"power.{k:06d}" + "c" * 250_000, "u": "kW", "v": 1.0}])
    assert max(map(len, estate.senml_names._LOCAL_NAMES)) <= estate.senml_names.LONGEST_LOCAL_NAME
    held = sum(len(k) + sum(len(str(v)) for v in value)
               for k, value in estate.senml_names._LOCAL_NAMES.items())
    assert held < estate.senml_names._LOCAL_NAMES_MAX * 600


@pytest.mark.parametrize("record", [
    {"n": "power", "u": "kW", "v": "9" * 200_000},
    {"n": "power", "u": "k" * 200_000, "v": 1.0},
    {"n": "power", "u": "kW", "v": [[["x" * 100_000] * 3] * 3]},
    {"n": "power", "u": "kW", "v": 1.0, "t": {"a" * 100_000: 1}},
    {"bn": ["y" * 100_000], "n": "power", "u": "kW", "v": 1.0},
    {"n": "power", "u": "kW", "v": 1.0, "x" * 100_000 + "_": 1},
    {"bver": "9" * 100_000, "n": "power", "u": "kW", "v": 1.0},
])
def test_device_values_in_a_detail_are_cut(record: dict[str, Any]) -> None:
    rejection, = decode([record]).rejections
    assert len(rejection.detail) < 300, rejection.reason


def test_encode_then_decode_is_the_identity() -> None:
    readings = [
        Reading("demo", "textile", "main", "power", "", 412.5, NOW_MS - 10_000),
        Reading("demo", "textile", "main", "voltage", "l1", 230.1, NOW_MS - 10_000),
        Reading("demo", "textile", "main", "power", "", 415.0, NOW_MS - 5_000),
        Reading("demo", "textile", "main", "state_of_charge", "", 87.5, NOW_MS - 1),
    ]
    payload = encode_readings(DEVICE, readings)
    records = orjson.loads(payload)
    assert records[0]["bn"] == BN
    assert all("bn" not in r for r in records[1:])
    assert "t" not in records[1]  # same instant as the base time
    decoded = decode_pack(payload, DEVICE, NOW_MS)
    assert decoded.rejections == []
    assert decoded.readings == readings


def test_encoding_nothing_is_an_empty_pack() -> None:
    payload = encode_readings(DEVICE, [])
    assert payload == b"[]"
    assert [r.reason for r in decode_pack(payload, DEVICE, NOW_MS).rejections] == ["empty-pack"]


@pytest.mark.parametrize("record", [good(bt=1e306), good(t=1e306), good(bt=1.7e308, t=1.7e308)])
def test_huge_finite_times_are_rejected_not_raised(record: dict[str, Any]) -> None:
    assert reasons([record]) in (["future-time"], ["bad-time"])


# ---------------------------------------------------------------------------------------------
# Properties

# Integers beyond 64 bits and floats up to the largest double are valid JSON; orjson reads the
# former as floats.
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=30,
)
FIELDS = ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut",
          "x_", "vendor"]
# Times beyond 1e300 s crash the decoder today (test_huge_finite_times_are_rejected_not_raised);
# the properties keep below that so they test everything else.
SANE_FLOATS = st.floats(-1e300, 1e300, allow_nan=False)
SANE_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | SANE_FLOATS
                | st.text(max_size=12))
NAMES = st.sampled_from([*QUANTITIES, "voltage.l1", "current.l3", "power.", "humidity",
                         "demo:textile:main:power", "x:y:z:power", ":power", "", "power.a b"])
UNITS_ON_WIRE = st.sampled_from(["kW", "W", "kWh", "Wh", "V", "A", "/", "%", "Cel", "K", "m3",
                                 "m3/h", "l/min", "bar", "hp", "", "Hz", "m"])
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bn": st.sampled_from([BN, "", "demo:", "demo:foods:main:"]) | JSON_SCALARS,
    "bt": st.sampled_from([NOW_S, NOW_S - 60, -30, 0]) | SANE_SCALARS,
    "bu": UNITS_ON_WIRE | JSON_SCALARS,
    "bv": SANE_FLOATS | JSON_SCALARS,
    "bver": st.sampled_from([10, 11, 9]) | JSON_SCALARS,
    "n": NAMES | JSON_SCALARS,
    "u": UNITS_ON_WIRE | JSON_SCALARS,
    "v": SANE_FLOATS | JSON_SCALARS,
    "t": st.sampled_from([0, -60, 1.5]) | SANE_SCALARS,
}


def _field_value(name: str) -> st.SearchStrategy[Any]:
    return FIELD_VALUES.get(name, JSON_VALUES)


def _record(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f: _field_value(f) for f in fields})


SENML_RECORDS = st.lists(st.sampled_from(FIELDS), unique=True, max_size=8).flatmap(_record)
SENML_PACKS = st.lists(SENML_RECORDS | JSON_VALUES, min_size=1, max_size=12)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


@given(st.binary(max_size=400))
def test_never_raises_on_arbitrary_bytes(payload: bytes) -> None:
    decoded = decode_pack(payload, DEVICE, NOW_MS)
    from_array = payload.strip(b" \t\r\n").startswith(b"[")
    assert from_array or decoded.readings == []
    assert all(r.reason and r.detail for r in decoded.rejections)


@given(JSON_VALUES)
def test_never_raises_on_arbitrary_json(value: Any) -> None:
    decoded = decode_pack(_dumps(value), DEVICE, NOW_MS)
    assert all(isinstance(r, Reading) for r in decoded.readings)
    assert all(r.reason and r.detail for r in decoded.rejections)


def _has_name_or_value(record: Any) -> bool:
    return isinstance(record, dict) and any(
        f in record for f in ("n", "v", "vs", "vb", "vd", "s"))


@settings(max_examples=300)
@given(SENML_PACKS)
def test_never_raises_on_senml_like_packs(pack: list[Any]) -> None:
    decoded = decode_pack(_dumps(pack), DEVICE, NOW_MS)
    if [r.reason for r in decoded.rejections] == ["nothing-to-store"]:
        assert not any(_has_name_or_value(record) or record == {} for record in pack)
        return
    indices = [r.record for r in decoded.rejections]
    assert None not in indices
    assert len(indices) == len(set(indices))  # a record is refused at most once
    assert all(0 <= i < len(pack) for i in indices if i is not None)
    # Records with neither a name nor a value are context; they yield a rejection only when
    # their own base fields are bad, never a reading.
    refused_context = sum(1 for i in indices if i is not None and not _has_name_or_value(pack[i]))
    counted = sum(1 for record in pack if _has_name_or_value(record))
    assert len(decoded.readings) + len(decoded.rejections) == counted + refused_context
    for reading in decoded.readings:
        quantity = QUANTITIES[reading.quantity]
        assert quantity.minimum <= reading.value <= quantity.maximum
        assert NOW_MS - DEFAULT_LIMITS.max_age_ms <= reading.time_ms
        assert reading.time_ms <= NOW_MS + DEFAULT_LIMITS.max_future_ms



# Packs close to what gateways send, with values and times around every limit: the fast
# path of the decoder must give exactly what the general path gives.
_EDGE_FLOATS = (st.sampled_from([0.0, -0.0, 1e5, -1e5, 1e5 + 1e-9, 4e5, 40.0, 70.0, 70.5, 1.0,
                                 -1.0, 100.0, 1e12, -80.0, 1500.0, float("nan"),
                                 float("inf"), -float("inf")])
                | st.floats(-2e5, 2e5) | st.integers(-10, 10**6))
_LIMIT_TIMES = st.sampled_from([
    NOW_S, NOW_S - 60, NOW_S + 300, NOW_S + 300.001, NOW_S + 301,
    NOW_S - DEFAULT_LIMITS.max_age_ms / 1000, NOW_S - DEFAULT_LIMITS.max_age_ms / 1000 - 0.001,
    RELATIVE_TIME_LIMIT, RELATIVE_TIME_LIMIT - 1, -30, 0, 1e12, float("nan")])
_GATEWAY_RECORDS = st.fixed_dictionaries(
    {"n": st.sampled_from(["power", "voltage.l1", "current.l3", "frequency", "temperature",
                           "state_of_charge", "voltage.x9", "voltage.L1", "power_factor",
                           "demo:textile:main:power"]),
     "u": st.sampled_from(["kW", "W", "V", "A", "Hz", "Cel", "%", "/", "K"]),
     "v": _EDGE_FLOATS},
    optional={"t": st.sampled_from([0.0, 1.0, -1.5, 0.001]) | st.floats(-1e6, 1e6)
              | st.integers(-5, 5), "bu": st.sampled_from(["kW", "V"])})


@settings(max_examples=400)
@given(st.fixed_dictionaries({"bn": st.sampled_from([BN, "", "demo:textile:"]),
                              "bt": _LIMIT_TIMES},
                             optional={"bv": st.sampled_from([0.0, 10.0, -1e5])}),
       st.lists(_GATEWAY_RECORDS, min_size=1, max_size=12))
def test_the_fast_path_decodes_exactly_as_the_general_one(
        base: dict[str, Any], records: list[dict[str, Any]]) -> None:
    payload = json.dumps([{**base, **records[0]}, *records[1:]]).encode()
    fast = decode_pack(payload, DEVICE, NOW_MS)
    saved = estate.senml._PLAIN_NAMES
    estate.senml._PLAIN_NAMES = {}  # type: ignore[misc]
    try:
        general = decode_pack(payload, DEVICE, NOW_MS)
    finally:
        estate.senml._PLAIN_NAMES = saved  # type: ignore[misc]
    assert fast == general


VALID_BASE = {
    "bn": st.sampled_from([BN, "", "demo:", "demo:foods:main:"]),
    "bt": st.sampled_from([NOW_S, NOW_S - 60, -30, 0]) | SANE_FLOATS,
    "bu": UNITS_ON_WIRE,
    "bv": SANE_FLOATS,
    "bver": st.integers(-5, 10),
}
VALID_BASE_RECORDS = st.lists(
    st.sampled_from([f for f in FIELDS if f not in ("x_",)]), unique=True, max_size=8,
).flatmap(lambda fields: st.fixed_dictionaries(
    {f: VALID_BASE.get(f, _field_value(f)) for f in fields}))


@settings(max_examples=300)
@given(st.lists(VALID_BASE_RECORDS, min_size=1, max_size=12))
def test_every_record_with_a_name_or_value_is_a_reading_or_a_rejection(
        pack: list[dict[str, Any]]) -> None:
    decoded = decode_pack(_dumps(pack), DEVICE, NOW_MS)
    counted = sum(1 for record in pack if _has_name_or_value(record) or record == {})
    # A pack with nothing to read is refused as a whole, once: never silently.
    assert len(decoded.readings) + len(decoded.rejections) == max(1, counted)


@st.composite
def _valid_reading(draw: st.DrawFn) -> Reading:
    quantity = QUANTITIES[draw(st.sampled_from(sorted(QUANTITIES)))]
    channel = draw(st.sampled_from(["", *sorted(CHANNELS[quantity.name])]))
    value = draw(st.floats(quantity.minimum, quantity.maximum, allow_nan=False))
    time_ms = draw(st.integers(NOW_MS - DEFAULT_LIMITS.max_age_ms,
                               NOW_MS + DEFAULT_LIMITS.max_future_ms))
    return Reading(DEVICE.estate, DEVICE.facility, DEVICE.device, quantity.name,
                   channel, value, time_ms)


@given(st.lists(_valid_reading(), min_size=1, max_size=30,
                unique_by=lambda r: (r.quantity, r.channel, r.time_ms)))
def test_round_trip_of_valid_readings(readings: list[Reading]) -> None:
    decoded = decode_pack(encode_readings(DEVICE, readings), DEVICE, NOW_MS)
    assert decoded.rejections == []
    assert len(decoded.readings) == len(readings)
    for got, want in zip(decoded.readings, readings, strict=True):
        assert got.key == want.key
        assert got.value == want.value or math.isclose(got.value, want.value, rel_tol=1e-12)
