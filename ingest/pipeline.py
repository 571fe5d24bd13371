"""Pure message handling: one MQTT message in, lines of line protocol out.

No I/O here, so every rule is unit-testable with synthetic messages; the service around it
owns the broker, the store and the acknowledgements.

What one message can cost is bounded whatever it holds: at most a point per record it
stores, and one dead letter per reason (with a count and the first few record indexes),
its payload excerpt once, every device string in it cut (``estate.bounded``).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from estate.bounded import TOPIC_CHARS, cut
from estate.counters import CounterGuard, StepKind
from estate.errors import TopicError
from estate.lineprotocol import line, pack_lines
from estate.readings import Reading, Rejection
from estate.schema import DEAD_LETTERS, field_key
from estate.senml import DEFAULT_LIMITS, Limits, decode_pack
from estate.topics import Channel, DeviceId, parse_topic
from estate.units import QUANTITIES, Kind

# Enough of a bad payload to see what was wrong; InfluxDB string fields stop at 64 KiB.
PAYLOAD_EXCERPT_CHARS: Final = 2048
# The bytes that can hold that many characters of UTF-8: all of a payload ingest keeps
# once it is decoded (for the dead letter of a message the store then refuses).
PAYLOAD_EXCERPT_BYTES: Final = 4 * PAYLOAD_EXCERPT_CHARS
# Record indexes a dead letter lists: enough to find the pattern, few enough that a pack of
# 5,000 bad records makes a short field.
DEAD_LETTER_RECORDS: Final = 10
# A dead letter's detail, at most: the decoder's details quote device text already cut to
# ``estate.bounded.TEXT_CHARS``; this bounds the rest (a store's error message, say).
DETAIL_CHARS: Final = 400
# Distinct fields (quantity.channel) one device may write; a full power-quality meter
# (phases, line-to-line voltages, tariff registers) reports about 55.
MAX_FIELDS_PER_DEVICE: Final = 64
# Devices whose fields the cap remembers before it starts afresh: a topic and a bit set,
# at most about 400 bytes each, so about 20 MB.
FIELD_CAP_DEVICES: Final = 50_000
# Distinct sets of fields it keeps as sets for the usual case (a device sending the fields
# it sent before): devices of one kind share one. At most 64 fields of about 120 bytes
# each, so at most about 8 MB.
FIELD_SETS: Final = 1_000

_NO_FIELDS: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Rules:
    """What ingest accepts beyond the SenML limits, the same in every decoding process."""

    limits: Limits = DEFAULT_LIMITS
    # Fields (quantity.channel) a device may write beyond the contract's channels, from
    # the estate file (``estate.model.EstateSpec.extra_fields``).
    extra_fields: Mapping[DeviceId, frozenset[str]] = field(default_factory=dict)
    max_fields_per_device: int = MAX_FIELDS_PER_DEVICE


DEFAULT_RULES: Final = Rules()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Every refusal of one reason in one message: the first one's detail, how many there
    were, and the indexes of the first few records (none for the message as a whole)."""

    reason: str
    detail: str
    count: int = 1
    records: tuple[int, ...] = ()


def dead_letters(rejections: Sequence[Rejection]) -> list[DeadLetter]:
    """The rejections of one message, one ``DeadLetter`` per reason, in order of first
    appearance."""
    grouped: dict[str, tuple[str, list[int], list[int]]] = {}
    for rejection in rejections:
        group = grouped.get(rejection.reason)
        if group is None:
            group = grouped[rejection.reason] = (rejection.detail, [0], [])
        group[1][0] += 1
        if rejection.record is not None and len(group[2]) < DEAD_LETTER_RECORDS:
            group[2].append(rejection.record)
    return [DeadLetter(reason, cut(detail, DETAIL_CHARS), count[0], tuple(records))
            for reason, (detail, count, records) in grouped.items()]


@dataclass(slots=True)
class Outcome:
    """What one message became: reading lines, dead-letter lines, and the counts."""

    lines: list[str] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    # Every refusal, per record, and the dead letters they make.
    rejections: list[Rejection] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
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
    dead_letters: list[DeadLetter]
    counter_events: list[tuple[Reading, StepKind]]


_TIME = operator.itemgetter(6)  # Reading.time_ms, read at C speed
_FIELD = operator.itemgetter(3, 4)  # Reading.quantity, Reading.channel


class FieldCap:
    """The distinct fields each device has written, at most ``cap`` per device.

    The contract's closed list of channels already bounds the fields of all devices
    together (``estate.units.CHANNELS``); the cap bounds what one device may use of it and
    of what the estate file adds for it. A device's fields are a bit set over the fields
    seen so far, and the usual case, a message of fields its device has written before,
    costs one pass over its readings at C speed (``frozenset.issuperset``) against the set
    of that bit set, cached. Beyond ``max_devices`` devices, or ``max_sets`` distinct sets,
    it starts afresh, as a new decoding process does: the cap protects the schema, which the
    closed list bounds in any case, not an exact count.
    """

    def __init__(self, cap: int = MAX_FIELDS_PER_DEVICE,
                 max_devices: int = FIELD_CAP_DEVICES, max_sets: int = FIELD_SETS) -> None:
        self._cap = cap
        self._max_devices = max_devices
        self._max_sets = max_sets
        self._bits: dict[tuple[str, str], int] = {}
        self._known: dict[str, int] = {}  # by telemetry topic: a device's, one string
        self._sets: dict[int, frozenset[tuple[str, str]]] = {0: frozenset()}

    def _bit(self, key: tuple[str, str]) -> int:
        bit = self._bits.get(key)
        if bit is None:  # the contract's fields and the estate file's: a bounded table
            bit = self._bits[key] = 1 << len(self._bits)
        return bit

    def admit(self, device: str, readings: list[Reading],
              ) -> tuple[list[Reading], list[Rejection]]:
        """The readings of ``device`` (its topic) within its cap, and a rejection for each
        other one."""
        known = self._known.get(device, 0)
        fields = self._sets.get(known)
        if fields is not None and fields.issuperset(map(_FIELD, readings)):
            return readings, []
        mask = 0
        for key in set(map(_FIELD, readings)):
            mask |= self._bit(key)
        if mask & ~known:
            if len(self._known) >= self._max_devices and device not in self._known:
                self._known.clear()
            known = self._known[device] = self._widen(known, mask)
            if known not in self._sets:
                if len(self._sets) >= self._max_sets:
                    self._sets = {0: frozenset()}
                self._sets[known] = frozenset(k for k, b in self._bits.items() if b & known)
        if not mask & ~known:
            return readings, []
        kept, refused = [], []
        for reading in readings:
            if self._bits[_FIELD(reading)] & known:
                kept.append(reading)
            else:
                refused.append(Rejection(
                    "too-many-fields",
                    f"{field_key(reading.quantity, reading.channel)} would be field "
                    f"{self._cap + 1} of this device; at most {self._cap} are stored"))
        return kept, refused

    def _widen(self, known: int, mask: int) -> int:
        """``known`` with the new fields of ``mask`` added, in bit order, up to the cap."""
        room = self._cap - known.bit_count()
        new = mask & ~known
        while new and room > 0:
            lowest = new & -new
            known |= lowest
            new ^= lowest
            room -= 1
        return known


@dataclass(slots=True)
class Memory:
    """What the decoder remembers between messages: registers' last values, devices'
    fields. One per decoding process; messages must reach it in order."""

    counters: CounterGuard = field(default_factory=CounterGuard)
    fields: FieldCap = field(default_factory=FieldCap)

    @classmethod
    def for_rules(cls, rules: Rules) -> Memory:
        return cls(CounterGuard(), FieldCap(rules.max_fields_per_device))


def decode_messages(messages: Sequence[tuple[str, bytes]], now_ms: int, sequence: int,
                    rules: Rules = DEFAULT_RULES, memory: Memory | None = None,
                    ) -> list[Decoded]:
    """``handle_message`` for each of ``messages`` (topic, payload) in order; dead letters
    are numbered from ``sequence`` on."""
    decoded = []
    for topic, payload in messages:
        outcome = handle_message(topic, payload, now_ms, sequence, rules, memory)
        sequence += len(outcome.dead_letters)
        readings = outcome.readings
        decoded.append(Decoded(
            outcome.lines, len(readings), min(map(_TIME, readings)) if readings else 0,
            max(map(_TIME, readings)) if readings else 0, outcome.dead_letters,
            outcome.counter_events))
    return decoded


def refused(topic: str, payload: bytes, reason: str, detail: str, now_ms: int,
            sequence: int, payload_bytes: int | None = None) -> Decoded:
    """A message refused as a whole, before or without decoding: its one dead letter."""
    letter = DeadLetter(reason, cut(detail, DETAIL_CHARS))
    line_ = dead_letter_line(topic, device_of(topic), letter, payload, now_ms, sequence,
                             payload_bytes)
    return Decoded([line_], 0, 0, 0, [letter], [])


def device_of(topic: str) -> DeviceId | None:
    """The identity a topic gives, if it is a device topic of the scheme."""
    try:
        return parse_topic(topic).device
    except TopicError:
        return None


def line_identity(text: str) -> DeviceId | None:
    """The estate, facility and device tags of a line ingest wrote (their values are
    identifiers, which line protocol does not escape), if it has all three."""
    head = text.split(" ", 1)[0]
    tags = dict(pair.partition("=")[::2] for pair in head.split(",")[1:])
    try:
        return DeviceId(tags["estate"], tags["facility"], tags["device"])
    except (KeyError, TopicError):
        return None


def handle_message(topic: str, payload: bytes, now_ms: int, sequence: int,
                   rules: Rules = DEFAULT_RULES, memory: Memory | None = None,
                   ) -> Outcome:
    """Turn one telemetry message into lines; never raises on bad input.

    ``sequence`` makes dead-letter timestamps unique within the millisecond (a dead letter
    is an event, and two events at the same instant must not overwrite each other).
    ``memory``, if given, refuses registers that went backwards and fields beyond a
    device's cap.
    """
    outcome = Outcome()
    try:
        parsed = parse_topic(topic)
    except TopicError as exc:
        outcome.rejections.append(Rejection(exc.reason, exc.detail))
        return _finish(outcome, topic, None, payload, now_ms, sequence)
    if parsed.channel is not Channel.TELEMETRY:
        outcome.rejections.append(
            Rejection("not-telemetry", f"{parsed.channel.value} is not telemetry"))
        return _finish(outcome, topic, parsed.device, payload, now_ms, sequence)
    device = parsed.device
    decoded = decode_pack(payload, device, now_ms, rules.limits,
                          rules.extra_fields.get(device, _NO_FIELDS) if rules.extra_fields
                          else _NO_FIELDS)
    outcome.rejections = list(decoded.rejections)
    readings = decoded.readings
    if memory is not None and readings:
        readings = _guard_counters(readings, memory.counters, outcome)
        readings, over = memory.fields.admit(topic, readings)
        outcome.rejections += over
    outcome.readings = readings
    outcome.lines = pack_lines(device.estate, device.facility, device.device, readings)
    return _finish(outcome, topic, device, payload, now_ms, sequence)


def _finish(outcome: Outcome, topic: str, device: DeviceId | None, payload: bytes,
            now_ms: int, sequence: int) -> Outcome:
    if not outcome.rejections:
        return outcome
    outcome.dead_letters = dead_letters(outcome.rejections)
    for offset, letter in enumerate(outcome.dead_letters):
        # The payload's excerpt once per message: on its first dead letter.
        outcome.lines.append(dead_letter_line(
            topic, device, letter, payload if offset == 0 else None, now_ms,
            sequence + offset, len(payload)))
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


def dead_letter_line(topic: str, device: DeviceId | None, letter: DeadLetter,
                     payload: bytes | None, now_ms: int, sequence: int,
                     payload_bytes: int | None = None) -> str:
    """The dead-letter point of one reason in one message: who, why, how often, where,
    and (if ``payload`` is given) an excerpt of the payload that carried it.

    ``payload`` may be the start of the payload only (at least ``PAYLOAD_EXCERPT_BYTES``),
    with ``payload_bytes`` its whole length."""
    tags = {"reason": letter.reason}
    if device is not None:
        tags |= {"estate": device.estate, "facility": device.facility, "device": device.device}
    fields: dict[str, str | int] = {
        "detail": letter.detail,
        "topic": cut(topic, TOPIC_CHARS),
        "payload_bytes": len(payload or b"") if payload_bytes is None else payload_bytes,
        "record": letter.records[0] if letter.records else -1,
        "count": letter.count,
    }
    if len(letter.records) > 1:
        fields["records"] = ",".join(map(str, letter.records))
    if payload is not None:
        text = payload[:PAYLOAD_EXCERPT_BYTES].decode("utf-8", errors="replace")
        fields["payload"] = text[:PAYLOAD_EXCERPT_CHARS]
    # Nanosecond timestamps with the sequence in the sub-millisecond digits keep every
    # dead letter of a millisecond distinct (up to a million of them).
    return line(DEAD_LETTERS, tags, fields, now_ms * 1_000_000 + sequence % 1_000_000)
