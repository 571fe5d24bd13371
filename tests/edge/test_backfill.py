"""History backfill into the real InfluxDB: every step of every meter, and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.influxdb_v1 import InfluxV1Store
from edge.backfill import backfill, backfill_command, backfill_days, step_times
from edge.settings import EdgeSettings
from edge.simulator import EstateSimulator
from estate.errors import StoreUnavailable
from estate.model import SAMPLE_ESTATE, load_estate
from estate.schema import READINGS
from estate.settings import InfluxSettings
from launcher.servers import free_port

DAY_MS = 86_400_000
STEP_S = 900


def _end_ms() -> int:
    """The start of the current hour: inside the raw retention, away from the future."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    return now - now % 3_600_000


def counts(store: InfluxV1Store, start_ms: int, end_ms: int,
           ) -> dict[tuple[str, str], list[int]]:
    """Per (facility, device): every non-empty count of every field of every series.

    ``count(*)`` counts each field, whatever the point layout: one point per reading
    (grouped down to the quantity and channel) or one point per meter and instant."""
    series = store.query(
        f'SELECT count(*) FROM "{READINGS}" WHERE time >= {start_ms}ms AND time < {end_ms}ms '
        'GROUP BY "facility", "device", "quantity", "channel"')
    out: dict[tuple[str, str], list[int]] = {}
    for s in series:
        key = (s.tags["facility"], s.tags["device"])
        for row in s.values:
            out.setdefault(key, []).extend(int(v) for v in row[1:] if v is not None)
    return out


def test_step_times_are_aligned_to_the_step() -> None:
    assert list(step_times(1_000, 4_000, 1_000)) == [1_000, 2_000, 3_000]
    assert list(step_times(1_001, 4_000, 1_000)) == [2_000, 3_000]
    with pytest.raises(ValueError, match="positive step"):
        backfill(None, None, 0, 10, 0)  # type: ignore[arg-type]


def test_a_day_at_quarter_hours_stores_every_step_once(store: InfluxV1Store) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    end = _end_ms()
    result = backfill_days(EstateSimulator(spec, 21), store, 1, STEP_S, end_ms=end,
                           show_progress=False)
    steps = 96
    assert result.steps == steps
    assert result.start_ms == end - DAY_MS
    stored = counts(store, end - DAY_MS, end)
    assert set(stored) == {(d.facility, d.device) for d, _, _ in spec.devices()}
    for meter, field_counts in stored.items():
        assert field_counts, meter
        assert set(field_counts) == {steps}, meter
    points = store.query(f'SELECT count(*) FROM "{READINGS}"')
    total = sum(v for v in points[0].values[0][1:] if v is not None)

    probe = (f'SELECT * FROM "{READINGS}" WHERE "facility" = \'textile\' AND '
             f'"device" = \'water\' AND time >= {end - DAY_MS}ms ORDER BY time')
    before = store.query(probe)[0].values
    again = backfill_days(EstateSimulator(spec, 21), store, 1, STEP_S, end_ms=end,
                          show_progress=True)
    assert again.lines == result.lines
    assert counts(store, end - DAY_MS, end) == stored
    points = store.query(f'SELECT count(*) FROM "{READINGS}"')
    assert sum(v for v in points[0].values[0][1:] if v is not None) == total
    assert store.query(probe)[0].values == before


def test_backfill_command_on_a_synthetic_estate(influx_settings: InfluxSettings,
                                                store: InfluxV1Store) -> None:
    settings = EdgeSettings(seed=3, backfill_influx=influx_settings)
    result = backfill_command(0.25, STEP_S, meters=40, settings=settings, show_progress=False)
    assert result.steps == 24
    stored = counts(store, result.start_ms, result.end_ms)
    assert len(stored) == 40
    assert all(set(c) == {24} for c in stored.values())


class CountingStore:
    """Records the size of each write and passes it on to the real store."""

    def __init__(self, store: InfluxV1Store) -> None:
        self.store = store
        self.batches: list[int] = []

    def write_lines(self, lines: list[str], retention_policy: str | None = None) -> None:
        self.batches.append(len(lines))
        self.store.write_lines(lines, retention_policy)


def test_writes_go_in_batches_of_the_batch_size(store: InfluxV1Store) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    counting = CountingStore(store)
    end = _end_ms()
    result = backfill(EstateSimulator(spec, 1), counting, end - DAY_MS, end,  # type: ignore[arg-type]
                      STEP_S * 1000, batch_lines=1_000)
    assert sum(counting.batches) == result.lines
    assert counting.batches[:-1] == [1_000] * (len(counting.batches) - 1)
    assert 0 < counting.batches[-1] <= 1_000
    assert len(counting.batches) == -(-result.lines // 1_000)


def test_an_unreachable_database_stops_the_backfill_with_the_stores_error() -> None:
    nowhere = InfluxV1Store(InfluxSettings(url=f"http://127.0.0.1:{free_port()}",
                                           timeout_s=2))
    spec = load_estate(SAMPLE_ESTATE)
    end = _end_ms()
    try:
        with pytest.raises(StoreUnavailable):
            backfill(EstateSimulator(spec, 1), nowhere, end - DAY_MS, end, STEP_S * 1000,
                     batch_lines=100)
    finally:
        nowhere.close()
