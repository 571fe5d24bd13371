"""A known set of readings to publish in fault tests, and the check that it arrived."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection, Session
from adapters.ops_http import wait_healthy
from estate.ports import TimeRange, Where
from estate.readings import Reading
from estate.senml import encode_readings
from estate.settings import MqttSettings
from estate.stored import count_readings, select_readings
from estate.topics import Channel, DeviceId
from ingest.settings import IngestSettings

ESTATE = "faults"


@dataclass
class KnownLoad:
    """``messages`` SenML packs of ``per_message`` readings each, every value distinct."""

    devices: int = 100
    messages: int = 2_000
    per_message: int = 10
    start_ms: int = field(default_factory=lambda: (time.time_ns() // 1_000_000 // 1000 - 3600)
                          * 1000)

    @property
    def readings(self) -> int:
        return self.messages * self.per_message

    def message(self, k: int) -> tuple[DeviceId, list[Reading]]:
        index = k % self.devices
        device = DeviceId(ESTATE, f"f{index % 4}", f"m{index:04d}")
        round_ = k // self.devices
        readings = [
            Reading(ESTATE, device.facility, device.device, "power", "",
                    float(index * 1_000 + round_ * self.per_message + j) + 0.25,
                    self.start_ms + (round_ * self.per_message + j) * 1000)
            for j in range(self.per_message)
        ]
        return device, readings

    def expected(self) -> dict[tuple[str, int], float]:
        return {(r.device, r.time_ms): r.value
                for k in range(self.messages) for r in self.message(k)[1]}

    def publish(self, mqtt: MqttSettings, rate_per_s: float,
                progress: threading.Event | None = None, at_share: float = 0.3) -> None:
        """Publish everything at about ``rate_per_s`` messages a second, then wait for every
        PUBACK; ``progress`` is set once ``at_share`` of the messages went out."""
        client = MqttConnection(mqtt, f"load-{uuid.uuid4().hex[:8]}",
                                session=Session(clean_start=False, expiry_s=600))
        client.connect()
        infos = []
        started = time.monotonic()
        for k in range(self.messages):
            device, readings = self.message(k)
            infos.append(client.publish(device.topic(Channel.TELEMETRY),
                                        encode_readings(device, readings), qos=1))
            if progress is not None and k >= at_share * self.messages:
                progress.set()
            delay = started + (k + 1) / rate_per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for delivery in infos:
            assert delivery.wait(120), "the broker never acknowledged a publication"
        client.close()


def stored(store: InfluxV1Store, load: KnownLoad) -> dict[tuple[str, int], float]:
    readings = select_readings(store, span=TimeRange(load.start_ms),
                               where=Where({"estate": ESTATE}))
    return {(r.device, r.time_ms): r.value for r in readings}


def count(store: InfluxV1Store) -> int:
    return count_readings(store, where=Where({"estate": ESTATE}))


def wait_for_count(store: InfluxV1Store, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        try:
            n = count(store)
        except Exception:  # the store may be the very thing that is down
            n = -1
        if n >= expected:
            return n
        time.sleep(0.5)
    return n


def start_ingest_process(settings: IngestSettings, log: Path,
                         ready_within_s: float = 120.0) -> subprocess.Popen[bytes]:
    """Run ``python -m ingest`` as a separate process configured through its environment,
    and wait until its ``/health`` says it is ready (connected and subscribed: what is
    published from then on reaches it). ``settings.http_port`` must be a port of its own.

    The wait ends as soon as it is ready; its bound is for a machine under load."""
    assert settings.http_port, "readiness is read from /health: give the worker a port"
    worker = _spawn(settings, log)
    health = wait_healthy(f"http://127.0.0.1:{settings.http_port}/health", ready_within_s)
    if health is None:
        worker.kill()
        worker.wait(10)
        raise AssertionError(f"ingest not ready within {ready_within_s} s:\n"
                             f"{log.read_text()[-3000:]}")
    return worker


def _spawn(settings: IngestSettings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "INGEST_MQTT__HOST": settings.mqtt.host, "INGEST_MQTT__PORT": str(settings.mqtt.port),
        "INGEST_INFLUX__URL": settings.influx.url,
        "INGEST_INFLUX__DATABASE": settings.influx.database,
        "INGEST_CLIENT_ID": settings.client_id, "INGEST_SHARE_GROUP": settings.share_group,
        "INGEST_SPOOL_DIR": str(settings.spool_dir), "INGEST_HTTP_PORT": str(settings.http_port),
        "INGEST_BATCH_SIZE": str(settings.batch_size),
        "INGEST_FLUSH_INTERVAL_S": str(settings.flush_interval_s),
        "INGEST_DECODE_IN_PROCESS": str(settings.decode_in_process).lower(),
        "INGEST_MAX_QUEUED_BYTES": str(settings.max_queued_bytes),
        "INGEST_MAX_FIELDS_PER_DEVICE": str(settings.max_fields_per_device),
    })
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "ingest"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def family(pid: int) -> list[int]:
    """A process and its children (ingest's decoding process), recursively."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            pids += family(int(child))
    return pids


def peak_rss_mb(pid: int) -> list[float]:
    """The peak resident memory of a process and of each of its children; their sum is an
    upper bound of their peak together (each peaked at some moment, perhaps not the same)."""
    peaks = []
    for member in family(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks
