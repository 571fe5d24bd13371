"""Acceptance of flood grouping in the dispatch worker, with real processes and servers:
a synthetic estate of 1,500 meters, whose feeders each supply 40 tenants' incomers; the
simulator cuts feeder 1, which silences it and the 40 meters below it. The worker must
open one incident, naming the feeder, holding every one of those alarms, and close it
when the feeder is back; none of the silenced meters gets an incident of its own."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.registry import outbox
from dispatch.registry.db import Registry
from estate.model import load_estate
from estate.settings import InfluxSettings, MqttSettings
from tests.dispatch.registry.live_room import (
    FAST_RULES,
    Worker,
    fast_estate,
    simulator,
    synthetic_estate_file,
    worker,
)

# Minutes of simulated faults on a quiet machine; a loaded one needs more than the
# suite's five-minute default (a run cut short leaves its processes to teardown).
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

METERS = 1500
FEEDER = "utilities/feeder-1"
OUTAGE = (40, 100)  # seconds from the start
DEADLINE_S = 300
# The flood test needs the deadman and the grouping only.
RULES = [r for r in FAST_RULES if r["id"] == "no-data"]


@pytest.fixture
def flood(tmp_path: Path, mqtt_settings: MqttSettings, influx_settings: InfluxSettings,
          sqlite_url: str, start_ingest: Callable[..., object],
          ) -> Iterator[tuple[Worker, Registry, list[str]]]:
    start_ingest()
    estate_file = fast_estate(tmp_path, synthetic_estate_file(tmp_path, METERS), RULES)
    spec = load_estate(estate_file)
    tree = next(t for t in spec.network_trees() if t.root == FEEDER)
    below = [FEEDER, *tree.children[FEEDER]]
    proc = worker(tmp_path, mqtt_settings, influx_settings, sqlite_url, estate_file)
    sim: subprocess.Popen[bytes] | None = None
    registry = Registry(sqlite_url)
    # The worker is stopped even when it never became active: one left running would
    # outlive the test.
    try:
        proc.start()
        proc.wait_active()
        t0 = datetime.now(UTC)
        sim = simulator(tmp_path, mqtt_settings, estate_file, [
            {"facility": "utilities", "meter": "feeder-1", "kind": "outage",
             "start": t0 + timedelta(seconds=OUTAGE[0]),
             "end": t0 + timedelta(seconds=OUTAGE[1])}], interval_s=4.0)
        yield proc, registry, below
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(30)
        proc.stop()
        registry.close()


def test_a_feeder_outage_silencing_40_meters_opens_one_incident_naming_it(
        flood: tuple[Worker, Registry, list[str]]) -> None:
    proc, registry, below = flood
    assert len(below) == 41  # the feeder and its 40 incomers
    t0 = time.monotonic()
    events: list[outbox.OutboxEvent] = []
    while time.monotonic() - t0 < DEADLINE_S:
        with registry.reading() as session:
            events = outbox.events(session, "synthetic", limit=100_000)
        # Under load another meter may go briefly silent and get (and close) an
        # incident of its own: wait for the one holding the feeder's alarms.
        feeder_steps = {e.subject_id for e in events
                        if e.subject_type == "incident"
                        and any(a.split("#")[0] == FEEDER for a in e.payload.get("alarms", []))}
        if any(e.type == "incident.closed" and e.subject_id in feeder_steps for e in events):
            break
        time.sleep(1)
    silenced = {e.payload["source"] for e in events
                if e.type == "alarm.raised" and e.payload["rule_id"] == "no-data"}
    assert set(below) <= silenced, (sorted(set(below) - silenced), proc.log())
    opened = [e for e in events if e.type == "incident.opened"]
    feeder_incidents = [e for e in opened
                        if any(a.split("#")[0] in below for a in e.payload["alarms"])]
    assert len(feeder_incidents) == 1, [e.payload["title"] for e in opened]
    incident = feeder_incidents[0]
    assert incident.payload["cause"] == FEEDER
    assert incident.payload["origin"].endswith(f":{FEEDER}")
    assert "Feeder 1" in incident.payload["title"] or FEEDER in incident.payload["title"]
    steps = [e for e in events
             if e.subject_type == "incident" and e.subject_id == incident.subject_id]
    attached = {a for e in steps for a in e.payload["alarms"]}
    assert {f"{s}#no-data" for s in below} <= attached
    assert [e.type for e in steps][-1] == "incident.closed"
    assert steps[-1].payload["closed_by"] == "telemetry"
    assert any(e.type == "incident.assigned" and e.payload["crew"] == "electricians"
               for e in steps)
