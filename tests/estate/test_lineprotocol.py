"""Line protocol: escaping, one line per point, and influxdb-client's Point as the oracle."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision  # type: ignore[attr-defined]

from estate.lineprotocol import (
    FieldValue,
    escape_key,
    escape_measurement,
    escape_string_field,
    line,
    pack_lines,
    reading_line,
    readings_lines,
    stored_name,
    stored_string,
)
from estate.readings import Reading
from estate.schema import READINGS, field_key
from estate.units import QUANTITIES

ANY_TEXT = st.text(max_size=20)
# Measurements and field keys must be non-empty, and a measurement starting with "#" would
# make the line a comment; line() refuses those (tested below).
NAME = st.text(min_size=1, max_size=20).filter(lambda t: not t.startswith("#"))
FIELD_VALUES: st.SearchStrategy[FieldValue] = (
    st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT)


@given(NAME, st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=4),
       st.dictionaries(NAME, FIELD_VALUES, min_size=1, max_size=4),
       st.integers(-(2**63), 2**63 - 1))
def test_any_text_makes_exactly_one_line(measurement: str, tags: dict[str, str],
                                         fields: dict[str, FieldValue], time_ns: int) -> None:
    text = line(measurement, tags, fields, time_ns)
    assert "\n" not in text
    assert "\r" not in text
    assert text.endswith(f" {time_ns}")


# Characters both serializers treat alike: no backslash (InfluxDB 1.x cannot round-trip it in
# names, so line() stores it as text) and no control characters (Point escapes \n, \t and \r
# as two-character sequences, line() stores them as \xNN text).
PLAIN = st.characters(blacklist_categories=["Cs"],
                      blacklist_characters="\\" + "".join(map(chr, [*range(32), 127])))
PLAIN_TEXT = st.text(PLAIN, min_size=1, max_size=16)
# Point.to_line_protocol() trims a float's trailing ".0" (both forms are the same float to
# InfluxDB); compare only floats whose text has no such tail.
ORACLE_FLOATS = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not repr(f).endswith(".0"))
ORACLE_VALUES: st.SearchStrategy[FieldValue] = (
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | ORACLE_FLOATS
    | st.text(st.characters(blacklist_categories=["Cs"],
                            blacklist_characters="".join(map(chr, [*range(32), 127]))),
              max_size=16))


@given(PLAIN_TEXT, st.dictionaries(PLAIN_TEXT, st.text(PLAIN, max_size=16), max_size=4),
       st.dictionaries(PLAIN_TEXT, ORACLE_VALUES, min_size=1, max_size=4),
       st.integers(-(2**63), 2**63 - 1))
def test_line_matches_influxdb_client_point(measurement: str, tags: dict[str, str],
                                            fields: dict[str, FieldValue], time_ns: int) -> None:
    assume(not measurement.startswith("#"))  # a comment line; Point warns about it
    # Point sorts fields by key; line() keeps their order, so give them sorted.
    fields = dict(sorted(fields.items()))
    point = Point(measurement).time(time_ns, WritePrecision.NS)  # type: ignore[no-untyped-call]
    for tag_key, tag_value in tags.items():
        point.tag(tag_key, tag_value)
    for name, field_value in fields.items():
        point.field(name, field_value)
    assert line(measurement, tags, fields, time_ns) == point.to_line_protocol()


IDENTIFIERS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
CHANNELS = st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))


@st.composite
def _readings(draw: st.DrawFn) -> Reading:
    return Reading(draw(IDENTIFIERS), draw(IDENTIFIERS), draw(IDENTIFIERS),
                   draw(st.sampled_from(sorted(QUANTITIES))), draw(CHANNELS),
                   draw(st.floats(allow_nan=False, allow_infinity=False)),
                   draw(st.integers(1, 2**53)))


@given(_readings())
def test_reading_line_is_the_general_line(r: Reading) -> None:
    tags = {"estate": r.estate, "facility": r.facility, "device": r.device}
    expected = line(READINGS, tags, {field_key(r.quantity, r.channel): r.value},
                    r.time_ms * 1_000_000)
    assert reading_line(r) == expected


@given(st.lists(_readings(), max_size=30))
def test_readings_lines_are_one_general_line_per_meter_and_instant(
        readings: list[Reading]) -> None:
    points: dict[tuple[str, str, str, int], dict[str, float | int | bool | str]] = {}
    for r in readings:
        points.setdefault((r.estate, r.facility, r.device, r.time_ms), {})[
            field_key(r.quantity, r.channel)] = r.value
    expected = [line(READINGS, {"estate": e, "facility": f, "device": d}, fields,
                     t * 1_000_000) for (e, f, d, t), fields in points.items()]
    assert readings_lines(readings) == expected



@given(st.lists(_readings(), max_size=30).map(
    lambda rs: list({(r.quantity, r.channel, r.time_ms): r._replace(
        estate="demo", facility="textile", device="main") for r in rs}.values())))
def test_pack_lines_are_readings_lines_for_one_device(readings: list[Reading]) -> None:
    # What a decoded pack is: one device, no quantity twice at an instant.
    assert pack_lines("demo", "textile", "main", readings) == readings_lines(readings)

def test_reading_line_example() -> None:
    r = Reading("demo", "textile", "main", "voltage", "l1", 230.1, 1_700_000_000_123)
    assert reading_line(r) == (
        "reading,device=main,estate=demo,facility=textile voltage.l1=230.1 "
        "1700000000123000000")


def test_readings_of_one_instant_share_a_point() -> None:
    t = 1_700_000_000_000
    readings = [Reading("demo", "textile", "main", "power", "", 412.5, t),
                Reading("demo", "textile", "main", "voltage", "l1", 230.1, t),
                Reading("demo", "textile", "main", "power", "", 413.0, t + 1000),
                Reading("demo", "textile", "looms", "power", "", 80.0, t)]
    assert readings_lines(readings) == [
        "reading,device=main,estate=demo,facility=textile power=412.5,voltage.l1=230.1 "
        "1700000000000000000",
        "reading,device=main,estate=demo,facility=textile power=413.0 1700000001000000000",
        "reading,device=looms,estate=demo,facility=textile power=80.0 1700000000000000000"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_raise(value: float) -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        line("m", {}, {"f": value}, 0)


@given(st.sampled_from([math.nan, math.inf, -math.inf, -math.nan]), PLAIN_TEXT)
def test_non_finite_floats_raise_in_any_field(value: float, key: str) -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        line("m", {"t": "x"}, {"ok": 1.5, key: value}, 1)


def test_a_point_needs_a_field() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        line("m", {"t": "x"}, {}, 1)


def test_field_types() -> None:
    text = line("m", {}, {"f": 1.5, "i": 7, "b": True, "c": False, "s": "on"}, 9)
    assert text == 'm f=1.5,i=7i,b=true,c=false,s="on" 9'


def test_empty_tag_values_are_left_out_and_tags_sorted() -> None:
    text = line("m", {"z": "1", "empty": "", "a": "2"}, {"f": 1.0}, 5)
    assert text == "m,a=2,z=1 f=1.0 5"


@pytest.mark.parametrize(("function", "text", "expected"), [
    (escape_measurement, "a b,c=d", "a\\ b\\,c=d"),
    (escape_key, "a b,c=d", "a\\ b\\,c\\=d"),
    (escape_string_field, 'say "hi" \\ bye', 'say \\"hi\\" \\\\ bye'),
    (escape_key, "new\nline", "new\\x0aline"),
    (escape_key, "tab\there\r", "tab\\x09here\\x0d"),
    (escape_key, "back\\slash", "back\\x5cslash"),
    (escape_measurement, "end\\", "end\\x5c"),
    # The \xNN text of a control character is itself escaped, so InfluxDB stores \xNN.
    (escape_string_field, "two\nlines\x00", "two\\\\x0alines\\\\x00"),
    (escape_string_field, "del\x7f", "del\\\\x7f"),
])
def test_escaping(function: object, text: str, expected: str) -> None:
    assert callable(function)
    assert function(text) == expected


def test_what_is_stored() -> None:
    assert stored_name("a\\b\nc") == "a\\x5cb\\x0ac"
    assert stored_string("a\\b\nc") == "a\\b\\x0ac"
    assert stored_name("plain text, with = and spaces") == "plain text, with = and spaces"


def test_an_injected_line_stays_inside_its_tag() -> None:
    evil = "x value=1 0\nreading,device=other value=666 0"
    text = line("m", {"device": evil}, {"f": 1.0}, 1)
    assert text.count("\n") == 0
    assert text.startswith("m,device=x\\ value\\=1\\ 0\\x0areading\\,device\\=other")


@pytest.mark.parametrize(("measurement", "fields"), [
    ("", {"v": 1.0}), ("#comment", {"v": 1.0}), ("m", {"": 1.0}), ("m", {})])
def test_line_refuses_what_would_not_be_a_point(measurement: str,
                                                fields: dict[str, FieldValue]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        line(measurement, {}, fields, 1)
