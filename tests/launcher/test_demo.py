"""``estate demo`` as a person runs it: start, live values on the page's API, Ctrl-C, again.

The demo's broker takes only its own accounts: the test checks that an anonymous client
is refused while every service (and so every meter's readings) got through.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from adapters.mqtt import MqttConnection
from estate.errors import BrokerError
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import MqttSettings
from launcher.broker_security import load_broker_security, service_username
from launcher.servers import free_port


def demo_ports() -> dict[str, int]:
    ports = {name: free_port()
             for name in ("web", "mqtt", "influx", "ingest", "dispatch", "simulator",
                          "supervisor")}
    # `estate demo` puts InfluxDB's RPC (backup) service on its HTTP port + 2: that port
    # must be free too, or the demo's InfluxDB cannot start (another worker's servers
    # listen on ports picked the same way).
    while not _free(ports["influx"] + 2) or ports["influx"] + 2 in ports.values():
        ports["influx"] = free_port()
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_demo(var: Path, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "launcher", "demo", "--var", str(var),
         "--port", str(ports["web"]), "--mqtt-port", str(ports["mqtt"]),
         "--influx-port", str(ports["influx"]), "--ingest-metrics-port", str(ports["ingest"]),
         "--dispatch-metrics-port", str(ports["dispatch"]),
         "--simulator-metrics-port", str(ports["simulator"]),
         "--supervisor-port", str(ports["supervisor"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def demo_login(url: str, var: Path, username: str = "operator") -> httpx.Client:
    """A client logged in with the demo's own user, whose password it wrote under var/."""
    users = json.loads((var / "web-users.json").read_text())
    client = httpx.Client(base_url=url, timeout=10)
    answer = client.post("/api/session", json={"username": username,
                                               "password": users[username]["password"]})
    assert answer.status_code == 200, answer.text
    client.headers.update({"X-CSRF-Token": answer.json()["csrf_token"], "Origin": url})
    return client


def wait_for_all_meters(url: str, var: Path, meters: int, timeout_s: float
                        ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    live: dict[str, Any] = {}
    client: httpx.Client | None = None
    while time.monotonic() < deadline:
        try:
            # The demo writes its users' file before it starts the web view.
            client = client or demo_login(url, var)
            live = client.get("/api/live", timeout=2).json()
            if len({(v["facility"], v["device"]) for v in live["values"]}) == meters:
                client.close()
                return live
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    # A demo that never answered (or never saw every meter) in time: say so, not KeyError.
    assert live.get("values") is not None, f"no live values from the demo in {timeout_s:.0f} s"
    return live


def _written(port: int) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    line = next(x for x in metrics.splitlines()
                if x.startswith("ingest_readings_written_total "))
    return float(line.split()[1])


def interrupt(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    return process.returncode, out.decode(errors="replace")


@pytest.mark.servers
def test_demo_serves_live_values_stops_cleanly_and_reuses_its_data(tmp_path: Path) -> None:
    ports = demo_ports()
    url = f"http://127.0.0.1:{ports['web']}"
    meters = len(load_estate(SAMPLE_ESTATE).devices())
    var = tmp_path / "var"

    started = time.monotonic()
    first = start_demo(var, ports)
    try:
        live = wait_for_all_meters(url, var, meters, timeout_s=180)
        took = time.monotonic() - started
        assert len({(v["facility"], v["device"]) for v in live["values"]}) == meters
        health = httpx.get(f"{url}/api/health", timeout=5)
        assert health.status_code == 200, health.text
        ingest_health = httpx.get(f"http://127.0.0.1:{ports['ingest']}/health", timeout=5)
        assert ingest_health.status_code == 200, ingest_health.text
        metrics = httpx.get(f"http://127.0.0.1:{ports['ingest']}/metrics", timeout=5).text
        assert "ingest_readings_written_total" in metrics
        # No default account: anonymous is refused; the demo's users are in a 0600 file.
        assert httpx.get(f"{url}/api/live", timeout=5).status_code == 401
        assert (var / "web-users.json").stat().st_mode & 0o777 == 0o600
        operator = demo_login(url, var)
        try:
            page = operator.get("/")
            assert page.status_code == 200
            assert "Estate Dispatch" in page.text
            assert operator.get("/api/session").json()["user"]["role"] == "operator"
        finally:
            operator.close()
        print(f"all {meters} meters live on the API {took:.1f} s after start")
        broker = MqttSettings(host="127.0.0.1", port=ports["mqtt"])
        with pytest.raises(BrokerError, match="refused"):
            MqttConnection(broker, "test-anonymous").connect(timeout_s=10)
        security = load_broker_security(var / "broker")
        assert security is not None, "the demo wrote its broker accounts under var/broker"
        web = service_username(load_estate(SAMPLE_ESTATE).id, "web")
        with pytest.raises(BrokerError, match="refused"):
            MqttConnection(broker.model_copy(update={
                "username": web, "password": SecretStr("wrong")}), "test-wrong").connect(
                    timeout_s=10)
        account = MqttConnection(broker.model_copy(update={
            "username": web, "password": SecretStr(security.password(web))}), "test-web")
        account.connect(timeout_s=10)
        account.close()
        passwd = security.password_file.read_bytes()
        # Some readings stored, so the second run has a first run's to find.
        deadline = time.monotonic() + 60
        while _written(ports["ingest"]) < meters:
            assert time.monotonic() < deadline, "ingest stored nothing"
            time.sleep(0.25)
        first_run_end = datetime.now(UTC)
    finally:
        code, output = interrupt(first)
    assert code == 0, output[-3000:]
    assert "demo stopped" in output
    assert "broker accounts written to" in output
    assert "Traceback" not in output, output[-3000:]

    second = start_demo(var, ports)
    try:
        wait_for_all_meters(url, var, meters, timeout_s=180)
        admin = demo_login(url, var, "admin")
        try:
            stored = admin.get("/api/readings", params={
                "start": datetime.fromtimestamp(first_run_end.timestamp() - 600,
                                                UTC).isoformat(),
                "end": first_run_end.isoformat()}).json()
        finally:
            admin.close()
        assert stored["count"] > 0, "the second run did not find the first run's readings"
    finally:
        code, output = interrupt(second)
    assert code == 0, output[-3000:]
    assert "broker accounts written to" not in output
    assert "web view users" not in output, "the second run kept the demo's users"
    assert security.password_file.read_bytes() == passwd, "the second run kept the accounts"
