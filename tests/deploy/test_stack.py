"""Every service of docker-compose.yml, run outside a container against real servers.

No container engine runs here. So each service's own command line, environment and health
check, read from the resolved compose file, are run on this machine: the setup service's
`estate stack-secrets` writes the secrets; the real Mosquitto 2.0.11 runs
deploy/mosquitto/mosquitto.conf (TLS only, accounts and ACL from those secrets); the real
InfluxDB 1.6 runs deploy/influxdb/influxdb.conf; a real PostgreSQL 15 is made as the
postgres image makes it (user estate, database registry, the secret password); ingest,
the dispatch worker, the web view, the simulator and the Modbus gateway run their
subcommands with their environment, `X_SECRET_FILE` secrets included; Prometheus runs
deploy/prometheus/prometheus.yml. What a container would differ in is swapped, and only
that: container paths for local ones, service names for loopback, ports for free ones.
Each health check then runs as compose would run it, and must pass (or fail, once the
server behind it is stopped).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from sqlalchemy import func, select

from dispatch.registry.db import make_engine
from dispatch.registry.models import FacilityRow, LeaseRow
from dispatch.settings import DispatchSettings
from launcher.servers import InfluxDB, Mosquitto, free_port
from tests.deploy.test_compose import COMPOSE_FILE, ROOT, resolved_services, service_env

# Every test runs the compose stack's servers and services on this machine.
pytestmark = pytest.mark.servers

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Generous for a loaded machine: a service's health check turns green within seconds here.
HEALTHY_WITHIN_S = 60.0


def as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class ConfiguredInfluxDB(InfluxDB):
    """influxd with a given configuration text."""

    def __init__(self, data_dir: Path, config: str, http_port: int) -> None:
        super().__init__(data_dir, http_port=http_port)
        self._config = config

    def argv(self) -> list[str]:
        binary = super().argv()[0]
        path = self.data_dir / "influxdb.conf"
        path.write_text(self._config, encoding="utf-8")
        return [binary, "run", "-config", str(path)]


class ConfiguredMosquitto(Mosquitto):
    """Mosquitto with a given configuration text (as the current user)."""

    def __init__(self, data_dir: Path, config: str, port: int) -> None:
        super().__init__(data_dir, port=port)
        self._config = f"user {os.environ.get('USER') or 'root'}\n{config}"

    def argv(self) -> list[str]:
        binary = super().argv()[0]
        self.config_path.write_text(self._config, encoding="utf-8")
        return [binary, "-c", str(self.config_path)]


@dataclass
class Stack:
    root: Path
    services: dict[str, dict[str, Any]]
    secrets: dict[str, Path]
    ports: dict[int, int]
    mosquitto: Mosquitto
    influxdb: InfluxDB
    pg_password: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # --- what a container differs in ---------------------------------------------------

    def swap(self, text: str) -> str:
        """A value or command of the compose file as it must read on this machine."""
        for name, path in self.secrets.items():
            text = text.replace(f"/run/secrets/{name}", str(path))
        text = text.replace("/var/lib/estate/", f"{self.root}/state/")
        text = text.replace("/etc/estate/meters.yaml", str(self.root / "meters.yaml"))
        text = re.sub(r"\bhttp://influxdb:8086", f"http://127.0.0.1:{self.ports[8086]}", text)
        text = re.sub(r"\bhttp://localhost:8086", f"http://localhost:{self.ports[8086]}", text)
        for container, local in self.ports.items():
            text = re.sub(rf"(127\.0\.0\.1|localhost):{container}\b", rf"\g<1>:{local}", text)
            text = re.sub(rf"-p {container}\b", f"-p {local}", text)
            text = re.sub(rf"^{container}$", str(local), text)
        return text

    def environment(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INGEST_", "EDGE_", "GATEWAY_", "DISPATCH_"))}
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin"
        for var, value in service_env(self.services[name]).items():
            # The broker's certificate names mosquitto and localhost: the services dial
            # localhost here, and the name is checked as it would be.
            env[var] = "localhost" if value == "mosquitto" else self.swap(value)
        return env

    # --- running a service and its health check -------------------------------------------

    def start(self, name: str) -> subprocess.Popen[bytes]:
        command = self.services[name]["command"]
        argv = command.split() if isinstance(command, str) else list(command)
        with (self.root / f"{name}.log").open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "launcher", *argv],
                                       env=self.environment(name), stdout=log,
                                       stderr=subprocess.STDOUT, cwd=self.root)
        self.processes[name] = process
        return process

    def healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        test = self.services[name]["healthcheck"]["test"]
        if test[0] == "CMD-SHELL":
            argv = ["sh", "-c", self.swap(test[1])]
        else:
            argv = [self.swap(a) for a in test[1:]]
            if argv[0] == "python":
                argv[0] = sys.executable
            if argv[0] == "pg_isready":
                argv += ["-p", str(self.ports[5432])]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                              env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin"})

    def wait_healthy(self, name: str) -> float:
        started = time.monotonic()
        result = self.healthcheck(name)
        while result.returncode != 0:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            if time.monotonic() - started > HEALTHY_WITHIN_S:
                pytest.fail(f"{name} not healthy within {HEALTHY_WITHIN_S} s: "
                            f"{result.stdout}{result.stderr}\n{self.log(name)}")
            time.sleep(0.5)
            result = self.healthcheck(name)
        return time.monotonic() - started

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def start_postgres(root: Path, password_file: Path, port: int) -> Path:
    """A cluster as the postgres image makes one from POSTGRES_USER, POSTGRES_DB and
    POSTGRES_PASSWORD_FILE: that superuser, that database, password authentication."""
    pg = Path(tempfile.mkdtemp(prefix="stack-pg-"))
    pw = pg / "pwfile"
    shutil.copy(password_file, pw)
    if os.geteuid() == 0:
        for path in (pg, pw):
            shutil.chown(path, "postgres", "postgres")
    subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(pg / "data"), "-U", "estate",
                                f"--pwfile={pw}", "-A", "scram-sha-256", "--no-sync"]),
                   check=True, capture_output=True)
    subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pg / "data"), "-l",
                                str(pg / "log"), "-w", "start", "-o",
                                f"-p {port} -k {pg} -c listen_addresses=127.0.0.1 "
                                "-c fsync=off"]), check=True, capture_output=True)
    password = password_file.read_text().strip()
    with psycopg.connect(host="127.0.0.1", port=port, user="estate", password=password,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute('CREATE DATABASE "registry"')
    return pg


def stop_postgres(pg: Path) -> None:
    subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pg / "data"), "-m", "fast",
                                "-w", "stop"]), check=False, capture_output=True)
    shutil.rmtree(pg, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    services = resolved_services()
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))

    # setup: its command, with its volume's target swapped for a directory here.
    setup = [a.replace("/secrets", str(root / "secrets")) for a in services["setup"]["command"]]
    done = subprocess.run([sys.executable, "-m", "launcher", *setup], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    secrets = {name: root / Path(spec["file"]) for name, spec in compose["secrets"].items()}
    assert all(p.is_file() for p in secrets.values()), "setup wrote every secret"

    ports = {c: free_port() for c in (8883, 8086, 5432, 9101, 9102, 9103, 9104, 8000, 9090)}
    pg_password = secrets["postgres_password"].read_text().strip()
    # The registry URL names the container "postgres": a copy of the secret names this host.
    url = secrets["registry_url"].read_text().strip()
    assert url == f"postgresql+psycopg://estate:{pg_password}@postgres:5432/registry"
    local_url = root / "registry_url"
    local_url.write_text(url.replace("@postgres:5432/", f"@127.0.0.1:{ports[5432]}/"))
    secrets["registry_url"] = local_url

    stack = Stack(root, services, secrets, ports,
                  mosquitto=None,  # type: ignore[arg-type]
                  influxdb=None, pg_password=pg_password)  # type: ignore[arg-type]
    mosquitto_conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text(encoding="utf-8")
    mosquitto_conf = stack.swap(mosquitto_conf).replace(
        "listener 8883", f"listener {ports[8883]} 127.0.0.1").replace(
        "/mosquitto/data/", f"{root}/mosquitto-data/")
    (root / "mosquitto-data").mkdir()
    stack.mosquitto = ConfiguredMosquitto(root / "mosquitto", mosquitto_conf, ports[8883])
    influx_conf = (ROOT / "deploy/influxdb/influxdb.conf").read_text(encoding="utf-8")
    influx_conf = influx_conf.replace("/var/lib/influxdb", f"{root}/influxdb").replace(
        'bind-address = ":8086"', f'bind-address = "127.0.0.1:{ports[8086]}"').replace(
        "127.0.0.1:8088", f"127.0.0.1:{free_port()}")
    stack.influxdb = ConfiguredInfluxDB(root / "influxdb-run", influx_conf, ports[8086])
    stack.mosquitto.start()
    stack.influxdb.start()
    pg = start_postgres(root, secrets["postgres_password"], ports[5432])
    try:
        yield stack
    finally:
        for process in stack.processes.values():
            if process.poll() is None:
                process.terminate()
        slow = []
        for name, process in stack.processes.items():
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                slow.append(name)
                process.kill()
                process.wait()
        stop_postgres(pg)
        stack.influxdb.stop()
        stack.mosquitto.stop()
    assert not slow, f"{slow} did not stop within 40 s of SIGTERM"


def test_the_servers_run_their_compose_configuration_and_pass_their_health_checks(
        stack: Stack) -> None:
    for name in ("mosquitto", "influxdb", "postgres"):
        result = stack.healthcheck(name)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_the_broker_health_check_needs_the_right_certificate(stack: Stack,
                                                             tmp_path: Path) -> None:
    """The probe checks the broker's certificate against the stack's CA: another CA fails."""
    from tests.launcher.pki import make_ca

    other_ca, _ = make_ca(tmp_path / "other")
    command = stack.swap(stack.services["mosquitto"]["healthcheck"]["test"][1]).replace(
        str(stack.secrets["broker_ca"]), str(other_ca))
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0


def test_ingest_and_the_simulator_run_healthy_over_tls_and_readings_arrive(
        stack: Stack) -> None:
    stack.start("ingest")
    took = stack.wait_healthy("ingest")
    stack.start("simulator")
    took_sim = stack.wait_healthy("simulator")
    print(f"ingest healthy after {took:.1f} s, the simulator after {took_sim:.1f} s")
    store = f"http://127.0.0.1:{stack.ports[8086]}/query"
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    count = 0
    while time.monotonic() < deadline and not count:
        answer = httpx.get(store, params={"db": "estate",
                                          "q": "SELECT count(power) FROM reading"}, timeout=10)
        series = answer.json()["results"][0].get("series", [])
        count = series[0]["values"][0][1] if series else 0
        time.sleep(0.5)
    assert count > 0, "the simulator's readings did not reach InfluxDB through ingest"


def test_the_web_view_runs_healthy_on_the_postgres_registry(stack: Stack) -> None:
    stack.start("web")
    stack.wait_healthy("web")


def test_the_dispatch_worker_runs_on_the_postgres_registry_and_holds_the_lease(
        stack: Stack) -> None:
    process = stack.start("dispatch")
    engine = make_engine(stack.secrets["registry_url"].read_text().strip())
    try:
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        holder = None
        while time.monotonic() < deadline and holder is None:
            assert process.poll() is None, stack.log("dispatch")
            try:
                with engine.connect() as conn:
                    facilities = conn.scalar(select(func.count()).select_from(FacilityRow))
                    holder = conn.scalar(select(LeaseRow.holder)) if facilities else None
            except Exception:  # the worker has not migrated the registry yet
                holder = None
            time.sleep(0.5)
        assert holder, f"the worker took no lease:\n{stack.log('dispatch')}"
    finally:
        engine.dispose()
    check = stack.healthcheck("dispatch")
    if "http_port" in DispatchSettings.model_fields:
        assert check.returncode == 0, check.stdout + check.stderr
    else:
        # The worker's /health on DISPATCH_HTTP_PORT is to come (docs/operations.md); until
        # then its compose check must say unhealthy, not pass by accident.
        assert check.returncode != 0
        assert process.poll() is None, "the worker runs on"


def test_the_gateway_runs_its_profile_against_simulated_modbus_meters(stack: Stack) -> None:
    port = free_port()
    modbus = subprocess.Popen([sys.executable, "-m", "launcher", "simulate", "--meters", "3",
                               "--modbus-port", str(port), "--no-publish"],
                              env={**stack.environment("simulator"),
                                   "EDGE_HTTP_PORT": "0"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.processes["modbus-meters"] = modbus
    (stack.root / "meters.yaml").write_text(
        "meters:\n"
        f"  - {{facility: textile, device: main, host: 127.0.0.1, port: {port}, unit_id: 1,"
        " model: generic-three-phase}\n", encoding="utf-8")
    stack.start("gateway")
    stack.wait_healthy("gateway")


def test_prometheus_scrapes_the_services_with_the_compose_configuration(stack: Stack) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed (Debian package prometheus); `make deps`")
    # Ingest runs already when the module's tests ran in order on one stack; on its own
    # (one test selected, or the stack made again) the test starts it.
    if "ingest" not in stack.processes:
        stack.start("ingest")
    stack.wait_healthy("ingest")
    config = (ROOT / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8")
    config = config.replace("/etc/prometheus/alerts.yml",
                            str(ROOT / "deploy/prometheus/alerts.yml"))
    for service, port in (("ingest", 9101), ("dispatch", 9102), ("simulator", 9103),
                          ("gateway", 9104)):
        config = config.replace(f'"{service}:{port}"', f'"127.0.0.1:{stack.ports[port]}"')
    (stack.root / "prometheus.yml").write_text(config, encoding="utf-8")
    command = [prometheus, f"--config.file={stack.root / 'prometheus.yml'}",
               f"--storage.tsdb.path={stack.root / 'prometheus-data'}",
               f"--web.listen-address=127.0.0.1:{stack.ports[9090]}"]
    with (stack.root / "prometheus.log").open("wb") as log:
        stack.processes["prometheus"] = subprocess.Popen(command, stdout=log,
                                                         stderr=subprocess.STDOUT)
    stack.wait_healthy("prometheus")
    api = f"http://127.0.0.1:{stack.ports[9090]}/api/v1"
    deadline = time.monotonic() + 45  # the first scrape comes within one 15 s interval
    up: dict[str, str] = {}
    while time.monotonic() < deadline and up.get("ingest") != "1":
        answer = httpx.get(f"{api}/query", params={"query": "up"}, timeout=10).json()
        up = {r["metric"]["job"]: r["value"][1] for r in answer["data"]["result"]}
        time.sleep(1)
    assert up.get("ingest") == "1", up
    rules = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
    assert {g["name"] for g in rules} >= {"estate-ingest", "estate-dispatch"}


def test_a_stopped_server_fails_its_health_check(stack: Stack) -> None:
    stack.influxdb.stop()
    assert stack.healthcheck("influxdb").returncode != 0
    stack.mosquitto.stop()
    assert stack.healthcheck("mosquitto").returncode != 0
