"""Pure message handling: synthetic messages in, lines out, no I/O."""

from __future__ import annotations

import orjson

from estate.counters import CounterGuard
from estate.schema import DEAD_LETTERS, READINGS
from ingest.pipeline import PAYLOAD_EXCERPT_CHARS, handle_message

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
    guard = CounterGuard()
    first = _pack({"bt": NOW_MS / 1000 - 60, "n": "energy_import", "u": "kWh", "v": 5000.0})
    lower = _pack({"bt": NOW_MS / 1000 - 30, "n": "energy_import", "u": "kWh", "v": 4900.0})
    wrapped = _pack({"bt": NOW_MS / 1000, "n": "energy_import", "u": "kWh", "v": 3.0})
    assert handle_message(TOPIC, first, NOW_MS, 0, counters=guard).rejections == []
    outcome = handle_message(TOPIC, lower, NOW_MS, 0, counters=guard)
    assert [r.reason for r in outcome.rejections] == ["counter-backwards"]
    assert outcome.readings == []
    assert all(not x.startswith(READINGS) for x in outcome.lines)
    assert "register fell from 5000 to 4900 kWh" in outcome.rejections[0].detail
    # 5000 -> 3 is a reset (meter replaced): stored, and reported as an event.
    reset = handle_message(TOPIC, wrapped, NOW_MS, 0, counters=guard)
    assert reset.rejections == []
    assert [kind.value for _, kind in reset.counter_events] == ["reset"]
    assert len([x for x in reset.lines if x.startswith(READINGS)]) == 1
