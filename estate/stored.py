"""The raw readings as the store holds them, and read back: one point per meter and instant
in, one ``Reading`` per stored field out (the inverse of ``estate.lineprotocol.readings_lines``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from estate.ports import EVERYWHERE, Point, SeriesRef, TimeRange, TimeSeriesStore, Where
from estate.readings import Reading
from estate.schema import READINGS, split_field_key

RAW_READINGS: Final = SeriesRef(READINGS)
"""The raw readings, in the database's default retention policy."""
METER_TAGS: Final = ("estate", "facility", "device")
"""The tags of a raw reading point; its quantity and channel are in the field's name."""


def readings_from_points(points: Iterable[Point]) -> list[Reading]:
    """The readings of points of ``RAW_READINGS`` grouped by ``METER_TAGS``, oldest first;
    a field without a numeric value is no reading and is skipped."""
    out: list[Reading] = []
    for p in points:
        estate, facility, device = (p.tags.get(k, "") for k in METER_TAGS)
        for name, value in p.fields.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                quantity, channel = split_field_key(name)
                out.append(Reading(estate, facility, device, quantity, channel, float(value),
                                   p.time_ms))
    out.sort(key=lambda r: (r.time_ms, r.facility, r.device, r.quantity, r.channel))
    return out


def reading_fields(names: Iterable[str], quantity: str | None = None,
                   channel: str | None = None) -> list[str]:
    """The field names among ``names`` holding ``quantity`` (any, when None) on ``channel``
    (any, when None; ``""`` is the quantity without a channel)."""
    out = []
    for name in names:
        q, c = split_field_key(name)
        if (quantity is None or q == quantity) and (channel is None or c == channel):
            out.append(name)
    return sorted(out)


def select_readings(store: TimeSeriesStore, *, span: TimeRange | None = None,
                    where: Where = EVERYWHERE, quantity: str | None = None,
                    channel: str | None = None, fields: Sequence[str] | None = None,
                    limit_per_meter: int | None = None) -> list[Reading]:
    """The stored readings in ``span`` of the meters ``where`` selects, of ``quantity`` and
    ``channel`` (or exactly ``fields``), at most ``limit_per_meter`` points per meter."""
    if fields is None and (quantity is not None or channel is not None):
        fields = reading_fields(store.field_names(RAW_READINGS), quantity, channel)
    return readings_from_points(store.points(RAW_READINGS, span, fields=fields, where=where,
                                             group_by=METER_TAGS,
                                             limit_per_group=limit_per_meter))


def count_readings(store: TimeSeriesStore, *, span: TimeRange | None = None,
                   where: Where = EVERYWHERE) -> int:
    """How many readings (stored fields, not points) the store holds."""
    return store.count(RAW_READINGS, span, where=where)
