"""Pure message handling: synthetic messages in, lines out, no I/O."""

from __future__ import annotations

import orjson
import pytest

from estate.schema import DEAD_LETTERS, READINGS
from estate.topics import DeviceId
from ingest.pipeline import (
    DEAD_LETTER_RECORDS,
    PAYLOAD_EXCERPT_CHARS,
    DeadLetter,
    FieldCap,
    Memory,
    Rules,
    handle_message,
)
from tests.hostile import long_base_name_pack, long_name_pack

NOW_MS = 1_795_000_000_000
TOPIC = "estate/v1/demo/textile/main/telemetry"


def _pack(*records: dict) -> bytes:
    return orjson.dumps(list(records))


def test_good_pack_becomes_one_line_per_meter_and_instant() -> None:
    payload = _pack({"bn": "demo:textile:main:", "bt": NOW_MS / 1000, "n": "power", "u": "W",
                     "v": 1500}, {"n": "voltage.l1", "u": "V", "v": 231.5, "t": -1},
                    {"n": "energy_import", "u": "kWh", "v": 10.25})
    outcome = handle_message(TOPIC, payload, NOW_MS, 0)
    assert outcome.rejections == []
    assert outcome.lines == [
        f"{READINGS},device=main,estate=demo,facility=textile power=1.5,energy_import=10.25 "
        f"{NOW_MS}000000",
        f"{READINGS},device=main,estate=demo,facility=textile voltage.l1=231.5 "
        f"{NOW_MS - 1000}000000",
    ]


def test_bad_records_are_dead_lettered_beside_the_good_ones() -> None:
    payload = _pack({"bt": NOW_MS / 1000, "n": "power", "u": "kW", "v": 10},
                    {"n": "power", "u": "furlongs", "v": 1, "t": 1},
                    {"n": "temperature", "u": "Cel", "v": "hot"})
    outcome = handle_message(TOPIC, payload, NOW_MS, 0)
    assert [r.quantity for r in outcome.readings] == ["power"]
    assert [r.reason for r in outcome.rejections] == ["unknown-unit", "not-a-number"]
    dead = [x for x in outcome.lines if x.startswith(DEAD_LETTERS)]
    assert len(dead) == 2
    assert "reason=unknown-unit" in dead[0]
    assert "record=1i" in dead[0]
    # Two dead letters in the same millisecond get distinct timestamps.
    assert dead[0].rsplit(" ", 1)[1] != dead[1].rsplit(" ", 1)[1]


def test_a_topic_outside_the_scheme_is_dead_lettered_without_identity() -> None:
    outcome = handle_message("estate/v1/demo/textile", b"[]", NOW_MS, 0)
    assert [r.reason for r in outcome.rejections] == ["bad-topic"]
    assert len(outcome.lines) == 1
    assert outcome.lines[0].startswith(f"{DEAD_LETTERS},reason=bad-topic ")


def test_a_status_message_on_the_telemetry_path_is_refused() -> None:
    outcome = handle_message("estate/v1/demo/textile/main/status", b'{"state":"online"}',
                             NOW_MS, 0)
    assert [r.reason for r in outcome.rejections] == ["not-telemetry"]


def test_a_hostile_payload_is_kept_as_an_excerpt_on_one_line() -> None:
    payload = b'[{"n":"power\\nevil,x=1 value=9 1", "v": 1, "u": "W"}]' + b" " * 10_000
    outcome = handle_message(TOPIC, payload, NOW_MS, 0)
    assert [r.reason for r in outcome.rejections] == ["unknown-quantity"]
    (dead,) = outcome.lines
    assert "\n" not in dead
    assert f"payload_bytes={len(payload)}i" in dead
    assert len(dead) < PAYLOAD_EXCERPT_CHARS + 2_000


def test_a_register_that_goes_backwards_is_dead_lettered_not_written() -> None:
    guard = Memory()
    first = _pack({"bt": NOW_MS / 1000 - 60, "n": "energy_import", "u": "kWh", "v": 5000.0})
    lower = _pack({"bt": NOW_MS / 1000 - 30, "n": "energy_import", "u": "kWh", "v": 4900.0})
    wrapped = _pack({"bt": NOW_MS / 1000, "n": "energy_import", "u": "kWh", "v": 3.0})
    assert handle_message(TOPIC, first, NOW_MS, 0, memory=guard).rejections == []
    outcome = handle_message(TOPIC, lower, NOW_MS, 0, memory=guard)
    assert [r.reason for r in outcome.rejections] == ["counter-backwards"]
    assert outcome.readings == []
    assert all(not x.startswith(READINGS) for x in outcome.lines)
    assert "register fell from 5000 to 4900 kWh" in outcome.rejections[0].detail
    # 5000 -> 3 is a reset (meter replaced): stored, and reported as an event.
    reset = handle_message(TOPIC, wrapped, NOW_MS, 0, memory=guard)
    assert reset.rejections == []
    assert [kind.value for _, kind in reset.counter_events] == ["reset"]
    assert len([x for x in reset.lines if x.startswith(READINGS)]) == 1


def _fields(line: str) -> str:
    return line.split(" ", 1)[1].rsplit(" ", 1)[0]


def test_one_dead_letter_per_reason_with_a_count_and_the_first_indexes() -> None:
    records = [{"bt": NOW_MS / 1000, "n": "power", "u": "kW", "v": 1.0}]
    records += [{"n": "power", "u": "furlong", "v": k, "t": -k} for k in range(1, 40)]
    records += [{"n": "humidity", "u": "/", "v": 0.5}, 7, 8]
    outcome = handle_message(TOPIC, _pack(*records), NOW_MS, 0)
    assert len(outcome.rejections) == 42
    assert outcome.dead_letters == [
        DeadLetter("unknown-unit", outcome.rejections[0].detail, 39,
                   tuple(range(1, 1 + DEAD_LETTER_RECORDS))),
        DeadLetter("unknown-quantity", outcome.rejections[39].detail, 1, (40,)),
        DeadLetter("record-not-object", outcome.rejections[40].detail, 2, (41, 42)),
    ]
    dead = [x for x in outcome.lines if x.startswith(DEAD_LETTERS)]
    assert len(dead) == 3
    assert "count=39i" in dead[0]
    assert 'records="1,2,3,4,5,6,7,8,9,10"' in dead[0]
    assert "record=1i" in dead[0]
    # The payload's excerpt once per message, with its size on every dead letter.
    assert ["payload=" in _fields(x) for x in dead] == [True, False, False]
    assert all(f"payload_bytes={len(_pack(*records))}i" in x for x in dead)
    assert len({x.rsplit(" ", 1)[1] for x in dead}) == 3  # distinct timestamps


def test_a_flood_of_refusals_makes_lines_of_bounded_size() -> None:
    # The pack of a 255 KB message with a 100,000-character base name and 3,999 records
    # used to make 410 MB of dead letters; it makes one now, of a few kilobytes.
    payload = long_base_name_pack("x" * 99_992 + ":evil:m:", bt=NOW_MS / 1000)
    outcome = handle_message(TOPIC, payload, NOW_MS, 0)
    assert [(d.reason, d.count) for d in outcome.dead_letters] == [("identity-mismatch", 4000)]
    (dead,) = outcome.lines
    assert dead.startswith(f"{DEAD_LETTERS},device=main,estate=demo,facility=textile,"
                           "reason=identity-mismatch ")
    assert len(dead) < PAYLOAD_EXCERPT_CHARS + 2_000


@pytest.mark.parametrize("topic", ["estate/v1/demo/textile/" + "m" * 60_000 + "/telemetry",
                                   "x" * 65_000])
def test_a_long_topic_is_cut_in_its_dead_letter(topic: str) -> None:
    outcome = handle_message(topic, long_name_pack("n" * 250_000), NOW_MS, 0)
    (dead,) = outcome.lines
    assert len(dead) < PAYLOAD_EXCERPT_CHARS + 2_000


def test_a_device_has_at_most_its_cap_of_fields() -> None:
    memory = Memory(fields=FieldCap(cap=3))
    first = _pack({"bt": NOW_MS / 1000, "n": "power", "u": "kW", "v": 1.0},
                  {"n": "voltage.l1", "u": "V", "v": 230.0},
                  {"n": "voltage.l2", "u": "V", "v": 231.0})
    assert handle_message(TOPIC, first, NOW_MS, 0, memory=memory).rejections == []
    more = _pack({"bt": NOW_MS / 1000 - 1, "n": "power", "u": "kW", "v": 2.0},
                 {"n": "voltage.l3", "u": "V", "v": 232.0},
                 {"n": "current.l1", "u": "A", "v": 5.0, "t": -1})
    outcome = handle_message(TOPIC, more, NOW_MS, 0, memory=memory)
    assert [(r.quantity, r.channel) for r in outcome.readings] == [("power", "")]
    assert [(d.reason, d.count) for d in outcome.dead_letters] == [("too-many-fields", 2)]
    assert "at most 3 are stored" in outcome.dead_letters[0].detail
    # Another device has a cap of its own.
    other = "estate/v1/demo/textile/other/telemetry"
    assert handle_message(other, more, NOW_MS, 0, memory=memory).rejections == []


def test_the_field_cap_is_bounded_in_devices_and_in_sets() -> None:
    cap = FieldCap(cap=1, max_devices=2, max_sets=2)
    power = _pack({"bt": NOW_MS / 1000, "n": "power", "u": "kW", "v": 1.0})
    voltage = _pack({"bt": NOW_MS / 1000, "n": "voltage", "u": "V", "v": 1.0})
    memory = Memory(fields=cap)
    topic = "estate/v1/demo/f/{}/telemetry"
    handle_message(topic.format("a"), power, NOW_MS, 0, memory=memory)
    handle_message(topic.format("b"), voltage, NOW_MS, 0, memory=memory)
    assert [r.reason for r in handle_message(topic.format("b"), power, NOW_MS, 0,
                                             memory=memory).rejections] == ["too-many-fields"]
    assert len(cap._sets) <= 2
    # A third device: beyond the bound it starts afresh, as a new decoding process would.
    handle_message(topic.format("c"), power, NOW_MS, 0, memory=memory)
    assert len(cap._known) == 1
    assert handle_message(topic.format("b"), power, NOW_MS, 0, memory=memory).rejections == []


def test_channels_of_the_estate_file_are_the_devices_own() -> None:
    payload = _pack({"bt": NOW_MS / 1000, "n": "temperature.bath-1", "u": "Cel", "v": 60.0})
    rules = Rules(extra_fields={DeviceId("demo", "textile", "main"):
                                frozenset({"temperature.bath-1"})})
    assert handle_message(TOPIC, payload, NOW_MS, 0, rules).rejections == []
    other = handle_message("estate/v1/demo/textile/other/telemetry", payload, NOW_MS, 0, rules)
    assert [r.reason for r in other.rejections] == ["unknown-channel"]
