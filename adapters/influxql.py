"""InfluxQL: the reads and the retention statements of the store port, for every store that
answers InfluxQL (InfluxDB 1.x natively, 2.x on its v1-compatible ``/query``).

This is the one module that writes InfluxQL. ``InfluxQLStore`` implements the port's
reads on top of one method, ``query(statement, params)``, which each adapter provides over
its own transport. Tag values and times always travel as bound parameters (``$name``), so
nothing a device or an operator chose is ever part of the statement's text; identifiers
are quoted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from estate.errors import StoreRejected
from estate.ports import (
    EVERYWHERE,
    Aggregate,
    Aggregation,
    LatestValues,
    Point,
    SeriesRef,
    TimeRange,
    Where,
)

_NS_PER_MS: Final = 1_000_000
_DURATION: Final = re.compile(r"\d+[wdhm]|INF")
_FUNCTIONS: Final = {a: a.value for a in Aggregate}

Params = dict[str, str | float | int]


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an InfluxQL answer: its name, its GROUP BY tags, columns and rows."""

    name: str
    columns: tuple[str, ...]
    values: list[list[Any]]
    tags: Mapping[str, str] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """The rows as dictionaries, the series' tags merged into each."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))} for row in self.values]


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def source(series: SeriesRef) -> str:
    """``"policy"."measurement"``, or the measurement alone in the default policy."""
    name = quote_identifier(series.measurement)
    return name if series.policy is None else f"{quote_identifier(series.policy)}.{name}"


def condition(span: TimeRange | None, where: Where, params: Params) -> str:
    """`` WHERE ...`` for ``span`` and ``where`` (empty when neither restricts), with its
    values added to ``params``."""
    parts = []
    for i, (tag, value) in enumerate(sorted(where.tags.items())):
        parts.append(f"{quote_identifier(tag)} = $t{i}")
        params[f"t{i}"] = value
    if where.any_of is not None:
        alternatives = []
        for j, entry in enumerate(where.any_of):
            clauses = []
            for k, (tag, value) in enumerate(sorted(entry.items())):
                clauses.append(f"{quote_identifier(tag)} = $a{j}_{k}")
                params[f"a{j}_{k}"] = value
            alternatives.append("(" + " AND ".join(clauses) + ")")
        parts.append("(" + " OR ".join(alternatives) + ")")
    if span is not None:
        parts.append("time >= $start")
        params["start"] = span.start_ms * _NS_PER_MS
        if span.end_ms is not None:
            parts.append("time < $end")
            params["end"] = span.end_ms * _NS_PER_MS
    return " WHERE " + " AND ".join(parts) if parts else ""


def _fields(fields: Sequence[str] | None) -> str:
    # ``*::field``: the fields only; tags not grouped by would otherwise come as columns.
    return "*::field" if fields is None else ", ".join(quote_identifier(f) for f in fields)


def _group(group_by: Sequence[str], window_ms: int | None = None) -> str:
    parts = [] if window_ms is None else [f"time({int(window_ms)}ms)"]
    parts += [quote_identifier(t) for t in group_by]
    return " GROUP BY " + ", ".join(parts) if parts else ""


def select_points(series: SeriesRef, span: TimeRange | None, fields: Sequence[str] | None,
                  where: Where, group_by: Sequence[str], limit: int | None, params: Params,
                  *, newest_first: bool = False) -> str:
    return (f"SELECT {_fields(fields)} FROM {source(series)}"
            + condition(span, where, params) + _group(group_by)
            + (" ORDER BY time DESC" if newest_first else "")
            + (f" LIMIT {int(limit)}" if limit is not None else ""))


def select_latest(series: SeriesRef, fields: Sequence[str], span: TimeRange | None,
                  where: Where, group_by: Sequence[str], params: Params) -> str:
    selected = ", ".join(f"last({quote_identifier(f)}) AS {quote_identifier(f)}"
                         for f in fields)
    return (f"SELECT {selected} FROM {source(series)}" + condition(span, where, params)
            + _group(group_by))


def select_windows(series: SeriesRef, aggregations: Sequence[Aggregation], span: TimeRange,
                   window_ms: int, where: Where, group_by: Sequence[str],
                   params: Params) -> str:
    """Aggregates per window, time-bounded (``GROUP BY time()`` without an end runs to now
    and answers years of empty rows) and without empty windows (``fill(none)``)."""
    if span.end_ms is None:
        raise ValueError("window aggregates need a time range that ends")
    selected = ", ".join(
        f"{_FUNCTIONS[a.function]}({quote_identifier(a.field)}) AS {quote_identifier(a.name)}"
        for a in aggregations)
    return (f"SELECT {selected} FROM {source(series)}" + condition(span, where, params)
            + _group(group_by, window_ms) + " fill(none)")


def retention_statement(verb: str, database: str, policy: str, duration: str,
                        default: bool) -> str:
    if not _DURATION.fullmatch(duration):
        raise ValueError(f"not an InfluxQL retention duration: {duration!r}")
    return (f"{verb} RETENTION POLICY {quote_identifier(policy)} ON "
            f"{quote_identifier(database)} DURATION {duration} REPLICATION 1"
            + (" DEFAULT" if default else ""))


def to_points(answer: Iterable[Series]) -> list[Point]:
    out = []
    for s in answer:
        names = s.columns[1:]
        for row in s.values:
            out.append(Point(int(row[0]), s.tags, dict(zip(names, row[1:], strict=True))))
    return out


class InfluxQLStore:
    """The port's reads and retention over InfluxQL; a subclass provides ``query`` and
    ``_database`` (and the writes)."""

    _database: str

    def query(self, influxql: str, params: Mapping[str, str | float | int] | None = None,
              ) -> list[Series]:
        raise NotImplementedError

    def ensure_retention(self, policy: str, duration: str, *, default: bool = False) -> None:
        try:
            self.query(retention_statement("CREATE", self._database, policy, duration, default))
        except StoreRejected as exc:
            if "already exists" not in str(exc) and "conflict" not in str(exc):
                raise
            # The setting changed since the policy was made: follow the setting.
            self.query(retention_statement("ALTER", self._database, policy, duration, default))

    def field_names(self, series: SeriesRef) -> list[str]:
        return [str(row[0]) for s in self.query(f"SHOW FIELD KEYS FROM {source(series)}")
                for row in s.values]

    def points(self, series: SeriesRef, span: TimeRange | None, *,
               fields: Sequence[str] | None = None, where: Where = EVERYWHERE,
               group_by: Sequence[str] = (), limit_per_group: int | None = None,
               ) -> list[Point]:
        if _nothing(fields, where):
            return []
        params: Params = {}
        statement = select_points(series, span, fields, where, group_by, limit_per_group,
                                  params)
        return to_points(self.query(statement, params))

    def newest_points(self, series: SeriesRef, span: TimeRange | None, *,
                      fields: Sequence[str] | None = None, where: Where = EVERYWHERE,
                      group_by: Sequence[str] = ()) -> list[Point]:
        if _nothing(fields, where):
            return []
        params: Params = {}
        statement = select_points(series, span, fields, where, group_by, 1, params,
                                  newest_first=True)
        # Newest first puts the groups in reverse order too: back to the port's order.
        return sorted(to_points(self.query(statement, params)),
                      key=lambda p: tuple(p.tags.get(t, "") for t in group_by))

    def latest_values(self, series: SeriesRef, fields: Sequence[str], span: TimeRange | None,
                      *, where: Where = EVERYWHERE, group_by: Sequence[str] = (),
                      ) -> list[LatestValues]:
        if _nothing(fields, where):
            return []
        params: Params = {}
        answer = self.query(select_latest(series, fields, span, where, group_by, params),
                            params)
        return [LatestValues(p.tags, {k: v for k, v in p.fields.items() if v is not None})
                for p in to_points(answer)]

    def window_aggregates(self, series: SeriesRef, aggregations: Sequence[Aggregation],
                          span: TimeRange, window_ms: int, *, where: Where = EVERYWHERE,
                          group_by: Sequence[str] = ()) -> list[Point]:
        if not aggregations or _nothing(None, where):
            return []
        params: Params = {}
        statement = select_windows(series, aggregations, span, window_ms, where, group_by,
                                   params)
        return to_points(self.query(statement, params))

    def count(self, series: SeriesRef, span: TimeRange | None = None, *,
              where: Where = EVERYWHERE) -> int:
        if _nothing(None, where):
            return 0
        params: Params = {}
        answer = self.query(f"SELECT count(*) FROM {source(series)}"
                            + condition(span, where, params), params)
        return sum(int(v) for s in answer for row in s.values for v in row[1:]
                   if isinstance(v, int))


def _nothing(fields: Sequence[str] | None, where: Where) -> bool:
    """True when the request cannot match anything (no field, or an empty ``any_of``)."""
    return (fields is not None and not fields) or (where.any_of is not None
                                                   and not where.any_of)
