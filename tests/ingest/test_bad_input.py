"""A corpus of bad messages through the real broker, ingest and InfluxDB.

Each kind of bad input must end as dead letters with the expected reasons, the good
records beside it must be stored, the service must stay up, and nothing injected or
corrupted may appear in InfluxDB.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection
from estate.schema import DEAD_LETTERS, READINGS, ROLLUP_REQUESTS
from estate.settings import MqttSettings
from estate.stored import count_readings, select_readings
from estate.units import CHANNELS
from tests.conftest import RunningIngest
from tests.hostile import long_base_name_pack, long_name_pack

NOW = time.time()
T = "estate/v1/demo/{facility}/{device}/telemetry"


@dataclass(frozen=True)
class Case:
    kind: str
    payload: bytes
    reasons: tuple[str, ...]  # refusal reasons expected, one per bad part
    good: int = 0  # readings of this message that must be stored
    device: str = ""  # defaults to a device of its own

    def topic(self, index: int) -> str:
        return T.format(facility="bad", device=self.device or f"d{index:02d}")


def j(records: object) -> bytes:
    return orjson.dumps(records)


def rec(**fields: object) -> dict[str, object]:
    return {"n": "power", "u": "kW", "v": 12.5, "bt": NOW, **fields}


CORPUS: list[Case] = [
    Case("malformed JSON", b"{not json", ("malformed-json",)),
    Case("truncated JSON", b'[{"n":"power","u":"kW","v":1', ("malformed-json",)),
    Case("an object, not a pack", j(rec()), ("not-a-pack",)),
    Case("a string, not a pack", b'"hello"', ("not-a-pack",)),
    Case("an empty pack", b"[]", ("empty-pack",)),
    Case("records that are not objects", b"[1, \"two\", null]", ("record-not-object",) * 3),
    Case("an empty record", j([rec(), {}]), ("empty-record",), good=1),
    Case("NaN", b'[{"n":"power","u":"kW","v":NaN,"bt":%.3f}]' % NOW, ("non-finite",)),
    Case("Infinity beside a good record",
         b'[{"n":"power","u":"kW","v":1.5,"bt":%.3f},{"n":"current.l1","u":"A","v":-Infinity}]'
         % NOW, ("non-finite",), good=1),
    Case("1e999", b'[{"n":"power","u":"kW","v":1e999,"bt":%.3f}]' % NOW, ("non-finite",)),
    Case("a string for a number", j([rec(v="12.5")]), ("not-a-number",)),
    Case("a boolean for a number", j([rec(v=True)]), ("not-a-number",)),
    Case("an unknown unit", j([rec(u="furlong")]), ("unknown-unit",)),
    Case("a unit of another dimension", j([rec(u="m3")]), ("wrong-unit",)),
    Case("no unit", j([{"n": "power", "v": 1, "bt": NOW}]), ("missing-unit",)),
    Case("an unknown quantity", j([rec(n="humidity", u="%RH")]), ("unknown-quantity",)),
    Case("an impossible value", j([rec(v=5e9)]), ("out-of-range",)),
    Case("a negative volume register", j([rec(n="water_volume", u="m3", v=-5)]),
         ("out-of-range",)),
    Case("a future timestamp", j([rec(bt=NOW + 3600)]), ("future-time",)),
    Case("an ancient timestamp", j([rec(bt=1_000_000_000)]), ("too-old",)),
    Case("a timestamp as text", j([rec(bt="2026-11-26T10:00:00Z")]), ("bad-time",)),
    Case("another device's identity", j([rec(bn="demo:metal:main:")]), ("identity-mismatch",)),
    Case("an oversized payload", j([rec(pad="x" * 300_000)]), ("payload-too-large",)),
    Case("too many records", j([{"n": "power", "u": "kW", "v": 1, "t": i / 1000}
                                for i in range(5_001)]), ("too-many-records",)),
    Case("a must-understand field", j([rec(crit_=1)]), ("must-understand-field",)),
    Case("a SenML version from the future", j([rec(bver=99)]), ("unsupported-version",)),
    Case("a string value", j([{"n": "power", "vs": "high", "bt": NOW}]),
         ("unsupported-value-type",)),
    Case("no value", j([{"n": "power", "u": "kW", "bt": NOW}]), ("missing-value",)),
    Case("a channel with a space", j([rec(n="voltage.l 1", u="V", v=230)]), ("bad-name",)),
    Case("a duplicated record", j([rec(), rec(v=13.0)]), ("duplicate-record",), good=1),
    Case("bad base fields spoil the records after them",
         j([rec(), rec(bu=3, t=1), rec(t=2)]), ("bad-field-type", "invalid-base-context"),
         good=1),
    Case("a device id with a space", j([rec()]), ("invalid-identifier",), device="bad device"),
    Case("a device id with comma and equals", j([rec()]), ("invalid-identifier",),
         device="m,estate=evil"),
    Case("a unicode device id", j([rec()]), ("invalid-identifier",), device="μετρητής"),
    Case("a newline in a name", j([rec(n="power\nreading,estate=evil value=1 1")]),
         ("unknown-quantity",)),
    Case("quotes and backslashes in a unit", j([rec(u='k"W\\')]), ("unknown-unit",)),
    Case("bytes that are not UTF-8", b"\xff\xfe\x00[]", ("malformed-json",)),
    Case("UTF-16", '[{"n":"frequency","u":"Hz","v":50}]'.encode("utf-16"), ("malformed-json",)),
    Case("nesting 100,000 deep", b"[" * 100_000 + b"]" * 100_000, ("malformed-json",)),
    Case("a register, then the same register lower",
         j([{"bn": "demo:bad:reg:", "bt": NOW - 60, "n": "energy_import", "u": "kWh",
             "v": 5_000.0}, {"n": "energy_import", "u": "kWh", "v": 4_900.0, "t": 30}]),
         ("counter-backwards",), good=1, device="reg"),
    Case("fields that SenML does not know", b'[{"name":"power","unit":"W","value":5}]',
         ("nothing-to-store",)),
    Case("base fields only", j([{"bt": NOW, "bu": "kW"}, {"bv": 1}]), ("nothing-to-store",)),
    Case("a channel outside the contract", j([rec(n="power.zone-7"), rec(n="power.l1")]),
         ("unknown-channel",), good=1),
    Case("a name beginning with a colon", j([rec(n=":power")]), ("identity-mismatch",)),
    Case("a 100,000-character base name over 3,999 records",
         long_base_name_pack("demo:" + "x" * 99_995 + ":m:", bt=NOW),
         ("identity-mismatch",) * 4000),
    Case("a 250,000-character name", long_name_pack("q" * 250_000, bt=NOW),
         ("unknown-quantity",)),
    Case("4,999 invented channels", j([{"bt": NOW, "bu": "kW"},
                                       *({"n": f"power.c{k}", "v": 1.0} for k in range(4_999))]),
         ("unknown-channel",) * 4_999),
]


@pytest.fixture
def running_ingest(start_ingest: Callable[..., RunningIngest],
                   store: InfluxV1Store) -> threading.Thread:
    return start_ingest().thread


def _count(store: InfluxV1Store, measurement: str) -> int:
    if measurement == READINGS:
        return count_readings(store)
    series = store.query(f'SELECT count(*) FROM "{measurement}"')
    return max((int(v) for v in series[0].values[0][1:] if v is not None), default=0) \
        if series else 0


def test_the_corpus_has_at_least_thirty_kinds() -> None:
    assert len({c.kind for c in CORPUS}) >= 40
    assert len({r for c in CORPUS for r in c.reasons}) >= 28


def test_every_bad_message_is_dead_lettered_with_its_reason_and_nothing_else_changes(
        running_ingest: threading.Thread, mqtt_settings: MqttSettings,
        store: InfluxV1Store) -> None:
    client = MqttConnection(mqtt_settings, f"bad-{uuid.uuid4().hex[:8]}")
    client.connect()
    for index, case in enumerate(CORPUS):
        client.publish(case.topic(index), case.payload, qos=1).wait(10)
    # The same good message twice: stored once.
    again = j([{"bn": "demo:bad:twice:", "bt": NOW, "n": "power", "u": "kW", "v": 7.0}])
    for _ in range(2):
        client.publish(T.format(facility="bad", device="twice"), again, qos=1).wait(10)
    client.close()

    # One dead letter per reason per message, counting the records it stands for.
    expected = Counter(r for c in CORPUS for r in c.reasons)
    letters = Counter(r for c in CORPUS for r in set(c.reasons))
    good = sum(c.good for c in CORPUS) + 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _count(store, DEAD_LETTERS) >= sum(letters.values()) and \
                _count(store, READINGS) >= good:
            break
        time.sleep(0.5)
    time.sleep(1.0)

    assert running_ingest.is_alive(), "ingest died on bad input"
    by_reason = {s.tags["reason"]: s.values[0][1:] for s in store.query(
        f'SELECT count("record"), sum("count") FROM "{DEAD_LETTERS}" GROUP BY "reason"')}
    assert Counter({reason: int(n) for reason, (n, _) in by_reason.items()}) == letters
    assert Counter({reason: int(total) for reason, (_, total) in by_reason.items()}) == expected
    stored = select_readings(store)
    assert len(stored) == good, [(r.device, r.quantity, r.value) for r in stored]

    # Every dead letter says what was wrong, and where it came from.
    rows = store.query(f'SELECT "detail", "topic", "payload_bytes" FROM "{DEAD_LETTERS}"')
    for row in rows[0].records():
        assert row["detail"]
        assert len(row["detail"]) < 500
        assert row["topic"].startswith("estate/v1/demo/bad/")
        assert row["payload_bytes"] > 0

    # Nothing injected: only our measurements, only our tag keys, no evil estate.
    measurements = {row[0] for s in store.query("SHOW MEASUREMENTS") for row in s.values}
    # The corpus is stamped when this module is imported: run minutes later in a long suite,
    # its good readings are late, and ingest rightly asks for their rollups again.
    assert measurements - {ROLLUP_REQUESTS} == {READINGS, DEAD_LETTERS}
    # No device added a field to the readings beyond the contract's channels.
    fields = {row[0] for s in store.query(f'SHOW FIELD KEYS FROM "{READINGS}"')
              for row in s.values}
    assert fields <= {f"{q}.{c}" for q, channels in CHANNELS.items() for c in channels} \
        | set(CHANNELS)
    keys = {row[0] for s in store.query("SHOW TAG KEYS") if s.name != ROLLUP_REQUESTS
            for row in s.values}
    assert keys <= {"estate", "facility", "device", "quantity", "channel", "reason"}
    estates = {row[1] for s in store.query('SHOW TAG VALUES WITH KEY = "estate"')
               for row in s.values}
    assert estates == {"demo"}
    devices = {row[1] for s in store.query(
        f'SHOW TAG VALUES FROM "{READINGS}" WITH KEY = "device"') for row in s.values}
    assert devices == {f"d{i:02d}" for i, c in enumerate(CORPUS) if c.good and not c.device} \
        | {"reg", "twice"}
