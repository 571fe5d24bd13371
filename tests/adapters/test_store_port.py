"""The store port's reads, each against the real InfluxDB 1.6.7 (through the v1 adapter,
``adapters.influxql``'s InfluxQL) and against the in-memory double the fast tier uses: the
same answers from both, so the double cannot drift from what the adapter really does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.influxdb_v1 import InfluxV1Store
from adapters.influxql import select_windows
from estate.lineprotocol import line
from estate.ports import (
    Aggregate,
    Aggregation,
    SeriesRef,
    TimeRange,
    TimeSeriesStore,
    Where,
)
from estate.settings import InfluxSettings
from tests.doubles import InMemoryTimeSeriesStore

MS = 1_000_000
T0 = 1_795_000_020_000  # 20 s into a minute
M = SeriesRef("m")
READINGS = [
    ({"estate": "e", "facility": "f", "device": "a"}, {"power": 1.0, "energy": 10.0}, T0),
    ({"estate": "e", "facility": "f", "device": "a"}, {"power": 3.0}, T0 + 30_000),
    ({"estate": "e", "facility": "f", "device": "a"}, {"power": 5.0}, T0 + 60_000),
    ({"estate": "e", "facility": "f", "device": "b"}, {"power": 7.0, "energy": 2.0}, T0 + 5_000),
    ({"estate": "x", "facility": "f", "device": "c"}, {"power": 9.0}, T0),
]
GROUP = ("estate", "facility", "device")


@pytest.fixture(params=[pytest.param("influxdb", marks=pytest.mark.servers), "in-memory"])
def port(request: pytest.FixtureRequest) -> Iterator[TimeSeriesStore]:
    store: TimeSeriesStore
    if request.param == "influxdb":
        settings: InfluxSettings = request.getfixturevalue("influx_settings")
        store = InfluxV1Store(settings)
        store.ensure_database()
    else:
        store = InMemoryTimeSeriesStore()
    store.write_lines([line("m", tags, fields, t * MS) for tags, fields, t in READINGS])
    yield store
    if isinstance(store, InfluxV1Store):
        store.query(f'DROP DATABASE "{request.getfixturevalue("influx_settings").database}"')
    store.close()


def _rows(points: list) -> list[tuple[int, dict, dict]]:  # type: ignore[type-arg]
    return [(p.time_ms, dict(p.tags), {k: v for k, v in p.fields.items() if v is not None})
            for p in points]


def test_points_come_per_group_oldest_first_with_what_was_asked(port: TimeSeriesStore) -> None:
    got = port.points(M, TimeRange(T0, T0 + 60_000), fields=["power"],
                      where=Where({"estate": "e"}), group_by=GROUP)
    a = {"estate": "e", "facility": "f", "device": "a"}
    b = {"estate": "e", "facility": "f", "device": "b"}
    assert _rows(got) == [(T0, a, {"power": 1.0}), (T0 + 30_000, a, {"power": 3.0}),
                          (T0 + 5_000, b, {"power": 7.0})]


def test_a_point_without_any_field_asked_for_is_left_out(port: TimeSeriesStore) -> None:
    got = port.points(M, None, fields=["energy"], group_by=("device",))
    assert [(p.time_ms, p.tags["device"]) for p in got] == [(T0, "a"), (T0 + 5_000, "b")]


def test_every_field_and_a_limit_per_group(port: TimeSeriesStore) -> None:
    got = port.points(M, None, where=Where({"estate": "e"}), group_by=("device",),
                      limit_per_group=1)
    assert _rows(got) == [(T0, {"device": "a"}, {"power": 1.0, "energy": 10.0}),
                          (T0 + 5_000, {"device": "b"}, {"power": 7.0, "energy": 2.0})]


def test_any_of_selects_a_set_of_meters_and_an_empty_set_nothing(port: TimeSeriesStore) -> None:
    got = port.points(M, None, fields=["power"], group_by=("device",),
                      where=Where(any_of=[{"facility": "f", "device": "b"},
                                          {"estate": "x", "device": "c"}]))
    assert {p.tags["device"] for p in got} == {"b", "c"}
    assert port.points(M, None, where=Where(any_of=[])) == []


def test_an_absent_tag_matches_the_empty_string(port: TimeSeriesStore) -> None:
    got = port.points(M, None, fields=["power"], where=Where({"device": "b", "channel": ""}))
    assert [p.fields["power"] for p in got] == [7.0]


def test_newest_point_per_group(port: TimeSeriesStore) -> None:
    got = port.newest_points(M, TimeRange(T0 - 1), where=Where({"estate": "e"}),
                             group_by=("facility", "device"))
    assert [(p.tags["device"], p.time_ms) for p in got] == [("a", T0 + 60_000),
                                                            ("b", T0 + 5_000)]


def test_latest_values_are_each_fields_own_newest(port: TimeSeriesStore) -> None:
    got = port.latest_values(M, ["power", "energy"], TimeRange(T0), where=Where({"estate": "e"}),
                             group_by=("device",))
    assert [(dict(v.tags), dict(v.values)) for v in got] == [
        ({"device": "a"}, {"power": 5.0, "energy": 10.0}),
        ({"device": "b"}, {"power": 7.0, "energy": 2.0})]


def test_window_aggregates_per_minute_from_the_epoch_without_empty_windows(
        port: TimeSeriesStore) -> None:
    minute = T0 - T0 % 60_000
    aggregations = [Aggregation(f.value, f, "power") for f in Aggregate]
    got = port.window_aggregates(M, aggregations, TimeRange(minute, minute + 5 * 60_000),
                                 60_000, where=Where({"device": "a"}), group_by=("device",))
    assert _rows(got) == [
        (minute, {"device": "a"},
         {"sum": 4.0, "count": 2, "min": 1.0, "max": 3.0, "last": 3.0, "mean": 2.0}),
        (minute + 60_000, {"device": "a"},
         {"sum": 5.0, "count": 1, "min": 5.0, "max": 5.0, "last": 5.0, "mean": 5.0})]


def test_counts_and_field_names(port: TimeSeriesStore) -> None:
    assert port.count(M) == 7
    assert port.count(M, TimeRange(T0 + 1), where=Where({"estate": "e"})) == 4
    assert sorted(port.field_names(M)) == ["energy", "power"]


def test_a_series_in_another_retention_policy(port: TimeSeriesStore) -> None:
    port.ensure_retention("longer", "INF")
    port.write_lines([line("kept", {"k": "v"}, {"value": 1.5}, T0 * MS)],
                     retention_policy="longer")
    assert [p.fields["value"] for p in port.points(SeriesRef("kept", "longer"), None)] == [1.5]
    assert port.points(SeriesRef("kept"), None) == []


def test_window_statements_are_bounded_and_leave_empty_windows_out() -> None:
    params: dict[str, str | float | int] = {}
    statement = select_windows(M, [Aggregation("mean", Aggregate.MEAN, "power")],
                               TimeRange(0, 60_000), 60_000, Where({"device": "a' OR 1=1"}),
                               ("device",), params)
    assert statement == ('SELECT mean("power") AS "mean" FROM "m" WHERE "device" = $t0 AND '
                         'time >= $start AND time < $end GROUP BY time(60000ms), "device" '
                         "fill(none)")
    assert params == {"t0": "a' OR 1=1", "start": 0, "end": 60_000 * MS}
    with pytest.raises(ValueError, match="ends"):
        select_windows(M, [], TimeRange(0), 60_000, Where(), (), {})
