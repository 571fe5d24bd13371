"""SenML JSON (RFC 8428) codec for telemetry, contract v1.

A telemetry message is one SenML pack: a JSON array of records. Base fields (``bn``,
``bt``, ``bu``, ``bv``, ``bver``) apply to their record and every later one. The resolved
name of a record is ``bn + n``; its last ``:``-separated part is the local name
``quantity`` or ``quantity.channel`` (``voltage.l1``), and whatever precedes it must be the
identity of the topic (``estate:facility:device:``): a device cannot write for another.

Decoding never raises on bad input: each bad record becomes a ``Rejection`` with a reason
and the good records of the same pack are kept. Only the ingest service decides what to do
with rejections (dead letters). What a record's name stands for is
``estate.senml_names``'s part.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from estate.bounded import brief, cut
from estate.readings import DecodedPack, Reading, Rejection
from estate.senml_names import PLAIN_NAMES, record_quantity
from estate.topics import DeviceId
from estate.units import UNITS, Quantity, convert, is_finite_number

SENML_VERSION: Final = 10  # RFC 8428's version; a pack declaring a newer one is refused
# RFC 8428 section 4.5.3: times below 2**28 are relative to now.
RELATIVE_TIME_LIMIT: Final = 2**28
# Year 10000: beyond it a time is garbage (and its milliseconds would overflow a float).
MAX_TIME_S: Final = 253_402_300_800
_BASE_FIELDS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_KNOWN_FIELDS: Final = _BASE_FIELDS | {"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}
_PLAIN_FIELDS: Final = frozenset({"n", "u", "v", "t"})
_ABSENT: Final = object()
_OTHER_VALUES: Final = frozenset({"vs", "vb", "vd", "s"})
_NO_FIELDS: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Limits:
    """What a pack may be. Defaults suit a gateway batching a few hundred meters."""

    # A gateway batch of 1,000 records is about 60 KB; 256 KiB leaves room without letting a
    # single message hold the writer for long.
    max_payload_bytes: int = 256 * 1024
    max_records: int = 5_000
    # Meter clocks drift; more than five minutes ahead means a wrong clock, not drift.
    max_future_ms: int = 5 * 60_000
    # Older than the raw retention would be written into an expired shard: refuse instead.
    max_age_ms: int = 30 * 24 * 3_600_000


DEFAULT_LIMITS: Final = Limits()
# The fast path's table of plain names, read from here (a test empties it to compare the
# fast path with the general one).
_PLAIN_NAMES = PLAIN_NAMES


def _is_number(value: object) -> bool:
    return (isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)))


def decode_pack(payload: bytes, device: DeviceId, now_ms: int,
                limits: Limits = DEFAULT_LIMITS,
                extra_fields: frozenset[str] = _NO_FIELDS) -> DecodedPack:
    """Decode a telemetry payload published on ``device``'s telemetry topic.

    ``extra_fields`` are the ``quantity.channel`` names this device may send beyond the
    contract's channels (the estate file declares them).

    The work is bounded by the payload, never by a product of its parts: device text in
    a refusal's detail is cut (``estate.bounded``), and a long base name is examined once
    per record that sets it, not once per record that it applies to."""
    if len(payload) > limits.max_payload_bytes:
        return _whole("payload-too-large",
                      f"{len(payload)} bytes, the limit is {limits.max_payload_bytes}")
    try:
        pack = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # Firmware built on Python's json or some C libraries writes NaN, Infinity or 1e999,
        # which are not JSON. Re-read such a pack leniently (only on this slow path) so its
        # finite records survive and the others are refused with their own reason.
        try:
            # Decoded first: json.loads on bytes would also accept UTF-16 and UTF-32, and
            # RFC 8428 allows only UTF-8.
            pack = json.loads(payload.decode("utf-8"))
        except (ValueError, RecursionError):
            return _whole("malformed-json", cut(str(exc)))
    if not isinstance(pack, list):
        return _whole("not-a-pack", f"a SenML pack is a JSON array, got {type(pack).__name__}")
    if not pack:
        return _whole("empty-pack", "the SenML pack has no records")
    if len(pack) > limits.max_records:
        return _whole("too-many-records", f"{len(pack)} records, the limit is {limits.max_records}")
    decoded = _decode_records(pack, device, now_ms, limits, extra_fields)
    if not decoded.readings and not decoded.rejections:
        return _whole("nothing-to-store", "no record has a name or a value: the pack holds "
                      "base fields or extensions only")
    return decoded


def _whole(reason: str, detail: str) -> DecodedPack:
    return DecodedPack([], [Rejection(reason, detail, None)])


def _decode_records(pack: list[Any], device: DeviceId, now_ms: int,
                    limits: Limits, extra_fields: frozenset[str]) -> DecodedPack:
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    seen: set[tuple[str, str, int]] = set()
    base = _Base(device.base_name)
    # The base fields the fast path reads, as locals (read once per record).
    base_time, base_unit, base_value, own_names = base.time, base.unit, base.value, True
    estate, facility, device_name = device.estate, device.facility, device.device
    earliest, latest = now_ms - limits.max_age_ms, now_ms + limits.max_future_ms
    broken_base: int | None = None
    for index, record in enumerate(pack):
        if type(record) is not dict:
            rejections.append(Rejection("record-not-object",
                                        f"record is {type(record).__name__}, not an object", index))
            continue
        # Most records carry only n, u, v and t: only the others need the slow checks.
        if not _PLAIN_FIELDS.issuperset(record):
            # A record with bad base fields is refused, and so is every record after it:
            # they would otherwise be read with the wrong name, time, unit or offset.
            problem = base.take(record)
            if problem is not None:
                rejections.append(Rejection(problem[0], problem[1], index))
                broken_base = index
                continue
            base_time, base_unit, base_value = base.time, base.unit, base.value
            own_names = base.own_names
        if broken_base is not None:
            rejections.append(Rejection(
                "invalid-base-context",
                f"record {broken_base} had invalid base fields, which apply to this record",
                index))
            continue
        # The fast path: a known local name in its canonical unit, a finite float value in
        # range and a plain time. Anything else, good or bad, takes _one_record, which
        # says exactly what is wrong; both give the same reading for a good record.
        reading: Reading | None = None
        if own_names:
            try:
                spec = _PLAIN_NAMES.get((record.get("n"), record.get("u", base_unit)))
            except TypeError:  # a list or an object for a name or a unit
                spec = None
            raw = record.get("v")
            if spec is not None and type(raw) is float:
                value = raw + base_value
                offset = record.get("t", 0.0)
                if spec[2] <= value <= spec[3] and type(offset) is float:
                    seconds = base_time + offset
                    if RELATIVE_TIME_LIMIT <= seconds < MAX_TIME_S:
                        time_ms = round(seconds * 1000)
                        if earliest <= time_ms <= latest:
                            reading = Reading(estate, facility, device_name, spec[0], spec[1],
                                              value, time_ms)
        if reading is None:
            outcome = _one_record(record, index, base, device, now_ms, limits, extra_fields)
            if outcome is None:
                continue  # a record of base fields only: context for the records after it
            if type(outcome) is Rejection:
                rejections.append(outcome)
                continue
            reading = outcome  # type: ignore[assignment]
            assert reading is not None
        key = (reading.quantity, reading.channel, reading.time_ms)
        if key in seen:
            rejections.append(Rejection(
                "duplicate-record",
                f"{reading.quantity}{'.' + reading.channel if reading.channel else ''} at "
                f"{reading.time_ms} ms appears twice in the pack; the first is kept", index))
            continue
        seen.add(key)
        readings.append(reading)
    return DecodedPack(readings, rejections)


@dataclass(slots=True)
class _Base:
    """The base fields in force: set by the records that carry them, for every later one."""

    own_prefix: str  # the topic's identity, ``estate:facility:device:``
    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float = 0.0
    # The base name's own identity problem, if it names another identity, and what of it
    # follows its last colon (the start of every local name it applies to).
    mismatch: str | None = None
    tail: str = ""
    # Records named relative to the topic's identity (no base name, or the topic's own):
    # the usual case, which the fast path takes.
    own_names: bool = True

    def take(self, record: dict[str, Any]) -> tuple[str, str] | None:
        """Take a record's base fields; (reason, detail) and nothing taken if they are bad."""
        problem = _base_field_problem(record)
        if problem is not None:
            return problem
        if "bn" in record:
            self.name = record["bn"]
            self.mismatch, self.tail = ((None, "") if self.name == self.own_prefix
                                        else _base_parts(self.name, self.own_prefix))
        self.time = float(record.get("bt", self.time))
        self.unit = record.get("bu", self.unit)
        self.value = float(record.get("bv", self.value))
        self.own_names = not self.name or self.name == self.own_prefix
        return None


def _base_field_problem(record: dict[str, Any]) -> tuple[str, str] | None:
    """The first thing wrong with a record's base fields or must-understand fields."""
    if "bver" in record:
        bver = record["bver"]
        if not _is_number(bver) or bver > SENML_VERSION:
            return "unsupported-version", f"bver {brief(bver)}; this decoder speaks {SENML_VERSION}"
    for name in ("bn", "bu"):
        if name in record and not isinstance(record[name], str):
            return "bad-field-type", f"{name} must be a string, got {brief(record[name])}"
    if "bt" in record and not is_finite_number(record["bt"]):
        return "bad-time", f"bt must be a finite number, got {brief(record['bt'])}"
    if "bv" in record and not is_finite_number(record["bv"]):
        return "non-finite", f"bv must be a finite number, got {brief(record['bv'])}"
    for name in record:
        if name not in _KNOWN_FIELDS and name.endswith("_"):
            return "must-understand-field", f"field {brief(name)} must be understood and is not"
    return None


def _base_parts(base_name: str, own_prefix: str) -> tuple[str | None, str]:
    """What a base name means for the records it applies to: the detail of their
    ``identity-mismatch`` if the part before its last colon is not the topic's identity
    (else None), and the part after its last colon, which starts each of their local names.

    Computed once per record that sets ``bn``: a base name may be as long as the payload,
    and examining it again for each of thousands of records would cost their product."""
    colon = base_name.rfind(":")
    if colon < 0:
        return None, base_name
    if colon + 1 != len(own_prefix) or not base_name.startswith(own_prefix):
        return (f"record names {cut(base_name[: colon + 1])!r} but the topic is "
                f"{own_prefix!r}"), ""
    return None, base_name[colon + 1:]


def _one_record(record: dict[str, Any], index: int, base: _Base, device: DeviceId,
                now_ms: int, limits: Limits, extra_fields: frozenset[str],
                ) -> Reading | Rejection | None:
    """A record the fast path did not take: its reading, why it is refused, or None for a
    record of base fields only."""
    # The hot path of ingest: plain type checks and cached lookups, no exceptions.
    if not record:
        return Rejection("empty-record", "the record has no fields", index)
    if "n" not in record and "v" not in record and not record.keys() & _OTHER_VALUES:
        return None
    named = record_quantity(record.get("n", ""), index, base.name, base.mismatch, base.tail,
                            base.own_prefix, extra_fields)
    if isinstance(named, Rejection):
        return named
    local, quantity, channel = named
    value = _record_value(record, index, local, quantity, base)
    if isinstance(value, Rejection):
        return value
    offset = record.get("t", _ABSENT)
    if offset is _ABSENT:
        seconds = base.time
    elif type(offset) is float and offset - offset == 0.0:
        seconds = base.time + offset
    elif is_finite_number(offset):
        seconds = base.time + float(offset)
    else:
        return Rejection("bad-time", f"{local}: t must be a finite number, got {brief(offset)}",
                         index)
    if not -MAX_TIME_S < seconds < MAX_TIME_S:
        return Rejection("bad-time", f"{local}: {seconds:g} s is not a time this side of "
                         "year 10000", index)
    if -RELATIVE_TIME_LIMIT < seconds < RELATIVE_TIME_LIMIT:
        time_ms = now_ms + round(seconds * 1000)
    else:
        time_ms = round(seconds * 1000)
    if time_ms > now_ms + limits.max_future_ms:
        return Rejection("future-time",
                         f"{local}: {(time_ms - now_ms) / 1000:.3f} s in the future "
                         f"(at most {limits.max_future_ms / 1000:g} s allowed)", index)
    if time_ms < now_ms - limits.max_age_ms:
        return Rejection("too-old",
                         f"{local}: {(now_ms - time_ms) / 86_400_000:.1f} days old "
                         f"(at most {limits.max_age_ms / 86_400_000:g} days accepted)", index)
    return Reading(device.estate, device.facility, device.device, quantity.name, channel,
                   value, time_ms)


def _record_value(record: dict[str, Any], index: int, local: str, quantity: Quantity,
                  base: _Base) -> float | Rejection:
    """The record's value in the quantity's canonical unit, checked for range."""
    if "v" not in record:
        kinds = [f for f in ("vs", "vb", "vd", "s") if f in record]
        if kinds:
            return Rejection("unsupported-value-type",
                             f"{local}: only numeric 'v' values are telemetry, got {kinds[0]!r}",
                             index)
        return Rejection("missing-value", f"{local}: the record has no value", index)
    raw = record["v"]
    kind = type(raw)
    if kind is float:
        if raw - raw != 0.0:  # NaN or an infinity
            return Rejection("non-finite", f"{local}: v is {raw!r}", index)
        value = raw + base.value
    elif kind is int:
        if not is_finite_number(raw):
            return Rejection("non-finite", f"{local}: v is {str(raw)[:40]}", index)
        value = float(raw) + base.value
    else:
        return Rejection("not-a-number", f"{local}: v must be a number, got {brief(raw)}",
                         index)

    unit = record.get("u", base.unit)
    if unit is None:
        return Rejection("missing-unit", f"{local}: no u and no bu", index)
    if type(unit) is not str or unit not in UNITS:
        return Rejection("unknown-unit",
                         f"{local}: unit {brief(unit)} is not a known SenML unit", index)
    if unit != quantity.unit:
        try:
            value = convert(value, unit, quantity)
        except ValueError as exc:
            return Rejection("wrong-unit", f"{local}: {exc}", index)
        if value - value != 0.0:
            return Rejection("non-finite",
                             f"{local}: {brief(raw)} {unit} overflows in {quantity.unit}", index)
    if not quantity.minimum <= value <= quantity.maximum:
        return Rejection(
            "out-of-range",
            f"{local}: {value:g} {quantity.unit} is outside the plausible "
            f"[{quantity.minimum:g}, {quantity.maximum:g}]", index)
    return float(value)


def encode_readings(device: DeviceId, readings: Iterable[Reading]) -> bytes:
    """Encode readings of one device as a SenML pack in their canonical units.

    The first record carries the base name and base time; later records give their time
    relative to it, so a gateway batch stays small.
    """
    records: list[dict[str, Any]] = []
    base_ms: int | None = None
    for reading in readings:
        local = reading.quantity + (f".{reading.channel}" if reading.channel else "")
        record: dict[str, Any] = {"n": local, "u": reading.unit, "v": reading.value}
        if base_ms is None:
            base_ms = reading.time_ms
            record = {"bn": device.base_name, "bt": base_ms / 1000, **record}
        elif reading.time_ms != base_ms:
            record["t"] = (reading.time_ms - base_ms) / 1000
        records.append(record)
    return orjson.dumps(records)
