"""Demand response's metered data (``dispatch.dr.metered.MeteredData``) from the rollups:
quarter-hour mean power from ``reading_15m`` and register consumption from
``consumption_15m``. Quarter-hours the rollup job has not reached yet (the newest ones,
or all of them when it is behind) are computed from the raw readings, as the rollup job
would, so a settlement right after an event need not wait for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from dispatch.jobs.consumption import consumption_by_window
from dispatch.jobs.rollup_levels import CONSUMPTION_15M, QUARTER_MS, READING_15M
from dispatch.jobs.rollups import try_rollup_policies
from dispatch.settings import RollupSettings
from estate.ports import Aggregate, Aggregation, Point, TimeRange, TimeSeriesStore, Where
from estate.schema import field_key
from estate.stored import RAW_READINGS

MeterKey = tuple[str, str]
PerWindow = dict[MeterKey, dict[int, float]]
_METER: Final = ("facility", "device")
# One query's answer: at most a week of quarter-hours (672 rows) for at most 50 meters,
# about 34,000 rows, well inside the store's timeout (docs/rollups.md, *Cost*); raw
# readings a day at a time for the same reason.
_ROLLUP_SPAN_MS: Final = 7 * 24 * 3_600_000
_RAW_SPAN_MS: Final = 24 * 3_600_000
_METERS_PER_QUERY: Final = 50


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class RollupMeterData:
    """``MeteredData`` over a time-series store."""

    def __init__(self, store: TimeSeriesStore, rollups: RollupSettings | None = None, *,
                 manage_policies: bool = True) -> None:
        """``manage_policies``: make the rollups' retention policies before the first read
        (InfluxDB 1.x), as the rollup and plan jobs do, so a read before the rollup job's
        first run finds an empty rollup rather than a missing policy."""
        self._store = store
        self._rollups = rollups or RollupSettings()
        self._policies_ready = not manage_policies

    def _ensure_policies(self) -> None:
        if not self._policies_ready:
            try_rollup_policies(self._store, self._rollups)
            self._policies_ready = True

    def _read(self, read: Callable[[TimeRange, Where], list[Point]], field: str, estate: str,
              meters: Sequence[MeterKey], start_ms: int, end_ms: int, span_ms: int,
              tags: dict[str, str]) -> PerWindow:
        out: PerWindow = {m: {} for m in meters}
        for i in range(0, len(meters), _METERS_PER_QUERY):
            batch = [dict(zip(_METER, m, strict=True)) for m in meters[i:i + _METERS_PER_QUERY]]
            where = Where({"estate": estate, **tags}, any_of=batch)
            for s in range(start_ms, end_ms, span_ms):
                for point in read(TimeRange(s, min(s + span_ms, end_ms)), where):
                    value = _number(point.fields.get(field))
                    if value is not None:
                        key = (point.tags.get("facility", ""), point.tags.get("device", ""))
                        out.setdefault(key, {})[point.time_ms] = value
        return out

    def power_kw(self, estate: str, meters: Sequence[MeterKey], start_ms: int,
                 end_ms: int) -> PerWindow:
        def rollup(span: TimeRange, where: Where) -> list[Point]:
            return self._store.points(READING_15M.series, span, fields=["mean"], where=where,
                                      group_by=_METER)

        def raw(span: TimeRange, where: Where) -> list[Point]:
            return self._store.window_aggregates(
                RAW_READINGS, [Aggregation("mean", Aggregate.MEAN, field_key("power", ""))],
                span, QUARTER_MS, where=where, group_by=_METER)

        self._ensure_policies()
        found = self._read(rollup, "mean", estate, meters, start_ms, end_ms, _ROLLUP_SPAN_MS,
                           {"quantity": "power", "channel": ""})
        newest = max((t for known in found.values() for t in known), default=None)
        raw_from = start_ms if newest is None else newest + QUARTER_MS
        if raw_from < end_ms:
            fresh = self._read(raw, "mean", estate, meters, raw_from, end_ms, _RAW_SPAN_MS, {})
            for key, known in fresh.items():
                found[key] = known | found.get(key, {})
        return found

    def consumed(self, estate: str, meters: Sequence[MeterKey], quantity: str,
                 start_ms: int, end_ms: int) -> PerWindow:
        def rollup(span: TimeRange, where: Where) -> list[Point]:
            return self._store.points(CONSUMPTION_15M.series, span, fields=["value"],
                                      where=where, group_by=_METER)

        self._ensure_policies()
        found = self._read(rollup, "value", estate, meters, start_ms, end_ms, _ROLLUP_SPAN_MS,
                           {"quantity": quantity, "channel": ""})
        newest = max((t for known in found.values() for t in known), default=None)
        raw_from = start_ms if newest is None else newest + QUARTER_MS
        if raw_from < end_ms:
            for key, known in self._raw_consumption(estate, meters, quantity, raw_from,
                                                    end_ms).items():
                found[key] = known | found.get(key, {})
        return found

    def _raw_consumption(self, estate: str, meters: Sequence[MeterKey], quantity: str,
                         start_ms: int, end_ms: int) -> PerWindow:
        """Consumption per quarter-hour from the raw register readings (with the reading
        before ``start_ms``'s window as the first reference, as the rollup job does)."""
        out: PerWindow = {}
        for facility, device in meters:
            where = Where({"estate": estate, "facility": facility, "device": device})
            points = self._store.points(RAW_READINGS, TimeRange(start_ms - QUARTER_MS, end_ms),
                                        fields=[quantity], where=where)
            readings = [(p.time_ms, v) for p in points
                        if (v := _number(p.fields.get(quantity))) is not None]
            previous = next((v for t, v in reversed(readings) if t < start_ms), None)
            windows, _ = consumption_by_window(
                previous, [(t, v) for t, v in readings if t >= start_ms], QUARTER_MS)
            out[(facility, device)] = {t: c.value for t, c in windows.items()}
        return out
