"""The ingest service against the real Mosquitto and InfluxDB."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import orjson
import pytest

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import InboundMessage, MqttConnection
from estate.errors import StoreRejected
from estate.schema import DEAD_LETTERS, READINGS, ROLLUP_REQUESTS
from estate.settings import MqttSettings
from estate.stored import count_readings, select_readings
from ingest.metrics import REJECTED
from ingest.service import Ingestor


@pytest.fixture
def running_ingest(start_ingest: Callable[..., object], store: InfluxV1Store) -> None:
    start_ingest(batch_size=200)


def _count(store: InfluxV1Store, measurement: str) -> int:
    if measurement == READINGS:
        return count_readings(store)
    series = store.query(f'SELECT count(*) FROM "{measurement}"')
    return int(series[0].values[0][1]) if series else 0


def _wait(store: InfluxV1Store, measurement: str, expected: int, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        count = _count(store, measurement)
        if count >= expected:
            break
        time.sleep(0.2)
    return count


def test_bad_messages_are_dead_lettered_with_reasons_and_good_ones_kept(
        running_ingest: None, mqtt_settings: MqttSettings, store: InfluxV1Store) -> None:
    now = time.time()
    good = orjson.dumps([{"bt": now, "n": "power", "u": "kW", "v": 12.5},
                         {"n": "energy_import", "u": "kWh", "v": 1000.0}])
    # NaN is not JSON, but firmware writes it; the finite record must survive it.
    mixed = (b'[{"bt": %.3f, "n": "water_flow", "u": "l/s", "v": 2.0},'
             b' {"n": "water_flow", "u": "l/s", "v": NaN, "t": 1}]' % now)
    messages = [
        ("estate/v1/demo/textile/main/telemetry", good),
        ("estate/v1/demo/textile/water/telemetry", mixed),
        ("estate/v1/demo/textile/main/telemetry", b"{not json"),
        ("estate/v1/demo/textile/main/telemetry",
         orjson.dumps([{"bn": "demo:metal:main:", "bt": now, "n": "power", "u": "kW", "v": 1}])),
        ("estate/v1/demo/textile/main/telemetry",
         orjson.dumps([{"bt": now + 3600, "n": "power", "u": "kW", "v": 1}])),
    ]
    client = MqttConnection(mqtt_settings, f"pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1).wait(5)
    client.close()

    assert _wait(store, READINGS, 3) == 3
    assert _wait(store, DEAD_LETTERS, 4) == 4
    time.sleep(0.5)
    assert _count(store, READINGS) == 3  # nothing extra arrived later
    reasons = sorted(s.tags["reason"] for s in store.query(
        f'SELECT count("record") FROM "{DEAD_LETTERS}" GROUP BY "reason"'))
    assert reasons == ["future-time", "identity-mismatch", "malformed-json", "non-finite"]
    flow = select_readings(store, quantity="water_flow")
    assert [r.value for r in flow] == [pytest.approx(7.2)]


def test_a_redelivered_message_overwrites_itself(
        running_ingest: None, mqtt_settings: MqttSettings, store: InfluxV1Store) -> None:
    payload = orjson.dumps([{"bt": time.time(), "n": "power", "u": "kW", "v": 42.0}])
    client = MqttConnection(mqtt_settings, f"pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    for _ in range(3):
        client.publish("estate/v1/demo/foods/main/telemetry", payload, qos=1).wait(5)
    client.close()
    time.sleep(1.0)
    assert _count(store, READINGS) == 1


def test_late_readings_ask_for_their_range_to_be_rolled_up_again(
        running_ingest: None, mqtt_settings: MqttSettings, store: InfluxV1Store) -> None:
    hour_ago = time.time() - 3600
    payload = orjson.dumps([{"bt": hour_ago, "n": "power", "u": "kW", "v": 1.0},
                            {"n": "power", "u": "kW", "v": 2.0, "t": 60}])
    fresh = orjson.dumps([{"bt": time.time(), "n": "power", "u": "kW", "v": 3.0}])
    client = MqttConnection(mqtt_settings, f"pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    client.publish("estate/v1/demo/metal/main/telemetry", payload, qos=1).wait(5)
    client.close()
    assert _wait(store, READINGS, 2) == 2
    requests = store.query(f'SELECT "start_ms", "end_ms" FROM "{ROLLUP_REQUESTS}"')
    assert [row[1:] for row in requests[0].values] == [
        [round(hour_ago * 1000), round(hour_ago * 1000) + 60_000]]
    # Fresh readings ask for nothing.
    client = MqttConnection(mqtt_settings, f"pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    client.publish("estate/v1/demo/metal/main/telemetry", fresh, qos=1).wait(5)
    client.close()
    assert _wait(store, READINGS, 3) == 3
    assert len(store.query(f'SELECT "start_ms" FROM "{ROLLUP_REQUESTS}"')[0].values) == 1


def test_points_the_store_refuses_become_dead_letters_not_silence(
        running_ingest: None, mqtt_settings: MqttSettings, store: InfluxV1Store) -> None:
    # A string "value" written first makes InfluxDB refuse float values in this shard
    # ("field type conflict"), as a schema clash from another writer would.
    now = time.time()
    store.write_lines([f'{READINGS},device=x,estate=demo,facility=metal '
                       f'power="text" {int(now * 1e9) - 1_000_000_000}'])
    client = MqttConnection(mqtt_settings, f"pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    for device in ("a", "b"):
        payload = orjson.dumps([{"bt": now, "n": "power", "u": "kW", "v": 5.0}])
        client.publish(f"estate/v1/demo/metal/{device}/telemetry", payload,
                       qos=1).wait(5)
    client.close()
    assert _wait(store, DEAD_LETTERS, 2) == 2
    letters = store.query(f'SELECT "detail", "topic" FROM "{DEAD_LETTERS}" '
                          "WHERE \"reason\" = 'store-rejected'")
    rows = letters[0].records()
    assert sorted(r["topic"] for r in rows) == ["estate/v1/demo/metal/a/telemetry",
                                                 "estate/v1/demo/metal/b/telemetry"]
    assert all("field type conflict" in r["detail"] for r in rows)
    # They keep the identity their topics gave.
    by_device = store.query(f'SELECT count("record") FROM "{DEAD_LETTERS}" WHERE "reason" = '
                            "'store-rejected' GROUP BY \"estate\", \"facility\", \"device\"")
    assert sorted((s.tags["estate"], s.tags["facility"], s.tags["device"]) for s in by_device) \
        == [("demo", "metal", "a"), ("demo", "metal", "b")]


def _reasons(store: InfluxV1Store) -> dict[str, int]:
    return {s.tags["reason"]: int(s.values[0][1]) for s in store.query(
        f'SELECT count("record") FROM "{DEAD_LETTERS}" GROUP BY "reason"')}


def test_retained_telemetry_is_refused_at_every_subscription_and_stored_never(
        start_ingest: Callable[..., object], mqtt_settings: MqttSettings,
        store: InfluxV1Store) -> None:
    # A pack with a relative time: stored at each delivery, it would be a reading at
    # another time every time a worker subscribes.
    topic = "estate/v1/demo/retained/main/telemetry"
    payload = orjson.dumps([{"n": "power", "u": "kW", "v": 5.0}])
    client = MqttConnection(mqtt_settings, f"pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait(5)
        for workers in (1, 2):  # each subscription is sent the retained message again
            start_ingest(batch_size=200)
            deadline = time.monotonic() + 30
            while _reasons(store).get("retained-telemetry", 0) < workers:
                assert time.monotonic() < deadline, _reasons(store)
                time.sleep(0.2)
        assert _count(store, READINGS) == 0
        letter = store.query(f'SELECT * FROM "{DEAD_LETTERS}" WHERE "reason" = '
                             "'retained-telemetry'")[0].records()[0]
        assert (letter["estate"], letter["facility"], letter["device"]) == (
            "demo", "retained", "main")
        assert "retain off" in letter["detail"]
    finally:
        # An empty retained message removes it from the broker, for the tests after this.
        client.publish(topic, b"", qos=1, retain=True).wait(5)
        client.close()


class _MemoryStore:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_lines(self, lines: list[str], retention_policy: str | None = None) -> None:
        self.lines += lines


def test_refusals_are_counted_each_and_logged_at_most_once_per_reason_and_period(
        caplog: pytest.LogCaptureFixture) -> None:
    acked: list[int] = []
    store = _MemoryStore()
    ingestor = Ingestor(store, lambda mid, qos: acked.append(mid),  # type: ignore[arg-type]
                        batch_size=1000, flush_interval_s=0.05)
    before = REJECTED.labels("not-a-pack")._value.get()
    caplog.set_level(logging.INFO, logger="ingest.refusals")
    ingestor.start()
    try:
        for mid in range(1, 201):
            ingestor.submit(InboundMessage("estate/v1/demo/logs/main/telemetry", b'"hello"',
                                           1, False, mid))
        deadline = time.monotonic() + 30
        while len(acked) < 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        ingestor.stop()
    assert REJECTED.labels("not-a-pack")._value.get() - before == 200
    assert sum(1 for x in store.lines if x.startswith(DEAD_LETTERS)) == 200
    lines = [r for r in caplog.records if "not-a-pack" in r.getMessage()]
    assert len(lines) <= 1, [r.getMessage() for r in lines]


class _RefusingStore(_MemoryStore):
    """Refuses any write holding a line other than a dead letter with ``bad`` in it, as
    InfluxDB refuses a field type clash."""

    def write_lines(self, lines: list[str], retention_policy: str | None = None) -> None:
        if any("bad" in x and not x.startswith(DEAD_LETTERS) for x in lines):
            raise StoreRejected("partial write: field type conflict", 400)
        super().write_lines(lines)


def test_a_spooled_line_the_store_refuses_keeps_its_identity_in_its_dead_letter() -> None:
    store = _RefusingStore()
    ingestor = Ingestor(store, lambda mid, qos: None,  # type: ignore[arg-type]
                        batch_size=10, flush_interval_s=0.05)
    good = "reading,device=m1,estate=demo,facility=metal power=1.0 1000000"
    bad = 'reading,device=m2,estate=demo,facility=metal power="bad" 1000000'
    ingestor._replay_line_by_line([good, bad, "weird line bad"])
    letters = [x for x in store.lines if x.startswith(DEAD_LETTERS)]
    assert store.lines[0] == good
    assert len(letters) == 2
    assert letters[0].startswith(f"{DEAD_LETTERS},device=m2,estate=demo,facility=metal,"
                                 "reason=store-rejected ")
    assert 'topic="estate/v1/demo/metal/m2/telemetry"' in letters[0]
    assert letters[1].startswith(f"{DEAD_LETTERS},reason=store-rejected ")
