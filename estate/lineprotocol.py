"""InfluxDB line protocol, the write format of InfluxDB 1.x, 2.x and 3.x.

Two paths: ``readings_lines`` is the hot path for readings, whose strings were validated
against the identifier alphabet when they entered (so it needs no escaping and is a plain
f-string); ``line`` is the general serializer for anything else (dead letters, plans,
alarms), which escapes every string and removes what line protocol cannot carry.

Escaping rules, as the real InfluxDB 1.6.7 parses them (checked by tests against it):
measurement names escape comma and space; tag keys, tag values and field keys escape comma,
equals sign and space; string field values escape double quote and backslash. In names
and tags InfluxDB 1.x does not unescape ``\\\\``, so a backslash before a delimiter or at
the end cannot be written faithfully: there a backslash is stored as the text ``\\x5c``.
Line protocol has no escape for newline or other control characters in any position, so
they are stored as the text ``\\xNN`` too: a device string can never end a line and
start another, and what is stored is exactly ``stored_text(s)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from estate.readings import Reading
from estate.schema import READINGS

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_BACKSLASH = re.compile(r"[\x00-\x1f\x7f\\]")
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})

FieldValue = float | int | bool | str


def _hex(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def stored_name(text: str) -> str:
    """What InfluxDB stores for ``text`` used as a measurement, tag key, tag value or field key."""
    return _CONTROL_OR_BACKSLASH.sub(_hex, text)


def stored_string(text: str) -> str:
    """What InfluxDB stores for ``text`` used as a string field value."""
    return _CONTROL.sub(_hex, text)


def escape_measurement(name: str) -> str:
    return stored_name(name).translate(_MEASUREMENT)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return stored_name(text).translate(_KEY)


def escape_string_field(text: str) -> str:
    return stored_string(text).translate(_STRING)


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"line protocol cannot carry {value!r}")
        return repr(value)
    return f'"{escape_string_field(value)}"'


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue],
         time_ns: int) -> str:
    """One line of line protocol; empty tag values are left out (InfluxDB refuses them)."""
    if not fields:
        raise ValueError("a point needs at least one field")
    if not measurement or measurement.startswith("#"):
        raise ValueError(f"{measurement!r} cannot be a measurement name")
    if any(not k for k in fields):
        raise ValueError("a field needs a name")
    tag_text = "".join(
        f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v != ""
    )
    field_text = ",".join(f"{escape_key(k)}={_field(v)}" for k, v in fields.items())
    return f"{escape_measurement(measurement)}{tag_text} {field_text} {time_ns}"


def reading_line(r: Reading) -> str:
    """The point of one reading alone (a meter's other quantities at that instant are
    other fields of the same point, so writing it leaves them be)."""
    return readings_lines((r,))[0]


def readings_lines(readings: Iterable[Reading]) -> list[str]:
    """The lines that store ``readings``, one per meter and instant with a field per
    quantity (``estate.schema.READINGS``): what ingest writes and a history backfill writes.

    The hot path of ingest: identifiers were validated when the readings were made, so no
    escaping; a repeated quantity at one instant keeps its last value, as InfluxDB would.
    """
    points: dict[tuple[str, str, str, int], dict[str, float]] = {}
    for r in readings:
        key = (r.estate, r.facility, r.device, r.time_ms)
        fields = points.get(key)
        if fields is None:
            fields = points[key] = {}
        fields[f"{r.quantity}.{r.channel}" if r.channel else r.quantity] = r.value
    return [
        f"{READINGS},device={device},estate={estate},facility={facility} "
        + ",".join([f"{name}={value!r}" for name, value in fields.items()])
        + f" {time_ms}000000"
        for (estate, facility, device, time_ms), fields in points.items()
    ]


def pack_lines(estate: str, facility: str, device: str, readings: Iterable[Reading],
               ) -> list[str]:
    """``readings_lines`` for the readings of one decoded pack, faster: they are all of
    one device (``estate``/``facility``/``device``), and no quantity appears twice at one
    instant (the decoder refuses such duplicates), so points group by time alone."""
    prefix = f"{READINGS},device={device},estate={estate},facility={facility} "
    points: dict[int, list[str]] = {}
    for r in readings:
        fields = points.get(r.time_ms)
        if fields is None:
            fields = points[r.time_ms] = []
        fields.append(f"{r.quantity}.{r.channel}={r.value!r}" if r.channel
                      else f"{r.quantity}={r.value!r}")
    return [f"{prefix}{','.join(fields)} {time_ms}000000" for time_ms, fields in points.items()]
