"""The restore drill of docs/backup.md, performed: back up the demo's InfluxDB and its
PostgreSQL registry with `estate backup`, wipe both (InfluxDB's data directory deleted, the
registry's database dropped and made empty), restore with `estate restore`, and find the
same readings, rollups, forecasts, plans, commands and audit log as before. The same for a
registry on SQLite, which the demo uses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import MetaData, create_engine, func, select
from sqlalchemy.engine import make_url

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.registry.db import Registry, make_engine, upgrade
from dispatch.registry.loader import load_estate_into
from dispatch.registry.models import AuditRow, CommandRow, PlanRow
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings
from launcher.servers import InfluxDB
from tests.deploy.conftest import DemoData

MEASUREMENTS = ("reading", "dead_letter", "freshness_check", "rollup_1m.reading_1m",
                "rollup_long.reading_15m", "rollup_long.reading_1h",
                "rollup_long.consumption_15m", "rollup_long.consumption_1h",
                "rollup_long.forecast", "rollup_long.plan", "rollup_long.rollup_watermark")


def series_snapshot(influx: InfluxSettings) -> dict[str, Any]:
    """Every point of every measurement the demo wrote, and the retention policies."""
    store = InfluxV1Store(influx)
    try:
        snapshot: dict[str, Any] = {}
        for name in MEASUREMENTS:
            policy, _, measurement = name.rpartition(".")
            source = f'"{policy}"."{measurement}"' if policy else f'"{measurement}"'
            snapshot[name] = sorted(
                (s.name, tuple(sorted(s.tags.items())), tuple(map(tuple, s.values)))
                for s in store.query(f"SELECT * FROM {source} GROUP BY *"))
        snapshot["policies"] = [tuple(r) for s in store.query(
            f'SHOW RETENTION POLICIES ON "{influx.database}"') for r in s.values]
    finally:
        store.close()
    return snapshot


def registry_snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the registry, ordered by primary key."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(
                        select(table).order_by(*table.primary_key.columns))]
                    for name, table in meta.tables.items()}
    finally:
        engine.dispose()


def estate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher", *args], capture_output=True,
                          text=True, timeout=600, check=False)


def test_backup_wipe_and_restore_of_influxdb_and_the_postgres_registry(
        demo_data: DemoData, demo_influxdb: InfluxDB, tmp_path: Path) -> None:
    before_series = series_snapshot(demo_data.influx)
    before_registry = registry_snapshot(demo_data.registry_url)
    points = sum(len(s[2]) for k, v in before_series.items() if k != "policies" for s in v)
    readings = sum(len(s[2]) for s in before_series["reading"])
    counts = {t: len(before_registry[t]) for t in (PlanRow.__tablename__, CommandRow.__tablename__,
                                                    AuditRow.__tablename__)}
    assert readings
    assert before_series["rollup_long.plan"]
    assert all(counts.values()), counts

    rpc = f"127.0.0.1:{demo_influxdb.rpc_port}"
    backup = tmp_path / "backup"
    made = estate("backup", str(backup), "--influx-rpc", rpc, "--influx-database",
                  demo_data.influx.database, "--registry-url", demo_data.registry_url)
    assert made.returncode == 0, made.stdout + made.stderr

    # Wipe: InfluxDB's data gone (a new, empty server on the same directory), and the
    # registry's database dropped and made again, empty.
    demo_influxdb.stop()
    for part in ("meta", "data", "wal"):
        shutil.rmtree(demo_influxdb.data_dir / part, ignore_errors=True)
    demo_influxdb.start()
    store = InfluxV1Store(demo_data.influx)
    databases = [r[0] for s in store.query("SHOW DATABASES") for r in s.values]
    store.close()
    assert demo_data.influx.database not in databases, "the wipe left the database"
    url = make_url(demo_data.registry_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{url.database}"')
    assert registry_snapshot(demo_data.registry_url) == {}

    restored = estate("restore", str(backup), "--influx-rpc", rpc, "--registry-url",
                      demo_data.registry_url)
    assert restored.returncode == 0, restored.stdout + restored.stderr

    assert series_snapshot(demo_data.influx) == before_series
    assert registry_snapshot(demo_data.registry_url) == before_registry
    print(f"restored {points:,} points ({readings:,} readings points) and "
          + ", ".join(f"{n} {t}" for t, n in counts.items()))


def test_backup_and_restore_of_a_sqlite_registry_and_a_restore_under_a_new_name(
        demo_data: DemoData, demo_influxdb: InfluxDB, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    load_estate_into(Registry(engine), load_estate(SAMPLE_ESTATE))
    engine.dispose()
    before = registry_snapshot(url)
    assert before["facilities"]
    rpc = f"127.0.0.1:{demo_influxdb.rpc_port}"
    made = estate("backup", str(tmp_path / "b"), "--influx-rpc", rpc, "--influx-database",
                  demo_data.influx.database, "--registry-url", url)
    assert made.returncode == 0, made.stdout + made.stderr
    (tmp_path / "registry.sqlite").unlink()

    # The time series beside the live database (it exists: a plain restore is refused).
    refused = estate("restore", str(tmp_path / "b"), "--influx-rpc", rpc,
                     "--registry-url", url)
    assert refused.returncode != 0
    restored = estate("restore", str(tmp_path / "b"), "--influx-rpc", rpc, "--new-database",
                      "estate_restored", "--registry-url", url)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert registry_snapshot(url) == before
    copy = demo_data.influx.model_copy(update={"database": "estate_restored"})
    store, live = InfluxV1Store(copy), InfluxV1Store(demo_data.influx)
    try:
        count = store.query("SELECT count(power) FROM reading")[0].values[0][1]
        assert count == live.query("SELECT count(power) FROM reading")[0].values[0][1]
        store.query('DROP DATABASE "estate_restored"')
    finally:
        store.close()
        live.close()
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PlanRow)) == 0
    engine.dispose()
