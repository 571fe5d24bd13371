"""Failover of the control room's processes, against the real Mosquitto, InfluxDB and a
registry on SQLite and on PostgreSQL, each process a real ``python -m dispatch``:

- a worker paused (SIGSTOP) between its solve and saving the plan, past its lease, while
  another worker takes over, then resumed (SIGCONT), saves nothing and sends nothing;
- a web view killed (SIGKILL) right after an approval's commit, then started again, ends
  with every command of that step delivered once: once on the broker, once at the device.

The pause and the kill happen at named points of the code (``estate.fault_points``), so they
land where the test needs them whatever the machine's load; every wait is on a signal (a
process state, ``/health``, a metric, a registry row), never a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select, update

from adapters.mqtt import InboundMessage, MqttConnection
from adapters.ops_http import wait_healthy
from dispatch.accounts.roles import Role
from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from dispatch.registry.models import AssetRow, AuditRow, CommandRow, LeaseRow
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.records import PlanDraft
from edge.command_executors import SimulatedAssetExecutor, SimulatedBattery, SimulatedGenset
from edge.command_handler import CommandHandler, CommandTarget
from estate.commands import CommandPolicy, CommandRequest, decode_request
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings, MqttSettings
from estate.topics import Channel, DeviceId, subscription
from launcher.servers import free_port
from tests.dispatch.registry.conftest import Postgres, postgres  # noqa: F401
from tests.web_login import add_users, logged_in

SPEC = load_estate(SAMPLE_ESTATE)
BATTERY = DeviceId(SPEC.id, "utilities", "battery")
GENSET = DeviceId(SPEC.id, "utilities", "genset")
ROOT = Path(__file__).resolve().parents[2]
# Generous for a loaded machine: every wait ends as soon as its signal comes.
WAIT_S = 120.0
T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.url(pg.create_database())


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    registry = Registry(registry_url)
    registry.migrate()
    load_estate_into(registry, SPEC)
    yield registry
    registry.close()


def _wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.05)


class Dispatch:
    """A ``python -m dispatch worker|web`` process with its log in a file."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        self.role, self.log = role, log
        self._out = log.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "dispatch", role], cwd=ROOT,
                                        env=env, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self) -> str:
        """The process's state letter (``T``: stopped), from /proc."""
        assert self.process.poll() is None, f"{self.role} exited:\n{self.text()[-3000:]}"
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._out.close()


def _env(mqtt: MqttSettings, influx: InfluxSettings, registry_url: str,
         **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISPATCH_", "ESTATE_FAULT"))}
    env |= {"DISPATCH_MQTT__HOST": mqtt.host, "DISPATCH_MQTT__PORT": str(mqtt.port),
            "DISPATCH_INFLUX__URL": influx.url, "DISPATCH_INFLUX__DATABASE": influx.database,
            "DISPATCH_REGISTRY_URL": registry_url, "DISPATCH_REGISTRY_LOAD_ESTATE": "false",
            "PYTHONUNBUFFERED": "1", **extra}
    return env


class BrokerCount:
    """Every command request published for the estate, counted by command id."""

    def __init__(self, mqtt: MqttSettings) -> None:
        self.seen: Counter[str] = Counter()
        self.markers: set[str] = set()
        self._lock = threading.Lock()
        self.connection = MqttConnection(mqtt, f"count-{uuid.uuid4().hex[:8]}")
        self.connection.subscribe(subscription(Channel.COMMAND_REQUEST, SPEC.id), self._on)
        self.connection.connect()
        assert self.connection.wait_subscribed(30), "the counter's subscription"

    def _on(self, message: InboundMessage) -> None:
        request = decode_request(message.payload)
        with self._lock:
            if request.issued_by == "test:marker":
                self.markers.add(request.id)
            else:
                self.seen[request.id] += 1

    def settle(self, mqtt: MqttSettings) -> None:
        """Return once a marker published now has come through: whatever the broker took
        before it has been counted."""
        marker = str(uuid.uuid4())
        sender = MqttConnection(mqtt, f"marker-{uuid.uuid4().hex[:8]}")
        sender.connect()
        ghost = DeviceId(SPEC.id, "nowhere", "marker")
        request = CommandRequest(marker, "stop", {}, 2_000_000_000_000, "test:marker")
        assert sender.publish(ghost.topic(Channel.COMMAND_REQUEST), request.encode()).wait(30)
        sender.close()
        _wait_for("the marker", lambda: marker in self.markers)

    def close(self) -> None:
        self.connection.close()


def _metric(url: str, name: str) -> float | None:
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _plan_tokens(registry: Registry) -> list[int | None]:
    with registry.reading() as session:
        return [r.detail.get("lease_token") for r in session.scalars(
            select(AuditRow).where(AuditRow.subject_type == "plan", AuditRow.actor == "dispatch"))]


def _commands(registry: Registry) -> list[CommandRow]:
    with registry.reading() as session:
        return list(session.scalars(select(CommandRow).order_by(CommandRow.created_at,
                                                                CommandRow.position)))


@pytest.mark.parametrize("registry_url", ["postgresql"], indirect=True)
def test_a_worker_paused_past_its_lease_saves_and_sends_nothing(
        registry: Registry, registry_url: str, mqtt_settings: MqttSettings,
        influx_settings: InfluxSettings, tmp_path: Path) -> None:
    """On PostgreSQL only. On SQLite the paused worker was found, in about one run of
    five, holding the file's WAL write lock while stopped (/proc/locks: byte 120 of the
    -shm file), so no other process could write, take the lease over included, until it
    was resumed: SQLite's one writer is the whole registry. The fence itself is proven on
    SQLite by tests/dispatch/registry/test_fencing.py and
    tests/dispatch/planning/test_fenced_plan.py."""
    with registry.writing() as session:  # each plan commands the battery at once
        session.execute(update(AssetRow).where(AssetRow.id == "battery")
                        .values(control_mode="auto"))
    counted = BrokerCount(mqtt_settings)
    # A 2 s lease, renewed every 0.7 s; a plan every 2 s over 2 hours: quick solves.
    base = _env(mqtt_settings, influx_settings, registry_url,
                DISPATCH_SCHEDULER_LEASE_TTL_S="2", DISPATCH_PLANNING__EVERY_S="2",
                DISPATCH_PLANNING__HORIZON_STEPS="8", DISPATCH_PLANNING__TIME_LIMIT_S="20")
    ports = {"a": free_port(), "b": free_port()}
    first = Dispatch("worker", base | {"DISPATCH_HTTP_PORT": str(ports["a"]),
                                       "ESTATE_FAULT_POINT": "plan-solved:stop"},
                     tmp_path / "worker-a.log")
    second: Dispatch | None = None
    try:
        # a holds the lease, plans, and stops itself between its solve and saving.
        _wait_for("worker a to stop after its solve", lambda: first.state() == "T")
        with registry.reading() as session:
            lease = session.scalar(select(LeaseRow))
            assert lease is not None
            assert (lease.holder.split(":")[1], lease.token) == (str(first.pid), 1)
        assert _plan_tokens(registry) == [], "a has saved nothing yet"
        second = Dispatch("worker", base | {"DISPATCH_HTTP_PORT": str(ports["b"])},
                          tmp_path / "worker-b.log")
        assert wait_healthy(f"http://127.0.0.1:{ports['b']}/health", WAIT_S) is not None
        # b takes the lease over once a's has expired, plans and commands the battery.
        _wait_for("b's plan and its command delivered", lambda: any(
            c.status != "pending" for c in _commands(registry)) and 2 in _plan_tokens(registry))
        with registry.reading() as session:
            lease = session.scalar(select(LeaseRow))
            assert lease is not None
            assert (lease.holder.split(":")[1], lease.token) == (str(second.pid), 2)

        first.process.send_signal(signal.SIGCONT)
        deposed = f"http://127.0.0.1:{ports['a']}/metrics"
        # At least once: a run that started before a's keeper saw the loss is refused too.
        _wait_for("a to find itself deposed", lambda: (_metric(
            deposed, "dispatch_scheduler_deposed_total") or 0) >= 1)
        assert _metric(deposed, "dispatch_scheduler_lease_held") == 0.0
        first.stop()  # a first: b's stop releases the lease, which a would take
        second.stop()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    counted.settle(mqtt_settings)
    counted.close()

    assert "not saved" in first.text(), first.text()[-3000:]
    tokens = _plan_tokens(registry)
    assert tokens, "b saved plans"
    assert set(tokens) == {2}, f"a plan saved under a's token: {tokens}"
    commands = _commands(registry)
    assert commands, "b's plans commanded the battery"
    with registry.reading() as session:
        plan_ids = {int(r.subject_id) for r in session.scalars(
            select(AuditRow).where(AuditRow.subject_type == "plan"))}
    assert {c.plan_id for c in commands} <= plan_ids
    # Nothing on the broker but b's commands, each once.
    assert set(counted.seen) <= {c.id for c in commands}
    assert set(counted.seen.values()) == {1}, counted.seen


class CountingExecutor(SimulatedAssetExecutor):
    """The simulated assets, counting what each device carried out, by command id."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.executed: Counter[str] = Counter()

    def execute(self, device: DeviceId, command: CommandRequest) -> Any:
        self.executed[command.id] += 1
        return super().execute(device, command)


def _devices(mqtt: MqttSettings, log_dir: Path) -> tuple[CountingExecutor, Callable[[], None]]:
    simulated = CountingExecutor({BATTERY: SimulatedBattery(max_kw=500, soc_pct=50),
                                  GENSET: SimulatedGenset(max_kw=400)})
    handler = CommandHandler([
        CommandTarget(BATTERY, CommandPolicy.from_mapping(
            {"set_battery_kw": {"kw": {"min": -500, "max": 500}}}), simulated),
        CommandTarget(GENSET, CommandPolicy.from_mapping(
            {"start": {}, "stop": {}, "set_power_kw": {"kw": {"min": 0, "max": 400}}}),
            simulated)], log_dir / "edge_commands.sqlite")
    edge = MqttConnection(mqtt, f"edge-{uuid.uuid4().hex[:8]}")
    edge.connect()
    handler.start(edge)
    assert edge.wait_subscribed(30), "the devices' subscriptions"

    def stop() -> None:
        handler.stop()
        edge.close()

    return simulated, stop


def _draft(start: datetime) -> PlanDraft:
    return PlanDraft(
        estate_id=SPEC.id, horizon_start=start, horizon_end=start + timedelta(hours=1),
        step_minutes=15, auto=False, solver_status="optimal", mip_gap=0.0, objective=1.0,
        cost=90.0, baseline_cost=100.0, peak_kw=900.0, baseline_peak_kw=1000.0,
        explanation="", setpoints={"battery": [-120.0, 0.0, 0.0, 0.0],
                                   "genset": [300.0, 300.0, 0.0, 0.0],
                                   "metal-roof-pv": [10.0, 20.0, 30.0, 40.0]},
        summary={"currency": "EUR"})


def test_a_web_view_killed_after_an_approvals_commit_delivers_every_command_once(
        registry: Registry, registry_url: str, mqtt_settings: MqttSettings,
        influx_settings: InfluxSettings, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    plan = PlanStore(registry).save(_draft(now), "schedule", now)
    add_users(registry, ana=Role.OPERATOR)
    devices, stop_devices = _devices(mqtt_settings, tmp_path)
    counted = BrokerCount(mqtt_settings)
    port = free_port()
    # A short claim: the restarted view takes the dead one's commands over 2 s after it.
    base = _env(mqtt_settings, influx_settings, registry_url, DISPATCH_WEB__PORT=str(port),
                DISPATCH_COMMAND_CLAIM_S="2", DISPATCH_HTTP_PORT="0")
    url = f"http://127.0.0.1:{port}"
    killed = Dispatch("web", base | {"ESTATE_FAULT_POINT": "approval-committed:kill"},
                      tmp_path / "web-1.log")
    restarted: Dispatch | None = None
    try:
        assert wait_healthy(f"{url}/api/health", WAIT_S) is not None, killed.text()[-2000:]
        with logged_in(url, "ana") as http, pytest.raises(httpx.HTTPError):
            http.post(f"/api/plans/{plan.id}/approve", json={}, timeout=60)
        assert killed.process.wait(60) == -signal.SIGKILL
        # Committed with the approval: its step's commands, pending, claimed by the dead view.
        commands = _commands(registry)
        assert [(c.asset_id, c.action, c.position, c.status) for c in commands] == [
            ("battery", "set_battery_kw", 0, "pending"), ("genset", "start", 1, "pending"),
            ("genset", "set_power_kw", 2, "pending")]
        assert all((c.claimed_by or "").startswith("dispatch:web:") for c in commands)

        restarted = Dispatch("web", base, tmp_path / "web-2.log")
        assert wait_healthy(f"{url}/api/health", WAIT_S) is not None
        ids = [c.id for c in commands]
        _wait_for("every command of the step done", lambda: [
            c.status for c in _commands(registry)] == ["done"] * 3)
        # Approving again sends nothing new.
        with logged_in(url, "ana") as http:
            again = http.post(f"/api/plans/{plan.id}/approve", json={}, timeout=60)
        assert again.status_code == 200, again.text
        assert (again.json()["already_approved"], again.json()["commands"]) == (True, ids)
        restarted.stop()
    finally:
        killed.stop()
        if restarted is not None:
            restarted.stop()
        counted.settle(mqtt_settings)
        counted.close()
        stop_devices()
    assert counted.seen == dict.fromkeys(ids, 1), "each command once on the broker"
    assert devices.executed == dict.fromkeys(ids, 1), "each command once at the device"
    genset = devices.asset(GENSET)
    assert isinstance(genset, SimulatedGenset)
    # Started before it was given its setpoint: delivered in the order decided.
    assert (genset.running, genset.setpoint_kw) == (True, 300.0)
    battery = devices.asset(BATTERY)
    assert isinstance(battery, SimulatedBattery)
    assert battery.setpoint_kw == -120.0
