"""Reading the raw readings back from the store: one point per meter and instant in,
one ``Reading`` per stored field out (the inverse of ``estate.lineprotocol.readings_lines``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from estate.ports import Series, TimeSeriesStore
from estate.readings import Reading
from estate.schema import READINGS, split_field_key

METER_TAGS = ("estate", "facility", "device")


def readings_from_series(series: Iterable[Series]) -> list[Reading]:
    """The readings of InfluxQL answers on ``READINGS`` grouped by the meter tags (any other
    tag column is not a reading and is skipped), oldest first."""
    out: list[Reading] = []
    for s in series:
        estate, facility, device = (s.tags.get(k, "") for k in METER_TAGS)
        fields = [(i, *split_field_key(name)) for i, name in enumerate(s.columns)
                  if i > 0 and name not in METER_TAGS]
        for row in s.values:
            for i, quantity, channel in fields:
                value = row[i]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.append(Reading(estate, facility, device, quantity, channel,
                                       float(value), int(row[0])))
    out.sort(key=lambda r: (r.time_ms, r.facility, r.device, r.quantity, r.channel))
    return out


def select_readings(store: TimeSeriesStore, where: str = "",
                    params: Mapping[str, str | int] | None = None, fields: str = "*",
                    limit: int | None = None) -> list[Reading]:
    """The stored readings matching an InfluxQL condition on tags and time (``where``,
    with ``$name`` parameters); ``fields`` selects fields (a key or a regular expression);
    ``limit`` caps the points per meter. Times in the store's epoch (ms)."""
    query = (f'SELECT {fields} FROM "{READINGS}"' + (f" WHERE {where}" if where else "")
             + ' GROUP BY "estate", "facility", "device"'
             + (f" LIMIT {int(limit)}" if limit is not None else ""))
    return readings_from_series(store.query(query, params or {}))


def count_readings(store: TimeSeriesStore, where: str = "",
                   params: Mapping[str, str | int] | None = None) -> int:
    """How many readings (stored fields, not points) match an InfluxQL condition."""
    series = store.query(f'SELECT count(*) FROM "{READINGS}"'
                         + (f" WHERE {where}" if where else ""), params or {})
    return sum(int(v) for s in series for row in s.values for v in row[1:]
               if isinstance(v, int))
