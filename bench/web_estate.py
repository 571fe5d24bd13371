"""bench/web.py's data: a synthetic estate of many facilities, a month of one meter's
readings written straight to InfluxDB and rolled up by the rollup job, the live values
and the meters' ongoing load over MQTT, and a few active alarms in the registry."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection
from dispatch.alarms.model import AlarmTransition
from dispatch.jobs.rollup_levels import HOUR_MS, READING_1H, READING_1M, READING_15M, align_down
from dispatch.jobs.rollups import Rollups, ensure_rollup_policies
from dispatch.registry.alarm_board import record_transitions
from dispatch.registry.db import Registry
from dispatch.settings import RollupSettings
from estate.lineprotocol import reading_line
from estate.readings import Reading
from estate.senml import encode_readings
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId

ESTATE = "bench"
FEEDERS = 10
# The meter whose month is written and rolled up, and the one the pages show.
TREND_METER = ("f0001", "main")
PROBE_METER = ("f0001", "probe")
# A reading every 10 s for the month: 267,840 points, a meter reporting at the demo's pace.
TREND_PERIOD_MS = 10_000
DAY_MS = 24 * HOUR_MS


def facility_id(k: int) -> str:
    return f"f{k:04d}"


def estate_file(directory: Path, facilities: int) -> Path:
    """An estate of ``facilities`` tenants, each with an electricity incomer and a water
    meter (every third a gas meter too) under the estate's grid, well and gas station."""
    tenants = []
    for k in range(1, facilities + 1):
        meters: list[dict[str, Any]] = [
            {"id": "main", "kind": "electricity", "nominal": 50.0, "incomer": True},
            {"id": "water", "kind": "water", "nominal": 1.0}]
        if k % 3 == 0:
            meters.append({"id": "gas", "kind": "gas", "nominal": 2.0})
        if k == 1:
            meters.append({"id": PROBE_METER[1], "kind": "electricity", "nominal": 1.0})
        tenants.append({"id": facility_id(k), "name": f"Tenant {k:04d}", "meters": meters})
    feeders = [f"utilities/feeder-{n:02d}" for n in range(1, FEEDERS + 1)]
    utilities = {"id": "utilities", "name": "Estate utilities", "meters": [
        {"id": "grid", "kind": "electricity", "nominal": 50.0 * facilities},
        *({"id": f.split("/")[1], "kind": "electricity", "nominal": 5.0 * facilities}
          for f in feeders),
        {"id": "well", "kind": "water", "nominal": 1.0 * facilities},
        {"id": "gas-station", "kind": "gas", "nominal": 2.0 * facilities}]}
    ids = [t["id"] for t in tenants]
    gas = [f"{t['id']}/gas" for t in tenants if any(m["id"] == "gas" for m in t["meters"])]
    networks = [
        {"id": "power", "utility": "electricity", "nodes": [
            {"meter": "utilities/grid", "feeds": feeders},
            *({"meter": feeder, "feeds": [f"{i}/main" for i in ids[n::FEEDERS]]}
              for n, feeder in enumerate(feeders))]},
        {"id": "water", "utility": "water", "nodes": [
            {"meter": "utilities/well", "feeds": [f"{i}/water" for i in ids]}]},
        {"id": "gas", "utility": "gas", "nodes": [
            {"meter": "utilities/gas-station", "feeds": gas}]}]
    data = {"id": ESTATE, "name": "Bench estate", "timezone": "Europe/Athens",
            "contracted_capacity_kw": 60.0 * facilities,
            "facilities": [*tenants, utilities], "networks": networks}
    path = directory / "estate.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_month(store: InfluxV1Store, end_ms: int, days: int = 31) -> tuple[int, int, int]:
    """``days`` of readings of the trend meter, straight to InfluxDB; (start, end, count)."""
    start_ms = end_ms - days * DAY_MS
    facility, device = TREND_METER
    batch: list[str] = []
    written = 0
    for t in range(start_ms, end_ms, TREND_PERIOD_MS):
        value = 40.0 + 10.0 * ((t // HOUR_MS) % 24 > 7) + (t // TREND_PERIOD_MS) % 5
        batch.append(reading_line(Reading(ESTATE, facility, device, "power", "", value, t)))
        if len(batch) == 5000:
            store.write_lines(batch)
            written += len(batch)
            batch = []
    if batch:
        store.write_lines(batch)
        written += len(batch)
    return start_ms, end_ms, written


def roll_up(store: InfluxV1Store, start_ms: int, end_ms: int) -> dict[str, float]:
    """The rollup job's levels over the month, as a rollup request would have them
    computed (docs/rollups.md); seconds per level."""
    settings = RollupSettings(max_query_windows=1440, max_age_s=40 * 86400.0)
    ensure_rollup_policies(store, settings.retention_1m, settings.retention_long)
    job = Rollups(store, settings, manage_policies=False)
    first, last = align_down(start_ms, HOUR_MS), align_down(end_ms, HOUR_MS)
    took = {}
    for level in (READING_1M, READING_15M, READING_1H):
        started = time.perf_counter()
        job.recompute(level, first, last)
        took[level.measurement] = time.perf_counter() - started
    return took


def raise_alarms(registry: Registry, facilities: int, every: int = 20) -> int:
    """An active alarm on every ``every``-th facility's incomer."""
    now_ms = time.time_ns() // 1_000_000
    transitions = [AlarmTransition("raise", f"{facility_id(k)}/main", "bench-high", "threshold",
                                   "high", 99.0, "bench alarm", now_ms)
                   for k in range(1, facilities + 1, every)]
    with registry.writing() as session:
        record_transitions(session, ESTATE, transitions)
    return len(transitions)


def meter_messages(facilities: int) -> list[tuple[str, str, str]]:
    """(facility, device, quantity) of every meter the estate reports live."""
    out = [("utilities", "grid", "power"), ("utilities", "well", "water_flow"),
           ("utilities", "gas-station", "gas_flow")]
    for k in range(1, facilities + 1):
        f = facility_id(k)
        out += [(f, "main", "power"), (f, "water", "water_flow")]
        if k % 3 == 0:
            out.append((f, "gas", "gas_flow"))
    return out


def pack(facility: str, device: str, quantity: str, value: float) -> tuple[str, bytes]:
    ident = DeviceId(ESTATE, facility, device)
    reading = Reading(ESTATE, facility, device, quantity, "", value,
                      time.time_ns() // 1_000_000)
    return ident.topic(Channel.TELEMETRY), encode_readings(ident, [reading])


def meter_load(port: int, facilities: int, rate: float, stop: Any, sent: Any) -> None:
    """Every meter reporting in turn at ``rate`` messages/s until ``stop`` is set (a
    process of its own: the web view sees an estate that keeps changing)."""
    meters = meter_messages(facilities)
    client = MqttConnection(MqttSettings(port=port), f"bench-load-{uuid.uuid4().hex[:8]}")
    client.connect()
    started, k = time.monotonic(), 0
    while not stop.is_set():
        facility, device, quantity = meters[k % len(meters)]
        client.publish(*pack(facility, device, quantity, 10.0 + k % 97), qos=0)
        k += 1
        sent.value = k
        delay = started + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    client.close()
