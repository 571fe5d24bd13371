"""Pure message handling: one MQTT message in, lines of line protocol out.

No I/O here, so every rule is unit-testable with synthetic messages; the service around it
owns the broker, the store and the acknowledgements.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from estate.counters import CounterGuard, StepKind
from estate.errors import TopicError
from estate.lineprotocol import line, pack_lines
from estate.readings import Reading, Rejection
from estate.schema import DEAD_LETTERS
from estate.senml import DEFAULT_LIMITS, Limits, decode_pack
from estate.topics import Channel, DeviceId, parse_topic
from estate.units import QUANTITIES, Kind

# Enough of a bad payload to see what was wrong; InfluxDB string fields stop at 64 KiB.
PAYLOAD_EXCERPT_CHARS: Final = 2048


@dataclass(slots=True)
class Outcome:
    """What one message became: reading lines, dead-letter lines, and the counts."""

    lines: list[str] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Register rollovers and resets seen in this message, as (reading, step kind).
    counter_events: list[tuple[Reading, StepKind]] = field(default_factory=list)


@dataclass(slots=True)
class Decoded:
    """What the service keeps of a message's ``Outcome``: its lines, and of its readings
    only what it needs, so that it is cheap to pass from a decoding process."""

    lines: list[str]
    readings: int
    # The earliest and latest reading time in the message (0 when there is none).
    first_ms: int
    last_ms: int
    rejections: list[Rejection]
    counter_events: list[tuple[Reading, StepKind]]


_TIME = operator.itemgetter(6)  # Reading.time_ms, read at C speed


def decode_messages(messages: Sequence[tuple[str, bytes]], now_ms: int, sequence: int,
                    limits: Limits = DEFAULT_LIMITS,
                    counters: CounterGuard | None = None) -> list[Decoded]:
    """``handle_message`` for each of ``messages`` (topic, payload) in order; dead letters
    are numbered from ``sequence`` on."""
    decoded = []
    for topic, payload in messages:
        outcome = handle_message(topic, payload, now_ms, sequence, limits, counters)
        sequence += len(outcome.rejections)
        readings = outcome.readings
        decoded.append(Decoded(
            outcome.lines, len(readings), min(map(_TIME, readings)) if readings else 0,
            max(map(_TIME, readings)) if readings else 0, outcome.rejections,
            outcome.counter_events))
    return decoded


def handle_message(topic: str, payload: bytes, now_ms: int, sequence: int,
                   limits: Limits = DEFAULT_LIMITS,
                   counters: CounterGuard | None = None) -> Outcome:
    """Turn one telemetry message into lines; never raises on bad input.

    ``sequence`` makes dead-letter timestamps unique within the millisecond (a dead letter
    is an event, and two events at the same instant must not overwrite each other).
    ``counters``, if given, refuses registers that went backwards.
    """
    outcome = Outcome()
    try:
        parsed = parse_topic(topic)
    except TopicError as exc:
        outcome.rejections.append(Rejection(exc.reason, exc.detail))
        outcome.lines.append(dead_letter_line(topic, None, outcome.rejections[0], payload,
                                              now_ms, sequence))
        return outcome
    if parsed.channel is not Channel.TELEMETRY:
        rejection = Rejection("not-telemetry", f"{parsed.channel.value} is not telemetry")
        outcome.rejections.append(rejection)
        outcome.lines.append(dead_letter_line(topic, parsed.device, rejection, payload, now_ms,
                                              sequence))
        return outcome
    decoded = decode_pack(payload, parsed.device, now_ms, limits)
    outcome.rejections = list(decoded.rejections)
    outcome.readings = (decoded.readings if counters is None
                        else _guard_counters(decoded.readings, counters, outcome))
    outcome.lines = pack_lines(parsed.device.estate, parsed.device.facility,
                               parsed.device.device, outcome.readings)
    for offset, rejection in enumerate(outcome.rejections):
        outcome.lines.append(dead_letter_line(topic, parsed.device, rejection, payload, now_ms,
                                              sequence + offset))
    return outcome


_REGISTERS = frozenset(q.name for q in QUANTITIES.values() if q.kind is Kind.COUNTER)


def _guard_counters(readings: list[Reading], counters: CounterGuard,
                    outcome: Outcome) -> list[Reading]:
    if not any(r.quantity in _REGISTERS for r in readings):
        return readings  # most packs hold no register: nothing to judge
    kept = []
    # Judge a pack's readings in time order: a gateway batch may list them in any order.
    for reading in sorted(readings, key=lambda r: r.time_ms):
        if reading.quantity not in _REGISTERS:
            kept.append(reading)
            continue
        key = (reading.estate, reading.facility, reading.device, reading.quantity,
               reading.channel)
        step = counters.check(key, reading.time_ms, reading.value)
        if step.kind is StepKind.BACKWARDS:
            outcome.rejections.append(Rejection(
                "counter-backwards",
                f"{reading.quantity}: register fell from {step.previous:g} to "
                f"{reading.value:g} {reading.unit}, neither a rollover nor a reset"))
            continue
        if step.kind in (StepKind.ROLLOVER, StepKind.RESET):
            outcome.counter_events.append((reading, step.kind))
        kept.append(reading)
    return kept


def dead_letter_line(topic: str, device: DeviceId | None, rejection: Rejection,
                     payload: bytes, now_ms: int, sequence: int) -> str:
    """The dead-letter point of one rejection: who, why, and the payload that carried it."""
    tags = {"reason": rejection.reason}
    if device is not None:
        tags |= {"estate": device.estate, "facility": device.facility, "device": device.device}
    text = payload[: PAYLOAD_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    fields: dict[str, str | int] = {
        "detail": rejection.detail,
        "topic": topic,
        "payload": text[:PAYLOAD_EXCERPT_CHARS],
        "payload_bytes": len(payload),
        "record": -1 if rejection.record is None else rejection.record,
    }
    # Nanosecond timestamps with the sequence in the sub-millisecond digits keep every
    # dead letter of a millisecond distinct (up to a million of them).
    return line(DEAD_LETTERS, tags, fields, now_ms * 1_000_000 + sequence % 1_000_000)
