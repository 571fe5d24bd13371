"""A command the broker refuses, against the demo's own ACL'd Mosquitto: the sender logs in
with an account that may not publish on ``cmd/req`` (ingest's), and the command is
``refused`` at once with the broker's reason, never ``sent`` and then timed out; the web
view's health and the worker's say so (docs/commands.md, section 10)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection
from dispatch.__main__ import build_web
from dispatch.accounts.roles import Role
from dispatch.control.sender import CommandSender
from dispatch.planning.rolling import PlanJob
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.lock import LeaseKeeper, SchedulerLease
from dispatch.settings import DispatchSettings, PlanningSettings
from dispatch.worker_health import worker_readiness
from estate.commands import CommandState
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings
from estate.topics import DeviceId
from tests.conftest import DemoBroker, served
from tests.dispatch.registries import sample_registry
from tests.web_login import add_users, logged_in

pytestmark = pytest.mark.servers

SPEC = load_estate(SAMPLE_ESTATE)
BATTERY = DeviceId(SPEC.id, "utilities", "battery")
# Two minutes, as a plan's setpoints have: a refusal must not wait for it.
DEADLINE_S = 120.0
# The account of a service that reads telemetry only: the ACL lets it publish nothing
# on cmd/req.
NOT_ALLOWED = "ingest"


def _registry(tmp_path: Path) -> tuple[str, Registry]:
    registry = sample_registry(tmp_path)
    return registry.url, registry


def test_the_sender_records_the_brokers_refusal_at_once(demo_broker: DemoBroker,
                                                          tmp_path: Path) -> None:
    _, registry = _registry(tmp_path)
    store = CommandStore(registry)
    connection = MqttConnection(demo_broker.settings(NOT_ALLOWED),
                                f"refused-{uuid.uuid4().hex[:8]}")
    sender = CommandSender(connection, store, estates=[SPEC.id], actor="dispatch:test",
                           sweep_interval_s=0.1)
    sender.start()
    connection.connect()
    try:
        started = time.monotonic()
        command_id = sender.send(BATTERY, "set_battery_kw", {"kw": 10},
                                 requested_by="operator:ana", timeout_s=DEADLINE_S)
        elapsed = time.monotonic() - started
        record = store.get(command_id)
        assert record is not None
        assert record.status is CommandState.REFUSED, record
        assert record.reason == "broker-refused"
        assert "Not authorized" in (record.detail or "")
        assert elapsed < 5, f"the refusal took {elapsed:.1f} s"
        trail = [a.action for a in store.audit(command_id)]
        assert trail == ["command.pending", "command.refused"]
        # Without waiting (an approval's way): the sweeper records it within a round.
        later = sender.send(BATTERY, "set_battery_kw", {"kw": 20},
                            requested_by="operator:ana", timeout_s=DEADLINE_S, wait=False)
        final = sender.wait(later, 10)
        assert final is not None
        assert final.status is CommandState.REFUSED
        report = sender.refusals.report()
        assert report["ok"] is False
        assert report["refused"] == 2
        # The worker's /health tells it beside its readiness.
        keeper = LeaseKeeper(SchedulerLease(registry.engine, "scheduler", "test", 30),
                             lambda: None, lambda: None)
        verdict = worker_readiness(lambda: True, lambda: True, lambda: True, keeper,
                                   lambda: True, sender.refusals.report).verdict()
        assert verdict.details["commands"]["ok"] is False
        assert verdict.details["commands"]["last_refused"]["command_id"] == later
    finally:
        sender.close()
        connection.close()
        registry.close()


def test_an_approval_the_broker_refuses_shows_refused_and_health_says_so(
        demo_broker: DemoBroker, influx_settings: InfluxSettings, store: InfluxV1Store,
        tmp_path: Path) -> None:
    url, registry = _registry(tmp_path)
    outcome = PlanJob(store, registry, SPEC.id,
                      PlanningSettings(time_limit_s=30, command_deadline_s=DEADLINE_S)).run()
    assert outcome is not None
    add_users(registry, ana=Role.OPERATOR)
    parts = build_web(DispatchSettings(mqtt=demo_broker.settings(NOT_ALLOWED),
                                       influx=influx_settings, registry_url=url))
    try:
        assert parts.commands is not None
        assert parts.commands.connection.wait_connected(10)
        with served(parts.app) as web, logged_in(web, "ana") as http:
            assert httpx.get(f"{web}/api/health", timeout=10).json()["commands"]["ok"]
            plan_id = outcome.saved.id
            approved = http.post(f"{web}/api/plans/{plan_id}/approve", json={})
            assert approved.status_code == 200, approved.text
            # Marked at once when the broker refuses; 30 s for a loaded machine.
            deadline = time.monotonic() + 30
            while True:
                commands = http.get(f"{web}/api/plans/{plan_id}/commands").json()["commands"]
                if commands and all(c["status"] == "refused" for c in commands):
                    break
                assert time.monotonic() < deadline, commands
                time.sleep(0.1)
            assert {c["reason"] for c in commands} == {"broker-refused"}
            health = httpx.get(f"{web}/api/health", timeout=10)
            assert health.status_code == 503
            body = health.json()
            assert body["status"] == "degraded"
            assert body["commands"]["ok"] is False
            assert body["commands"]["refused"] == len(commands)
            assert "Not authorized" in body["commands"]["last_refused"]["reason"]
    finally:
        parts.close()
        registry.close()
