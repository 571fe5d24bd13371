"""The web view's health: the supervised services read from the supervisor's status file,
bad status files reported with a reason, and the store pinged at most once per interval."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from adapters.ops_http import OpsServer
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from dispatch.web.service_status import (
    MAX_SERVICES,
    MAX_STATUS_BYTES,
    STORE_PING_TTL_S,
    HealthProbe,
    services_from_status,
)
from estate.errors import StoreUnavailable
from estate.model import SAMPLE_ESTATE, load_estate
from launcher.supervisor import ChildStatus, ServiceChild, Supervisor, write_atomically
from tests.asgi import request
from tests.doubles import InMemoryTimeSeriesStore

KILLED_AT = 1_795_000_000.25


@dataclass
class CountingStore(InMemoryTimeSeriesStore):
    """The in-memory store, counting pings; ``down`` makes it refuse them."""

    pings: int = 0
    down: bool = False

    def ping(self) -> str:
        self.pings += 1
        if self.down:
            raise StoreUnavailable("connection refused")
        return "in-memory"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervisor_document(*children: ChildStatus) -> dict[str, Any]:
    """The supervisor's status as ``launcher.supervisor`` writes it."""
    return {"status": "degraded", "pid": 1, "updated_at": KILLED_AT,
            "children": [asdict(c) for c in children]}


def write_status(path: Path, *children: ChildStatus) -> Path:
    write_atomically(path, orjson.dumps(supervisor_document(*children)))
    return path


def test_services_say_running_restarting_or_stopped_with_restarts_and_last_exit() -> None:
    document = supervisor_document(
        ChildStatus("mosquitto", state="running", pid=10, since=KILLED_AT),
        ChildStatus("influxdb", state="running", pid=11, restarts=1, since=KILLED_AT + 1,
                    last_exit="killed by SIGKILL", last_exit_at=KILLED_AT),
        ChildStatus("ingest", state="down", last_exit="exit code 1", last_exit_at=KILLED_AT,
                    restart_at=KILLED_AT + 0.5),
        ChildStatus("web", state="starting", last_exit="exit code 2", last_exit_at=KILLED_AT),
        ChildStatus("simulator", state="stopped"))
    services = {s["name"]: s for s in services_from_status(document)}
    assert [s["state"] for s in services.values()] == [
        "running", "running", "restarting", "restarting", "stopped"]
    assert services["influxdb"]["restarts"] == 1
    assert services["influxdb"]["last_exit"] == "killed by SIGKILL"
    assert services["influxdb"]["last_exit_ms"] == 1_795_000_000_250
    assert services["ingest"]["restart_ms"] == 1_795_000_000_750
    assert services["mosquitto"]["last_exit"] is None
    assert services["mosquitto"]["last_exit_ms"] is None


def test_health_reports_the_services_of_the_status_file(tmp_path: Path) -> None:
    status = write_status(tmp_path / "supervisor.json",
                          ChildStatus("influxdb", state="running", restarts=2,
                                      last_exit="killed by SIGKILL", last_exit_at=KILLED_AT))
    app = create_app(WebContext(load_estate(SAMPLE_ESTATE), CountingStore(),
                                LiveState("demo"), mqtt_connected=lambda: True,
                                supervisor_status=str(status)))
    answer = request(app, "GET", "/api/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["supervisor"]["ok"] is True
    [influxdb] = body["supervisor"]["services"]
    assert (influxdb["name"], influxdb["state"], influxdb["restarts"],
            influxdb["last_exit"]) == ("influxdb", "running", 2, "killed by SIGKILL")


def test_without_a_supervisor_status_health_has_no_services() -> None:
    app = create_app(WebContext(load_estate(SAMPLE_ESTATE), CountingStore(),
                                LiveState("demo"), mqtt_connected=lambda: False))
    answer = request(app, "GET", "/api/health")
    assert answer.status_code == 503  # the broker is away
    assert answer.json()["mqtt"] == {"ok": False}
    assert "supervisor" not in answer.json()


@pytest.mark.parametrize(("content", "reason"), [
    (None, "unreadable"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "no list of children"),
    (b'{"children": [{"state": "running"}]}', "without a name"),
    (b" " * (MAX_STATUS_BYTES + 1), f"over {MAX_STATUS_BYTES} bytes"),
])
def test_a_bad_status_file_is_reported_with_its_reason(tmp_path: Path, content: bytes | None,
                                                       reason: str) -> None:
    path = tmp_path / "supervisor.json"
    if content is not None:
        path.write_bytes(content)
    ok, body = HealthProbe(CountingStore(), lambda: True, str(path)).report()
    assert ok  # the store and the broker decide whether the view can serve
    assert body["supervisor"]["ok"] is False
    assert reason in body["supervisor"]["error"]
    assert body["supervisor"]["services"] == []


def test_a_status_with_too_many_or_too_long_entries_is_cut(tmp_path: Path) -> None:
    children = [ChildStatus(f"child-{i}-" + "x" * 500, last_exit="y" * 2_000)
                for i in range(MAX_SERVICES + 10)]
    path = write_status(tmp_path / "supervisor.json", *children)
    _, body = HealthProbe(CountingStore(), lambda: True, str(path)).report()
    services = body["supervisor"]["services"]
    assert len(services) == MAX_SERVICES
    assert all(len(s["name"]) < 100 and len(s["last_exit"]) < 200 for s in services)


def test_the_store_is_pinged_once_per_interval_however_many_ask(tmp_path: Path) -> None:
    store, clock = CountingStore(), Clock()
    probe = HealthProbe(store, lambda: True, clock=clock)
    for _ in range(100):
        assert probe.report()[0]
    assert store.pings == 1
    store.down = True
    clock.now += STORE_PING_TTL_S / 2
    assert probe.report()[1]["influxdb"]["ok"] is True  # still the cached answer
    clock.now += STORE_PING_TTL_S / 2
    ok, body = probe.report()
    assert not ok
    assert body["influxdb"] == {"ok": False, "error": "connection refused"}
    assert store.pings == 2


def test_a_changed_status_file_is_read_again_after_its_interval(tmp_path: Path) -> None:
    clock = Clock()
    path = write_status(tmp_path / "supervisor.json", ChildStatus("web", state="running"))
    probe = HealthProbe(CountingStore(), lambda: True, str(path), clock=clock)
    assert probe.report()[1]["supervisor"]["services"][0]["state"] == "running"
    write_status(path, ChildStatus("web", state="down", last_exit="killed by SIGKILL",
                                   last_exit_at=KILLED_AT))
    clock.now += 5
    [web] = probe.report()[1]["supervisor"]["services"]
    assert (web["state"], web["last_exit"]) == ("restarting", "killed by SIGKILL")


@pytest.mark.servers
def test_the_services_are_read_from_a_real_supervisors_endpoint(tmp_path: Path) -> None:
    """A real supervisor runs a child and serves its /status; the child is SIGKILLed."""
    child = ServiceChild("sleeper", ["sleep", "120"], dict(os.environ))
    supervisor = Supervisor([child], status_file=tmp_path / "supervisor.json")
    ops = OpsServer("127.0.0.1", 0, supervisor.health, registry=CollectorRegistry(),
                    extra={"/status": supervisor.status})
    ops.start()
    clock = Clock()
    probe = HealthProbe(CountingStore(), lambda: True,
                        f"http://127.0.0.1:{ops.port}/status", clock=clock)
    try:
        supervisor.start()
        [sleeper] = probe.report()[1]["supervisor"]["services"]
        assert (sleeper["state"], sleeper["restarts"]) == ("running", 0)
        assert child.process is not None
        first = child.process.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            clock.now += 5
            [sleeper] = probe.report()[1]["supervisor"]["services"]
            if sleeper["restarts"] == 1 and sleeper["state"] == "running":
                break
            time.sleep(0.05)
        assert (sleeper["state"], sleeper["restarts"], sleeper["last_exit"]) == (
            "running", 1, "killed by SIGKILL")
        assert child.process.pid != first
    finally:
        supervisor.stop()
        ops.stop()
    clock.now += 5
    gone = probe.report()[1]["supervisor"]  # the endpoint is gone
    assert gone["ok"] is False
    assert "unreachable" in gone["error"]
