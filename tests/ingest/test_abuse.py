"""One authorised device sends what costs the most to read; ingest must stay small and keep
everyone else's readings.

Ingest runs as in production (``python -m ingest``, its decoding process, the default
batch and queue settings) against the real Mosquitto and InfluxDB. One device sends, as
fast as it can, 100 packs of 255 KB whose 100,000-character base name names another
identity over 3,999 records (each record used to repeat the name in its refusal: 410 MB
of line protocol for one message) and 100 packs with a unique 250 KB name (each used to
stay in the decoder's name cache). Meanwhile another device reports a reading every
50 ms. The bound is on memory (parent and decoding process together) and on losing
nothing; the latency of the other device's readings under this load is a benchmark
(``bench/abuse.py``), since a loaded test machine would make any figure here noise.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection
from estate.ports import Where
from estate.schema import DEAD_LETTERS
from estate.settings import MqttSettings
from estate.stored import select_readings
from ingest.pipeline import PAYLOAD_EXCERPT_CHARS
from ingest.settings import IngestSettings
from launcher.servers import free_port
from tests.hostile import flood
from tests.ingest.load import peak_rss_mb, start_ingest_process

pytestmark = pytest.mark.servers

ESTATE = "abuse"
FLOODS = 100  # of each kind
RSS_LIMIT_MB = 300.0
VICTIM_EVERY_S = 0.05


def report(mqtt: MqttSettings, stop: threading.Event, sent: dict[int, float]) -> None:
    """Another device: a reading every 50 ms until ``stop``, each time and value its own."""
    client = MqttConnection(mqtt, f"victim-{uuid.uuid4().hex[:8]}")
    client.connect()
    topic = f"estate/v1/{ESTATE}/good/m1/telemetry"
    infos = []
    while not stop.is_set():
        time_ms = time.time_ns() // 1_000_000
        infos.append(client.publish(topic, orjson.dumps(
            [{"bt": time_ms / 1000, "n": "power", "u": "kW", "v": float(len(sent))}]), qos=1))
        sent[time_ms] = float(len(sent))
        stop.wait(VICTIM_EVERY_S)
    for info in infos:
        info.wait(120)
    client.close()


def test_a_flood_of_hostile_packs_costs_bounded_memory_and_loses_nothing(
        mqtt_settings: MqttSettings, store: InfluxV1Store, tmp_path: Path,
        ingest_settings: Callable[..., IngestSettings]) -> None:
    # Production settings, except where the test's servers and files are.
    defaults = IngestSettings()
    settings = ingest_settings(http_port=free_port(), batch_size=defaults.batch_size,
                               flush_interval_s=defaults.flush_interval_s,
                               decode_in_process=True,
                               max_queued_bytes=defaults.max_queued_bytes)
    log = tmp_path / "ingest.log"
    worker = start_ingest_process(settings, log)
    try:
        stop = threading.Event()
        sent: dict[int, float] = {}
        victim = threading.Thread(target=report, args=(mqtt_settings, stop, sent), daemon=True)
        victim.start()
        started = time.monotonic()
        flood(mqtt_settings, f"estate/v1/{ESTATE}/evil/m1/telemetry", FLOODS)
        attack_s = time.monotonic() - started

        deadline = time.monotonic() + 300
        while (letters := _dead_letters(store)) < 2 * FLOODS:
            assert time.monotonic() < deadline, f"{letters} dead letters after 300 s"
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        stop.set()
        victim.join(120)
        ingested_s = time.monotonic() - started
        peaks = peak_rss_mb(worker.pid)
        peak = sum(peaks)
        health = httpx.get(f"http://127.0.0.1:{settings.http_port}/health", timeout=10)

        # The other device: every reading stored, with its value.
        deadline = time.monotonic() + 120
        while len(stored := _victim(store)) < len(sent):
            assert time.monotonic() < deadline, f"{len(sent) - len(stored)} readings missing"
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(60)
    print(f"\n{2 * FLOODS} hostile packs sent in {attack_s:.1f} s, all dead-lettered within "
          f"{ingested_s:.1f} s; ingest's peak RSS (parent and children: "
          f"{' + '.join(f'{p:.0f}' for p in peaks)}) {peak:.0f} MB, limit "
          f"{RSS_LIMIT_MB:.0f} MB; {len(sent)} readings of another "
          "device stored, none lost")

    assert peak <= RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"
    assert health.status_code == 200, health.text
    assert stored == sent
    assert worker.returncode == 0, log.read_text()[-3000:]

    # One dead letter per reason per message, with the identity the topic gave, the count
    # of records it stands for, short text, and an excerpt of bounded length.
    rows = store.query(f'SELECT * FROM "{DEAD_LETTERS}"')[0].records()
    assert len(rows) == 2 * FLOODS
    by_reason: dict[str, list[int]] = {}
    for row in rows:
        assert (row["estate"], row["facility"], row["device"]) == (ESTATE, "evil", "m1")
        assert len(row["detail"]) < 500
        assert len(row["payload"]) <= PAYLOAD_EXCERPT_CHARS
        by_reason.setdefault(row["reason"], []).append(row["count"])
    assert by_reason == {"identity-mismatch": [4000] * FLOODS,
                         "unknown-quantity": [1] * FLOODS}


def _dead_letters(store: InfluxV1Store) -> int:
    series = store.query(f'SELECT count("record") FROM "{DEAD_LETTERS}"')
    return int(series[0].values[0][1]) if series else 0


def _victim(store: InfluxV1Store) -> dict[int, float]:
    readings = select_readings(store, where=Where({"estate": ESTATE, "facility": "good"}))
    return {r.time_ms: r.value for r in readings}
