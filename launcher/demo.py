"""``estate demo``: the whole product on the sample estate, on this machine.

Starts a real Mosquitto and a real InfluxDB as child processes with their data under
``var/``, then the services as separate processes (exactly as they run in production),
streams their logs with a prefix, and on Ctrl-C stops them in reverse order so ingest
flushes before the servers go. A second run reuses ``var/``.

The broker is secured as in production: the first run writes a password file, an ACL and
every account's password under ``var/broker/`` (``launcher.broker_security``), Mosquitto
refuses anonymous clients, and each service logs in with its own account.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from adapters.ops_http import wait_healthy
from estate.lifecycle import stop_on_signals
from estate.model import SAMPLE_ESTATE, load_estate
from launcher.broker_security import (
    BrokerSecurity,
    estate_accounts,
    load_broker_security,
    service_username,
    write_broker_security,
)
from launcher.servers import InfluxDB, Mosquitto, environment_with_path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DemoPorts:
    # Not the standard 1883/8086: a system Mosquitto or InfluxDB may already hold those.
    mqtt: int = 18830
    influx_http: int = 18086
    influx_rpc: int = 18088
    web: int = 8000
    ingest_http: int = 9101


def service_environment(ports: DemoPorts, var: Path) -> dict[str, str]:
    env = environment_with_path()
    influx = f"http://127.0.0.1:{ports.influx_http}"
    for prefix in ("INGEST", "EDGE", "DISPATCH"):
        env[f"{prefix}_MQTT__HOST"] = "127.0.0.1"
        env[f"{prefix}_MQTT__PORT"] = str(ports.mqtt)
    for prefix in ("INGEST", "DISPATCH"):
        env[f"{prefix}_INFLUX__URL"] = influx
    env["DISPATCH_WEB__PORT"] = str(ports.web)
    env["INGEST_SPOOL_DIR"] = str(var / "ingest-spool")
    env["DISPATCH_REGISTRY_URL"] = f"sqlite:///{var / 'registry.sqlite'}"
    env["EDGE_COMMAND_LOG_PATH"] = str(var / "edge" / "simulator-commands.sqlite")
    env["INGEST_HTTP_PORT"] = str(ports.ingest_http)
    # The demo's meters report every 2 s so the page moves while someone watches it.
    env["EDGE_INTERVAL_S"] = "2"
    env["DISPATCH_STALE_AFTER_S"] = "30"
    env["DISPATCH_FRESHNESS_EVERY_S"] = "15"
    return env


@dataclass(frozen=True, slots=True)
class DemoService:
    """A service of the demo: its process, and the settings prefix and broker account
    it logs in with."""

    name: str
    args: tuple[str, ...]
    prefix: str
    account: str


SERVICES: tuple[DemoService, ...] = (
    DemoService("ingest", ("-m", "ingest"), "INGEST", "ingest"),
    DemoService("dispatch", ("-m", "dispatch", "worker"), "DISPATCH", "dispatch"),
    # Web and dispatch share the DISPATCH_ settings but not an account: each process gets
    # its own environment, so neither holds the other's broker rights.
    DemoService("web", ("-m", "dispatch", "web"), "DISPATCH", "web"),
    DemoService("simulator", ("-m", "edge"), "EDGE", "simulator"),
)


def demo_broker_security(var: Path) -> BrokerSecurity:
    """The demo broker's accounts: written under ``var/broker`` on the first run, reused
    on later ones, and written afresh if the sample estate gained or lost devices."""
    spec = load_estate(SAMPLE_ESTATE)
    out = var / "broker"
    wanted = {a.username for a in estate_accounts(spec)}
    existing = load_broker_security(out)
    if existing is not None and {a.username for a in existing.accounts} == wanted:
        return existing
    security = write_broker_security(spec, out)
    log.info("broker accounts written to %s (%d accounts; passwords in %s)", out,
             len(security.accounts), security.credentials_file)
    return security


def account_environment(service: DemoService, security: BrokerSecurity,
                        estate: str) -> dict[str, str]:
    """The broker login of one service, as its settings read it."""
    username = service_username(estate, service.account)
    return {f"{service.prefix}_MQTT__USERNAME": username,
            f"{service.prefix}_MQTT__PASSWORD": security.password(username)}


def _pump(name: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>9} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


# How long ingest may take to become ready before the demo gives up: it is ready within
# seconds on a quiet machine; a loaded one may take many times that.
INGEST_READY_S = 120.0


def _ingest_ready(ports: DemoPorts, child: subprocess.Popen[bytes],
                  stop: threading.Event) -> bool:
    """Wait until ingest is ready (subscribed), so the simulator's first readings are
    stored; False if it exited, the demo was stopped, or it took too long."""
    url = f"http://127.0.0.1:{ports.ingest_http}/health"
    deadline = time.monotonic() + INGEST_READY_S
    while not stop.is_set() and child.poll() is None and time.monotonic() < deadline:
        if wait_healthy(url, 1.0) is not None:
            log.info("ingest ready; starting the other services")
            return True
    if not stop.is_set():
        log.error("ingest not ready within %.0f s (exit code %s); stopping the demo",
                  INGEST_READY_S, child.poll())
    return False


def run_demo(var: Path, ports: DemoPorts) -> int:
    """Run until Ctrl-C or SIGTERM; return the exit code."""
    var.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    stop_on_signals(stop)
    security = demo_broker_security(var)
    estate = load_estate(SAMPLE_ESTATE).id
    mosquitto = Mosquitto(var / "mosquitto", port=ports.mqtt,
                          password_file=security.password_file, acl_file=security.acl_file)
    influx = InfluxDB(var / "influxdb", http_port=ports.influx_http, rpc_port=ports.influx_rpc)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    code = 0
    try:
        mosquitto.start()
        influx.start()
        log.info("Mosquitto on 127.0.0.1:%d (accounts and ACL in %s), InfluxDB on %s "
                 "(data in %s)", ports.mqtt, security.password_file.parent, influx.url, var)
        env = service_environment(ports, var)
        for service in SERVICES:
            child = subprocess.Popen(
                [sys.executable, *service.args],
                env=env | account_environment(service, security, estate),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert child.stdout is not None
            threading.Thread(target=_pump, args=(service.name, child.stdout),
                             daemon=True).start()
            children.append((service.name, child))
            if service.name == "ingest" and not _ingest_ready(ports, child, stop):
                code = 1
                stop.set()
                break
        else:
            log.info("web view: http://127.0.0.1:%d  (Ctrl-C stops everything)", ports.web)
        while not stop.wait(0.5):
            for name, child in children:
                if child.poll() is not None:
                    log.error("%s exited with %s; stopping the demo", name, child.returncode)
                    code = 1
                    stop.set()
    finally:
        for name, child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in 30 s; killing it", name)
                    child.kill()
        influx.stop()
        mosquitto.stop()
        log.info("demo stopped; data kept in %s", var)
    return code


