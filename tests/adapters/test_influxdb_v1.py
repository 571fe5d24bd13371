"""The InfluxDB v1 adapter against the real InfluxDB 1.6.7."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.influxdb_v1 import InfluxV1Store
from estate.errors import StoreMisconfigured, StoreRejected, StoreUnavailable
from estate.lineprotocol import line, stored_name, stored_string
from estate.settings import InfluxSettings
from launcher.servers import free_port

# Any text at all, including the delimiters, quotes, backslashes, control characters and
# unicode that line protocol must neutralise. Tag values must not be empty.
texts = st.text(min_size=1, max_size=30)


def test_ping_answers_the_server_version(store: InfluxV1Store) -> None:
    assert store.ping().startswith("1.")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=texts, text=st.text(max_size=60))
def test_any_string_is_stored_exactly_as_documented_and_never_injects_a_line(
        store: InfluxV1Store, tag: str, text: str) -> None:
    stamp = time.time_ns()
    store.write_lines([line("probe", {"who": tag}, {"text": text, "n": 1.0}, stamp)])
    rows = [r for s in store.query('SELECT * FROM "probe" WHERE time = $t', {"t": stamp})
            for r in s.records()]
    assert len(rows) == 1, rows
    assert rows[0]["who"] == stored_name(tag)
    assert rows[0]["text"] == stored_string(text)
    # Nothing else ever appeared: no injected measurement.
    measurements = {s.values[0][0] for s in store.query("SHOW MEASUREMENTS")}
    assert measurements == {"probe"}


def test_bound_parameters_cannot_break_out_of_the_query(store: InfluxV1Store) -> None:
    now = time.time_ns()
    store.write_lines([line("m", {"d": "a"}, {"v": 1.0}, now),
                       line("m", {"d": "b"}, {"v": 2.0}, now)])
    rows = store.query('SELECT * FROM "m" WHERE "d" = $d', {"d": "a' OR d = 'b"})
    assert rows == []
    rows = store.query('SELECT * FROM "m" WHERE "d" = $d', {"d": "b"})
    assert [r["v"] for r in rows[0].records()] == [2.0]


def test_a_field_type_conflict_is_rejected_not_retried(store: InfluxV1Store) -> None:
    now = time.time_ns()
    store.write_lines([line("c", {}, {"v": 1.0}, now)])
    with pytest.raises(StoreRejected) as raised:
        store.write_lines([line("c", {}, {"v": "text"}, now + 1)])
    assert raised.value.status == 400
    assert "conflict" in str(raised.value)


def test_a_bad_query_is_rejected_with_influxdbs_reason(store: InfluxV1Store) -> None:
    with pytest.raises(StoreRejected, match="error parsing query"):
        store.query("SELEKT nothing")


def test_an_unreachable_server_is_unavailable_not_rejected() -> None:
    dead = InfluxV1Store(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=2))
    with pytest.raises(StoreUnavailable):
        dead.ping()
    with pytest.raises(StoreUnavailable):
        dead.write_lines(["m v=1.0 1"])
    dead.close()


def test_ensure_database_is_idempotent_and_sets_raw_retention(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    store.ensure_database()
    store.ensure_database()
    policies = store.query(f'SHOW RETENTION POLICIES ON "{influx_settings.database}"')
    rows = {r["name"]: r for r in policies[0].records()}
    assert rows["raw"]["default"] is True
    assert rows["raw"]["duration"] == "720h0m0s"


def test_a_changed_raw_retention_is_applied_on_the_next_start(
        store: InfluxV1Store, influx_settings: InfluxSettings) -> None:
    longer = InfluxV1Store(influx_settings.model_copy(update={"raw_retention": "60d"}))
    longer.ensure_database()
    longer.close()
    policies = store.query(f'SHOW RETENTION POLICIES ON "{influx_settings.database}"')
    rows = {r["name"]: r for r in policies[0].records()}
    assert rows["raw"]["duration"] == "1440h0m0s"


def test_a_missing_database_is_a_misconfiguration_not_bad_data(
        influx_settings: InfluxSettings) -> None:
    missing = InfluxV1Store(influx_settings.model_copy(update={"database": "nowhere"}))
    with pytest.raises(StoreMisconfigured, match="'nowhere' exists"):
        missing.write_lines(["m v=1.0 1"])
    missing.close()


def test_create_database_off_only_checks_the_server_answers(
        influx_settings: InfluxSettings, store: InfluxV1Store) -> None:
    quiet = InfluxV1Store(influx_settings.model_copy(
        update={"database": "made_by_admin", "create_database": False}))
    quiet.ensure_database()
    quiet.close()
    names = {row[0] for s in store.query("SHOW DATABASES") for row in s.values}
    assert "made_by_admin" not in names
