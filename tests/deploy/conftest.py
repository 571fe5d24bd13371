"""The demo's data, made once per session by the real code on the real servers.

Four hours of the sample estate's readings (the backfill writes the lines ingest writes),
the rollup job's levels and consumption over them, a freshness check, the forecast job's
forecasts, a plan made by the plan job and approved (its commands sent through the real
Mosquitto, where no device answers, so they time out), and dead letters from a real ingest
fed bad messages through the broker. The Grafana test queries it; the restore drill backs
it up, wipes and restores it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection
from dispatch.control.approval import approve
from dispatch.control.sender import CommandSender
from dispatch.jobs.freshness import check_freshness
from dispatch.jobs.rollup_levels import LEVELS
from dispatch.jobs.rollups import Rollups, try_rollup_policies
from dispatch.planning.forecasts import ForecastJob, nominal_kw
from dispatch.planning.rolling import PlanJob
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from dispatch.registry.models import CommandRow
from dispatch.registry.plan_store import PlanStore
from dispatch.settings import ForecastSettings, PlanningSettings, RollupSettings
from edge.backfill import backfill
from edge.simulator import EstateSimulator
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings, MqttSettings
from estate.topics import Channel, DeviceId
from ingest.__main__ import run as run_ingest
from ingest.settings import IngestSettings
from launcher.servers import InfluxDB, Mosquitto
from tests.dispatch.registry.conftest import Postgres, postgres

__all__ = ["postgres"]  # the registry tests' PostgreSQL cluster, shared with these

SPEC = load_estate(SAMPLE_ESTATE)
HOUR_MS = 3_600_000
HISTORY_HOURS = 4
# Bad messages a misconfigured meter sends: each is dead-lettered with its own reason.
BAD_PAYLOADS = (b"not json at all",
                b'[{"bn":"demo:textile:main:","n":"power","u":"furlong","v":1}]')
FINAL = ("done", "rejected", "failed", "timed_out")


@dataclass(frozen=True)
class DemoData:
    influx: InfluxSettings
    registry_url: str
    start_ms: int
    end_ms: int
    plan_id: int


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def _dead_letters(mosquitto: Mosquitto, influx: InfluxSettings, spool: Path) -> None:
    mqtt = MqttSettings(host="127.0.0.1", port=mosquitto.port)
    settings = IngestSettings(mqtt=mqtt, influx=influx, client_id=f"demo-{uuid.uuid4().hex[:6]}",
                              spool_dir=spool, http_port=0, batch_size=100,
                              flush_interval_s=0.05)
    stop, ready = threading.Event(), threading.Event()
    worker = threading.Thread(target=run_ingest, args=(settings, stop, ready), daemon=True)
    worker.start()
    assert ready.wait(20), "ingest did not start"
    store = InfluxV1Store(influx)
    try:
        meter = MqttConnection(mqtt, f"meter-{uuid.uuid4().hex[:6]}")
        meter.connect()
        topic = DeviceId(SPEC.id, "textile", "main").topic(Channel.TELEMETRY)
        for payload in BAD_PAYLOADS:
            meter.publish(topic, payload, qos=1).wait(5)
        meter.close()

        def stored() -> bool:
            series = store.query('SELECT count("payload_bytes") FROM "dead_letter" '
                                 'GROUP BY "reason"')
            return len(series) == len(BAD_PAYLOADS)

        _wait(stored, 30, "the dead letters stored")
    finally:
        store.close()
        stop.set()
        worker.join(30)


@pytest.fixture(scope="session")
def demo_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """An InfluxDB of the demo data's own: the restore drill wipes and restores it."""
    server = InfluxDB(tmp_path_factory.mktemp("demo-influxdb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_data(demo_influxdb: InfluxDB, mosquitto: Mosquitto, postgres: Postgres,
              tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    root = tmp_path_factory.mktemp("demo-data")
    influx = InfluxSettings(url=demo_influxdb.url, database="estate")
    store = InfluxV1Store(influx)
    store.ensure_database()
    now_ms = time.time_ns() // 1_000_000
    end_ms = now_ms - now_ms % 60_000
    start_ms = end_ms - end_ms % HOUR_MS - HISTORY_HOURS * HOUR_MS
    backfill(EstateSimulator(SPEC, seed=1), store, start_ms, end_ms, 60_000)
    rollup_settings = RollupSettings()
    try_rollup_policies(store, rollup_settings)
    rollups = Rollups(store, rollup_settings)
    for level in LEVELS:
        rollups.recompute(level, start_ms, end_ms - end_ms % level.window_ms)
    check_freshness(store, SPEC.id, [d for d, _, _ in SPEC.devices()], stale_after_s=300)
    ForecastJob(store, SPEC, ForecastSettings(),
                rollups=rollup_settings).run(now_ms=now_ms)
    _dead_letters(mosquitto, influx, root / "spool")

    # The compose stack's registry: PostgreSQL.
    registry_url = postgres.url(postgres.create_database())
    registry = Registry(registry_url)
    registry.migrate()
    load_estate_into(registry, SPEC)
    connection = MqttConnection(MqttSettings(host="127.0.0.1", port=mosquitto.port),
                                f"demo-dispatch-{uuid.uuid4().hex[:6]}")
    sender = CommandSender(connection, CommandStore(registry), estates=[SPEC.id],
                           actor="dispatch:demo", answer_grace_s=0, sweep_interval_s=0.1)
    sender.start()
    connection.connect()
    try:
        planning = PlanningSettings(time_limit_s=30, command_deadline_s=1)
        job = PlanJob(store, registry, SPEC.id, planning,
                      nominal_kw=nominal_kw(SPEC), rollups=rollup_settings)
        outcome = job.run(now_ms=now_ms)
        assert outcome is not None, "the plan job made no plan"
        plan_id = outcome.saved.id
        approve(PlanStore(registry), sender, plan_id, "ana", now_ms=time.time_ns() // 1_000_000,
                deadline_s=planning.command_deadline_s, estate_id=SPEC.id)

        def settled() -> bool:
            with registry.reading() as session:
                open_ = session.scalar(select(func.count()).select_from(CommandRow).where(
                    CommandRow.status.not_in(FINAL)))
                total = session.scalar(select(func.count()).select_from(CommandRow))
            return bool(total) and open_ == 0

        _wait(settled, 30, "the plan's commands answered or timed out")
    finally:
        sender.close()
        connection.close()
        registry.close()
        store.close()
    return DemoData(influx, registry_url, start_ms, end_ms, plan_id)
